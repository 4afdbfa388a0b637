"""The link monitor's estimate against a link shaped in steps (`edgeml bench link`).

The base station, and on the drone the perception node offloading every frame (cut 0: 4 KB
tensors at 10 Hz, 0.33 Mbit/s, which fill the slow phases and not the fast ones), the link
monitor and the camera run over the veth shaped with `tc tbf`, as in `edgeml bench goodput`.
Once the base station has answered an offload, the link goes through the phases (by default
40 kbit/s, 130 kbit/s, 2 Mbit/s, 20 Mbit/s, an outage and 20 Mbit/s again), each held for the
same time, while the benchmark records every LinkQuality. Per phase (core.link.score_estimate,
which the demo's summary uses too): the median estimate once settled, its error, and how long
after the change the estimate settled within the tolerance for good.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from edgeml_ros.bringup.goodput_bench import offloading, run_shaped
from edgeml_ros.bringup.launched import wait_until
from edgeml_ros.bringup.shaper import LinkShaper
from edgeml_ros.core.link import SETTLE_TARGET_S, TOLERANCE, PhaseScore, score_estimate
from edgeml_ros.msg import LinkQuality

CUT_POINT = 0
FIRST_ANSWER_MARGIN_S = 60.0  # camera frames for start-up and the first answer
FIRST_ESTIMATE_S = 60.0  # at most this long for the benchmark to receive the first estimate
PLOT_BEFORE_S = 5.0  # the plot shows the fast link before the first phase this long


def _run(domain_id: int, shaper: LinkShaper, env: dict[str, str], phases: list[float],
         phase_s: float, rate_hz: float) -> tuple[list, list, float]:  # fmt: skip
    """(time, Mbit/s) of each rate change and of each estimate, and when the last phase ended."""
    frames = round((len(phases) * phase_s + FIRST_ANSWER_MARGIN_S) * rate_hz)
    shaped: list[tuple[float, float]] = []
    with offloading("link_bench", domain_id, shaper, CUT_POINT, frames, rate_hz,
                    Path("log/bench_link"), env) as (listener, spin_for):  # fmt: skip
        estimates: list[tuple[float, float]] = []  # (received, Mbit/s)
        listener.create_subscription(
            LinkQuality, "link_quality",
            lambda msg: estimates.append((time.monotonic(), msg.bandwidth_mbps)), 10,
        )  # fmt: skip
        # a new subscription may take a while to be discovered (20 s once on a loaded host)
        wait_until(spin_for, lambda: bool(estimates), [], "the link monitor's estimates",
                   FIRST_ESTIMATE_S)  # fmt: skip
        started = time.monotonic()
        for mbps in phases:
            shaper.set_rate(mbps)
            shaped.append((time.monotonic() - started, mbps))
            print(f"[bench] link at {mbps:g} Mbit/s for {phase_s:g} s", flush=True)
            spin_for(phase_s)
        ended = time.monotonic() - started
    return shaped, [(t - started, mbps) for t, mbps in estimates], ended


def run_link_bench(phases: list[float], phase_s: float, rate_hz: float, json_path: str | None,
                   markdown: str | None, plot: str | None, command: str) -> int:  # fmt: skip
    """Shape the link in `phases`; print the table; write JSON, markdown and a plot.

    1 where the link cannot be shaped (not root).
    """
    run = run_shaped("link", lambda domain_id, shaper, env: _run(domain_id, shaper, env, phases,
                                                                 phase_s, rate_hz))  # fmt: skip
    if run is None:
        return 1
    shaped, estimates, ended = run
    scores = score_estimate(shaped, estimates, ended)
    print(format_scores(scores))
    out = {"command": command, "phase_s": phase_s, "rate_hz": rate_hz, "cut_point": CUT_POINT,
           "phases": [s.as_dict() for s in scores], "shaped": shaped,
           "estimates": estimates}  # fmt: skip
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(out, indent=1) + "\n")
    if plot:
        plot_link(out, scores, Path(plot))
    if markdown:
        Path(markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(markdown).write_text(markdown_link(out, scores, plot))
    return 0


def _cells(s: PhaseScore) -> list[str]:
    return [
        "outage" if s.shaped_mbps == 0 else f"{s.shaped_mbps:g} Mbit/s",
        "n/a" if s.estimate_mbps is None else f"{s.estimate_mbps:.3g} Mbit/s",
        "n/a" if s.error is None else f"{round(100 * s.error):+d} %",
        "never" if s.settle_s is None else f"{s.settle_s:.1f} s",
        "yes" if s.met else "no",
    ]


HEADERS = ("shaped", "estimate (median, settled)", "error", "settled after", "target met")


def format_scores(scores: list[PhaseScore]) -> str:
    """The table `edgeml bench link` prints."""
    lines = ["".join(f"{h:>28}" for h in HEADERS)]
    lines += ["".join(f"{c:>28}" for c in _cells(s)) for s in scores]
    return "\n".join(lines)


def plot_link(out: dict, scores: list[PhaseScore], path: Path) -> None:
    """The estimate over time against the shaped rate, each phase's error and settling time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edgeml_ros.core.link import annotate_scores

    fig, ax = plt.subplots(figsize=(9, 4))
    if out["estimates"]:
        t, mbps = zip(*out["estimates"], strict=True)
        ax.step(t, mbps, where="post", label="link monitor's estimate")
    annotate_scores(ax, scores)
    ax.set_xlim(-PLOT_BEFORE_S, scores[-1].end_s if scores else None)
    ax.set_xlabel("time since the first phase (s)")
    ax.set_ylabel("Mbit/s")
    ax.set_title("edgeml bench link: the estimate against the shaped link")
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown_link(out: dict, scores: list[PhaseScore], plot: str | None) -> str:
    """The results page (docs/link_results.md)."""
    rows = [
        "# The link estimate against a shaped link",
        "",
        f"Produced by `{out['command']}` (`make bench-link`): the link monitor, the base "
        f"station and a perception node offloading every frame at cut {out['cut_point']} "
        f"(4 KB tensors) at {out['rate_hz']:g} Hz over the veth shaped with `tc tbf`, the "
        f"link held at each rate for {out['phase_s']:g} s. Target: within "
        f"{100 * TOLERANCE:.0f} % of the shaped rate (in an outage: 0), settled within "
        f"{SETTLE_TARGET_S:g} s of each change. *Settled after*: from the change to the first "
        "estimate from which every estimate of the phase stayed within the target's tolerance. "
        "*Estimate*: the median of the estimates from then on.",
        "",
        "| " + " | ".join(HEADERS) + " |",
        "|" + " ---: |" * len(HEADERS),
    ]
    rows += ["| " + " | ".join(_cells(s)) + " |" for s in scores]
    if plot:
        rows += ["", f"![the estimate over time]({Path(plot).name})"]
    return "\n".join(rows) + "\n"
