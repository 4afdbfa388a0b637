"""The demo's plot: the shaped rate, the link estimate and each run's plan over time."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeml_ros.bringup.collector import Collector
from edgeml_ros.core.link import annotate_scores


def plot_runs(runs: list[tuple[dict, Collector]], path: Path) -> None:
    """PNG of the shaped rate, the link estimate, and each run's cut point and threshold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 1, figsize=(9, 7), sharex=True)
    for summary, collector in runs:
        name = summary["policy"]
        if collector.shaped:
            t, mbps, _ = zip(*collector.shaped, strict=True)
            axes[0].step(t, np.maximum(mbps, 1e-3), where="post", color="k", alpha=0.4,
                         label=f"shaped rate ({name})")  # fmt: skip
        if collector.link:
            t, mbps = zip(*collector.link, strict=True)
            axes[0].step(t, mbps, where="post", label=name)
        annotate_scores(axes[0], collector.link_scores())  # each phase's error, settling time
        if collector.plans:
            t, cut, thr, _ = zip(*collector.plans, strict=True)
            axes[1].step(t, cut, where="post", label=name)
            axes[2].step(t, np.minimum(thr, 1.05), where="post", label=name)
    axes[0].set_ylabel("link estimate\nMbit/s")
    axes[0].set_yscale("log")
    axes[1].set_ylabel("cut point")
    axes[2].set_ylabel("exit threshold\n(>1: none)")
    axes[2].set_xlabel("time since the nodes started (s)")
    axes[0].set_title("make demo: link estimate and the controller's plan")
    axes[0].legend(fontsize=8)
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
