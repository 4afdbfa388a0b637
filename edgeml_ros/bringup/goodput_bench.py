"""Offload goodput over the shaped link: how much of the link's rate becomes answered tensors.

For each point (a shaped rate and a cut point whose tensor, at the camera's rate, offers more
than that rate; the nodes discover each other on a fast link first), the drone offloads every
frame (no early exit) to the base station over the veth shaped with `tc tbf`, with the
package's Fast DDS link profile, the perception node's default offload window and the link
monitor probing the link as it does on the drone. After a settling period, over a measuring
window:

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
import rclpy
from rclpy.node import Node

from edgeml_ros.bringup.demo import BACKGROUND_NICE, start_camera_when_quiet
from edgeml_ros.bringup.processes import (
    DRONE_LOCAL_ENV,
    NodeProcess,
    node_processes,
    private_domain_id,
    share_file,
    spinning,
)
from edgeml_ros.bringup.shaper import DRONE_NS, LinkShaper, ShaperError, dds_env, enter_netns
from edgeml_ros.msg import BaseStationLoad, InferenceResult
from edgeml_ros.nodes.common import MONITOR, RELIABLE

SETTLE_S = 4.0
# The nodes start and discover each other on a fast link; the point's rate applies once the
# base station has answered an offload. (Started on a 40 kbit/s link, DDS discovery, XTypes type
# lookups included, had not finished after the whole run.)
DISCOVERY_MBPS = 20.0
FIRST_ANSWER_S = 30.0  # at most this long on the fast link for the first answered offload
RTT_MS = 20.0
NO_EARLY_EXIT = [2.0, 2.0, 2.0, 0.0]
# B-VGG tensors: 4 KB at cut 0 (the image), 16 KB at cut 2, 32 KB at cut 1; at 10 Hz each
# offers more than its link carries
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

    def __init__(self, name: str) -> None:
        super().__init__(name)
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


def run_shaped(bench: str, body: Callable[[int, LinkShaper], T]) -> T | None:
    """`body(domain_id, shaper)` with this process on the drone side of the shaped link.

    The link is set up, rclpy initialised on a private domain with the link's DDS profile, and
    everything torn down after. None, said why, where the link cannot be shaped (not root).
    """
    reason, shaper = LinkShaper.available(), LinkShaper()
    if reason is None:
        try:
            shaper.setup()
        except ShaperError as exc:
            shaper.teardown()
            reason = str(exc)
    if reason is not None:
        print(f"[bench] {bench} needs the shaped link: {reason}")
        return None
    with private_domain_id() as domain_id:
        try:
            enter_netns(DRONE_NS)
            os.environ.update(dds_env())
            rclpy.init(domain_id=domain_id)
            return body(domain_id, shaper)
        finally:
            rclpy.try_shutdown()
            shaper.teardown()


@contextmanager
def offloading(listener: OffloadListener, spin_for: Callable[..., None], domain_id: int,
               shaper: LinkShaper, cut_point: int, frames: int, rate_hz: float,
               log_dir: Path) -> Iterator[None]:  # fmt: skip
    """The base station and the drone offloading every frame at `cut_point`, on a fast link.

    The drone runs the perception node (no early exit), its link monitor (as drone.launch.py
    starts it: at a lower CPU priority) and the camera, which publishes `frames` frames at
    `rate_hz` once DDS discovery across the link is over. Yields once the base station has
    answered an offload (discovery between the perception node and the base station is over
    too); stops every node on exit.
    """
    drone_yaml = share_file("config", "drone.yaml")
    base_yaml = share_file("config", "base_station.yaml")
    log_dir.mkdir(parents=True, exist_ok=True)
    names = ("offload", "perception", "link_monitor", "camera")
    logs = {n: open(log_dir / f"{n}.log", "w") for n in names}  # noqa: SIM115
    shaper.set_rate(DISCOVERY_MBPS)
    procs = [
        NodeProcess("offload", domain_id, base_yaml, {"emulated_rtt_ms": RTT_MS},
                    log=logs["offload"], prefix=shaper.prefix("base")),
        NodeProcess("perception", domain_id, drone_yaml,
                    {"follow_controller": False, "cut_point": cut_point,
                     "exit_thresholds": NO_EARLY_EXIT}, log=logs["perception"]),
        NodeProcess("link_monitor", domain_id, drone_yaml, log=logs["link_monitor"],
                    prefix=["nice", "-n", str(BACKGROUND_NICE)]),
    ]  # fmt: skip
    try:
        with node_processes(procs):
            deadline = time.monotonic() + 120
            # the base station and the perception node are up (the latter's endpoints exist)
            while time.monotonic() < deadline and not (
                listener.load and listener.count_publishers("offload/request")
            ):
                spin_for(0.5)
                if not all(p.alive() for p in procs):
                    raise RuntimeError(f"a node exited during start-up; see {log_dir}/")
            camera = {"rate_hz": rate_hz, "max_frames": frames, "publish_ground_truth": False,
                      "publishing": False}  # fmt: skip
            procs.append(NodeProcess("camera_source", domain_id, drone_yaml, camera,
                                     log=logs["camera"], env=DRONE_LOCAL_ENV))  # fmt: skip
            start_camera_when_quiet(listener, shaper, spin_for)
            give_up = time.monotonic() + FIRST_ANSWER_S
            while time.monotonic() < give_up and not listener.base_answered():
                spin_for(0.05)
            if not listener.base_answered():
                raise RuntimeError(f"the base station answered no offload on the fast link in "
                                   f"{FIRST_ANSWER_S:.0f} s; see {log_dir}/")  # fmt: skip
            yield
    finally:
        for f in logs.values():
            f.close()


def _measure(domain_id: int, shaper: LinkShaper, point: GoodputPoint, duration_s: float,
             rate_hz: float, log_dir: Path) -> dict:  # fmt: skip
    listener = OffloadListener("goodput_bench")
    frames = round((duration_s + SETTLE_S + FIRST_ANSWER_S) * rate_hz)
    try:
        with spinning(listener) as spin_for, offloading(listener, spin_for, domain_id, shaper,
                                                        point.cut_point, frames, rate_hz,
                                                        log_dir):  # fmt: skip
            shaper.set_rate(point.mbps)
            spin_for(SETTLE_S)
            before, started = shaper.stats(), time.monotonic()
            spin_for(duration_s)
            after, ended = shaper.stats(), time.monotonic()
            spin_for(1.5)  # the last load report of the window
    finally:
        listener.destroy_node()
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

    def measure_all(domain_id: int, shaper: LinkShaper) -> list[dict]:
        rows = []
        for point in points:
            print(f"[bench] {point.mbps:g} Mbit/s, cut {point.cut_point}: offloading every "
                  f"frame for {duration_s:g} s", flush=True)  # fmt: skip
            log_dir = Path("log/bench_goodput") / f"{point.mbps:g}_cut{point.cut_point}"
            rows.append(_measure(domain_id, shaper, point, duration_s, rate_hz, log_dir))
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
        "(config/fastdds_link.xml), the perception node's default offload window and the link "
        "monitor probing the link as on the drone. "
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
