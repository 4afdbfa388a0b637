"""`edgeml train`: train a multi-exit model."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgeml_ros.cli.common import command_line, positive_float, positive_int


def _cmd_train(args: argparse.Namespace) -> int:
    from edgeml_ros.core.train import TrainConfig, train

    cfg = TrainConfig(
        arch=args.arch,
        dataset=args.dataset,
        width=args.width,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        distill_weight=args.distill_weight,
        seed=args.seed,
        threads=args.threads,
        device=args.device,
    )
    meta = train(cfg, Path(args.out), command_line())
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


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add `train`."""
    from edgeml_ros.core.checkpoint import DEFAULT_CHECKPOINT
    from edgeml_ros.core.models import ARCHITECTURES

    p = sub.add_parser("train", help="train a multi-exit model on Fashion-MNIST")
    p.add_argument("--dataset", default="fashion_mnist", choices=["fashion_mnist", "cifar10"],
                   help="training data (CIFAR-10 only from a local copy)")  # fmt: skip
    p.add_argument("--arch", default="small_cnn", choices=sorted(ARCHITECTURES),
                   help="multi-exit architecture")  # fmt: skip
    p.add_argument("--width", type=positive_float, default=1.0, help="channel width multiplier")
    p.add_argument("--epochs", type=positive_int, default=3)
    p.add_argument("--batch-size", type=positive_int, default=128)
    p.add_argument("--lr", type=positive_float, default=2e-3)
    p.add_argument(
        "--distill-weight",
        type=float,
        default=0.0,
        help="weight of distillation from the final exit into earlier exits",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=positive_int, default=2, help="torch CPU threads")
    p.add_argument("--device", default="cpu", help="torch device to train on (cpu, cuda)")
    p.add_argument("--out", default=str(DEFAULT_CHECKPOINT), help="checkpoint path")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=_cmd_train)
