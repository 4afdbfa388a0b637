"""`edgeml demo`: the drone and base-station nodes, started by sim.launch.py, over real DDS."""

from __future__ import annotations

import argparse

from edgeml_ros.cli.common import audit_share, command_line, positive_float, workload_argument


def condition_schedule(text: str) -> str:
    """An argparse type: a condition schedule, checked (core.degrade)."""
    from edgeml_ros.core.degrade import parse_condition_schedule

    try:
        parse_condition_schedule(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def demo_config(args: argparse.Namespace, **extra):
    """The DemoConfig of the arguments `demo` and `bench system` share."""
    from edgeml_ros.bringup.demo import DemoConfig

    return DemoConfig(
        duration_s=args.duration,
        rate_hz=args.rate,
        workload=args.workload,
        checkpoint=args.checkpoint,
        profile=args.profile,
        json_path=args.json,
        policies=tuple(args.policy or ()),
        compute_slowdown=args.compute_slowdown,
        plot_path=args.plot or None,
        trace=args.trace,
        shape=not args.no_shaping,
        **extra,
    )


def _cmd_demo(args: argparse.Namespace) -> int:
    from edgeml_ros.bringup.demo import run_demo

    return run_demo(demo_config(args, domain_id=args.domain_id, mcap_dir=args.mcap_dir or None,
                                 audit_share=args.audit_share,
                                 condition_schedule=args.condition_schedule,
                                 command=command_line()))  # fmt: skip


def model_arguments(p: argparse.ArgumentParser) -> None:
    """The model and drone computer options `demo` and `bench system` share."""
    workload_argument(p, "the shipped model to run")
    p.add_argument(
        "--checkpoint",
        default=None,
        help="a model checkpoint instead of the workload's (with --profile)",
    )
    p.add_argument(
        "--profile",
        default=None,
        help="its profile (edgeml profile), for the controller and the drone computer",
    )
    p.add_argument(
        "--compute-slowdown",
        type=positive_float,
        default=None,
        help="emulate a drone this many times slower than this machine (default: the "
        "profile's drone computer against this machine, reported as emulated)",
    )


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add `demo`."""
    from edgeml_ros.policy.registry import policy_names

    p = sub.add_parser(
        "demo", help="launch the drone and base-station nodes (sim.launch.py) and score them"
    )
    p.add_argument("--duration", type=positive_float, default=30.0, help="seconds of frames")
    p.add_argument("--rate", type=positive_float, default=10.0, help="camera frames per second")
    model_arguments(p)
    p.add_argument(
        "--domain-id",
        type=int,
        default=None,
        help="ROS_DOMAIN_ID for the demo (default: a free one from the pid)",
    )
    p.add_argument("--json", default=None, metavar="PATH", help="also write the summary here")
    p.add_argument("--policy", nargs="+", default=["rl"], choices=policy_names(live_only=True),
                   help="controller policy; several: one run each, then a table")  # fmt: skip
    p.add_argument("--plot", default="out/demo.png", help="PNG of link and plan ('' for none)")
    p.add_argument("--trace", default="throttle",
                   help="link trace to replay (CSV t_s,mbps[,rtt_ms]); default: the EdgeML "
                   "authors' throttle schedule, five equal phases over the run")  # fmt: skip
    p.add_argument("--mcap-dir", default="out",
                   help="record telemetry to DIR/demo_<policy>.mcap ('' for none)")  # fmt: skip
    p.add_argument("--no-shaping", action="store_true",
                   help="use the loopback link even where shaping works (root)")  # fmt: skip
    p.add_argument("--audit-share", type=audit_share, default=0.02,
                   help="share of the drone's early answers audited at the base station under "
                   "every plan (the controller's audit_share; 0: only a policy's "
                   "own)")  # fmt: skip
    p.add_argument("--condition-schedule", type=condition_schedule, default="",
                   metavar="SCHEDULE",
                   help="the camera's input conditions over time, from its first frame, e.g. "
                   "'0:clean,10:blur,20:low_light:2' (sim.launch.py's condition_schedule; "
                   "default: clean)")  # fmt: skip
    p.set_defaults(func=_cmd_demo)
