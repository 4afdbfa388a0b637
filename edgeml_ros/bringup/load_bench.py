"""Load benchmarks of the live system: several drones against one base station, and a soak.

Scale: for each drone count, one offload node serves N drones, each a perception node and a
Fashion-MNIST camera in its own namespace, all frames offloaded (cut 2, no early exit), over
loopback. Reported per count: per-drone median latency, Jain's fairness index over the drones'
median latencies, the base station's utilization (its own BaseStationLoad reports), and every
frame's accounting: frames that entered a perception node (its diagnostics' `frames_in`) without
a result, and frames the best-effort camera topic lost before the node (published, never in).

Soak: one drone and the base station (perception, offload, controller, link monitor, battery
simulator, camera) for a long run; the resident memory of every node is sampled, and its growth
from the first sample after a warm-up to the end is reported.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node

from edgeml_ros.bringup.processes import (
    NodeProcess,
    node_processes,
    private_domain_id,
    share_file,
    spinning,
)
from edgeml_ros.msg import BaseStationLoad, InferenceResult
from edgeml_ros.nodes.common import MONITOR, RELIABLE

ALL_OFFLOADED = {"cut_point": 2, "exit_thresholds": [2.0, 2.0, 2.0, 0.0],
                 "follow_controller": False}  # fmt: skip
WARM_UP_S = 60.0


class _Listener(Node):
    """Collects results per drone and the base station's load reports."""

    def __init__(self, drones: list[str]) -> None:
        super().__init__("load_bench")
        self.results: dict[str, list[tuple[InferenceResult, float]]] = {d: [] for d in drones}
        self.load: list[BaseStationLoad] = []
        self.frames_in: dict[str, int] = {}  # drone -> its perception node's latest frames_in
        self.counted_at: dict[str, float] = {}  # drone -> when that count came
        self.last_result_at: dict[str, float] = {}
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, MONITOR)
        for d in drones:
            self.create_subscription(InferenceResult, f"/{d}/perception/result",
                                     lambda m, d=d: self._on_result(d, m), RELIABLE)  # fmt: skip
        self.create_subscription(BaseStationLoad, "offload/load", self.load.append, MONITOR)

    def _on_diag(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            drone = status.hardware_id.strip("/").removesuffix("/perception")
            if drone in self.results and status.hardware_id.endswith("/perception"):
                values = {kv.key: kv.value for kv in status.values}
                self.frames_in[drone] = int(values.get("frames_in", -1))
                self.counted_at[drone] = time.monotonic()

    def counts_current(self) -> bool:
        """Every drone's frames_in came after its last result (so it counts every frame)."""
        return all(self.counted_at.get(d, -1.0) > t for d, t in self.last_result_at.items())

    def answered_all(self, frames: int, cameras_done: bool) -> bool:
        """Every drone answered all frames published (or all it took in, cameras done)."""
        return all(len(rows) >= frames
                   or (cameras_done and self.frames_in.get(d, -1) == len(rows))
                   for d, rows in self.results.items())  # fmt: skip

    def _on_result(self, drone: str, msg: InferenceResult) -> None:
        now = self.get_clock().now().nanoseconds
        stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        self.results[drone].append((msg, (now - stamp) / 1e6))
        self.last_result_at[drone] = time.monotonic()


def jain_index(values: list[float]) -> float:
    """Jain's fairness index: 1 when all equal, 1/n when one takes everything."""
    x = np.asarray(values, dtype=float)
    return float(x.sum() ** 2 / (len(x) * (x**2).sum())) if len(x) and x.any() else 1.0


def _scale_point(domain_id: int, drones: int, duration_s: float, rate_hz: float) -> dict:
    names = [f"drone{i + 1}" for i in range(drones)]
    frames = round(duration_s * rate_hz)
    drone_yaml, base_yaml = (
        share_file("config", "drone.yaml"),
        share_file("config", "base_station.yaml"),
    )
    listener = _Listener(names)
    procs = [NodeProcess("offload", domain_id, base_yaml, {"drone_namespaces": names})]
    procs += [NodeProcess("perception", domain_id, drone_yaml, ALL_OFFLOADED, namespace=d)
              for d in names]  # fmt: skip
    try:
        with spinning(listener) as spin_for, node_processes(procs):
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not all(
                listener.count_publishers(f"/{d}/perception/result") for d in names
            ):
                spin_for(0.5)
            spin_for(3.0)  # models warmed up
            cameras = [NodeProcess("camera_source", domain_id, drone_yaml,
                                   {"rate_hz": rate_hz, "max_frames": frames,
                                    "publish_ground_truth": False}, namespace=d)
                       for d in names]  # fmt: skip
            procs += cameras
            cameras_done, end = (time.monotonic() + duration_s + t for t in (3.0, 60.0))
            while time.monotonic() < end and not listener.answered_all(
                frames, time.monotonic() > cameras_done
            ):
                spin_for(0.5)
            # the nodes' counts from after their last results (diagnostics come once a second)
            counted = time.monotonic() + 5.0
            spin_for(1.5)
            while time.monotonic() < counted and not listener.counts_current():
                spin_for(0.2)
    finally:
        listener.destroy_node()
    per_drone = {}
    for d, rows in listener.results.items():
        lat = np.array([lat for _, lat in rows]) if rows else np.zeros(1)
        per_drone[d] = {
            "frames_in": listener.frames_in.get(d, -1),
            "results": len(rows),
            "latency_ms_p50": float(np.median(lat)),
            "latency_ms_p95": float(np.percentile(lat, 95)),
            "offloaded": sum(1 for r, _ in rows if r.where == InferenceResult.WHERE_BASE),
            "fallbacks": sum(1 for r, _ in rows if r.where == InferenceResult.WHERE_FALLBACK),
        }
    busy = [m.utilization for m in listener.load if m.requests_per_s > 0]
    return {
        "drones": drones,
        "frames_per_drone": frames,
        "per_drone": per_drone,
        "latency_ms_p50_median": float(
            np.median([p["latency_ms_p50"] for p in per_drone.values()])
        ),
        "fairness_jain": jain_index([p["latency_ms_p50"] for p in per_drone.values()]),
        "base_utilization_mean": float(np.mean(busy)) if busy else 0.0,
        "frames_without_result": sum(
            max(0, p["frames_in"] - p["results"]) if p["frames_in"] >= 0 else frames
            for p in per_drone.values()
        ),
        "lost_before_perception": sum(
            max(0, frames - p["frames_in"]) for p in per_drone.values() if p["frames_in"] >= 0
        ),
    }


def run_scale(counts: list[int], duration_s: float, rate_hz: float, json_path: str | None) -> int:
    """Run the scale benchmark; print a table; 0 when every frame got a result."""
    points = []
    with private_domain_id() as domain_id:
        rclpy.init(domain_id=domain_id)
        try:
            for n in counts:
                print(f"[bench] {n} drone(s) at {rate_hz:g} Hz for {duration_s:g} s", flush=True)
                points.append(_scale_point(domain_id, n, duration_s, rate_hz))
        finally:
            rclpy.try_shutdown()
    print(f"{'drones':>7}{'p50 ms (median drone)':>23}{'fairness':>10}{'base busy':>11}"
          f"{'no result':>11}{'lost before perception':>24}")  # fmt: skip
    for p in points:
        print(f"{p['drones']:>7}{p['latency_ms_p50_median']:>23.1f}{p['fairness_jain']:>10.3f}"
              f"{p['base_utilization_mean']:>11.2f}{p['frames_without_result']:>11}"
              f"{p['lost_before_perception']:>24}")  # fmt: skip
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps({"points": points}, indent=1) + "\n")
    return 1 if any(p["frames_without_result"] for p in points) else 0


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MiB (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return 0.0


def run_soak(duration_s: float, rate_hz: float, json_path: str | None) -> int:
    """Run one drone and the base station for `duration_s`; report memory growth per node."""
    frames = round(duration_s * rate_hz)
    drone_yaml, base_yaml = (
        share_file("config", "drone.yaml"),
        share_file("config", "base_station.yaml"),
    )
    samples: dict[str, list[tuple[float, float]]] = {}
    with private_domain_id() as domain_id:
        procs = [
            NodeProcess("offload", domain_id, base_yaml),
            NodeProcess("perception", domain_id, drone_yaml, {"compute_slowdown": 4.0}),
            NodeProcess("controller", domain_id, drone_yaml),
            NodeProcess("link_monitor", domain_id, drone_yaml),
            NodeProcess("battery_sim", domain_id),
        ]
        with node_processes(procs):
            time.sleep(15.0)  # start-up
            procs.append(NodeProcess("camera_source", domain_id, drone_yaml,
                                     {"rate_hz": rate_hz, "max_frames": frames}))  # fmt: skip
            started = time.monotonic()
            while time.monotonic() - started < duration_s:
                for p in procs:
                    if p.alive():
                        samples.setdefault(p.name, []).append(
                            (time.monotonic() - started, rss_mb(p.proc.pid))
                        )
                time.sleep(10.0)
            alive = {p.name: p.alive() for p in procs}
    growth = {}
    for name, rows in samples.items():
        after_warm_up = [mb for t, mb in rows if t >= WARM_UP_S] or [mb for _, mb in rows]
        growth[name] = {"rss_mb_start": after_warm_up[0], "rss_mb_end": after_warm_up[-1],
                        "growth": after_warm_up[-1] / after_warm_up[0] - 1.0,
                        "alive_at_end": alive.get(name, False)}  # fmt: skip
    print(f"{'node':<16}{'RSS MiB after warm-up':>22}{'at end':>9}{'growth':>9}")
    for name, g in growth.items():
        print(f"{name:<16}{g['rss_mb_start']:>22.1f}{g['rss_mb_end']:>9.1f}"
              f"{100 * g['growth']:>8.2f}%")  # fmt: skip
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps({"duration_s": duration_s, "rate_hz": rate_hz,
                                               "warm_up_s": WARM_UP_S, "nodes": growth},
                                              indent=1) + "\n")  # fmt: skip
    return 0 if all(g["growth"] < 0.05 for g in growth.values()) else 1
