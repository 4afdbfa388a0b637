"""Run policies through scenarios in the simulator and score them."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from tqdm import tqdm

from edgeml_ros.core.plan import ExecutionPlan
from edgeml_ros.policy.observation import Policy, observe
from edgeml_ros.policy.sim import WHERE_NONE, FrameRecords, Scenario
from edgeml_ros.policy.thresholds import DRIFT_TOLERANCE, DRIFT_WINDOW_S
from edgeml_ros.policy.world import World


def run_policy(world: World, policy: Policy, scenario: Scenario) -> FrameRecords:
    """Every frame of `scenario` under `policy`."""
    sim = world.simulation(scenario)
    policy.reset()
    plan: ExecutionPlan | None = None
    while not sim.done:
        decision = policy.decide(observe(sim, plan), sim)
        plan = decision.plan
        sim.run(plan, decision.frames or world.config.window_frames)
    return FrameRecords.concat(sim.history)


# Drift windows: the share of DRIFT_WINDOW_S windows whose accuracy is within DRIFT_TOLERANCE
# of the whole model's on the same frames (issue 19's target: 95 % of 10-s windows within 1 point,
# the requirement the threshold loop keeps: policy.thresholds).


def windows_near_full_model(records: FrameRecords) -> float:
    """Share of the windows within DRIFT_TOLERANCE of the whole model's accuracy.

    Each DRIFT_WINDOW_S window of a run, by arrival, against the whole model on the same
    frames; concatenated runs, whose times start over, each count their own windows.
    """
    window = np.floor(records.t_s / DRIFT_WINDOW_S)
    starts = np.flatnonzero(np.diff(window, prepend=np.nan) != 0)  # a new window, or a new run
    ends = np.append(starts[1:], len(window))
    near = [np.mean(records.correct[a:b]) >= np.mean(records.full_correct[a:b]) - DRIFT_TOLERANCE
            for a, b in zip(starts, ends, strict=True)]  # fmt: skip
    return float(np.mean(near)) if near else 1.0


def summarize(records: FrameRecords) -> dict[str, float]:
    """Scores of a run: mean utility, accuracy, latency percentiles, misses, energy.

    Also the share of 10-s windows within a point of the whole model's accuracy, and the share
    of frames audited.
    """
    latency_ms = records.latency_s * 1000.0
    return {
        "utility": float(np.mean(records.utility)),
        # over the frames answered, as the live collector scores (a stale drop answers none)
        "accuracy": float(np.mean(records.correct[records.where != WHERE_NONE])),
        "latency_ms_p50": float(np.percentile(latency_ms, 50)),
        "latency_ms_p95": float(np.percentile(latency_ms, 95)),
        "deadline_miss_rate": float(np.mean(records.missed)),
        "energy_j_per_frame": float(np.mean(records.energy_j)),
        "frames": len(records.t_s),
        "windows_near_full_model": windows_near_full_model(records),
        "audit_rate": float(np.mean(records.audited)) if len(records.t_s) else 0.0,
    }


def evaluate(
    world: World, policies: dict[str, Policy], scenarios: list[Scenario]
) -> tuple[dict, dict[str, dict[str, FrameRecords]]]:
    """Run every policy through every scenario.

    Returns the results (per policy over all frames, and per scenario) and the frame records
    (policy -> scenario -> records) for plots. `oracle_ratio` is a policy's mean utility over
    the oracle's, when the oracle is among the policies.
    """
    records: dict[str, dict[str, FrameRecords]] = {name: {} for name in policies}
    jobs = [(p, s) for s in scenarios for p in policies]
    for name, scenario in tqdm(jobs, desc="evaluate", unit="run"):
        records[name][scenario.name] = run_policy(world, policies[name], scenario)
    per_scenario = {
        s.name: {name: summarize(records[name][s.name])["utility"] for name in policies}
        for s in scenarios
    }
    summary = {
        name: summarize(FrameRecords.concat(list(runs.values()))) for name, runs in records.items()
    }
    if "oracle" in summary:
        for result in summary.values():
            result["oracle_ratio"] = result["utility"] / summary["oracle"]["utility"]
    results = {
        "policies": summary,
        "per_scenario": per_scenario,
        "per_kind": by_kind(per_scenario),
    }
    return results, records


def by_kind(per_scenario: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Per scenario kind (a name's part before its seed), each policy's mean utility."""
    kinds: dict[str, list[dict[str, float]]] = {}
    for name, utilities in per_scenario.items():
        kinds.setdefault(name.rpartition("-")[0] or name, []).append(utilities)
    return {kind: {policy: float(np.mean([u[policy] for u in runs])) for policy in runs[0]}
            for kind, runs in kinds.items()}  # fmt: skip


