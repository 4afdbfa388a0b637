"""Named scenarios and the fixed train/test split.

A built-in scenario is `KIND-SEED`, with KIND one of `SCENARIO_KINDS`: the seed fixes its link
trace (Markov-modulated, steps, an outage, or the EdgeML authors' throttle schedule), its RTT,
the input conditions over time (clean, blur, noise, low light), the starting battery and the
battery drain. `compute-SEED` is `markov-SEED` on a drone whose compute changes too (throttled,
loaded: 1-16x the profiling machine's time, in segments of 10-40 s); the others fly the
world's drone. Training draws seeds below `TEST_SEED_BASE` (and, when asked, a share of
steady episodes: `random_steady_scenario`); evaluation uses only `TEST_SCENARIOS`, whose seeds
are never trained on. A trace file (CSV, see core.traces) is a scenario too: clean inputs, a
full battery, no drain unless given.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

import numpy as np

from edgeml_ros.core.degrade import CONDITIONS
from edgeml_ros.core.traces import Trace, load_trace, markov_trace, outage_trace, step_trace
from edgeml_ros.core.traces import throttle_schedule as authors_throttle_schedule
from edgeml_ros.policy.sim import Scenario

T = TypeVar("T")
SCENARIO_KINDS = ("markov", "steps", "outage", "throttle", "compute")
SCENARIO_DURATION_S = 120.0
TEST_SEED_BASE = 100_000
TEST_SCENARIOS = tuple(f"{k}-{TEST_SEED_BASE + i}" for k in SCENARIO_KINDS for i in range(3))
LINK_LEVELS_MBPS = (0.04, 0.13, 0.5, 2.0, 10.0, 40.0)
CONDITION_ODDS = {"clean": 0.5, "blur": 0.2, "noise": 0.15, "low_light": 0.15}
# The drone compute slowdowns of `compute` scenarios and of training, log-uniform over this range
# (against the profiling machine; the regime map's range). Of the other kinds, half of the
# training episodes fly the world's drone, the others one drone of that range throughout, so
# that a policy has seen what a slow drone's telemetry looks like.
DRONE_SLOWDOWNS = (1.0, 16.0)
TRAIN_SLOWED_SHARE = 0.5
# The link rates of steady training episodes (`random_steady_scenario`), log-uniform: the regime
# map's range.
STEADY_RATES_MBPS = (0.04, 50.0)
# Draws of the frames of each regime map cell (policy.regime).
REGIME_DRAWS = 16


def generate_scenario(kind: str, seed: int, duration_s: float = SCENARIO_DURATION_S) -> Scenario:
    """The built-in scenario `kind-seed`."""
    if kind not in SCENARIO_KINDS:
        raise ValueError(f"scenario kind {kind!r} unknown; known: {', '.join(SCENARIO_KINDS)}")
    rng = np.random.default_rng(seed)
    rtt = float(rng.uniform(10.0, 60.0))
    if kind in ("markov", "compute"):
        trace = markov_trace(rng, duration_s, LINK_LEVELS_MBPS, float(rng.uniform(5, 15)), rtt)
    elif kind == "steps":
        levels = tuple(float(x) for x in rng.choice(LINK_LEVELS_MBPS, size=6))
        trace = step_trace(levels, duration_s / 6, rtt)
    elif kind == "outage":
        mbps = float(rng.choice(LINK_LEVELS_MBPS[2:]))
        start = float(rng.uniform(0.2, 0.6) * duration_s)
        trace = outage_trace(mbps, start, float(rng.uniform(5.0, 20.0)), rtt)
    else:
        trace = authors_throttle_schedule(duration_s / 5, float(rng.uniform(10.0, 50.0)), rtt)
    scenario = Scenario(
        name=f"{kind}-{seed}",
        trace=trace,
        duration_s=duration_s,
        difficulty=random_difficulty(rng, duration_s),
        initial_soc=float(rng.uniform(0.15, 1.0)),
        flight_drain_per_s=float(rng.uniform(0.0, 0.004)),
        seed=seed,
    )
    if kind != "compute":
        return scenario
    return replace(scenario, compute_schedule=random_compute_schedule(rng, duration_s))


def random_slowdown(rng: np.random.Generator) -> float:
    """A drone compute slowdown, log-uniform over DRONE_SLOWDOWNS."""
    low, high = np.log(DRONE_SLOWDOWNS)
    return float(np.exp(rng.uniform(low, high)))


def random_compute_schedule(
    rng: np.random.Generator, duration_s: float
) -> tuple[tuple[float, float], ...]:
    """The drone's compute slowdown over time: segments of 10-40 s, each `random_slowdown`."""
    return random_segments(rng, duration_s, random_slowdown(rng), lambda: random_slowdown(rng))


