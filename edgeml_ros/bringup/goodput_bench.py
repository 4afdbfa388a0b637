"""Offload goodput over the shaped link: how much of the link's rate becomes answered tensors.

For each point (a shaped rate and a cut point whose tensor, at the camera's rate, offers more
than that rate; the nodes discover each other on a fast link first), sim.launch.py starts the
nodes with the base station behind the veth shaped with `tc tbf` (radio_link: the package's
Fast DDS link profile), and the drone offloads every frame (no early exit, the controller not
followed) with the perception node's default offload window, and the link monitor probing the
link as drone.launch.py starts it. After a settling period, over a measuring window:

- goodput = tensor bytes the base station answered (its BaseStationLoad reports) per second;
- goodput ratio = goodput over the shaped rate (the issue's target: >= 0.85);
- link busy = bytes through the drone's tbf (tc's counters: every header, discovery and probe
  included) over what the rate allows; payload share = tensor bytes over those bytes.

So a ratio below target splits into an idle link (link busy < 1) and overhead on the wire
(payload share < 1).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
from rclpy.context import Context
from rclpy.node import Node

from edgeml_ros.bringup.launched import drone_serving, start_camera, wait_until
from edgeml_ros.bringup.params import write_params
from edgeml_ros.bringup.processes import LaunchProcess, private_domain_id, ros_context, spinning
from edgeml_ros.bringup.shaper import DISCOVERY_MBPS, LinkShaper, dds_env, open_link
from edgeml_ros.core.workloads import WORKLOADS
from edgeml_ros.msg import BaseStationLoad, InferenceResult
from edgeml_ros.nodes.common import MONITOR, RELIABLE

SETTLE_S = 4.0
# The nodes start and discover each other at DISCOVERY_MBPS; the point's rate applies once the
# base station has answered an offload.
FIRST_ANSWER_S = 30.0  # at most this long on the fast link for the first answered offload
RTT_MS = 20.0
NO_EARLY_EXIT = [2.0, 2.0, 2.0, 0.0]
# The link, not the model, is measured: the Fashion-MNIST workload's B-VGG, whose tensors are
# 4 KB at cut 0 (the image), 16 KB at cut 2, 32 KB at cut 1; at 10 Hz each offers more than its
# link carries. (The drone workload's 110 KB frame takes 22 s at 40 kbit/s.)
MODEL = {"checkpoint": str(WORKLOADS["fashion_mnist"].checkpoint)}
DEFAULT_POINTS = ("0.04:0", "0.13:0", "0.5:2", "2:1")
T = TypeVar("T")


@dataclass(frozen=True)
class GoodputPoint:
    """A shaped rate and the cut point whose tensors are offloaded over it."""

    mbps: float
    cut_point: int

    @classmethod
    def parse(cls, text: str) -> GoodputPoint:
        """'RATE:CUT', e.g. '0.13:0' (Mbit/s, cut point); ValueError naming what is wrong."""
        rate, sep, cut = text.partition(":")
        try:
            point = cls(float(rate), int(cut))
        except ValueError:
            point = None
        if not sep or point is None or not 0 < point.mbps < 1000 or point.cut_point < 0:
            raise ValueError(f"{text!r} is not RATE:CUT (Mbit/s in (0, 1000), cut point >= 0)")
        return point


class OffloadListener(Node):
    """Results and the base station's load reports, as the offloading benchmarks read them."""

    def __init__(self, name: str, context: Context) -> None:
        super().__init__(name, context=context)
        self.results: list[InferenceResult] = []
        self.load: list[tuple[float, int]] = []  # (received, requests answered in the second)
        self.create_subscription(InferenceResult, "perception/result", self.results.append,
                                 RELIABLE)  # fmt: skip
        self.create_subscription(BaseStationLoad, "offload/load", self._on_load, MONITOR)

    def base_answered(self) -> bool:
        """Whether a result came back from the base station (the offload path works)."""
        return any(r.where == InferenceResult.WHERE_BASE for r in self.results)

    def _on_load(self, msg: BaseStationLoad) -> None:
        self.load.append((time.monotonic(), round(msg.requests_per_s)))


