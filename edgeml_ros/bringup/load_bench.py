"""Load benchmarks of the live system: several drones against one base station, and a soak.

Scale: for each drone count, base_station.launch.py starts one offload node serving N drones,
and drone.launch.py each drone in its own namespace (perception, controller, link monitor and
the Fashion-MNIST camera source), all frames offloaded (cut 2, no early exit, the controller
not followed), over loopback. Reported per count: per-drone median latency, Jain's fairness
index over the drones' median latencies, the base station's utilization (its own
BaseStationLoad reports), and every frame's accounting: frames that entered a perception node
(its diagnostics' `frames_in`) without a result, and frames the best-effort camera topic lost
before the node (published, never in).

Soak: sim.launch.py (one drone and the base station: perception, offload, controller, link
monitor, battery simulator, camera) for a long run; the resident memory of every node is
sampled, and its growth from the first sample after a warm-up to the end is reported.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.context import Context
from rclpy.node import Node

from edgeml_ros.bringup.launched import (
    SpinFor,
    check_running,
    drone_serving,
    start_camera,
    wait_until,
)
from edgeml_ros.bringup.params import write_params
from edgeml_ros.bringup.processes import LaunchProcess, private_domain_id, ros_context, spinning
from edgeml_ros.msg import BaseStationLoad, InferenceResult
from edgeml_ros.nodes.common import MONITOR, RELIABLE

ALL_OFFLOADED = {"cut_point": 2, "exit_thresholds": [2.0, 2.0, 2.0, 0.0],
                 "follow_controller": False}  # fmt: skip
WARM_UP_S = 60.0


class _Listener(Node):
    """Collects results per drone and the base station's load reports."""

    def __init__(self, drones: list[str], context: Context) -> None:
        super().__init__("load_bench", context=context)
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


def _launch_drones(
    domain_id: int, names: list[str], frames: int, rate_hz: float, run_dir: Path
) -> list[LaunchProcess]:
    """base_station.launch.py serving `names`, and drone.launch.py once per drone namespace."""
    base = write_params(
        run_dir / "base_station.yaml",
        "base_station.yaml",
        {"offload": {"drone_namespaces": names}},
    )
    drone = write_params(
        run_dir / "drone.yaml",
        "drone.yaml",
        {
            "perception": ALL_OFFLOADED,
            "camera_source": {
                "rate_hz": rate_hz,
                "max_frames": frames,
                "publish_ground_truth": False,
                "publishing": False,
            },
        },
    )
    launches = [
        LaunchProcess(
            "base_station.launch.py",
            domain_id,
            {"params_file": base},
            run_dir / "base_station.log",
        )
    ]
    for name in names:
        launches.append(
            LaunchProcess(
                "drone.launch.py",
                domain_id,
                {"namespace": name, "params_file": drone, "use_camera_source": True},
                run_dir / f"{name}.log",
            )
        )
    return launches


def _stop_all(launches: list[LaunchProcess]) -> None:
    for launch in reversed(launches):
        launch.stop()


def _run_drones(listener: _Listener, spin_for: SpinFor, launches: list[LaunchProcess],
                names: list[str], frames: int, duration_s: float) -> None:  # fmt: skip
    """Wait for every drone and the base station, run the cameras, wait for the results."""
    for name in names:
        wait_until(spin_for, drone_serving(listener, name), launches,
                   f"{name}'s perception and the base station", timeout_s=180.0)  # fmt: skip
    spin_for(3.0)  # models warmed up
    for name in names:
        start_camera(listener, spin_for, name)
    cameras_done, end = (time.monotonic() + duration_s + t for t in (3.0, 60.0))
    while time.monotonic() < end and not listener.answered_all(
        frames, time.monotonic() > cameras_done
    ):
        spin_for(0.5)
        check_running(launches)
    # the nodes' counts from after their last results (diagnostics come once a second)
    counted = time.monotonic() + 5.0
    spin_for(1.5)
    while time.monotonic() < counted and not listener.counts_current():
        spin_for(0.2)


def _scale_point(domain_id: int, drones: int, duration_s: float, rate_hz: float) -> dict:
    names = [f"drone{i + 1}" for i in range(drones)]
    frames = round(duration_s * rate_hz)
    with ros_context(domain_id) as context:
        listener = _Listener(names, context)
        launches = _launch_drones(
            domain_id, names, frames, rate_hz, Path(f"log/bench_scale/{drones}")
        )
        try:
            with spinning(listener) as spin_for:
                _run_drones(listener, spin_for, launches, names, frames, duration_s)
        finally:
            _stop_all(launches)
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
        for n in counts:
            print(f"[bench] {n} drone(s) at {rate_hz:g} Hz for {duration_s:g} s", flush=True)
            points.append(_scale_point(domain_id, n, duration_s, rate_hz))
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


def _pid_alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def run_soak(duration_s: float, rate_hz: float, json_path: str | None) -> int:
    """Run sim.launch.py for `duration_s` of frames; report memory growth per node."""
    run_dir = Path("log/bench_soak")
    drone = write_params(
        run_dir / "drone.yaml",
        "drone.yaml",
        {
            "camera_source": {
                "rate_hz": rate_hz,
                "max_frames": round(duration_s * rate_hz),
                "publishing": False,
            }
        },
    )
    samples: dict[str, list[tuple[float, float]]] = {}
    with (
        private_domain_id() as domain_id,
        ros_context(domain_id) as context,
        spinning(node := Node("soak_bench", context=context)) as spin_for,
        LaunchProcess(
            "sim.launch.py", domain_id, {"params_file": drone}, run_dir / "launch.log"
        ) as launch,
    ):
        wait_until(spin_for, drone_serving(node), [launch], "perception and offload")
        start_camera(node, spin_for)
        pids = launch.node_pids()
        started = time.monotonic()
        while time.monotonic() - started < duration_s:
            for name, pid in pids.items():
                if _pid_alive(pid):
                    samples.setdefault(name, []).append((time.monotonic() - started, rss_mb(pid)))
            spin_for(10.0)
        alive = {name: _pid_alive(pid) for name, pid in pids.items()}
    growth = {}
    for name, rows in samples.items():
        after_warm_up = [mb for t, mb in rows if t >= WARM_UP_S] or [mb for _, mb in rows]
        growth[name] = {
            "rss_mb_start": after_warm_up[0],
            "rss_mb_end": after_warm_up[-1],
            "growth": after_warm_up[-1] / after_warm_up[0] - 1.0,
            "alive_at_end": alive.get(name, False),
        }
    print(f"{'node':<16}{'RSS MiB after warm-up':>22}{'at end':>9}{'growth':>9}")
    for name, g in growth.items():
        print(
            f"{name:<16}{g['rss_mb_start']:>22.1f}{g['rss_mb_end']:>9.1f}"
            f"{100 * g['growth']:>8.2f}%"
        )
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(
            json.dumps(
                {
                    "duration_s": duration_s,
                    "rate_hz": rate_hz,
                    "warm_up_s": WARM_UP_S,
                    "nodes": growth,
                },
                indent=1,
            )
            + "\n"
        )
    return 0 if all(g["growth"] < 0.05 for g in growth.values()) else 1
