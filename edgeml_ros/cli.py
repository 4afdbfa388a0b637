"""`edgeml`: the command line of edgeml_ros (train, demo)."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path


def _positive(kind: type, noun: str):
    """An argparse type accepting numbers of `kind` above zero, with a readable error."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {noun}, got {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
        return value

    return parse


_positive_int = _positive(int, "a whole number")
_positive_float = _positive(float, "a number")


def _cmd_train(args: argparse.Namespace) -> int:
    from edgeml_ros.core.train import TrainConfig, train

    cfg = TrainConfig(
        arch=args.arch,
        width=args.width,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        distill_weight=args.distill_weight,
        seed=args.seed,
        threads=args.threads,
    )
    command = "edgeml " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    meta = train(cfg, Path(args.out), command)
    summary = {
        "checkpoint": str(args.out),
        "model_id": meta.model_id,
        "exit_accuracy": meta.exit_accuracy,
        "weights_digest": meta.weights_digest,
    }
    print(json.dumps(summary, indent=2) if args.json else _format_train(summary))
    return 0


def _format_train(summary: dict) -> str:
    accs = ", ".join(f"exit {i}: {a:.2%}" for i, a in enumerate(summary["exit_accuracy"]))
    return f"saved {summary['checkpoint']} ({summary['model_id']})\ntest accuracy: {accs}"


def _cmd_demo(args: argparse.Namespace) -> int:
    from edgeml_ros.bringup.demo import DemoConfig, run_demo

    cfg = DemoConfig(
        duration_s=args.duration,
        rate_hz=args.rate,
        checkpoint=args.checkpoint,
        domain_id=args.domain_id,
        json_path=args.json,
    )
    return run_demo(cfg)


def build_parser() -> argparse.ArgumentParser:
    """The `edgeml` argument parser."""
    from edgeml_ros.core.checkpoint import DEFAULT_CHECKPOINT
    from edgeml_ros.core.models import ARCHITECTURES

    parser = argparse.ArgumentParser(prog="edgeml", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a multi-exit model on Fashion-MNIST")
    p.add_argument("--arch", default="small_cnn", choices=sorted(ARCHITECTURES),
                   help="multi-exit architecture")  # fmt: skip
    p.add_argument("--width", type=_positive_float, default=1.0, help="channel width multiplier")
    p.add_argument("--epochs", type=_positive_int, default=3)
    p.add_argument("--batch-size", type=_positive_int, default=128)
    p.add_argument("--lr", type=_positive_float, default=2e-3)
    p.add_argument(
        "--distill-weight",
        type=float,
        default=0.0,
        help="weight of distillation from the final exit into earlier exits",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=_positive_int, default=2, help="torch CPU threads")
    p.add_argument("--out", default=str(DEFAULT_CHECKPOINT), help="checkpoint path")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser(
        "demo", help="run the drone and base-station nodes as processes over real DDS"
    )
    p.add_argument("--duration", type=_positive_float, default=30.0, help="seconds of frames")
    p.add_argument("--rate", type=_positive_float, default=10.0, help="camera frames per second")
    p.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT), help="model checkpoint")
    p.add_argument(
        "--domain-id",
        type=int,
        default=None,
        help="ROS_DOMAIN_ID for the demo (default: a free one from the pid)",
    )
    p.add_argument("--json", default=None, metavar="PATH", help="also write the summary here")
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `edgeml` command."""
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
