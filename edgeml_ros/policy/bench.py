"""Decision cost: how long each policy takes to choose a plan, on this CPU."""

from __future__ import annotations

import time

import numpy as np
import torch

from edgeml_ros.core.plan import ExecutionPlan, shared_thresholds
from edgeml_ros.policy.observation import Observation, Policy, observe
from edgeml_ros.policy.scenarios import TEST_SCENARIOS, resolve_scenario
from edgeml_ros.policy.world import World


def sample_observations(world: World, count: int) -> list[Observation]:
    """Realistic observations: a test scenario's decision points under changing plans."""
    observations: list[Observation] = []
    rng = np.random.default_rng(0)
    costs = world.costs
    for name in TEST_SCENARIOS:
        sim = world.simulation(resolve_scenario(name))
        plan: ExecutionPlan | None = None
        while not sim.done and len(observations) < count:
            observations.append(observe(sim, plan))
            cut = int(rng.integers(costs.num_blocks + 1))
            plan = ExecutionPlan(cut, shared_thresholds(0.9, costs.num_exits))
            sim.run(plan, world.config.window_frames)
        if len(observations) >= count:
            break
    return (observations * (count // max(1, len(observations)) + 1))[:count]


def bench_decisions(world: World, policies: dict[str, Policy], runs: int) -> dict[str, dict]:
    """Median and p99 wall time of `decide` per policy (one torch thread, warm)."""
    torch.set_num_threads(1)
    observations = sample_observations(world, runs)
    results = {}
    for name, policy in policies.items():
        if name == "oracle":
            continue  # hindsight needs the simulator: it is not a decision one can run live
        policy.reset()
        for obs in observations[:50]:
            policy.decide(obs)
        times = []
        for obs in observations:
            t0 = time.perf_counter()
            policy.decide(obs)
            times.append((time.perf_counter() - t0) * 1000.0)
        results[name] = {
            "p50_ms": float(np.percentile(times, 50)),
            "p99_ms": float(np.percentile(times, 99)),
            "runs": runs,
            "threads": 1,
        }
    return results
