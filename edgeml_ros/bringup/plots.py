"""The demo's plot: the link, each run's plan, its accuracy and its audits over time."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeml_ros.bringup.collector import Collector
from edgeml_ros.core.link import annotate_scores

ACCURACY_WINDOW_S = 5.0


def plot_runs(runs: list[tuple[dict, Collector]], path: Path, title: str) -> None:
    """PNG over time of the link, each run's plan, its accuracy and its audits.

    The shaped rate and the link estimate (with each phase's error and settling time for a
    single run); the cut point and threshold; the accuracy against the camera's labels (solid)
    and the share of audits agreeing with the final exit so far, the label-free estimate
    (dashed); the audits sent. One color per run.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    fig, axes = plt.subplots(5, 1, figsize=(11, 10), sharex=True)
    link, cut, threshold, accuracy, audits = axes
    shaped = next((c.shaped for _, c in runs if c.shaped), None)
    if shaped:  # every run replays the same trace
        t, mbps, _ = zip(*shaped, strict=True)
        link.step(t, np.maximum(mbps, 1e-3), where="post", color="k", alpha=0.4)
    handles = [Line2D([], [], color="k", alpha=0.4, label="shaped rate")] if shaped else []
    for i, (summary, collector) in enumerate(runs):
        color = f"C{i % 10}"
        handles.append(Line2D([], [], color=color, label=summary["policy"]))
        if collector.link:
            t, mbps = zip(*collector.link, strict=True)
            link.step(t, mbps, where="post", color=color)
        if len(runs) == 1:
            annotate_scores(link, collector.link_scores())  # each phase's error, settling time
        if collector.plans:
            t, cuts, thr, _ = zip(*collector.plans, strict=True)
            cut.step(t, cuts, where="post", color=color)
            threshold.step(t, np.minimum(thr, 1.05), where="post", color=color)
        t, acc = collector.accuracy_over_time(ACCURACY_WINDOW_S)
        accuracy.plot(t, 100 * acc, color=color)
        if collector.audits:
            t, sent, answered, agreeing = (np.array(v) for v in zip(*collector.audits,
                                                                     strict=True))  # fmt: skip
            audits.step(t, np.cumsum(sent), where="post", color=color)
            done = np.cumsum(answered)
            agree = 100 * np.cumsum(agreeing) / np.maximum(done, 1)
            accuracy.step(t[done > 0], agree[done > 0], where="post", linestyle="--",
                          color=color)  # fmt: skip
    link.set_ylabel("link estimate\nMbit/s")
    link.set_yscale("log")
    cut.set_ylabel("cut point")
    threshold.set_ylabel("exit threshold\n(>1: none)")
    accuracy.set_ylabel(f"accuracy %\n({ACCURACY_WINDOW_S:g}-s window)")
    accuracy.legend(handles=[Line2D([], [], color="k", label="accuracy (labels)"),
                             Line2D([], [], color="k", linestyle="--",
                                    label="audits agreeing so far (no labels)")],
                    fontsize=8, loc="lower left")  # fmt: skip
    audits.set_ylabel("audits sent\n(cumulative)")
    audits.set_xlabel("time since the nodes started (s)")
    link.set_title(title)
    fig.legend(handles=handles, loc="upper left", bbox_to_anchor=(0.86, 0.95), fontsize=8)
    fig.tight_layout(rect=(0, 0, 0.85, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
