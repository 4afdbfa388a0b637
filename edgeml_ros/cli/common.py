"""What several `edgeml` verbs share: argument types, the simulator's options, the command line."""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from edgeml_ros.core.plan import MAX_AUDIT_SHARE

if TYPE_CHECKING:
    from edgeml_ros.policy.world import World


def _number(kind: type, noun: str, accepts: Callable[[float], bool], requirement: str):
    """An argparse type accepting numbers of `kind` that meet `requirement`, readably."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {noun}, got {text!r}") from None
        if not accepts(value):
            raise argparse.ArgumentTypeError(f"must be {requirement}, got {value}")
        return value

    return parse


positive_int = _number(int, "a whole number", lambda v: v > 0, "> 0")
non_negative_int = _number(int, "a whole number", lambda v: v >= 0, ">= 0")
positive_float = _number(float, "a number", lambda v: v > 0, "> 0")
fraction = _number(float, "a number", lambda v: 0 <= v <= 1, "from 0 to 1")
audit_share = _number(
    float, "a number", lambda v: 0 <= v <= MAX_AUDIT_SHARE, f"from 0 to {MAX_AUDIT_SHARE}"
)


def command_line() -> str:
    """The command as typed, for the records that say how they were made."""
    return "edgeml " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def sim_world(args: argparse.Namespace) -> World:
    """The simulated world of the options `sim_arguments` added."""
    from edgeml_ros.policy.sim import SimConfig
    from edgeml_ros.policy.world import World

    config = SimConfig(fps=args.fps, deadline_ms=args.deadline_ms,
                       device_class=args.device_class, weights=args.utility_weights)  # fmt: skip
    return World.load(sim_profile(args), config)


def sim_policies(args: argparse.Namespace, world: World) -> list[str]:
    """The --policy names, or else every policy the world's profile has the data for.

    Those left out by default are named on stderr, with the reason; so are saved policies
    trained for another deadline or other utility weights than the options'.
    """
    from edgeml_ros.policy.registry import chosen_policies, training_differences

    names, left_out = chosen_policies(args.policy or (), world)
    for reason in left_out:
        print(f"left out: {reason}", file=sys.stderr)
    for name in names:
        if (differences := training_differences(name, world, args.policy_dir)) is not None:
            print(f"note: {differences}", file=sys.stderr)
    return list(names)


def sim_profile(args: argparse.Namespace) -> str:
    """The profile the simulator runs: --profile, or the --workload's."""
    from edgeml_ros.core.workloads import workload

    return args.profile or str(workload(args.workload).profile)


def _utility_weights(text: str):
    """Parse `name=value,...` into UtilityWeights (unnamed weights keep their defaults)."""
    from edgeml_ros.policy.sim import UtilityWeights

    known = UtilityWeights.__dataclass_fields__
    values = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep or name.strip() not in known:
            raise argparse.ArgumentTypeError(
                f"{item!r}: expected name=value with name one of {', '.join(known)}"
            )
        try:
            values[name.strip()] = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{item!r}: {value!r} is not a number") from None
    try:
        return UtilityWeights(**values)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def workload_argument(p: argparse.ArgumentParser, what: str) -> None:
    """--workload: one of the shipped workloads, each described in the help after `what`."""
    from edgeml_ros.core.workloads import DEFAULT_WORKLOAD, WORKLOADS

    p.add_argument(
        "--workload",
        default=DEFAULT_WORKLOAD,
        choices=list(WORKLOADS),
        help=f"{what}: " + "; ".join(f"{w.name}: {w.description}" for w in WORKLOADS.values()),
    )


def workload_arguments(p: argparse.ArgumentParser) -> None:
    """--workload and --profile: the profile the simulator runs (`sim_profile`)."""
    workload_argument(p, "the shipped model whose profile to simulate")
    p.add_argument(
        "--profile",
        default=None,
        help="a measured model profile (edgeml profile), instead of the workload's",
    )


def sim_arguments(p: argparse.ArgumentParser, with_policies: bool) -> None:
    """The simulator's options (profile, rates, device, weights), and the policies to run."""
    from edgeml_ros.core.energy import DEVICE_CLASSES
    from edgeml_ros.core.paths import POLICY_DIR
    from edgeml_ros.policy.registry import policy_names

    workload_arguments(p)
    p.add_argument("--fps", type=positive_float, default=10.0, help="camera frames per second")
    p.add_argument("--deadline-ms", type=positive_float, default=100.0, help="frame deadline")
    p.add_argument("--device-class", default=None, choices=sorted(DEVICE_CLASSES),
                   help="simulated drone computer (compute speed and energy model; default: "
                   "the profile's)")  # fmt: skip
    p.add_argument("--utility-weights", type=_utility_weights, default="",
                   help="reward weights, e.g. 'energy=0.1,latency=0.5' (docs/policy.md; "
                   "learned policies were trained with the defaults)")  # fmt: skip
    if with_policies:
        p.add_argument("--policy", nargs="+", default=None, choices=policy_names(),
                       help="policies to run (default: all the profile can serve)")  # fmt: skip
        p.add_argument("--policy-dir", default=str(POLICY_DIR), help="saved learned policies")