def _launch_arguments(
    shaper: LinkShaper, cut_point: int, frames: int, rate_hz: float, run_dir: Path
) -> dict:
    """sim.launch.py's arguments for offloading every frame at `cut_point`.

    Its params files are written to `run_dir`.
    """
    drone = write_params(
        run_dir / "drone.yaml",
        "drone.yaml",
        {
            "perception": {
                "follow_controller": False,
                "cut_point": cut_point,
                "exit_thresholds": NO_EARLY_EXIT,
                **MODEL,
            },
            "controller": {"profile": str(WORKLOADS["fashion_mnist"].profile)},
            "camera_source": {
                "dataset": "fashion_mnist",
                "rate_hz": rate_hz,
                "max_frames": frames,
                "publish_ground_truth": False,
                "publishing": False,
            },
        },
    )
    base = write_params(
        run_dir / "base_station.yaml",
        "base_station.yaml",
        {"offload": {"emulated_rtt_ms": RTT_MS, **MODEL}},
    )
    return {
        "params_file": drone,
        "base_params_file": base,
        "compute_slowdown": 1.0,
        "radio_link": True,
        "base_prefix": " ".join(shaper.prefix("base")),
    }


@contextmanager
def offloading(
    name: str,
    domain_id: int,
    shaper: LinkShaper,
    cut_point: int,
    frames: int,
    rate_hz: float,
    run_dir: Path,
    env: dict[str, str],
) -> Iterator[tuple[OffloadListener, Callable[..., None]]]:
    """sim.launch.py with the drone offloading every frame at `cut_point`, on a fast link.

    The base station runs behind the shaped link; the drone runs perception (no early exit, the
    controller not followed), the link monitor and the camera as the launch file starts them.
    The camera publishes `frames` frames at `rate_hz` once DDS discovery across the link is
    over. Yields (a listener of the results and load reports, `spin_for`) once the base station
    has answered an offload; stops the launch on exit.
    """
    shaper.set_rate(DISCOVERY_MBPS)
    arguments = _launch_arguments(shaper, cut_point, frames, rate_hz, run_dir)
    with (
        ros_context(domain_id) as context,
        spinning(listener := OffloadListener(name, context)) as spin_for,
        LaunchProcess(
            "sim.launch.py", domain_id, arguments, run_dir / "launch.log", env
        ) as launch,
    ):
        # the base station reports its load, so its reports cross the link too
        wait_until(
            spin_for,
            lambda: drone_serving(listener)() and bool(listener.load),
            [launch],
            "perception and offload nodes",
            timeout_s=120.0,
        )
        # no discovery traffic left to share the measured link with the tensors
        shaper.wait_quiet(spin_for)
        start_camera(listener, spin_for)
        wait_until(
            spin_for,
            listener.base_answered,
            [launch],
            "an offload answered on the fast link",
            FIRST_ANSWER_S,
        )
        yield listener, spin_for


def run_shaped(bench: str, body: Callable[[int, LinkShaper, dict[str, str]], T]) -> T | None:
    """`body(domain_id, shaper, env)` with this process on the drone side of the shaped link.

    `env` is the environment for the launches (their DDS settings come from the launch files);
    this process's participant gets the link's, as radio_link sets the nodes'. The link is torn
    down after. None, said why, where the link cannot be shaped (not root).
    """
    env = dict(os.environ)
    shaper, reason = open_link()
    if shaper is None:
        print(f"[bench] {bench} needs the shaped link: {reason}")
        return None
    os.environ.update(dds_env())
    with private_domain_id() as domain_id:
        try:
            return body(domain_id, shaper, env)
        finally:
            shaper.teardown()


def _measure(
    domain_id: int,
    shaper: LinkShaper,
    point: GoodputPoint,
    duration_s: float,
    rate_hz: float,
    run_dir: Path,
    env: dict[str, str],
) -> dict:
    frames = round((duration_s + SETTLE_S + FIRST_ANSWER_S) * rate_hz)
    with offloading(
        "goodput_bench", domain_id, shaper, point.cut_point, frames, rate_hz, run_dir, env
    ) as (listener, spin_for):
        shaper.set_rate(point.mbps)
        spin_for(SETTLE_S)
        before, started = shaper.stats(), time.monotonic()
        spin_for(duration_s)
        after, ended = shaper.stats(), time.monotonic()
        spin_for(1.5)  # the last load report of the window
    offloads = [r for r in listener.results if r.offload_bytes]
    payload = int(np.median([r.offload_bytes for r in offloads])) if offloads else 0
    # a load report covers the second before it arrives
    answered = sum(n for t, n in listener.load if started + 1.0 <= t <= ended + 0.5)
    seconds = ended - started
    wire_bytes = after["bytes"] - before["bytes"]
    capacity_bytes = point.mbps * 1e6 / 8 * seconds
    return {
        "mbps": point.mbps,
        "cut_point": point.cut_point,
        "payload_bytes": payload,
        "offered_mbps": payload * 8 * rate_hz / 1e6,
        "seconds": seconds,
        "answered": answered,
        "goodput_mbps": answered * payload * 8 / seconds / 1e6,
        "goodput_ratio": answered * payload / capacity_bytes,
        "link_busy": wire_bytes / capacity_bytes,
        "payload_share": answered * payload / wire_bytes if wire_bytes else None,
        "tbf_drops": after["drops"] - before["drops"],
        "fallbacks": sum(1 for r in listener.results if r.where == InferenceResult.WHERE_FALLBACK),
    }