def speedups(per_scenario: dict[str, dict[str, float]], policy: str) -> dict[str, dict]:
    """Per baseline: the largest ratio of `policy`'s utility to it over the scenarios.

    Ratios are only meaningful where the baseline's utility is positive; scenarios where it is
    not are counted instead.
    """
    names = next(iter(per_scenario.values())).keys()
    out = {}
    for base in names:
        if base == policy:
            continue
        ratios = [u[policy] / u[base] for u in per_scenario.values() if u[base] > 0]
        out[base] = {
            "up_to": max(ratios) if ratios else None,
            "scenarios_with_baseline_utility_le_0": sum(
                u[base] <= 0 for u in per_scenario.values()
            ),
            "scenarios_won": sum(u[policy] > u[base] for u in per_scenario.values()),
            "scenarios": len(per_scenario),
        }
    return out


def format_table(results: dict) -> str:
    """The per-policy table printed by `edgeml evaluate`."""
    width = max(14, *(len(name) + 2 for name in results["policies"]))
    head = (f"{'policy':<{width}}{'utility':>9}{'/oracle':>9}{'accuracy':>10}{'p50 ms':>9}"
            f"{'p95 ms':>9}{'miss %':>8}{'mJ/frame':>10}{'near full':>11}"
            f"{'audits':>8}")  # fmt: skip
    lines = [head, "-" * len(head)]
    for name, r in results["policies"].items():
        ratio = f"{r['oracle_ratio']:.3f}" if "oracle_ratio" in r else "-"
        lines.append(
            f"{name:<{width}}{r['utility']:>9.3f}{ratio:>9}{100 * r['accuracy']:>9.2f}%"
            f"{r['latency_ms_p50']:>9.1f}{r['latency_ms_p95']:>9.1f}"
            f"{100 * r['deadline_miss_rate']:>8.2f}{1000 * r['energy_j_per_frame']:>10.1f}"
            f"{100 * r['windows_near_full_model']:>10.0f}%{100 * r['audit_rate']:>7.2f}%"
        )
    lines.append(f"near full: 10-s windows within {100 * DRIFT_TOLERANCE:g} point of the whole "
                 "model's accuracy; audits: frames audited")  # fmt: skip
    return "\n".join(lines)


