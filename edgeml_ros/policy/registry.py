"""Every controller policy by name: what it is, whether it can run live, how to build it.

Each policy is registered here with `register`: its name, a one-line description, whether it
can run on the drone (`live`), the image encodings whose profile data it needs, and a factory
that builds it for a world, given the directory of the trained policies; a costly one runs
only when named (`by_default`). The command line,
evaluation and the controller node take the names and build the policies from here; the order
of registration is the order they are listed in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from edgeml_ros.core.codec import JPEG_QUALITIES
from edgeml_ros.core.paths import POLICY_DIR
from edgeml_ros.core.plan import ExecutionPlan, shared_thresholds
from edgeml_ros.policy.agents import load_policy, policy_file, scoring_differences
from edgeml_ros.policy.baselines import (
    Apparate,
    ConditionsOracle,
    FixedPolicy,
    Neurosurgeon,
    Oracle,
    Spinn,
    Ucb,
    no_exit_plan,
    pick_image_encoding,
    splitee_arms,
    threshold_loop,
)
from edgeml_ros.policy.observation import Policy
from edgeml_ros.policy.thresholds import MAX_ACCURACY_LOSS, pick_threshold
from edgeml_ros.policy.world import World

PolicyFactory = Callable[[World, Path], Policy]


@dataclass(frozen=True)
class PolicySpec:
    """A registered policy: its name, what it is, whether it can run live, how to build it.

    `image_encodings`: those it may ship the camera frame in, whose measured bytes and
    accuracy the profile must hold (core.profiles.ImageExit). `by_default`: whether it runs
    when no policy is named. `saved_as`: the agent whose saved policy it loads
    (`edgeml policy train --agent`), if it is one.
    """

    name: str
    description: str
    live: bool
    factory: PolicyFactory
    image_encodings: tuple[str, ...] = ()
    by_default: bool = True
    saved_as: str | None = None


_POLICIES: dict[str, PolicySpec] = {}


def register(
    name: str,
    description: str,
    live: bool = True,
    image_encodings: tuple[str, ...] = (),
    by_default: bool = True,
    saved_as: str | None = None,
) -> Callable[[PolicyFactory], PolicyFactory]:
    """Decorator: register `factory(world, policy_dir)` as the policy `name`."""

    def add(factory: PolicyFactory) -> PolicyFactory:
        if name in _POLICIES:
            raise ValueError(f"policy {name!r} is registered twice")
        _POLICIES[name] = PolicySpec(name, description, live, factory, image_encodings,
                                     by_default, saved_as)  # fmt: skip
        return factory

    return add


def register_saved(name: str, description: str, agent: str, live: bool = True) -> None:
    """Register the policy `name`: the one `edgeml policy train --agent AGENT` saved."""

    def load(world: World, policy_dir: Path) -> Policy:
        return load_policy(policy_file(policy_dir, world, agent), world, name)

    register(name, description, live, saved_as=agent)(load)


def policy_names(live_only: bool = False, world: World | None = None) -> tuple[str, ...]:
    """Names of the registered policies.

    Only those that can run live, with `live_only`; only those the world's profile has the
    data for, with `world` (see `unavailable`).
    """
    return tuple(
        name
        for name, spec in _POLICIES.items()
        if (spec.live or not live_only) and (world is None or unavailable(name, world) is None)
    )


def chosen_policies(
    names: Sequence[str], world: World, live_only: bool = False
) -> tuple[tuple[str, ...], list[str]]:
    """The policies to run, and why each policy left out cannot be built.

    `names`, or with none every policy run by default that the world's profile has the data for
    (live ones only, with `live_only`). ValueError, with the reason, for a named one the profile
    lacks it for.
    """
    for name in names:
        if (reason := unavailable(name, world)) is not None:
            raise ValueError(reason)
    if names:
        return tuple(names), []
    reasons = {name: unavailable(name, world) for name in policy_names(live_only)
               if _POLICIES[name].by_default}  # fmt: skip
    return (tuple(name for name, reason in reasons.items() if reason is None),
            [reason for reason in reasons.values() if reason is not None])  # fmt: skip


def unavailable(name: str, world: World) -> str | None:
    """Why the policy `name` cannot be built for the world's profile (None: it can)."""
    images = policy_spec(name).image_encodings
    lacking = [e for e in images if e not in world.tables["clean"].images]
    if not lacking:
        return None
    profile = world.profile
    return (
        f"policy {name} needs the frame's measured bytes and accuracy in {', '.join(lacking)}, "
        f"which the profile of {profile.model_id} (version {profile.version}) lacks: profile "
        "the model again (`edgeml profile`)"
    )


def policy_spec(name: str) -> PolicySpec:
    """The registered policy `name`; ValueError listing the known names if there is none."""
    if name not in _POLICIES:
        raise ValueError(f"policy {name!r} unknown; known: {', '.join(_POLICIES)}")
    return _POLICIES[name]


def make_policy(name: str, world: World, policy_dir: Path | str = POLICY_DIR) -> Policy:
    """Build the policy `name` for the world's model (learned ones from `policy_dir`)."""
    reason = unavailable(name, world)
    if reason is not None:
        raise ValueError(reason)
    return policy_spec(name).factory(world, Path(policy_dir))


