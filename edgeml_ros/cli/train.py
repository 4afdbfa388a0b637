"""`edgeml train`: train a multi-exit model, a built-in or your own wrapped one."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgeml_ros.cli.common import command_line, fraction, positive_float, positive_int


def _cmd_train(args: argparse.Namespace) -> int:
    from edgeml_ros.core.data import IMAGE_FOLDER
    from edgeml_ros.core.train import TrainConfig, default_checkpoint_path, train

    dataset = f"{IMAGE_FOLDER}{args.data_dir}" if args.data_dir else args.dataset
    cfg = TrainConfig(
        arch=args.arch,
        arch_kwargs=args.model_kwargs,
        init_kwargs=args.init_kwargs,
        dataset=dataset,
        mode=args.mode,
        train_final_exit=args.train_final_exit,
        width=args.width,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        distill_weight=args.distill_weight,
        seed=args.seed,
        threads=args.threads,
        device=args.device,
        split_seed=args.split_seed,
        validation_fraction=args.validation_fraction,
        degraded_fraction=args.degraded_fraction,
    )
    out = Path(args.out) if args.out else default_checkpoint_path(dataset, args.arch)
    meta = train(cfg, out, command_line())
    summary = {
        "checkpoint": str(out),
        "model_id": meta.model_id,
        "exit_accuracy": meta.exit_accuracy,
        "accuracy_split": meta.extra["accuracy_split"],
        "weights_digest": meta.weights_digest,
    }
    print(json.dumps(summary, indent=2) if args.json else _format_train(summary))
    return 0


def _format_train(summary: dict) -> str:
    accs = ", ".join(f"exit {i}: {a:.2%}" for i, a in enumerate(summary["exit_accuracy"]))
    return (
        f"saved {summary['checkpoint']} ({summary['model_id']})\n"
        f"{summary['accuracy_split']} accuracy: {accs}"
    )


def _json_object(text: str) -> dict:
    """An argparse type: a JSON object."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not JSON ({exc}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add `train`."""
    from edgeml_ros.core.models import ARCHITECTURES
    from edgeml_ros.core.train import MODES

    p = sub.add_parser("train", help="train a multi-exit model (built-in or your own)")
    data = p.add_mutually_exclusive_group()
    data.add_argument(
        "--dataset",
        default="fashion_mnist",
        help="drone_scenes (frames composed from Fashion-MNIST), fashion_mnist, cifar10 (a "
        "local copy only) or imagefolder:DIR",
    )
    data.add_argument(
        "--data-dir",
        help="a torchvision ImageFolder directory (a folder of images per class): the same as "
        "--dataset imagefolder:DIR",
    )
    p.add_argument(
        "--arch",
        "--model",
        dest="arch",
        default="small_cnn",
        help=f"a registered architecture ({', '.join(sorted(ARCHITECTURES))}) or "
        "your factory as package.module:function (docs/byom.md)",
    )
    p.add_argument(
        "--model-kwargs",
        type=_json_object,
        default={},
        help="more arguments of the factory, as a JSON object (recorded in the checkpoint)",
    )
    p.add_argument(
        "--init-kwargs",
        type=_json_object,
        default={},
        help="arguments of the factory for the initial model only, as a JSON object (such as "
        "the path of its trained weights): not recorded, loading the checkpoint needs none",
    )
    p.add_argument(
        "--mode",
        choices=MODES,
        default="joint",
        help="joint: train blocks and exits together; heads: freeze the backbone "
        "and train the early exits",
    )
    p.add_argument(
        "--train-final-exit",
        action="store_true",
        help="with --mode heads, train the model's own classifier too",
    )
    p.add_argument(
        "--width",
        type=positive_float,
        default=None,
        help="channel width multiplier (the built-ins' default: 1.0)",
    )
    p.add_argument("--epochs", type=positive_int, default=3)
    p.add_argument("--batch-size", type=positive_int, default=128)
    p.add_argument("--lr", type=positive_float, default=2e-3)
    p.add_argument(
        "--distill-weight",
        type=float,
        default=0.0,
        help="weight of distillation from the final exit into earlier exits",
    )
    p.add_argument(
        "--degraded-fraction",
        type=fraction,
        default=0.0,
        help="share of training images degraded as they are drawn (blur, noise or low light at "
        "a random severity)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=positive_int, default=2, help="torch CPU threads")
    p.add_argument("--device", default="cpu", help="torch device to train on (cpu, cuda)")
    p.add_argument(
        "--validation-fraction",
        type=float,
        default=0.1,
        help="image folders: the share of each class held out for validation",
    )
    p.add_argument(
        "--split-seed",
        type=int,
        default=0,
        help="image folders: the seed of the train/validation split",
    )
    p.add_argument(
        "--out",
        help="checkpoint path (default: the package's checkpoints folder, <dataset>_<arch>.pt)",
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=_cmd_train)
