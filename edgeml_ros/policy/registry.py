"""Every controller policy by name: what it is, whether it can run live, how to build it.

Each policy is registered here with `register`: its name, a one-line description, whether it
can run on the drone (`live`) and a factory that builds it for a world, given the directory of
the trained policies. The command line, evaluation and the controller node take the names
and build the policies from here; the order of registration is the order they are listed in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from edgeml_ros.core.plan import ExecutionPlan, shared_thresholds
from edgeml_ros.policy.agents import POLICY_DIR, load_policy, policy_file
from edgeml_ros.policy.baselines import FixedPolicy, Neurosurgeon, Oracle, Spinn, no_exit_plan
from edgeml_ros.policy.observation import Policy
from edgeml_ros.policy.thresholds import pick_threshold
from edgeml_ros.policy.world import World

PolicyFactory = Callable[[World, Path], Policy]


@dataclass(frozen=True)
class PolicySpec:
    """A registered policy: its name, what it is, whether it can run live, how to build it."""

    name: str
    description: str
    live: bool
    factory: PolicyFactory


_POLICIES: dict[str, PolicySpec] = {}


def register(
    name: str, description: str, live: bool = True
) -> Callable[[PolicyFactory], PolicyFactory]:
    """Decorator: register `factory(world, policy_dir)` as the policy `name`."""

    def add(factory: PolicyFactory) -> PolicyFactory:
        if name in _POLICIES:
            raise ValueError(f"policy {name!r} is registered twice")
        _POLICIES[name] = PolicySpec(name, description, live, factory)
        return factory

    return add


def policy_names(live_only: bool = False) -> tuple[str, ...]:
    """Names of the registered policies (only those that can run live, with `live_only`)."""
    return tuple(name for name, spec in _POLICIES.items() if spec.live or not live_only)


def policy_spec(name: str) -> PolicySpec:
    """The registered policy `name`; ValueError listing the known names if there is none."""
    if name not in _POLICIES:
        raise ValueError(f"policy {name!r} unknown; known: {', '.join(_POLICIES)}")
    return _POLICIES[name]


def make_policy(name: str, world: World, policy_dir: Path | str = POLICY_DIR) -> Policy:
    """Build the policy `name` for the world's model (learned ones from `policy_dir`)."""
    return policy_spec(name).factory(world, Path(policy_dir))


def named_policies(
    world: World, names: Sequence[str], policy_dir: Path | str = POLICY_DIR
) -> dict[str, Policy]:
    """The named policies, built for the world's model, by name."""
    return {name: make_policy(name, world, policy_dir) for name in names}


@register("rl", "PPO on our observation and discrete (cut, threshold level) actions")
def _rl(world: World, policy_dir: Path) -> Policy:
    return load_policy(policy_file(policy_dir, world, "ppo"), world, "rl")


@register("dqn", "DQN on the same formulation as rl")
def _dqn(world: World, policy_dir: Path) -> Policy:
    return load_policy(policy_file(policy_dir, world, "dqn"), world, "dqn")


@register(
    "edgeml_ddpg",
    "the EdgeML authors' DDPG formulation; its state needs ground truth (frame accuracy)",
    live=False,
)
def _edgeml_ddpg(world: World, policy_dir: Path) -> Policy:
    return load_policy(policy_file(policy_dir, world, "edgeml_ddpg"), world, "edgeml_ddpg")


@register("edge_only", "the whole model on the drone, no early exits")
def _edge_only(world: World, policy_dir: Path) -> Policy:
    return FixedPolicy("edge_only", no_exit_plan(world.costs, world.costs.num_blocks))


@register("cloud_only", "ship the input: the base station runs everything")
def _cloud_only(world: World, policy_dir: Path) -> Policy:
    return FixedPolicy("cloud_only", no_exit_plan(world.costs, 0))


@register("neurosurgeon", "the cut of least predicted latency for the link, no early exits")
def _neurosurgeon(world: World, policy_dir: Path) -> Policy:
    return Neurosurgeon(world.costs)


@register("branchynet", "everything on the drone, one validation-tuned exit threshold")
def _branchynet(world: World, policy_dir: Path) -> Policy:
    costs, threshold = world.costs, pick_threshold(world.tables["clean"])
    plan = ExecutionPlan(costs.num_blocks, shared_thresholds(threshold, costs.num_exits))
    return FixedPolicy("branchynet", plan)


@register("spinn", "cut and threshold chosen jointly by rule from the profile and the link")
def _spinn(world: World, policy_dir: Path) -> Policy:
    return Spinn(world.costs, world.tables["clean"])


@register("oracle", "per window, the best plan in hindsight (needs the simulator)", live=False)
def _oracle(world: World, policy_dir: Path) -> Policy:
    return Oracle(world.costs)
