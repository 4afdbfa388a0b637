"""The `make demo` runner, for hosts where `ros2 launch` is not installed.

It starts the drone side and the base-station side as separate node processes over real DDS
(what the launch files start), scores every result with a collector node, and prints a summary.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node

from edgeml_ros.bringup.processes import NodeProcess, node_processes, private_domain_id, share_file
from edgeml_ros.core.pipeline import Where
from edgeml_ros.msg import GroundTruth, InferenceResult
from edgeml_ros.nodes.common import RELIABLE


@dataclass
class DemoConfig:
    """What the demo runs."""

    duration_s: float = 30.0
    rate_hz: float = 10.0
    checkpoint: str | None = None
    domain_id: int | None = None
    json_path: str | None = None
    log_dir: str = "log/demo"


class Collector(Node):
    """Receives results, ground truth and diagnostics, and scores them."""

    def __init__(self) -> None:
        super().__init__("demo_collector")
        self.results: dict[int, tuple[InferenceResult, float]] = {}
        self.duplicates = 0
        self.truth: dict[tuple[int, int, str], int] = {}
        self.diagnostics: dict[str, dict[str, str]] = {}
        self.create_subscription(InferenceResult, "perception/result", self._on_result, RELIABLE)
        self.create_subscription(GroundTruth, "camera/ground_truth", self._on_truth, RELIABLE)
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)

    def _on_result(self, msg: InferenceResult) -> None:
        now = self.get_clock().now().nanoseconds
        stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        if msg.frame_seq in self.results:
            self.duplicates += 1
        self.results[msg.frame_seq] = (msg, (now - stamp) / 1e6)

    def _on_truth(self, msg: GroundTruth) -> None:
        key = (msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id)
        self.truth[key] = msg.class_id

    def _on_diag(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            self.diagnostics[status.hardware_id] = {kv.key: kv.value for kv in status.values}

    def perception_counter(self, key: str) -> int:
        """A counter from the perception node's latest diagnostics (-1 before any)."""
        values = self.diagnostics.get("/perception", {})
        return int(values.get(key, -1))

    def summary(self) -> dict:
        """Frame accounting, exits, accuracy and latency over everything received."""
        results = [r for r, _ in self.results.values()]
        latencies = np.array([lat for _, lat in self.results.values()])
        ok = [r for r in results if r.status == InferenceResult.STATUS_OK]
        scored = [
            (r, self.truth[k])
            for r in ok
            if (k := (r.header.stamp.sec, r.header.stamp.nanosec, r.header.frame_id)) in self.truth
        ]
        where = Counter(Where(r.where).name.lower() for r in results)
        frames_in = self.perception_counter("frames_in")
        return {
            "frames_in": frames_in,
            "results_out": len(results),
            "frames_without_result": max(frames_in - len(results), 0),
            "duplicate_results": self.duplicates,
            "exits": {str(k): v for k, v in sorted(Counter(r.exit_index for r in ok).items())},
            "where": dict(sorted(where.items())),
            "offloaded": sum(1 for r in results if r.offload_bytes > 0),
            "fallbacks": where.get("fallback", 0),
            "errors": len(results) - len(ok),
            "accuracy": float(np.mean([r.class_id == t for r, t in scored])) if scored else None,
            "scored_frames": len(scored),
            "latency_ms_p50": float(np.percentile(latencies, 50)) if len(results) else None,
            "latency_ms_p95": float(np.percentile(latencies, 95)) if len(results) else None,
            "offload_bytes_mean": float(
                np.mean([r.offload_bytes for r in results if r.offload_bytes] or [0])
            ),
        }


def _format_summary(s: dict, cfg: DemoConfig) -> str:
    def pct(v):
        return "n/a" if v is None else f"{v:.1%}"

    def ms(v):
        return "n/a" if v is None else f"{v:.1f} ms"

    exits = ", ".join(f"exit {k}: {v}" for k, v in s["exits"].items()) or "none"
    where = ", ".join(f"{k}: {v}" for k, v in s["where"].items()) or "none"
    return "\n".join(
        [
            f"edgeml_ros demo: {cfg.duration_s:g} s at {cfg.rate_hz:g} Hz "
            f"(ROS_DOMAIN_ID {s['domain_id']}, link not shaped: loopback)",
            f"  frames published      {s['frames_published']} by the camera",
            f"  frames in             {s['frames_in']} (reached perception)",
            f"  results out           {s['results_out']}",
            f"  frames without result {s['frames_without_result']}",
            f"  exits                 {exits}",
            f"  where                 {where}",
            f"  offloaded             {s['offloaded']} (mean {s['offload_bytes_mean']:.0f} B)",
            f"  fallbacks             {s['fallbacks']}",
            f"  errors                {s['errors']}",
            f"  accuracy              {pct(s['accuracy'])} over {s['scored_frames']} frames",
            f"  latency p50 / p95     {ms(s['latency_ms_p50'])} / {ms(s['latency_ms_p95'])}"
            " (camera stamp -> result received)",
        ]
    )