def plot_results(
    results: dict, records: dict[str, dict[str, FrameRecords]], out_dir: Path
) -> list[Path]:
    """Timeline (first scenario), latency CDF and per-policy bars as PNGs in `out_dir`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    names = list(records)
    first = next(iter(records[names[0]]))
    shown = [n for n in names if n not in ("edge_only", "cloud_only")][:5]
    fig, axes = plt.subplots(3, 1, figsize=(10, 8), sharex=True)
    base = records[names[0]][first]
    axes[0].step(base.t_s, base.bandwidth_mbps, where="post", color="k")
    axes[0].set_yscale("log")
    axes[0].set_ylabel("link Mbit/s")
    axes[0].set_title(f"scenario {first}: link and the choices of each policy")
    for name in shown:
        r = records[name][first]
        axes[1].step(r.t_s, r.cut_point, where="post", label=name, alpha=0.8)
        axes[2].step(r.t_s, np.minimum(r.threshold, 1.05), where="post", label=name, alpha=0.8)
    axes[1].set_ylabel("cut point")
    axes[2].set_ylabel("exit threshold\n(>1: no early exit)")
    axes[2].set_xlabel("time (s)")
    axes[1].legend(fontsize=8, ncol=len(shown))
    fig.tight_layout()
    paths = [out_dir / f"timeline_{first}.png"]
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name in names:
        lat = np.sort(np.concatenate([r.latency_s for r in records[name].values()])) * 1000
        ax.plot(lat, np.arange(1, len(lat) + 1) / len(lat), label=name)
    ax.set_xscale("log")
    ax.set_xlabel("end-to-end latency (ms, simulated)")
    ax.set_ylabel("fraction of frames")
    ax.set_title("latency CDF")
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(out_dir / "latency_cdf.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    metrics = [("utility", 1, "mean utility"), ("accuracy", 100, "accuracy %"),
               ("energy_j_per_frame", 1000, "modelled mJ/frame"),
               ("deadline_miss_rate", 100, "deadline miss %")]  # fmt: skip
    fig, axes = plt.subplots(1, len(metrics), figsize=(15, 4))
    for ax, (key, scale, label) in zip(axes, metrics, strict=True):
        values = [results["policies"][n][key] * scale for n in names]
        ax.bar(range(len(names)), values, color="tab:blue")
        ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
        ax.set_title(label)
    fig.tight_layout()
    paths.append(out_dir / "policy_bars.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    return paths


def kind_table(per_kind: dict[str, dict[str, float]]) -> list[str]:
    """Markdown lines of each policy's mean utility per scenario kind (none for one kind)."""
    if len(per_kind) < 2:
        return []
    policies = next(iter(per_kind.values()))
    lines = [
        "",
        "Mean utility by scenario kind:",
        "",
        "| policy | " + " | ".join(per_kind) + " |",
        "| --- |" + " ---: |" * len(per_kind),
    ]
    for name in policies:
        cells = " | ".join(f"{utilities[name]:.3f}" for utilities in per_kind.values())
        lines.append(f"| {name} | {cells} |")
    return lines


def markdown_results(results: dict, plots: list[Path], page_dir: Path) -> str:
    """A results page: the command, the table, the per-baseline ratios and the plots."""
    lines = [
        "# Controller policies in the simulator",
        "",
        f"Produced by `{results['command']}` (simulated: link, compute and energy come from "
        "the measured profile and the energy model, see docs/policy.md). Scenarios: "
        + ", ".join(results["scenarios"])
        + ".",
    ]
    if "sim_config" in results:
        config = results["sim_config"]
        lines += ["", f"Profile: `{config['profile']}` (the drone computer: "
                      f"{config['device_class']}); {config['fps']:g} frames/s, deadline "
                      f"{config['deadline_ms']:g} ms."]  # fmt: skip
    lines += [
        "",
        "| policy | utility | of oracle | accuracy | p50 ms | p95 ms | deadline miss | "
        "mJ/frame (model) | 10-s windows near full | audited |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in results["policies"].items():
        lines.append(
            f"| {name} | {r['utility']:.3f} | {r.get('oracle_ratio', float('nan')):.3f} | "
            f"{100 * r['accuracy']:.2f} % | {r['latency_ms_p50']:.1f} | "
            f"{r['latency_ms_p95']:.1f} | {100 * r['deadline_miss_rate']:.2f} % | "
            f"{1000 * r['energy_j_per_frame']:.1f} | {100 * r['windows_near_full_model']:.0f} % | "
            f"{100 * r['audit_rate']:.2f} % |"
        )
    lines += ["", f"10-s windows near full: the share of 10-s windows whose accuracy is within "
              f"{100 * DRIFT_TOLERANCE:g} point of the whole model's on the same frames, over "
              "scenarios whose input conditions drift (clean, blur, noise, low light); "
              "audited: the share of frames also sent to the base station as audits."]  # fmt: skip
    lines += kind_table(results.get("per_kind", {}))
    if "rl_vs_baselines" in results:
        lines += ["", "RL (PPO) against each policy, per test scenario:", "",
                  "| against | up to (utility ratio) | scenarios won | other's utility <= 0 |",
                  "| --- | ---: | ---: | ---: |"]  # fmt: skip
        for base, s in results["rl_vs_baselines"].items():
            up_to = f"{s['up_to']:.2f}x" if s["up_to"] is not None else "-"
            lines.append(f"| {base} | {up_to} | {s['scenarios_won']}/{s['scenarios']} | "
                         f"{s['scenarios_with_baseline_utility_le_0']} |")  # fmt: skip
    lines += [""] + [f"![{p.stem}]({os.path.relpath(p, page_dir)})" for p in plots]
    return "\n".join(lines) + "\n"