def named_policies(
    world: World, names: Sequence[str], policy_dir: Path | str = POLICY_DIR
) -> dict[str, Policy]:
    """The named policies, built for the world's model, by name."""
    return {name: make_policy(name, world, policy_dir) for name in names}


def training_differences(
    name: str, world: World, policy_dir: Path | str = POLICY_DIR
) -> str | None:
    """How the world scores frames otherwise than the saved policy `name` was trained to.

    None where alike, or where `name` is no saved policy (agents.scoring_differences).
    """
    agent = policy_spec(name).saved_as
    if agent is None:
        return None
    return scoring_differences(policy_file(Path(policy_dir), world, agent), world)


register_saved("rl", "PPO on our observation and discrete (cut, threshold level) actions", "ppo")


register_saved(
    "rl_loop",
    "PPO picks the route (cut point, tensor or camera-frame encoding); a threshold loop on audits "
    "keeps the exit threshold within the drift requirement's agreement with the final exit",
    "ppo_loop",
)


register_saved("dqn", "DQN on the same formulation as rl", "dqn")


register_saved(
    "planner",
    "per window, the action of best expected utility in a table made in the simulator, under a "
    "belief about the drone's speed and the inputs' condition read from the telemetry",
    "planner",
)


register_saved(
    "edgeml_ddpg",
    "the EdgeML authors' DDPG formulation; its state needs ground truth (frame accuracy)",
    "edgeml_ddpg",
    live=False,
)


@register("edge_only", "the whole model on the drone, no early exits")
def _edge_only(world: World, policy_dir: Path) -> Policy:
    return FixedPolicy("edge_only", no_exit_plan(world.costs, world.costs.num_blocks))


@register("cloud_only", "ship the input tensor (fp32): the base station runs everything")
def _cloud_only(world: World, policy_dir: Path) -> Policy:
    return FixedPolicy("cloud_only", no_exit_plan(world.costs, 0))


@register(
    "cloud_png",
    "ship the camera frame as PNG (lossless): the base station runs everything",
    image_encodings=("png",),
)
def _cloud_png(world: World, policy_dir: Path) -> Policy:
    return FixedPolicy("cloud_png", no_exit_plan(world.costs, 0, "png"))


@register(
    "cloud_jpeg",
    "ship the camera frame as JPEG, at the quality of fewest bytes within 1 point of the final "
    "exit's validation accuracy",
    image_encodings=tuple(JPEG_QUALITIES),
)
def _cloud_jpeg(world: World, policy_dir: Path) -> Policy:
    encoding = pick_image_encoding(world.tables["clean"], tuple(JPEG_QUALITIES), MAX_ACCURACY_LOSS)
    return FixedPolicy("cloud_jpeg", no_exit_plan(world.costs, 0, encoding))


@register("neurosurgeon", "the cut of least predicted latency for the link, no early exits")
def _neurosurgeon(world: World, policy_dir: Path) -> Policy:
    return Neurosurgeon(world.costs)


@register("branchynet", "everything on the drone, one validation-tuned exit threshold")
def _branchynet(world: World, policy_dir: Path) -> Policy:
    costs, threshold = world.costs, pick_threshold(world.tables["clean"])
    plan = ExecutionPlan(costs.num_blocks, shared_thresholds(threshold, costs.num_exits))
    return FixedPolicy("branchynet", plan)


register_saved(
    "tuned_static",
    "the one (cut, threshold) configuration of best mean utility on the training scenarios, "
    "held throughout: a fixed choice tuned on what the learned policies train on",
    "static",
)


@register("spinn", "cut and threshold chosen jointly by rule from the profile and the link")
def _spinn(world: World, policy_dir: Path) -> Policy:
    return Spinn(world.costs, world.tables["clean"])


@register(
    "ucb",
    "discounted UCB over the cut points at BranchyNet's threshold (SplitEE), label-free reward",
)
def _ucb(world: World, policy_dir: Path) -> Policy:
    table = world.tables["clean"]
    arms = splitee_arms(world.costs, pick_threshold(table))
    return Ucb(world.costs, table, world.config.weights, arms)


@register(
    "apparate",
    "everything on the drone, one exit threshold tuned online by audits against the final exit "
    "(Apparate): the drone also sends a share of its early answers to the base station",
)
def _apparate(world: World, policy_dir: Path) -> Policy:
    config = world.config
    return Apparate(world.costs, threshold_loop(world.tables, config.audit_share, config.fps))


@register("oracle", "per window, the best plan in hindsight (needs the simulator)", live=False)
def _oracle(world: World, policy_dir: Path) -> Policy:
    return Oracle(world.costs)


@register(
    "conditions_oracle",
    "per window, the best plan in expectation knowing the conditions in hindsight but not the "
    f"frames (needs the simulator; {ConditionsOracle.draws} draws of every window: run only "
    "when named)",
    live=False,
    by_default=False,
)
def _conditions_oracle(world: World, policy_dir: Path) -> Policy:
    return ConditionsOracle(world.costs)
