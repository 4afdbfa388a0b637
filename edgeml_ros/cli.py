"""`edgeml`: the command line of edgeml_ros (train, profile, bench, demo)."""

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
        dataset=args.dataset,
        width=args.width,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        distill_weight=args.distill_weight,
        seed=args.seed,
        threads=args.threads,
    )
    meta = train(cfg, Path(args.out), _command_line())
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


def _command_line() -> str:
    return "edgeml " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def _cmd_profile(args: argparse.Namespace) -> int:
    from edgeml_ros.core.checkpoint import load_checkpoint
    from edgeml_ros.core.energy import device_class
    from edgeml_ros.core.profiles import profile_model
    from edgeml_ros.core.train import split_tensors

    bundle = load_checkpoint(args.checkpoint)
    x, y = split_tensors(bundle.meta, "validation")
    profile, table = profile_model(
        bundle, x, y, device_class(args.device_class), args.runs, args.threads, _command_line()
    )
    out = Path(args.out)
    profile.save(out, table.as_arrays())
    blocks = ", ".join(f"{b.latency_ms_median:.2f}" for b in profile.blocks)
    print(f"saved {out} and {out.with_suffix('.npz').name}: {profile.model_id}")
    print(f"  block latency medians (ms, {args.threads} threads): {blocks}")
    print(f"  exit accuracy on {profile.samples} validation samples: "
          + ", ".join(f"{a:.2%}" for a in table.exit_accuracy()))  # fmt: skip
    return 0


def _format_bench(results: dict) -> str:
    lines = [
        f"{'model':<14}{'exit accuracy (test, final last)':<40}{'compute@<=1pt':>14}"
        f"{'int8 mid-cut drop':>19}{'int8/fp32 bytes':>17}{'frame ms':>10}{'fps':>8}"
    ]
    for name, r in results.items():
        accs = " ".join(f"{100 * a:.1f}" for a in r["exit_accuracy"])
        lines.append(
            f"{name:<14}{accs:<40}{r['compute_fraction_at_1pt_loss']:>14.2f}"
            f"{r['int8_mid_cut_accuracy_drop_pts']:>15.2f} pts"
            f"{r['int8_mid_cut_bytes_ratio']:>17.3f}"
            f"{r['single_frame_ms_median']:>10.2f}{r['single_frame_fps']:>8.0f}"
        )
    for name, r in results.items():
        lines.append(
            f"\n{name}: per cut: head/tail median ms ({r['threads']} threads); per encoding: "
            "bytes per frame (zstd-compressed) and final-exit test accuracy"
        )
        for c in r["cuts"]:
            tail = f"{c['tail_ms_median']:7.2f}" if "tail_ms_median" in c else "      -"
            size = "  ".join(
                f"{k} {v['bytes']:.0f} B ({v['bytes_zstd']:.0f}) {100 * v['accuracy']:.2f}%"
                for k, v in c.get("encodings", {}).items()
            )
            lines.append(
                f"  cut {c['cut']:2d}  head {c['head_ms_median']:7.2f}  tail {tail}  "
                + (size or "(all local)")
            )
    return "\n".join(lines)


