"""`edgeml bench models|policy`: the committed models, and the cost of policy decisions."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgeml_ros.cli.common import (
    command_line,
    positive_int,
    sim_arguments,
    sim_policies,
    sim_profile,
    sim_world,
    workload_arguments,
)


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
    cmd = command_line()
    out = [
        "# Model benchmarks",
        "",
        f"Measured with `{cmd}` (`make bench`) on the 2-core development machine, torch CPU,"
        " single frames. Accuracy is on each model's 10,000 test images (Fashion-MNIST, or the"
        " drone scenes composed from its test items); thresholds are chosen on the 5,000"
        " validation images (never trained on). Compute is counted in MACs"
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
        out += _markdown_exits(name, r)
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


def _markdown_exits(name: str, r: dict) -> list[str]:
    """Per exit: compute, clean and degraded accuracy; per block: drone and base station time."""
    degraded = r["exit_accuracy_degraded"]
    columns = [(c, s) for c, by_severity in degraded.items() for s in by_severity]
    out = [
        f"## {name}: per exit and per block",
        "",
        f"Test accuracy per exit (%), clean over the whole test set, degraded (core.degrade, "
        f"severities 1-3, synthetic) over the first {r['degraded_samples']} test images; compute"
        " fraction = MACs to reach the exit locally over the plain model's.",
        "",
        "| exit | after block | compute fraction | clean | "
        + " | ".join(f"{c} {s}" for c, s in columns)
        + " |",
        "|---" * (4 + len(columns)) + "|",
    ]
    for e, acc in enumerate(r["exit_accuracy"]):
        cells = [f"{100 * degraded[c][s][e]:.1f}" for c, s in columns]
        out.append(f"| {e} | {r['exit_after_block'][e]} | {r['exit_compute_fraction'][e]:.3f} | "
                   f"{100 * acc:.1f} | " + " | ".join(cells) + " |")  # fmt: skip
    out += [
        "",
        f"Time per block (ms, median): on the emulated drone ({r['device_class']}: this "
        f"machine's time on {r['drone_threads']} thread x compute_slowdown "
        f"{r['compute_slowdown']:.2f}, core.energy) and on the base station (this machine, "
        f"{r['base_threads']} threads). An exit head's time is listed after its block.",
        "",
        "| block | drone ms | base station ms | exit head: drone ms | base station ms |",
        "|---|---|---|---|---|",
    ]
    heads = dict(zip(r["exit_after_block"], range(len(r["exit_after_block"])), strict=True))
    for b, (drone, base) in enumerate(zip(r["block_ms"]["drone"], r["block_ms"]["base"],
                                          strict=True)):  # fmt: skip
        e = heads.get(b)
        head = ("-", "-") if e is None else (f"{r['exit_ms']['drone'][e]:.2f}",
                                             f"{r['exit_ms']['base'][e]:.2f}")  # fmt: skip
        out.append(f"| {b} | {drone:.2f} | {base:.2f} | {head[0]} | {head[1]} |")
    out.append("")
    return out


def _cmd_bench(args: argparse.Namespace) -> int:
    from edgeml_ros.core.bench import plot_tradeoff, run_bench

    results = run_bench(args.models, args.runs, args.threads, args.encoding_samples)
    print(_format_bench(results))
    plot_tradeoff(results, Path(args.plot))
    print(f"wrote {args.plot}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"command": command_line(), "models": results},
                                              indent=1) + "\n")  # fmt: skip
        print(f"wrote {args.json}")
    if args.markdown:
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown).write_text(_markdown_bench(results, args.plot))
        print(f"wrote {args.markdown}")
    return 0


def _cmd_bench_policy(args: argparse.Namespace) -> int:
    from edgeml_ros.policy.bench import bench_decisions
    from edgeml_ros.policy.registry import named_policies

    world = sim_world(args)
    policies = named_policies(world, sim_policies(args, world), Path(args.policy_dir))
    results = bench_decisions(world, policies, args.runs)
    for name, r in results.items():
        print(f"{name:<14} decision p50 {r['p50_ms']:.3f} ms  p99 {r['p99_ms']:.3f} ms  "
              f"({r['runs']} decisions)")  # fmt: skip
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    return 0


def _cmd_bench_reference(args: argparse.Namespace) -> int:
    from edgeml_ros.core.energy import device_class
    from edgeml_ros.core.profiles import load_profile, reference_ms

    profile = load_profile(sim_profile(args))[0]
    device = device_class(profile.device_class["name"])
    here = [reference_ms(args.runs, profile.threads) for _ in range(args.repeats)]
    result = {
        "command": command_line(),
        "model_id": profile.model_id,
        "threads": profile.threads,
        "profiled_ms": profile.reference_ms,
        "here_ms": here,
        "here_over_profiled": [t / profile.reference_ms for t in here],
        "emulated_slowdown": profile.compute_slowdown(device),
        "device": device.name,
    }
    print(f"reference model ({profile.threads} threads): "
          + ", ".join(f"{t:.1f}" for t in here)
          + f" ms now, {profile.reference_ms:.1f} ms when {profile.model_id} was profiled "
          f"({', '.join(f'{r:.2f}' for r in result['here_over_profiled'])}x); a perception "
          f"node without emulate_profile multiplies this machine's compute by "
          f"{result['emulated_slowdown']:.2f} to emulate the {device.name}, so it is as much "
          "slower now as this machine")  # fmt: skip
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


def add_parsers(suites: argparse._SubParsersAction) -> None:
    """Add the `bench` suites policy and models."""
    from edgeml_ros.core.bench import BENCH_MODELS

    p = suites.add_parser("policy", help="decision cost of each policy on this CPU")
    p.add_argument("--runs", type=positive_int, default=2000, help="decisions timed per policy")
    p.add_argument("--json", default=None, metavar="PATH", help="also write results as JSON")
    sim_arguments(p, with_policies=True)
    p.set_defaults(func=_cmd_bench_policy, policy=["rl", "dqn", "edgeml_ddpg", "spinn"])
    p = suites.add_parser(
        "reference",
        help="this machine's speed now against when the "
        "workload's model was profiled (the emulated drone's basis)",
    )
    workload_arguments(p)
    p.add_argument("--runs", type=positive_int, default=30, help="timed runs per measurement")
    p.add_argument("--repeats", type=positive_int, default=3, help="measurements")
    p.add_argument("--json", default=None, metavar="PATH", help="also write results as JSON")
    p.set_defaults(func=_cmd_bench_reference)
    p = suites.add_parser("models", help="exits, compute, split latency and bytes per model")
    p.add_argument("--models", nargs="+", default=list(BENCH_MODELS), choices=list(BENCH_MODELS))
    p.add_argument("--runs", type=positive_int, default=30, help="timed runs per measurement")
    p.add_argument("--threads", type=positive_int, default=2, help="torch CPU threads")
    p.add_argument("--encoding-samples", type=positive_int, default=2000,
                   help="test images per cut for accuracy by encoding (mid cut: all), and for "
                   "accuracy on degraded inputs")  # fmt: skip
    p.add_argument("--plot", default="out/bench_models_tradeoff.png", help="trade-off PNG path")
    p.add_argument("--json", default=None, metavar="PATH", help="also write results as JSON")
    p.add_argument("--markdown", default=None, metavar="PATH",
                   help="also write a results page (docs/results.md)")  # fmt: skip
    p.set_defaults(func=_cmd_bench)