def run_goodput(points: list[GoodputPoint], duration_s: float, rate_hz: float,
                json_path: str | None, markdown: str | None, plot: str | None) -> int:  # fmt: skip
    """Measure every point; print a table; write JSON, markdown and a plot. 1 if no shaping."""

    def measure_all(domain_id: int, shaper: LinkShaper, env: dict[str, str]) -> list[dict]:
        rows = []
        for point in points:
            print(f"[bench] {point.mbps:g} Mbit/s, cut {point.cut_point}: offloading every "
                  f"frame for {duration_s:g} s", flush=True)  # fmt: skip
            run_dir = Path("log/bench_goodput") / f"{point.mbps:g}_cut{point.cut_point}"
            rows.append(_measure(domain_id, shaper, point, duration_s, rate_hz, run_dir, env))
            print(format_goodput(rows[-1:]).splitlines()[-1], flush=True)
        return rows

    rows = run_shaped("goodput", measure_all)
    if rows is None:
        return 1
    print(format_goodput(rows))
    out = {"rate_hz": rate_hz, "duration_s": duration_s, "points": rows}
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(out, indent=1) + "\n")
    if plot:
        plot_goodput(rows, Path(plot))
    if markdown:
        Path(markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(markdown).write_text(markdown_goodput(out, plot))
    return 0


COLUMNS = (
    ("mbps", "link Mbit/s", "{:g}"),
    ("payload_bytes", "tensor B", "{:d}"),
    ("offered_mbps", "offered Mbit/s", "{:.2f}"),
    ("goodput_mbps", "goodput Mbit/s", "{:.3f}"),
    ("goodput_ratio", "goodput/rate", "{:.2f}"),
    ("link_busy", "link busy", "{:.2f}"),
    ("payload_share", "payload share", "{:.2f}"),
    ("tbf_drops", "tbf drops", "{:d}"),
)


def _cells(row: dict) -> list[str]:
    return ["n/a" if row[k] is None else fmt.format(row[k]) for k, _, fmt in COLUMNS]


def format_goodput(rows: list[dict]) -> str:
    """The table printed by `edgeml bench goodput`."""
    lines = ["".join(f"{label:>16}" for _, label, _ in COLUMNS)]
    lines += ["".join(f"{c:>16}" for c in _cells(r)) for r in rows]
    return "\n".join(lines)


def plot_goodput(rows: list[dict], path: Path) -> None:
    """Goodput ratio, link busy and payload share per point, with the 0.85 target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['mbps']:g} Mbit/s\n{r['payload_bytes'] // 1024} KB tensors" for r in rows]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(7, 3.8))
    bars = (("goodput_ratio", "goodput / rate"), ("link_busy", "link busy"),
            ("payload_share", "payload share of wire bytes"))  # fmt: skip
    for i, (key, name) in enumerate(bars):
        ax.bar(x + (i - 1) * 0.27, [r[key] or 0 for r in rows], 0.27, label=name)
    ax.axhline(0.85, color="k", ls="--", lw=1, label="goodput target 0.85")
    ax.set_xticks(x, labels)
    ax.set_ylim(0, 1.35)
    ax.set_title("make bench-goodput: offloads over the shaped link")
    ax.legend(fontsize=8, ncol=2, loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown_goodput(out: dict, plot: str | None) -> str:
    """The results page (docs/goodput_results.md)."""
    rows = [
        "# Offload goodput over the shaped link",
        "",
        "Produced by `make bench-goodput`: every frame offloaded (no early exit) at "
        f"{out['rate_hz']:g} Hz over the veth shaped with `tc tbf` (the nodes discover each "
        f"other at {DISCOVERY_MBPS:g} Mbit/s first; the point's rate applies once the base "
        f"station has answered an offload), {out['duration_s']:g} s "
        "measured per point after a settling period; the Fast DDS link profile "
        "(config/fastdds_link.xml) and the perception node's default offload window. "
        "Goodput counts only tensor bytes the base station answered; link busy counts every "
        "byte through the drone's tbf (headers, discovery, probes) against the rate.",
        "",
        "| " + " | ".join(label for _, label, _ in COLUMNS) + " |",
        "|" + " ---: |" * len(COLUMNS),
    ]
    rows += ["| " + " | ".join(_cells(r)) + " |" for r in out["points"]]
    if plot:
        rows += ["", f"![goodput]({Path(plot).name})"]
    return "\n".join(rows) + "\n"
