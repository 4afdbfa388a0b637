"""The demo's plot: the link, each run's plan, its accuracy and its audits over time."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeml_ros.bringup.collector import Collector
from edgeml_ros.core.link import annotate_scores

ACCURACY_WINDOW_S = 5.0


def plot_runs(runs: list[tuple[dict, Collector]], path: Path) -> None:
    """PNG over time of the link, each run's plan, its accuracy and its audits.

    The shaped rate and the link estimate; the cut point and threshold; the accuracy against
    the camera's labels; the audits sent and the share agreeing with the final exit (the
    label-free estimate).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(5, 1, figsize=(9, 10), sharex=True)
    link, cut, threshold, accuracy, audits = axes
    for summary, collector in runs:
        name = summary["policy"]
        if collector.shaped:
            t, mbps, _ = zip(*collector.shaped, strict=True)
            link.step(t, np.maximum(mbps, 1e-3), where="post", color="k", alpha=0.4,
                      label=f"shaped rate ({name})")  # fmt: skip
        if collector.link:
            t, mbps = zip(*collector.link, strict=True)
            link.step(t, mbps, where="post", label=name)
        annotate_scores(link, collector.link_scores())  # each phase's error, settling time
        if collector.plans:
            t, cuts, thr, _ = zip(*collector.plans, strict=True)
            cut.step(t, cuts, where="post", label=name)
            threshold.step(t, np.minimum(thr, 1.05), where="post", label=name)
        t, acc = collector.accuracy_over_time(ACCURACY_WINDOW_S)
        line = accuracy.plot(t, 100 * acc, label=f"{name}: accuracy (labels)")[0]
        if collector.audits:
            t, sent, answered, agreeing = (np.array(v) for v in zip(*collector.audits,
                                                                     strict=True))  # fmt: skip
            audits.step(t, np.cumsum(sent), where="post", color=line.get_color(),
                        label=f"{name}: audits sent")  # fmt: skip
            done = np.cumsum(answered)
            agree = 100 * np.cumsum(agreeing) / np.maximum(done, 1)
            accuracy.step(t[done > 0], agree[done > 0], where="post", linestyle="--",
                          color=line.get_color(),
                          label=f"{name}: audits agreeing, so far (no labels)")  # fmt: skip
    link.set_ylabel("link estimate\nMbit/s")
    link.set_yscale("log")
    cut.set_ylabel("cut point")
    threshold.set_ylabel("exit threshold\n(>1: none)")
    accuracy.set_ylabel(f"accuracy %\n({ACCURACY_WINDOW_S:g}-s window)")
    audits.set_ylabel("audits sent\n(cumulative)")
    audits.set_xlabel("time since the nodes started (s)")
    link.set_title("make demo: the link, the controller's plan, accuracy and audits")
    for ax in (link, cut, accuracy, audits):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