def _markdown_bench(results: dict, plot: str) -> str:
    cmd = _command_line()
    out = [
        "# Model benchmarks",
        "",
        f"Measured with `{cmd}` (`make bench`) on the 2-core development machine, torch CPU,"
        " single frames. Accuracy is on the 10,000 Fashion-MNIST test images; thresholds are"
        " chosen on the 5,000 validation images (never trained on). Compute is counted in MACs"
        " (multiply-accumulates of convolutions and linear layers); exit heads evaluated on the"
        " way count. This file is written by that command.",
        "",
        "| model | params | exit accuracy % (final last) | threshold | accuracy % (loss, pts) |"
        " compute at <= 1 pt loss | int8 mid-cut drop (pts) | int8/fp32 bytes |"
        " frame ms (median) | frames/s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        accs = ", ".join(f"{100 * a:.2f}" for a in r["exit_accuracy"])
        out.append(
            f"| {name} | {r['params']:,} | {accs} | {r['threshold_at_1pt_loss']:.3f} |"
            f" {100 * r['accuracy_at_1pt_loss']:.2f} ({r['accuracy_loss_at_threshold_pts']:.2f}) |"
            f" {r['compute_fraction_at_1pt_loss']:.3f} |"
            f" {r['int8_mid_cut_accuracy_drop_pts']:.2f} | {r['int8_mid_cut_bytes_ratio']:.3f} |"
            f" {r['single_frame_ms_median']:.2f} | {r['single_frame_fps']:.0f} |"
        )
    out += ["", f"![accuracy against compute]({Path(plot).name})", ""]
    for name, r in results.items():
        out += [
            f"## {name}: per cut",
            "",
            f"Head = blocks before the cut, tail = blocks after it, medians over {r['runs']}"
            f" runs on {r['threads']} threads. Bytes per frame on the wire (zstd-compressed in"
            " brackets, over up to the first 500 images) and the final-exit test accuracy when the"
            " tensor travels in that encoding, over the first `samples` test images (the whole"
            f" test set at the middle cut, {r['mid_cut']}).",
            "",
            "| cut | head ms | tail ms | samples | fp32 | fp16 | int8 |",
            "|---|---|---|---|---|---|---|",
        ]
        for c in r["cuts"]:
            enc = c.get("encodings")
            cells = [
                f"{e['bytes']:.0f} B ({e['bytes_zstd']:.0f}), {100 * e['accuracy']:.2f} %"
                for e in enc.values()
            ] if enc else ["all local"] * 3  # fmt: skip
            tail = f"{c['tail_ms_median']:.2f}" if "tail_ms_median" in c else "-"
            row = [
                str(c["cut"]),
                f"{c['head_ms_median']:.2f}",
                tail,
                str(c.get("encoding_samples", "-")),
            ]
            out.append("| " + " | ".join(row + cells) + " |")
        out.append("")
    return "\n".join(out)


def _cmd_bench(args: argparse.Namespace) -> int:
    from edgeml_ros.core.bench import plot_tradeoff, run_bench

    results = run_bench(args.models, args.runs, args.threads, args.encoding_samples)
    print(_format_bench(results))
    plot_tradeoff(results, Path(args.plot))
    print(f"wrote {args.plot}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"command": _command_line(), "models": results},
                                              indent=1) + "\n")  # fmt: skip
        print(f"wrote {args.json}")
    if args.markdown:
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown).write_text(_markdown_bench(results, args.plot))
        print(f"wrote {args.markdown}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The `edgeml` argument parser."""
    from edgeml_ros.core.bench import BENCH_MODELS
    from edgeml_ros.core.checkpoint import DEFAULT_CHECKPOINT
    from edgeml_ros.core.energy import DEVICE_CLASSES
    from edgeml_ros.core.models import ARCHITECTURES

    parser = argparse.ArgumentParser(prog="edgeml", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a multi-exit model on Fashion-MNIST")
    p.add_argument("--dataset", default="fashion_mnist", choices=["fashion_mnist", "cifar10"],
                   help="training data (CIFAR-10 only from a local copy)")  # fmt: skip
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

    p = sub.add_parser("profile", help="measure a model on this machine and save its profile")
    p.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT), help="model checkpoint")
    p.add_argument("--device-class", default="jetson_nano", choices=sorted(DEVICE_CLASSES),
                   help="energy-model table recorded with the profile")  # fmt: skip
    p.add_argument("--runs", type=_positive_int, default=50, help="timed runs per block")
    p.add_argument("--threads", type=_positive_int, default=2, help="torch CPU threads")
    p.add_argument("--out", required=True, help="profile JSON path (.npz written beside it)")
    p.set_defaults(func=_cmd_profile)

    p = sub.add_parser("bench", help="benchmarks (see docs/results.md)")
    bench = p.add_subparsers(dest="suite", required=True)
    p = bench.add_parser("models", help="exits, compute, split latency and bytes per model")
    p.add_argument("--models", nargs="+", default=list(BENCH_MODELS), choices=list(BENCH_MODELS))
    p.add_argument("--runs", type=_positive_int, default=30, help="timed runs per measurement")
    p.add_argument("--threads", type=_positive_int, default=2, help="torch CPU threads")
    p.add_argument("--encoding-samples", type=_positive_int, default=2000,
                   help="test images per cut for accuracy by encoding (mid cut: all)")  # fmt: skip
    p.add_argument("--plot", default="out/bench_models_tradeoff.png", help="trade-off PNG path")
    p.add_argument("--json", default=None, metavar="PATH", help="also write results as JSON")
    p.add_argument("--markdown", default=None, metavar="PATH",
                   help="also write a results page (docs/results.md)")  # fmt: skip
    p.set_defaults(func=_cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `edgeml` command."""
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