def _spin_for(node: Node, seconds: float, status=None) -> None:
    end = time.monotonic() + seconds
    next_status = time.monotonic() + 1.0
    while time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.05)
        if status is not None and time.monotonic() >= next_status:
            status()
            next_status += 1.0


def run_demo(cfg: DemoConfig) -> int:
    """Run the demo and print (and optionally write) its summary; 0 when no frame was lost."""
    if cfg.domain_id is not None:
        return _run(cfg, cfg.domain_id)
    with private_domain_id() as domain_id:
        return _run(cfg, domain_id)


def _run(cfg: DemoConfig, domain_id: int) -> int:
    log_dir = Path(cfg.log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    frames = max(1, round(cfg.duration_s * cfg.rate_hz))
    common = {"checkpoint": cfg.checkpoint} if cfg.checkpoint else {}
    drone, base = share_file("config", "drone.yaml"), share_file("config", "base_station.yaml")
    rclpy.init(domain_id=domain_id)
    collector = Collector()
    logs = {}

    def start(name: str, params: Path, **overrides) -> NodeProcess:
        logs[name] = open(log_dir / f"{name}.log", "w")  # noqa: SIM115
        return NodeProcess(name, domain_id, params, {**common, **overrides}, log=logs[name])

    print(f"[demo] starting base station and drone nodes (logs in {log_dir}/)", flush=True)
    procs = [
        start("offload", base),
        start("perception", drone),
        start("controller", drone),
        start("link_monitor", drone),
    ]
    try:
        with node_processes(procs):
            # Start the camera once every node is up (all in the ROS graph, the perception
            # node reporting): processes still importing torch would steal its CPU.
            deadline = time.monotonic() + 60
            names = {"offload", "perception", "controller", "link_monitor"}
            while time.monotonic() < deadline and (
                collector.perception_counter("frames_in") < 0
                or not names <= set(collector.get_node_names())
            ):
                _spin_for(collector, 0.2)
                if not all(p.alive() for p in procs):
                    raise RuntimeError("a node exited during start-up; see its log")
            camera = start("camera_source", drone, rate_hz=cfg.rate_hz, max_frames=frames)
            procs.append(camera)
            print(f"[demo] nodes up; publishing {frames} camera frames", flush=True)

            def status() -> None:
                s = collector.summary()
                acc = "n/a" if s["accuracy"] is None else f"{s['accuracy']:.1%}"
                line = (
                    f"[demo] results {s['results_out']:4d}/{frames}  offloaded {s['offloaded']:4d}"
                    f"  fallbacks {s['fallbacks']:3d}  accuracy {acc}"
                )
                # One live line on a terminal; one line per second in logs.
                print(f"\r{line}" if sys.stdout.isatty() else line, end="", flush=True)
                if not sys.stdout.isatty():
                    print()

            def status_and_health() -> None:
                status()
                dead = [p.name for p in procs if not p.alive()]
                if dead:
                    raise RuntimeError(f"node(s) {', '.join(dead)} exited; see {log_dir}/")

            _spin_for(collector, frames / cfg.rate_hz, status_and_health)
            # Let the last frames finish: results until every frame in has one.
            drain_end = time.monotonic() + 10
            while time.monotonic() < drain_end:
                _spin_for(collector, 0.5)
                s = collector.summary()
                if s["results_out"] >= frames and s["frames_in"] == s["results_out"]:
                    break
            _spin_for(collector, 1.5)  # one more diagnostics period
    finally:
        for f in logs.values():
            f.close()
    summary = collector.summary()
    summary.update(domain_id=domain_id, frames_published=frames, link_shaped=False)
    collector.destroy_node()
    rclpy.try_shutdown()
    if sys.stdout.isatty():
        print()
    print(_format_summary(summary, cfg))
    if cfg.json_path:
        Path(cfg.json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(cfg.json_path).write_text(json.dumps(summary, indent=2) + "\n")
        print(f"[demo] wrote {cfg.json_path}")
    if summary["results_out"] == 0:
        print("[demo] FAILED: no results at all", file=sys.stderr)
        return 1
    if summary["frames_in"] != summary["results_out"] or summary["duplicate_results"]:
        print("[demo] FAILED: frames in and results out differ", file=sys.stderr)
        return 1
    return 0
