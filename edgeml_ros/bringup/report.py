"""What the demo prints: the summary of a run, a table of runs, a live status line, failures."""

from __future__ import annotations

import sys

from edgeml_ros.bringup.collector import Collector


def format_summary(s: dict, duration_s: float, rate_hz: float, deadline_ms: float) -> str:
    """The summary printed after each run."""

    def pct(v):
        return "n/a" if v is None else f"{v:.1%}"

    def ms(v):
        return "n/a" if v is None else f"{v:.1f} ms"

    exits = ", ".join(f"exit {k}: {v}" for k, v in s["exits"].items()) or "none"
    where = ", ".join(f"{k}: {v}" for k, v in s["where"].items()) or "none"
    energy = "n/a" if s["energy_j_per_frame"] is None else f"{1000 * s['energy_j_per_frame']:.1f}"
    link = f"link shaped: {s['link_trace']}" if s["link_shaped"] else "link not shaped: loopback"
    conditions = s["accuracy_by_condition"]  # named only when the camera's inputs drifted
    by_condition = "" if len(conditions) < 2 else " (" + ", ".join(
        f"{c} {pct(v['accuracy'])}" for c, v in conditions.items()) + ")"  # fmt: skip
    return "\n".join(
        [
            f"run: policy {s['policy']}, {duration_s:g} s at {rate_hz:g} Hz "
            f"(ROS_DOMAIN_ID {s['domain_id']}, {link}; drone compute emulated at "
            f"{s['compute_slowdown_emulated']:g}x the profiled times{_host_speed(s)})",
            f"  frames published      {s['frames_published']} by the camera",
            f"  frames in             {s['frames_in']} (reached perception)",
            f"  results out           {s['results_out']}",
            f"  frames without result {s['frames_without_result']}",
            f"  stale drops           {s['stale_drops']}",
            f"  exits                 {exits}",
            f"  where                 {where}",
            f"  offloaded             {s['offloaded']} (mean {s['offload_bytes_mean']:.0f} B)",
            f"  fallbacks             {s['fallbacks']} ({s['offload_window_full']} at once: "
            "offload window full)",
            f"  errors                {s['errors']}",
            f"  policy changes        {s['policy_changes']}",
            f"  accuracy              {pct(s['accuracy'])} over {s['scored_frames']} frames"
            f"{by_condition}",
            f"  audits                {s['audits_sent']} sent, {s['audits_answered']} answered, "
            f"{pct(s['audit_agreement'])} agreeing with the final exit (label-free)",
            f"  latency p50 / p95     {ms(s['latency_ms_p50'])} / {ms(s['latency_ms_p95'])}"
            " (camera stamp -> result received)",
            f"  deadline misses       {pct(s['deadline_miss_rate'])} (> {deadline_ms:g} ms)",
            f"  energy per frame      {energy} mJ (energy model, not measured)",
        ]
    )


def format_table(runs: list[dict]) -> str:
    """One row per run: the table printed after several policies."""
    head = (f"{'policy':<14}{'accuracy':>10}{'p50 ms':>9}{'p95 ms':>9}{'miss %':>8}"
            f"{'mJ/frame':>10}{'changes':>9}{'no result':>11}")  # fmt: skip
    lines = [head, "-" * len(head)]
    for s in runs:
        acc = "n/a" if s["accuracy"] is None else f"{100 * s['accuracy']:.2f}%"
        energy = s["energy_j_per_frame"] or 0.0
        lines.append(
            f"{s['policy']:<14}{acc:>10}{s['latency_ms_p50'] or 0:>9.1f}"
            f"{s['latency_ms_p95'] or 0:>9.1f}{100 * (s['deadline_miss_rate'] or 0):>8.2f}"
            f"{1000 * energy:>10.1f}{s['policy_changes']:>9}{s['frames_without_result']:>11}"
        )
    return "\n".join(lines)


def lost_frames(summaries: list[dict]) -> bool:
    """Report runs where a frame got no result (or two); True if any did."""
    failed = False
    for s in summaries:
        if s["results_out"] == 0:
            print(f"[demo] FAILED ({s['policy']}): no results at all", file=sys.stderr)
            failed = True
        elif s["frames_in"] != s["results_out"] or s["duplicate_results"]:
            print(f"[demo] FAILED ({s['policy']}): frames in and results out differ",
                  file=sys.stderr)  # fmt: skip
            failed = True
    return failed


def status_line(collector: Collector, policy: str, frames: int) -> str:
    """The live status of a run: results so far, offloads, fallbacks, cut point, accuracy."""
    s = collector.summary()
    acc = "n/a" if s["accuracy"] is None else f"{s['accuracy']:.1%}"
    cut = collector.plans[-1][1] if collector.plans else "-"
    return (
        f"[demo] {policy}: results {s['results_out']:4d}/{frames}  offloaded "
        f"{s['offloaded']:4d}  fallbacks {s['fallbacks']:3d}  cut {cut}  accuracy {acc}"
    )


def _host_speed(summary: dict) -> str:
    """The reference model's time here before the run, where it was measured."""
    here = summary.get("host_reference_ms")
    return "" if here is None else f"; reference model {here:.1f} ms here"
