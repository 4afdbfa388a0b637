"""The `make demo` runner, for hosts where `ros2 launch` is not installed.

It starts what sim.launch.py starts (the drone side with the camera source, the base station,
the battery simulator) as separate node processes over real DDS, scores every result with a
collector node, and prints a summary per run (one run per controller policy) and a plot of the
link estimate and the plan over time. The drone emulates a slower computer
(`compute_slowdown`, reported as emulated); the battery is simulated and energy is the energy
model's, not a measurement.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient
from sensor_msgs.msg import BatteryState

from edgeml_ros.bringup.processes import (
    DRONE_LOCAL_ENV,
    DRONE_LOCAL_NODES,
    NodeProcess,
    node_processes,
    private_domain_id,
    share_file,
    spinning,
)
from edgeml_ros.bringup.recorder import McapRecorder
from edgeml_ros.bringup.shaper import (
    DRONE_NS,
    LinkShaper,
    ShaperError,
    TraceReplay,
    dds_env,
    enter_netns,
)
from edgeml_ros.core.battery import result_energy_j
from edgeml_ros.core.energy import DeviceEnergy, device_class
from edgeml_ros.core.link import PhaseScore, annotate_scores, score_estimate
from edgeml_ros.core.outcome import Where
from edgeml_ros.core.traces import Trace, load_trace, throttle_schedule
from edgeml_ros.msg import (
    BaseStationLoad,
    ExecutionPolicy,
    GroundTruth,
    InferenceResult,
    LinkQuality,
)
from edgeml_ros.nodes.common import LATCHED, MONITOR, RELIABLE

# Started at a lower CPU priority, as drone.launch.py starts the controller and link monitor
# (launch argument background_nice): they give way to the perception node and its consumers.
BACKGROUND_NODES = ("controller", "link_monitor", "battery_sim")
BACKGROUND_NICE = 10


@dataclass
class DemoConfig:
    """What the demo runs."""

    duration_s: float = 30.0
    rate_hz: float = 10.0
    checkpoint: str | None = None
    domain_id: int | None = None
    json_path: str | None = None
    log_dir: str = "log/demo"
    policies: tuple[str, ...] = ("rl",)
    compute_slowdown: float = 4.0
    deadline_ms: float = 100.0
    device_class: str = "jetson_nano"
    plot_path: str | None = "out/demo.png"
    trace: str = "throttle"  # a trace file, or "throttle": the authors' schedule over the run
    shape: bool = True
    mcap_dir: str | None = "out"  # telemetry of each run as out/demo_<policy>.mcap
    command: str = ""


class Collector(Node):
    """Receives results, ground truth and diagnostics, and scores them."""

    def __init__(
        self, deadline_ms: float, device: DeviceEnergy, recorder: McapRecorder | None = None
    ) -> None:
        super().__init__("demo_collector")
        self.deadline_ms, self.device, self.recorder = deadline_ms, device, recorder
        self.results: dict[int, tuple[InferenceResult, float]] = {}
        self.duplicates = 0
        self.truth: dict[tuple[int, int, str], int] = {}
        self.diagnostics: dict[str, dict[str, str]] = {}
        self.started = time.monotonic()
        self.plans: list[tuple[float, int, float, str]] = []  # (t, cut, threshold, reason)
        self.link: list[tuple[float, float]] = []  # (t, Mbit/s)
        self.shaped: list[tuple[float, float, float]] = []  # (t, Mbit/s, RTT ms) applied
        self.base_load: list[tuple[float, float]] = []  # (t, requests answered per second)
        # arrival times of results the plan sent to the base station (answered there or not)
        self.offload_wanted: list[float] = []
        for msg_type, topic, callback, qos in (
            (InferenceResult, "perception/result", self._on_result, RELIABLE),
            (GroundTruth, "camera/ground_truth", self._on_truth, RELIABLE),
            (DiagnosticArray, "/diagnostics", self._on_diag, MONITOR),
            (ExecutionPolicy, "execution_policy", self._on_plan, LATCHED),
            (LinkQuality, "link_quality", self._on_link, 10),
            (BatteryState, "battery_state", None, 10),
            (BaseStationLoad, "offload/load", self._on_load, MONITOR),
        ):
            self.create_subscription(msg_type, topic, self._recording(topic, callback), qos)

    def _recording(self, topic: str, callback):
        """`callback`, then the message into the MCAP recording (if any) with its receive time.

        The callback comes first: a result's latency ends when it arrives, not after the
        recording's serialization.
        """

        def handle(msg) -> None:
            received = self.get_clock().now().nanoseconds
            if callback is not None:
                callback(msg)
            if self.recorder is not None:
                self.recorder.write(topic, msg, received)

        return handle

    def _on_plan(self, msg: ExecutionPolicy) -> None:
        early = list(msg.exit_thresholds[:-1]) or [0.0]
        self.plans.append((time.monotonic() - self.started, msg.cut_point, min(early),
                           msg.reason))  # fmt: skip

    def _on_load(self, msg: BaseStationLoad) -> None:
        self.base_load.append((time.monotonic() - self.started, msg.requests_per_s))

    def _on_link(self, msg: LinkQuality) -> None:
        self.link.append((time.monotonic() - self.started, msg.bandwidth_mbps))

    def link_scores(self) -> list[PhaseScore]:
        """The link estimate against the shaped rate, phase by phase (error, settling time)."""
        shaped = [(t, mbps) for t, mbps, _ in self.shaped]  # the last: when the run ended
        return score_estimate(shaped[:-1], self.link, shaped[-1][0]) if len(shaped) > 1 else []

    def policy_changes(self) -> int:
        """Plan changes published by the controller (repeats of the same plan not counted)."""
        plans = [(cut, thr) for _, cut, thr, _ in self.plans]
        return sum(1 for a, b in itertools.pairwise(plans) if a != b)

    def _on_result(self, msg: InferenceResult) -> None:
        now = self.get_clock().now().nanoseconds
        stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        if msg.frame_seq in self.results:
            self.duplicates += 1
        self.results[msg.frame_seq] = (msg, (now - stamp) / 1e6)
        if msg.where in (InferenceResult.WHERE_BASE, InferenceResult.WHERE_FALLBACK):
            self.offload_wanted.append(time.monotonic() - self.started)

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

    def breakdown(self) -> dict:
        """Median per-frame cost by part, over answered frames (ms).

        conversion = image decoding; model = head plus tail (drone or base station); serialization
        = feature encoding; link = offload send to reply, less the base station's tail; dds_in =
        camera to perception (the frame's age on arrival); dds_out = result to this collector;
        queueing = the rest of the node's time. Framework overhead is everything but model and
        link.
        """
        rows = [(r, lat) for r, lat in self.results.values()
                if r.status == InferenceResult.STATUS_OK]  # fmt: skip
        if not rows:
            return {}
        parts = {
            "conversion": [r.decode_ms for r, _ in rows],
            "model": [r.head_ms + r.tail_ms for r, _ in rows],
            "serialization": [r.encode_ms for r, _ in rows],
            "link": [r.transfer_ms for r, _ in rows],
            "dds_in": [r.input_age_ms for r, _ in rows],
            "dds_out": [max(0.0, lat - r.input_age_ms - r.total_ms) for r, lat in rows],
            "queueing": [max(0.0, r.total_ms - r.decode_ms - r.head_ms - r.encode_ms
                             - r.transfer_ms - r.tail_ms) for r, _ in rows],
        }  # fmt: skip
        overhead = [lat - r.head_ms - r.tail_ms - r.transfer_ms for r, lat in rows]
        out = {f"{k}_ms_p50": float(np.median(v)) for k, v in parts.items()}
        out["framework_overhead_ms_p50"] = float(np.median(overhead))
        return out

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
        energy = [
            result_energy_j(
                self.device,
                r.head_ms + (r.tail_ms if r.where == Where.FALLBACK else 0.0),
                r.transfer_ms + (r.tail_ms if r.where == Where.BASE else 0.0),
            )
            for r in ok
        ]
        return {
            "frames_in": frames_in,
            "results_out": len(results),
            "frames_without_result": max(frames_in - len(results), 0),
            "duplicate_results": self.duplicates,
            "exits": {str(k): v for k, v in sorted(Counter(r.exit_index for r in ok).items())},
            "where": dict(sorted(where.items())),
            "offloaded": sum(1 for r in results if r.offload_bytes > 0),
            "fallbacks": where.get("fallback", 0),
            "errors": sum(
                1
                for r in results
                if r.status not in (InferenceResult.STATUS_OK, InferenceResult.STATUS_STALE)
            ),
            "accuracy": float(np.mean([r.class_id == t for r, t in scored])) if scored else None,
            "scored_frames": len(scored),
            "latency_ms_p50": float(np.percentile(latencies, 50)) if len(results) else None,
            "latency_ms_p95": float(np.percentile(latencies, 95)) if len(results) else None,
            "deadline_miss_rate": float(np.mean(latencies > self.deadline_ms))
            if len(results)
            else None,
            "latency_ms_p99": float(np.percentile(latencies, 99)) if len(results) else None,
            "energy_j_per_frame": float(np.mean(energy)) if energy else None,
            **self.breakdown(),
            "stale_drops": sum(1 for r in results if r.status == InferenceResult.STATUS_STALE),
            "policy_changes": self.policy_changes(),
            "offload_bytes_mean": float(
                np.mean([r.offload_bytes for r in results if r.offload_bytes] or [0])
            ),
            "offload_window_full": self.perception_counter("window_full"),
            "longest_offload_gap_s": self.longest_offload_gap_s(results),
        }

    @staticmethod
    def longest_offload_gap_s(results: list[InferenceResult]) -> float | None:
        """Longest time, by camera stamp, between two frames the base station answered.

        With the link cut for T seconds, this minus T is how long offloading took to recover.
        """
        ok = InferenceResult.STATUS_OK
        answered = [r for r in results if r.where == Where.BASE and r.status == ok]
        stamps = sorted(r.header.stamp.sec + r.header.stamp.nanosec / 1e9 for r in answered)
        return float(np.max(np.diff(stamps))) if len(stamps) > 1 else None


def _format_summary(s: dict, cfg: DemoConfig) -> str:
    def pct(v):
        return "n/a" if v is None else f"{v:.1%}"

    def ms(v):
        return "n/a" if v is None else f"{v:.1f} ms"

    exits = ", ".join(f"exit {k}: {v}" for k, v in s["exits"].items()) or "none"
    where = ", ".join(f"{k}: {v}" for k, v in s["where"].items()) or "none"
    energy = "n/a" if s["energy_j_per_frame"] is None else f"{1000 * s['energy_j_per_frame']:.1f}"
    link = f"link shaped: {s['link_trace']}" if s["link_shaped"] else "link not shaped: loopback"
    return "\n".join(
        [
            f"run: policy {s['policy']}, {cfg.duration_s:g} s at {cfg.rate_hz:g} Hz "
            f"(ROS_DOMAIN_ID {s['domain_id']}, {link}; drone compute emulated at "
            f"{s['compute_slowdown_emulated']:g}x)",
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
            f"  accuracy              {pct(s['accuracy'])} over {s['scored_frames']} frames",
            f"  latency p50 / p95     {ms(s['latency_ms_p50'])} / {ms(s['latency_ms_p95'])}"
            " (camera stamp -> result received)",
            f"  deadline misses       {pct(s['deadline_miss_rate'])} (> {cfg.deadline_ms:g} ms)",
            f"  energy per frame      {energy} mJ (energy model, not measured)",
        ]
    )


def _format_table(runs: list[dict]) -> str:
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


def run_demo(cfg: DemoConfig) -> int:
    """Run the demo once per policy and print (and optionally write) the summaries.

    Returns 0 when every frame of every run got exactly one result.
    """
    runs = run_session(cfg)
    summaries = [s for s, _ in runs]
    if len(summaries) > 1:
        print("\n" + _format_table(summaries))
    if cfg.plot_path:
        plot_runs(runs, Path(cfg.plot_path))
        print(f"[demo] wrote {cfg.plot_path}")
    if cfg.json_path:
        Path(cfg.json_path).parent.mkdir(parents=True, exist_ok=True)
        out = summaries[0] if len(summaries) == 1 else {"runs": summaries}
        Path(cfg.json_path).write_text(json.dumps(out, indent=2) + "\n")
        print(f"[demo] wrote {cfg.json_path}")
    return 1 if lost_frames(summaries) else 0


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


def run_session(cfg: DemoConfig) -> list[tuple[dict, Collector]]:
    """One run per policy, on a private ROS domain; the summaries and their collectors."""
    if cfg.domain_id is not None:
        return _run_all(cfg, cfg.domain_id)
    with private_domain_id() as domain_id:
        return _run_all(cfg, domain_id)


def demo_trace(cfg: DemoConfig) -> Trace:
    """The link the demo replays: a trace file, or the throttle schedule fit to the run."""
    if cfg.trace == "throttle":
        return throttle_schedule(phase_s=cfg.duration_s / 5, unthrottled_mbps=20.0, rtt_ms=20.0)
    return load_trace(cfg.trace)


def _start_shaper(cfg: DemoConfig) -> LinkShaper | None:
    """Set up the shaped link and move this process to the drone side, or say why not."""
    reason = LinkShaper.available() if cfg.shape else "shaping off (--no-shaping)"
    shaper = LinkShaper()
    if reason is None:
        try:
            shaper.setup()
            enter_netns(DRONE_NS)
            os.environ.update(dds_env())
            return shaper
        except (ShaperError, OSError) as exc:
            shaper.teardown()
            reason = str(exc)
    print(f"[demo] link not shaped ({reason}): drone and base station talk over loopback")
    return None


def _run_all(cfg: DemoConfig, domain_id: int) -> list[tuple[dict, Collector]]:
    trace = demo_trace(cfg)
    shaper = _start_shaper(cfg)
    rclpy.init(domain_id=domain_id)
    runs = []
    try:
        for policy in cfg.policies:
            recorder = McapRecorder(Path(cfg.mcap_dir) / f"demo_{policy}.mcap") \
                if cfg.mcap_dir else None  # fmt: skip
            collector = Collector(cfg.deadline_ms, device_class(cfg.device_class), recorder)
            try:
                with spinning(collector) as spin_for:
                    summary = _run(cfg, domain_id, policy, collector, spin_for, shaper, trace)
            finally:
                collector.destroy_node()
                if recorder is not None:
                    recorder.close()
            if recorder is not None:
                summary["mcap"] = str(recorder.path)
                print(f"[demo] recorded {recorder.messages} messages to {recorder.path}")
            runs.append((summary, collector))
    finally:
        rclpy.try_shutdown()
        if shaper is not None:
            shaper.teardown()
    return runs


def start_camera_when_quiet(node: Node, shaper: LinkShaper, spin_for: Callable[..., None]) -> None:
    """Let the camera publish once DDS discovery across the link is over.

    Discovery (endpoints, type lookups) of the nodes just started would otherwise share the
    link with the first frames' offloads, and on a throttled link it takes minutes.
    """
    waited = shaper.wait_quiet(spin_for)
    state = f"settled after {waited:.1f} s" if waited is not None else "still busy after 60 s"
    print(f"[demo] discovery across the link {state}; starting the camera", flush=True)
    camera = AsyncParameterClient(node, "camera_source")
    if not camera.wait_for_services(timeout_sec=30.0):
        raise RuntimeError("camera_source has no parameter service; see its log")
    done = camera.set_parameters([Parameter("publishing", value=True)])
    while not done.done():
        spin_for(0.05)


def _run(
    cfg: DemoConfig,
    domain_id: int,
    policy: str,
    collector: Collector,
    spin_for: Callable[..., None],
    shaper: LinkShaper | None,
    trace: Trace,
) -> dict:
    log_dir = Path(cfg.log_dir) / policy
    log_dir.mkdir(parents=True, exist_ok=True)
    frames = max(1, round(cfg.duration_s * cfg.rate_hz))
    common = {"checkpoint": cfg.checkpoint} if cfg.checkpoint else {}
    drone, base = share_file("config", "drone.yaml"), share_file("config", "base_station.yaml")
    logs = {}

    def start(name: str, params: Path | None, base: bool = False, **overrides) -> NodeProcess:
        logs[name] = open(log_dir / f"{name}.log", "w")  # noqa: SIM115
        prefix = shaper.prefix("base") if shaper and base else None
        if name in BACKGROUND_NODES:  # as drone.launch.py starts them
            prefix = ["nice", "-n", str(BACKGROUND_NICE)]
        env = DRONE_LOCAL_ENV if name in DRONE_LOCAL_NODES else None
        return NodeProcess(name, domain_id, params, overrides, log=logs[name], prefix=prefix,
                           env=env)  # fmt: skip

    print(f"[demo] policy {policy}: starting base station and drone nodes (logs in "
          f"{log_dir}/)", flush=True)  # fmt: skip
    procs = [
        start("offload", base, base=True, **common),
        start("perception", drone, compute_slowdown=cfg.compute_slowdown,
              deadline_ms=cfg.deadline_ms, **common),
        start("controller", drone, policy=policy, deadline_ms=cfg.deadline_ms,
              device_class=cfg.device_class),
        start("link_monitor", drone),
        start("battery_sim", None, device_class=cfg.device_class),
    ]  # fmt: skip
    names = {p.name for p in procs}
    try:
        with node_processes(procs):
            # Start the camera once every node is up (all in the ROS graph, the perception
            # node reporting): processes still importing torch would steal its CPU.
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and (
                collector.perception_counter("frames_in") < 0
                or not names <= set(collector.get_node_names())
            ):
                spin_for(0.2)
                if not all(p.alive() for p in procs):
                    raise RuntimeError("a node exited during start-up; see its log")
            replay = None
            camera = start("camera_source", drone, rate_hz=cfg.rate_hz, max_frames=frames,
                           publishing=shaper is None)  # fmt: skip
            procs.append(camera)
            if shaper is not None:
                offload_params = AsyncParameterClient(collector, "offload")

                def set_rtt(rtt_ms: float) -> None:
                    offload_params.set_parameters([Parameter("emulated_rtt_ms", value=rtt_ms)])

                replay = TraceReplay(trace, shaper.set_rate, set_rtt)
                start_camera_when_quiet(collector, shaper, spin_for)
            # the trace starts with the first frame, so every run sees the same link per frame
            first_frame = time.monotonic() + 60
            while not collector.truth and time.monotonic() < first_frame:
                spin_for(0.05)
            if replay is not None:
                replay.start()
            link = f"shaped link replaying {trace.name}" if shaper else "loopback"
            print(f"[demo] nodes up; publishing {frames} camera frames ({link})", flush=True)

            def status() -> None:
                s = collector.summary()
                acc = "n/a" if s["accuracy"] is None else f"{s['accuracy']:.1%}"
                cut = collector.plans[-1][1] if collector.plans else "-"
                line = (
                    f"[demo] {policy}: results {s['results_out']:4d}/{frames}  offloaded "
                    f"{s['offloaded']:4d}  fallbacks {s['fallbacks']:3d}  cut {cut}  "
                    f"accuracy {acc}"
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

            spin_for(frames / cfg.rate_hz, status_and_health)
            # Let the last frames finish: results until every frame in has one.
            drain_end = time.monotonic() + 10
            while time.monotonic() < drain_end:
                spin_for(0.5)
                s = collector.summary()
                if s["results_out"] >= frames and s["frames_in"] == s["results_out"]:
                    break
            spin_for(1.5)  # one more diagnostics period
            if replay is not None:
                replay.stop()
                if replay.error is not None:
                    raise RuntimeError(f"link shaping failed: {replay.error}")
                offset = replay.started - collector.started
                collector.shaped = [(t + offset, mbps, rtt) for t, mbps, rtt in replay.changes]
                if collector.shaped:  # the last rate held until the end
                    ended = time.monotonic() - collector.started
                    collector.shaped.append((ended, *collector.shaped[-1][1:]))
    finally:
        for f in logs.values():
            f.close()
    summary = collector.summary()
    summary.update(domain_id=domain_id, frames_published=frames, link_shaped=shaper is not None,
                   link_trace=trace.name if shaper else None, policy=policy,
                   compute_slowdown_emulated=cfg.compute_slowdown,
                   link_estimate=[p.as_dict() for p in collector.link_scores()])  # fmt: skip
    if sys.stdout.isatty():
        print()
    print(_format_summary(summary, cfg))
    return summary