def random_segments(
    rng: np.random.Generator, duration_s: float, first: T, draw: Callable[[], T]
) -> tuple[tuple[float, T], ...]:
    """`first` from t = 0, then a `draw` every 10-40 s until `duration_s`."""
    segments, t = [(0.0, first)], float(rng.uniform(10, 40))
    while t < duration_s:
        segments.append((t, draw()))
        t += float(rng.uniform(10, 40))
    return tuple(segments)


def random_difficulty(rng: np.random.Generator, duration_s: float) -> tuple[tuple[float, str]]:
    """Input conditions over time: clean first, then segments of 10-40 s."""
    names, odds = list(CONDITION_ODDS), list(CONDITION_ODDS.values())
    return random_segments(rng, duration_s, "clean",
                           lambda: names[int(rng.choice(len(names), p=odds))])  # fmt: skip


def steady_scenario(
    name: str,
    mbps: float,
    rtt_ms: float,
    difficulty: tuple[tuple[float, str], ...],
    duration_s: float = SCENARIO_DURATION_S,
    **battery_and_drone,
) -> Scenario:
    """A scenario whose link keeps one rate and RTT throughout."""
    trace = Trace(np.array([0.0]), np.array([mbps]), np.array([rtt_ms]), f"steady {mbps:g} Mbit/s")
    return Scenario(name, trace, duration_s, difficulty, **battery_and_drone)


def random_steady_scenario(rng: np.random.Generator) -> Scenario:
    """A steady training scenario.

    A link rate log-uniform over STEADY_RATES_MBPS, RTT 10-60 ms, one input condition (each
    equally likely), one `random_slowdown` drone, a random battery and drain.
    """
    low, high = np.log(STEADY_RATES_MBPS)
    mbps, rtt = float(np.exp(rng.uniform(low, high))), float(rng.uniform(10.0, 60.0))
    condition = CONDITIONS[int(rng.integers(len(CONDITIONS)))]
    seed = int(rng.integers(TEST_SEED_BASE))
    return steady_scenario(
        f"steady-{seed}",
        mbps,
        rtt,
        ((0.0, condition),),
        initial_soc=float(rng.uniform(0.15, 1.0)),
        flight_drain_per_s=float(rng.uniform(0.0, 0.004)),
        compute_schedule=((0.0, random_slowdown(rng)),),
        seed=seed,
    )


def train_scenario(rng: np.random.Generator, steady_share: float = 0.0) -> Scenario:
    """A random scenario of the training split; `steady_share` of them steady ones."""
    if steady_share > 0 and rng.random() < steady_share:
        return random_steady_scenario(rng)
    kind = SCENARIO_KINDS[int(rng.integers(len(SCENARIO_KINDS)))]
    scenario = generate_scenario(kind, int(rng.integers(TEST_SEED_BASE)))
    if scenario.compute_schedule or rng.random() >= TRAIN_SLOWED_SHARE:
        return scenario
    return replace(scenario, compute_schedule=((0.0, random_slowdown(rng)),))


def resolve_scenario(
    name_or_file: str,
    duration_s: float | None = None,
    condition: str = "clean",
    initial_soc: float = 0.9,
) -> Scenario:
    """A built-in scenario by name (`KIND-SEED`), or a scenario replaying a trace file.

    `duration_s` defaults to 120 s for built-ins and, for a file, to its last change plus 10 s
    (at least 30 s). `condition` and `initial_soc` apply to trace files only.
    """
    kind, _, seed = name_or_file.rpartition("-")
    if kind in SCENARIO_KINDS and seed.isdigit():
        return generate_scenario(kind, int(seed), duration_s or SCENARIO_DURATION_S)
    path = Path(name_or_file)
    if not path.exists():
        raise ValueError(
            f"scenario {name_or_file!r} is neither a trace file nor a built-in name "
            f"(KIND-SEED with KIND one of {', '.join(SCENARIO_KINDS)}; test split: "
            f"{', '.join(TEST_SCENARIOS)})"
        )
    if condition not in CONDITIONS:
        raise ValueError(f"condition {condition!r} unknown; known: {', '.join(CONDITIONS)}")
    trace = load_trace(path)
    return Scenario(
        name=trace.name,
        trace=trace,
        duration_s=duration_s or max(30.0, trace.duration_s + 10.0),
        difficulty=((0.0, condition),),
        initial_soc=initial_soc,
    )
