"""`edgeml`: the command line of edgeml_ros (train, profile, policy, calibrate, evaluate, ...)."""

from __future__ import annotations

import argparse
import sys

from edgeml_ros.cli import bench, calibrate, demo, evaluate, policy, profile, system, train


def build_parser() -> argparse.ArgumentParser:
    """The `edgeml` argument parser."""
    parser = argparse.ArgumentParser(prog="edgeml", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    train.add_parser(sub)
    demo.add_parser(sub)
    profile.add_parser(sub)
    policy.add_parser(sub)
    calibrate.add_parser(sub)
    evaluate.add_parser(sub)
    p = sub.add_parser("bench", help="benchmarks (see docs/results.md)")
    suites = p.add_subparsers(dest="suite", required=True)
    system.add_parsers(suites)
    bench.add_parsers(suites)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `edgeml` command."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as exc:  # bad input files, names or settings
        print(f"edgeml {args.command}: error: {exc}", file=sys.stderr)
        return 2
