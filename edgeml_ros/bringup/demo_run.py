"""One demo run: the nodes started through sim.launch.py, then frames, scoring and shutdown.

The run's values that a user would pass as launch arguments (policy, compute slowdown, the base
station's network namespace, the radio link) go as launch arguments; the rest (frame count and
rate, deadline, device class, checkpoint, the emulated RTT, the camera held until the nodes
serve) in params files written over config/drone.yaml and config/base_station.yaml. The camera
starts once the perception node reads it, the base station takes offloads, the controller has
planned and the demo's node sees a publisher on every topic it records: DDS discovery
has crossed the link by then, still unshaped; the trace starts with the first frame, so every
run sees the same link per frame.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient

from edgeml_ros.bringup.collector import Collector
from edgeml_ros.bringup.launched import (
    SpinFor,
    check_running,
    drone_serving,
    start_camera,
    wait_until,
)
from edgeml_ros.bringup.params import write_params
from edgeml_ros.bringup.processes import LaunchProcess
from edgeml_ros.bringup.report import format_summary, status_line
from edgeml_ros.bringup.shaper import DISCOVERY_MBPS, LinkShaper, TraceReplay
from edgeml_ros.core.traces import Trace

if TYPE_CHECKING:
    from edgeml_ros.bringup.demo import DemoConfig, DemoModel

DRAIN_S = 10.0  # at most this long after the last frame for the last results


@dataclass(frozen=True)
class Session:
    """What every run of a session shares."""

    domain_id: int
    shaper: LinkShaper | None  # None: loopback
    trace: Trace
    model: DemoModel
    launch_env: dict[str, str]  # the environment the launches start from
    started_at: float  # wall-clock start of the demo's process


def launch_arguments(cfg: DemoConfig, session: Session, policy: str, run_dir: Path) -> dict:
    """sim.launch.py's arguments for one run, with its params files written to `run_dir`.

    The drone pads each compute call to the emulated computer's time for it: `compute_slowdown`
    times the profile's, calibrated where it is (`emulate_profile`).
    """
    frames = frame_count(cfg)
    model = {"checkpoint": str(session.model.checkpoint)}
    rtt_ms = float(session.trace.rtt_ms[0]) if session.shaper is not None else 0.0
    drone = write_params(
        run_dir / "drone.yaml",
        "drone.yaml",
        {
            "perception": {
                "deadline_ms": cfg.deadline_ms,
                "emulate_profile": str(session.model.profile),
                **model,
            },
            "controller": {
                "deadline_ms": cfg.deadline_ms,
                "profile": str(session.model.profile),
                "device_class": session.model.device.name,
                "audit_share": cfg.audit_share,
            },
            "battery_sim": {"device_class": session.model.device.name},
            "camera_source": {
                "rate_hz": cfg.rate_hz,
                "max_frames": frames,
                "publishing": False,
                "dataset": session.model.dataset,
            },
        },
    )
    base = write_params(
        run_dir / "base_station.yaml",
        "base_station.yaml",
        {"offload": {**model, "emulated_rtt_ms": rtt_ms}},
    )
    arguments = {
        "policy": policy,
        "compute_slowdown": round(session.model.compute_slowdown, 3),
        "params_file": drone,
        "base_params_file": base,
    }
    if cfg.condition_schedule:  # `ros2 launch` takes no empty argument
        arguments["condition_schedule"] = cfg.condition_schedule
    if session.shaper is not None:
        arguments |= {"radio_link": True, "base_prefix": " ".join(session.shaper.prefix("base"))}
    return arguments


def frame_count(cfg: DemoConfig) -> int:
    """Frames the camera publishes in one run."""
    return max(1, round(cfg.duration_s * cfg.rate_hz))


def run_policy(
    cfg: DemoConfig,
    session: Session,
    policy: str,
    collector: Collector,
    spin_for: SpinFor,
    host_reference_ms: float,
) -> dict:
    """Launch, run and stop one policy's nodes; print and return the run's summary.

    `host_reference_ms`: this machine's reference-model time just before the run (reported).
    """
    run_dir = Path(cfg.log_dir) / policy
    arguments = launch_arguments(cfg, session, policy, run_dir)
    frames, shaper = frame_count(cfg), session.shaper
    env = {**session.launch_env, "ROS_LOG_DIR": str(run_dir.resolve())}
    print(
        f"[demo] policy {policy}: ros2 launch edgeml_ros sim.launch.py (output in "
        f"{run_dir}/launch.log)",
        flush=True,
    )
    if shaper is not None:  # every run starts alike (the run before left its trace's last rate)
        shaper.set_rate(DISCOVERY_MBPS)
    launched_at = time.time()
    with LaunchProcess(
        "sim.launch.py", session.domain_id, arguments, run_dir / "launch.log", env
    ) as launch:
        wait_until(spin_for, drone_serving(collector), [launch], "perception and offload nodes")
        # the controller comes up last: once it has planned, the run measures the policy from
        # its first frame; and with every node this run records from found, its record is whole
        wait_until(
            spin_for,
            lambda: bool(collector.plans) and collector.publishers_discovered(),
            [launch],
            "the controller's first plan and a publisher on every topic the demo records",
        )
        replay = None
        if shaper is not None:
            replay = TraceReplay(session.trace, shaper.set_rate, _rtt_setter(collector))
        start_camera(collector, spin_for)
        wait_until(
            spin_for,
            lambda: collector.first_frame_stamp is not None,
            [launch],
            "the first camera frame",
            timeout_s=30.0,
        )
        if replay is not None:
            replay.start()
        first = collector.first_frame_stamp
        timing = {
            "first_frame_s": first - launched_at,
            "first_frame_since_demo_start_s": first - session.started_at,
        }
        link = f"shaped link replaying {session.trace.name}" if shaper else "loopback"
        print(
            f"[demo] first camera frame {timing['first_frame_s']:.1f} s after the launch "
            f"started ({timing['first_frame_since_demo_start_s']:.1f} s after the demo "
            f"started); publishing {frames} frames ({link})",
            flush=True,
        )

        def status_and_health() -> None:
            line = status_line(collector, policy, frames)
            # One live line on a terminal; one line per second in logs.
            print(
                f"\r{line}" if sys.stdout.isatty() else line,
                flush=True,
                end="" if sys.stdout.isatty() else "\n",
            )
            check_running([launch])

        spin_for(frames / cfg.rate_hz, status_and_health)
        _drain(collector, spin_for, frames)
        if replay is not None:
            _record_shaping(collector, replay)
    summary = collector.summary()
    summary.update(
        domain_id=session.domain_id,
        frames_published=frames,
        link_shaped=shaper is not None,
        link_trace=session.trace.name if shaper else None,
        policy=policy,
        compute_slowdown_emulated=round(session.model.compute_slowdown, 3),
        host_reference_ms=host_reference_ms,
        device_class=session.model.device.name,
        model=str(session.model.checkpoint),
        link_estimate=[p.as_dict() for p in collector.link_scores()],
        **timing,
    )
    if sys.stdout.isatty():
        print()
    print(format_summary(summary, cfg.duration_s, cfg.rate_hz, cfg.deadline_ms))
    return summary


def _rtt_setter(node: Collector):
    """Sets the base station's emulated RTT (the kernel has no netem; see bringup.shaper)."""
    offload = AsyncParameterClient(node, "offload")

    def set_rtt(rtt_ms: float) -> None:
        offload.set_parameters([Parameter("emulated_rtt_ms", value=rtt_ms)])

    return set_rtt


def _drain(collector: Collector, spin_for: SpinFor, frames: int) -> None:
    """Let the last frames finish: results until every frame in has one, then one more report."""
    end = time.monotonic() + DRAIN_S
    while time.monotonic() < end:
        spin_for(0.5)
        s = collector.summary()
        if s["results_out"] >= frames and s["frames_in"] == s["results_out"]:
            break
    spin_for(1.5)  # one more diagnostics period


def _record_shaping(collector: Collector, replay: TraceReplay) -> None:
    """Stop the trace and keep the rates it applied, on the collector's clock, for the plot."""
    replay.stop()
    if replay.error is not None:
        raise RuntimeError(f"link shaping failed: {replay.error}")
    offset = replay.started - collector.started
    collector.shaped = [(t + offset, mbps, rtt) for t, mbps, rtt in replay.changes]
    if collector.shaped:  # the last rate held until the end
        ended = time.monotonic() - collector.started
        collector.shaped.append((ended, *collector.shaped[-1][1:]))
