"""`edgeml`: the command line of edgeml_ros (train, profile, policy, evaluate, bench, demo)."""

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
        device=args.device,
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


def _demo_config(args: argparse.Namespace, **extra):
    """The DemoConfig of the arguments `demo` and `bench system` share."""
    from edgeml_ros.bringup.demo import DemoConfig

    return DemoConfig(
        duration_s=args.duration,
        rate_hz=args.rate,
        json_path=args.json,
        policies=tuple(args.policy),
        compute_slowdown=args.compute_slowdown,
        plot_path=args.plot or None,
        trace=args.trace,
        shape=not args.no_shaping,
        **extra,
    )


def _cmd_demo(args: argparse.Namespace) -> int:
    from edgeml_ros.bringup.demo import run_demo

    return run_demo(_demo_config(args, checkpoint=args.checkpoint, domain_id=args.domain_id,
                                 mcap_dir=args.mcap_dir or None))  # fmt: skip


def _command_line() -> str:
    return "edgeml " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def _cmd_profile(args: argparse.Namespace) -> int:
    from edgeml_ros.core.checkpoint import load_checkpoint
    from edgeml_ros.core.degrade import CONDITIONS
    from edgeml_ros.core.energy import device_class
    from edgeml_ros.core.profiles import profile_model
    from edgeml_ros.core.train import split_tensors

    bundle = load_checkpoint(args.checkpoint)
    inputs = {}
    for condition in CONDITIONS:
        inputs[condition], y = split_tensors(bundle.meta, "validation", condition)
    profile, tables = profile_model(
        bundle, inputs, y, device_class(args.device_class), args.runs, args.threads,
        _command_line(),
    )  # fmt: skip
    out = Path(args.out)
    profile.save(out, tables)
    blocks = ", ".join(f"{b.latency_ms_median:.2f}" for b in profile.blocks)
    print(f"saved {out} and {out.with_suffix('.npz').name}: {profile.model_id}")
    print(f"  block latency medians (ms, {args.threads} threads): {blocks}")
    for condition, table in tables.items():
        print(f"  exit accuracy on {profile.samples} validation samples ({condition}): "
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


def _world(args: argparse.Namespace):
    from edgeml_ros.policy.sim import SimConfig
    from edgeml_ros.policy.world import World

    config = SimConfig(fps=args.fps, deadline_ms=args.deadline_ms,
                       device_class=args.device_class, weights=args.utility_weights)  # fmt: skip
    return World.load(args.profile, config)


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


def _cmd_policy_train(args: argparse.Namespace) -> int:
    from edgeml_ros.policy.agents import policy_file, train_agent

    world = _world(args)
    path = policy_file(Path(args.out_dir), world, args.agent)
    meta = train_agent(world, args.agent, path.parent, path.name, args.timesteps, args.seed,
                       _command_line())  # fmt: skip
    print(json.dumps(meta, indent=1) if args.json else
          f"saved {path}.zip ({meta['agent']}, {meta['timesteps']} steps, "
          f"{meta['train_seconds']} s)")  # fmt: skip
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from edgeml_ros.policy.evaluate import (
        evaluate,
        format_table,
        markdown_results,
        plot_results,
        speedups,
    )
    from edgeml_ros.policy.registry import named_policies
    from edgeml_ros.policy.scenarios import TEST_SCENARIOS, resolve_scenario

    names = args.scenario or ["test"]
    names = [n for name in names for n in (TEST_SCENARIOS if name == "test" else [name])]
    scenarios = [
        resolve_scenario(n, args.duration, args.condition, args.initial_soc) for n in names
    ]
    world = _world(args)
    policies = named_policies(world, args.policy, Path(args.policy_dir))
    results, records = evaluate(world, policies, scenarios)
    results["scenarios"] = names
    results["sim_config"] = {
        "fps": args.fps,
        "deadline_ms": args.deadline_ms,
        "device_class": args.device_class,
        "profile": str(args.profile),
    }
    results["command"] = _command_line()
    if "rl" in policies:
        results["rl_vs_baselines"] = speedups(results["per_scenario"], "rl")
    print(format_table(results))
    if "rl_vs_baselines" in results:
        print("\nrl against each policy, per scenario (utility ratio where the other's is > 0):")
        for base, s in results["rl_vs_baselines"].items():
            up_to = f"up to {s['up_to']:.2f}x" if s["up_to"] is not None else "no positive runs"
            nonpositive = s["scenarios_with_baseline_utility_le_0"]
            print(f"  {base:<14}{up_to:<18} won {s['scenarios_won']}/{s['scenarios']} "
                  f"(other's utility <= 0 in {nonpositive})")  # fmt: skip
    plots = plot_results(results, records, Path(args.plots)) if args.plots else []
    for path in plots:
        print(f"wrote {path}")
    if args.markdown:
        page = Path(args.markdown)
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_text(markdown_results(results, plots, page.parent))
        print(f"wrote {page}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0


def _cmd_bench_system(args: argparse.Namespace) -> int:
    from edgeml_ros.bringup.system_bench import run_system_bench

    cfg = _demo_config(args, mcap_dir=None, log_dir="log/bench_system", command=_command_line())
    return run_system_bench(cfg, args.markdown)


def _cmd_bench_scale(args: argparse.Namespace) -> int:
    from edgeml_ros.bringup.load_bench import run_scale

    return run_scale(args.drones, args.duration, args.rate, args.json)


def _cmd_bench_goodput(args: argparse.Namespace) -> int:
    from edgeml_ros.bringup.goodput_bench import DEFAULT_POINTS, GoodputPoint, run_goodput

    points = args.points or [GoodputPoint.parse(p) for p in DEFAULT_POINTS]
    return run_goodput(points, args.duration, args.rate, args.json, args.markdown, args.plot)


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


def _cmd_bench_policy(args: argparse.Namespace) -> int:
    from edgeml_ros.policy.bench import bench_decisions
    from edgeml_ros.policy.registry import named_policies

    world = _world(args)
    policies = named_policies(world, args.policy, Path(args.policy_dir))
    results = bench_decisions(world, policies, args.runs)
    for name, r in results.items():
        print(f"{name:<14} decision p50 {r['p50_ms']:.3f} ms  p99 {r['p99_ms']:.3f} ms  "
              f"({r['runs']} decisions)")  # fmt: skip
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    return 0


def _sim_arguments(p: argparse.ArgumentParser, with_policies: bool) -> None:
    from edgeml_ros.core.energy import DEVICE_CLASSES
    from edgeml_ros.core.profiles import DEFAULT_PROFILE
    from edgeml_ros.policy.agents import POLICY_DIR
    from edgeml_ros.policy.registry import policy_names

    p.add_argument("--profile", default=str(DEFAULT_PROFILE), help="measured model profile")
    p.add_argument("--fps", type=_positive_float, default=10.0, help="camera frames per second")
    p.add_argument("--deadline-ms", type=_positive_float, default=100.0, help="frame deadline")
    p.add_argument("--device-class", default="jetson_nano", choices=sorted(DEVICE_CLASSES),
                   help="simulated drone (compute slowdown and energy model)")  # fmt: skip
    p.add_argument("--utility-weights", type=_utility_weights, default="",
                   help="reward weights, e.g. 'energy=0.1,latency=0.5' (docs/policy.md; "
                   "learned policies were trained with the defaults)")  # fmt: skip
    if with_policies:
        p.add_argument("--policy", nargs="+", default=list(policy_names()), choices=policy_names(),
                       help="policies to run (default: all)")  # fmt: skip
        p.add_argument("--policy-dir", default=str(POLICY_DIR), help="saved learned policies")


def build_parser() -> argparse.ArgumentParser:
    """The `edgeml` argument parser."""
    from edgeml_ros.core.bench import BENCH_MODELS
    from edgeml_ros.core.checkpoint import DEFAULT_CHECKPOINT
    from edgeml_ros.core.energy import DEVICE_CLASSES
    from edgeml_ros.core.models import ARCHITECTURES
    from edgeml_ros.policy.registry import policy_names

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
    p.add_argument("--device", default="cpu", help="torch device to train on (cpu, cuda)")
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
    p.add_argument("--policy", nargs="+", default=["rl"], choices=policy_names(live_only=True),
                   help="controller policy; several: one run each, then a table")  # fmt: skip
    p.add_argument("--compute-slowdown", type=_positive_float, default=4.0,
                   help="emulate a slower drone computer (reported as emulated)")  # fmt: skip
    p.add_argument("--plot", default="out/demo.png", help="PNG of link and plan ('' for none)")
    p.add_argument("--trace", default="throttle",
                   help="link trace to replay (CSV t_s,mbps[,rtt_ms]); default: the EdgeML "
                   "authors' throttle schedule, five equal phases over the run")  # fmt: skip
    p.add_argument("--mcap-dir", default="out",
                   help="record telemetry to DIR/demo_<policy>.mcap ('' for none)")  # fmt: skip
    p.add_argument("--no-shaping", action="store_true",
                   help="use the loopback link even where shaping works (root)")  # fmt: skip
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("profile", help="measure a model on this machine and save its profile")
    p.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT), help="model checkpoint")
    p.add_argument("--device-class", default="jetson_nano", choices=sorted(DEVICE_CLASSES),
                   help="energy-model table recorded with the profile")  # fmt: skip
    p.add_argument("--runs", type=_positive_int, default=50, help="timed runs per block")
    p.add_argument("--threads", type=_positive_int, default=2, help="torch CPU threads")
    p.add_argument("--out", required=True, help="profile JSON path (.npz written beside it)")
    p.set_defaults(func=_cmd_profile)

    from edgeml_ros.policy.agents import AGENTS, DEFAULT_TIMESTEPS, POLICY_DIR
    from edgeml_ros.policy.scenarios import TEST_SCENARIOS

    p = sub.add_parser("policy", help="controller policies (trained in the simulator)")
    policy = p.add_subparsers(dest="action", required=True)
    p = policy.add_parser("train", help="train a controller policy with stable-baselines3")
    p.add_argument("--agent", required=True, choices=AGENTS,
                   help="ppo/dqn: our formulation; edgeml_ddpg: the EdgeML authors'")  # fmt: skip
    p.add_argument("--timesteps", type=_positive_int, default=None,
                   help=f"environment steps (default {DEFAULT_TIMESTEPS})")  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out-dir", default=str(POLICY_DIR), help="where to save the policy")
    p.add_argument("--json", action="store_true", help="print the metadata as JSON")
    _sim_arguments(p, with_policies=False)
    p.set_defaults(func=_cmd_policy_train)

    p = sub.add_parser("evaluate", help="score policies on scenarios in the simulator")
    p.add_argument("--scenario", action="append", default=None, metavar="FILE_OR_NAME",
                   help="a trace file (CSV t_s,mbps[,rtt_ms]) or a built-in KIND-SEED; 'test' "
                   f"(the default) is the test split: {' '.join(TEST_SCENARIOS)}")  # fmt: skip
    p.add_argument("--duration", type=_positive_float, default=None,
                   help="seconds to simulate (default: 120 built-in, trace + 10 s)")  # fmt: skip
    p.add_argument("--condition", default="clean", help="input condition for trace files")
    p.add_argument("--initial-soc", type=_positive_float, default=0.9,
                   help="starting battery for trace files (0-1]")  # fmt: skip
    p.add_argument("--json", default=None, metavar="PATH", help="also write results as JSON")
    p.add_argument("--plots", default="out/evaluate", metavar="DIR",
                   help="where to write the PNG plots ('' for none)")  # fmt: skip
    p.add_argument("--markdown", default=None, metavar="PATH",
                   help="also write a results page (docs/policy_results.md)")  # fmt: skip
    _sim_arguments(p, with_policies=True)
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("bench", help="benchmarks (see docs/results.md)")
    bench = p.add_subparsers(dest="suite", required=True)
    p = bench.add_parser("system", help="the live system once per policy over a shaped link")
    live_policies = policy_names(live_only=True)
    p.add_argument("--policy", nargs="+", default=list(live_policies), choices=live_policies)
    p.add_argument("--duration", type=_positive_float, default=60.0, help="seconds per policy")
    p.add_argument("--rate", type=_positive_float, default=10.0, help="camera frames per second")
    p.add_argument("--compute-slowdown", type=_positive_float, default=4.0,
                   help="emulate a slower drone computer (reported as emulated)")  # fmt: skip
    p.add_argument("--trace", default="throttle", help="link trace (default: throttle schedule)")
    p.add_argument("--no-shaping", action="store_true", help="loopback link even as root")
    p.add_argument("--json", default=None, metavar="PATH", help="also write results as JSON")
    p.add_argument("--markdown", default=None, metavar="PATH", help="also write a results page")
    p.add_argument("--plot", default="out/bench_system.png", help="PNG of link and plans")
    p.set_defaults(func=_cmd_bench_system)

    p = bench.add_parser("scale", help="N drones against one base station")
    p.add_argument("--drones", nargs="+", type=_positive_int, default=[1, 2, 4, 8])
    p.add_argument("--duration", type=_positive_float, default=20.0, help="seconds per count")
    p.add_argument("--rate", type=_positive_float, default=10.0, help="frames/s per drone")
    p.add_argument("--json", default=None, metavar="PATH", help="also write results as JSON")
    p.set_defaults(func=_cmd_bench_scale)

    p = bench.add_parser("dds", help="one DDS hop per publication mode and executor")
    p.add_argument("--rate", type=_positive_float, default=20.0, help="messages per second")
    p.add_argument("--messages", type=_positive_int, default=300, help="messages per config")
    p.add_argument("--json", default=None, metavar="PATH", help="also write results as JSON")
    p.set_defaults(func=_cmd_bench_dds)

    p = bench.add_parser("goodput", help="offload goodput over the shaped link, per rate")
    p.add_argument(
        "--points",
        nargs="+",
        type=_goodput_point,
        default=None,
        help="RATE:CUT pairs: shaped Mbit/s and the cut whose tensors are offloaded "
        "(default: 0.04:0 0.13:0 0.5:2 2:1)",
    )
    p.add_argument(
        "--duration", type=_positive_float, default=20.0, help="seconds measured per point"
    )
    p.add_argument("--rate", type=_positive_float, default=10.0, help="camera frames per second")
    p.add_argument("--json", default=None, metavar="PATH", help="also write results as JSON")
    p.add_argument("--markdown", default=None, metavar="PATH", help="also write a results page")
    p.add_argument("--plot", default=None, metavar="PATH", help="also write a PNG")
    p.set_defaults(func=_cmd_bench_goodput)

    p = bench.add_parser("soak", help="a long run of one drone; memory growth per node")
    p.add_argument("--duration", type=_positive_float, default=600.0, help="seconds of frames")
    p.add_argument("--rate", type=_positive_float, default=10.0, help="camera frames per second")
    p.add_argument("--json", default=None, metavar="PATH", help="also write results as JSON")
    p.set_defaults(func=_cmd_bench_soak)

    p = bench.add_parser("policy", help="decision cost of each policy on this CPU")
    p.add_argument("--runs", type=_positive_int, default=2000, help="decisions timed per policy")
    p.add_argument("--json", default=None, metavar="PATH", help="also write results as JSON")
    _sim_arguments(p, with_policies=True)
    p.set_defaults(func=_cmd_bench_policy, policy=["rl", "dqn", "edgeml_ddpg", "spinn"])
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
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as exc:  # bad input files, names or settings
        print(f"edgeml {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
