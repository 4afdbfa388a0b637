"""`edgeml bench system|scale|dds|goodput|link|soak`: the live system as node processes."""

from __future__ import annotations

import argparse

from edgeml_ros.cli.common import command_line, positive_float, positive_int
from edgeml_ros.cli.demo import demo_config, model_arguments
from edgeml_ros.core.link import BENCH_PHASES_MBPS


def _cmd_bench_system(args: argparse.Namespace) -> int:
    from edgeml_ros.bringup.system_bench import run_system_bench

    cfg = demo_config(args, mcap_dir=args.mcap_dir or None, log_dir="log/bench_system",
                      command=command_line())  # fmt: skip
    return run_system_bench(cfg, args.markdown, args.resimulate)


def _cmd_bench_scale(args: argparse.Namespace) -> int:
    from edgeml_ros.bringup.load_bench import run_scale

    return run_scale(args.drones, args.duration, args.rate, args.json)


def _cmd_bench_goodput(args: argparse.Namespace) -> int:
    from edgeml_ros.bringup.goodput_bench import DEFAULT_POINTS, GoodputPoint, run_goodput

    points = args.points or [GoodputPoint.parse(p) for p in DEFAULT_POINTS]
    return run_goodput(points, args.duration, args.rate, args.json, args.markdown, args.plot)


def _cmd_bench_link(args: argparse.Namespace) -> int:
    from edgeml_ros.bringup.link_bench import run_link_bench

    return run_link_bench(args.phases, args.phase_s, args.rate, args.json, args.markdown,
                          args.plot, command_line())  # fmt: skip


def _link_rate(text: str) -> float:
    try:
        mbps = float(text)
    except ValueError:
        mbps = -1.0
    if not 0 <= mbps < 1000:
        raise argparse.ArgumentTypeError(f"{text!r} is not a rate in Mbit/s in [0, 1000) "
                                         "(0: an outage)")  # fmt: skip
    return mbps


def _cmd_bench_dds(args: argparse.Namespace) -> int:
    from edgeml_ros.bringup.dds_bench import run_dds_bench

    return run_dds_bench(args.rate, args.messages, args.json)


def _goodput_point(text: str):
    from edgeml_ros.bringup.goodput_bench import GoodputPoint

    try:
        return GoodputPoint.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _cmd_bench_soak(args: argparse.Namespace) -> int:
    from edgeml_ros.bringup.load_bench import run_soak

    return run_soak(args.duration, args.rate, args.json)


def add_parsers(suites: argparse._SubParsersAction) -> None:
    """Add the `bench` suites system, scale, dds, goodput, link and soak."""
    from edgeml_ros.policy.registry import policy_names

    p = suites.add_parser("system", help="the live system once per policy over a shaped link")
    p.add_argument("--policy", nargs="+", default=None, choices=policy_names(live_only=True),
                   help="the policies to run (default: every live policy the model's profile "
                   "has the data for; the others are named)")  # fmt: skip
    p.add_argument("--duration", type=positive_float, default=60.0, help="seconds per policy")
    p.add_argument("--rate", type=positive_float, default=10.0, help="camera frames per second")
    model_arguments(p)
    p.add_argument("--trace", default="throttle", help="link trace (default: throttle schedule)")
    p.add_argument("--no-shaping", action="store_true", help="loopback link even as root")
    p.add_argument("--json", default=None, metavar="PATH", help="also write results as JSON")
    p.add_argument("--markdown", default=None, metavar="PATH", help="also write a results page")
    p.add_argument("--plot", default="out/bench_system.png", help="PNG of link and plans")
    p.add_argument("--mcap-dir", default="out/bench_system",
                   help="record each run to DIR/demo_<policy>.mcap, what `edgeml calibrate` "
                   "reads ('' for none)")  # fmt: skip
    p.add_argument("--resimulate", default=None, metavar="JSON",
                   help="no live runs: compare the simulator with those of an earlier "
                   "`bench system --json` file (its duration, rate, trace and drone; the model "
                   "and profile as --workload/--profile say)")  # fmt: skip
    p.set_defaults(func=_cmd_bench_system)

    p = suites.add_parser("scale", help="N drones against one base station")
    p.add_argument("--drones", nargs="+", type=positive_int, default=[1, 2, 4, 8])
    p.add_argument("--duration", type=positive_float, default=20.0, help="seconds per count")
    p.add_argument("--rate", type=positive_float, default=10.0, help="frames/s per drone")
    p.add_argument("--json", default=None, metavar="PATH", help="also write results as JSON")
    p.set_defaults(func=_cmd_bench_scale)

    p = suites.add_parser("dds", help="one DDS hop per publication mode and executor")
    p.add_argument("--rate", type=positive_float, default=20.0, help="messages per second")
    p.add_argument("--messages", type=positive_int, default=300, help="messages per config")
    p.add_argument("--json", default=None, metavar="PATH", help="also write results as JSON")
    p.set_defaults(func=_cmd_bench_dds)

    p = suites.add_parser("goodput", help="offload goodput over the shaped link, per rate")
    p.add_argument(
        "--points",
        nargs="+",
        type=_goodput_point,
        default=None,
        help="RATE:CUT pairs: shaped Mbit/s and the cut whose tensors are offloaded "
        "(default: 0.04:0 0.13:0 0.5:2 2:1)",
    )
    p.add_argument(
        "--duration", type=positive_float, default=20.0, help="seconds measured per point"
    )
    p.add_argument("--rate", type=positive_float, default=10.0, help="camera frames per second")
    p.add_argument("--json", default=None, metavar="PATH", help="also write results as JSON")
    p.add_argument("--markdown", default=None, metavar="PATH", help="also write a results page")
    p.add_argument("--plot", default=None, metavar="PATH", help="also write a PNG")
    p.set_defaults(func=_cmd_bench_goodput)

    p = suites.add_parser("link", help="the link estimate against a link shaped in steps")
    p.add_argument("--phases", nargs="+", type=_link_rate, default=list(BENCH_PHASES_MBPS),
                   metavar="MBPS", help="shaped rate of each phase, Mbit/s (0: an outage; "
                   f"default: {' '.join(f'{r:g}' for r in BENCH_PHASES_MBPS)})")  # fmt: skip
    p.add_argument("--phase-s", type=positive_float, default=15.0, help="seconds per phase")
    p.add_argument("--rate", type=positive_float, default=10.0, help="camera frames per second")
    p.add_argument("--json", default=None, metavar="PATH", help="also write results as JSON")
    p.add_argument("--markdown", default=None, metavar="PATH", help="also write a results page")
    p.add_argument("--plot", default=None, metavar="PATH", help="also write a PNG")
    p.set_defaults(func=_cmd_bench_link)

    p = suites.add_parser("soak", help="a long run of one drone; memory growth per node")
    p.add_argument("--duration", type=positive_float, default=600.0, help="seconds of frames")
    p.add_argument("--rate", type=positive_float, default=10.0, help="camera frames per second")
    p.add_argument("--json", default=None, metavar="PATH", help="also write results as JSON")
    p.set_defaults(func=_cmd_bench_soak)
