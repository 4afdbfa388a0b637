"""The `make demo` session: a private ROS domain, the shaped link, one run per policy, outputs.

Each run (bringup.demo_run) starts the nodes through sim.launch.py, as a user does, and scores
every result with a collector node in this process (bringup.collector). Here: the link between
the drone's and the base station's network namespaces (bringup.shaper), this process moved to
the drone's side, the runs in turn, and the summaries, table, plot and JSON at the end. The
drone emulates a slower computer (`compute_slowdown`, reported as emulated); the battery is
simulated and energy is the energy model's, not a measurement.

The emulated computer keeps its speed whatever this machine's speed or load: the perception
node pads each compute call to `compute_slowdown` times the profile's time for it
(`emulate_profile`; a calibrated profile's, with its fixed time per call). This machine's
reference-model time before each run is reported beside.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

from edgeml_ros.bringup.collector import Collector
from edgeml_ros.bringup.demo_run import Session, run_policy
from edgeml_ros.bringup.plots import plot_runs
from edgeml_ros.bringup.processes import private_domain_id, ros_context, spinning
from edgeml_ros.bringup.recorder import McapRecorder
from edgeml_ros.bringup.report import format_table, lost_frames
from edgeml_ros.bringup.run_record import write_run_record
from edgeml_ros.bringup.shaper import dds_env, open_link
from edgeml_ros.core.checkpoint import read_meta
from edgeml_ros.core.energy import DeviceEnergy, device_class
from edgeml_ros.core.profiles import load_profile, reference_ms
from edgeml_ros.core.traces import Trace, load_trace, throttle_schedule
from edgeml_ros.core.workloads import DEFAULT_WORKLOAD, workload

REFERENCE_RUNS = 30  # timed runs of the reference model when this machine's speed is measured


@dataclass
class DemoConfig:
    """What the demo runs.

    The model is the workload's unless `checkpoint` and `profile` say otherwise; the drone
    computer (energy model, compute slowdown) is the profile's unless `device_class` and
    `compute_slowdown` say otherwise.
    """

    duration_s: float = 30.0
    rate_hz: float = 10.0
    workload: str = DEFAULT_WORKLOAD
    checkpoint: str | None = None
    profile: str | None = None
    domain_id: int | None = None
    json_path: str | None = None
    log_dir: str = "log/demo"
    policies: tuple[str, ...] = ("rl",)
    compute_slowdown: float | None = None
    deadline_ms: float = 100.0
    device_class: str | None = None
    plot_path: str | None = "out/demo.png"
    trace: str = "throttle"  # a trace file, or "throttle": the authors' schedule over the run
    shape: bool = True
    # the controller's audit_share: audits under every plan (label-free accuracy in the plot)
    audit_share: float = 0.0
    # the camera's input conditions over time (core.degrade.parse_condition_schedule; "": clean)
    condition_schedule: str = ""
    # telemetry of each run as out/demo_<policy>.mcap, with how it was made (bringup.run_record)
    mcap_dir: str | None = "out"
    command: str = ""


@dataclass(frozen=True)
class DemoModel:
    """The model a demo runs and the drone computer it emulates, resolved from a DemoConfig."""

    checkpoint: Path
    profile: Path
    dataset: str  # what the camera source publishes: the checkpoint's data set
    device: DeviceEnergy
    compute_slowdown: float  # the emulated drone's compute time over the profiled times
    profile_threads: int  # the drone's threads, which the profile timed the reference model on
    profile_reference_ms: float  # the reference model's time when the profile was made

    @classmethod
    def of(cls, cfg: DemoConfig) -> DemoModel:
        """The config's model, its profile, its data set and the emulated drone computer."""
        shipped = workload(cfg.workload)
        checkpoint = Path(cfg.checkpoint or shipped.checkpoint)
        profile_path = Path(cfg.profile or shipped.profile)
        profile = load_profile(profile_path)[0]
        device = device_class(cfg.device_class or profile.device_class["name"])
        slowdown = cfg.compute_slowdown or profile.compute_slowdown(device)
        return cls(checkpoint, profile_path, read_meta(checkpoint).dataset, device, slowdown,
                   profile.threads, profile.reference_ms)  # fmt: skip

    def reference_now(self) -> float:
        """The reference model's time on this machine now (ms), on the drone's threads."""
        return reference_ms(REFERENCE_RUNS, self.profile_threads)


def run_demo(cfg: DemoConfig) -> int:
    """Run the demo once per policy and print (and optionally write) the summaries.

    Returns 0 when every frame of every run got exactly one result.
    """
    runs = run_session(cfg)
    summaries = [s for s, _ in runs]
    if len(summaries) > 1:
        print("\n" + format_table(summaries))
    if cfg.plot_path:
        plot_runs(
            runs,
            Path(cfg.plot_path),
            "make demo: the link, the controller's plan, accuracy and audits",
        )
        print(f"[demo] wrote {cfg.plot_path}")
    if cfg.json_path:
        Path(cfg.json_path).parent.mkdir(parents=True, exist_ok=True)
        out = summaries[0] if len(summaries) == 1 else {"runs": summaries}
        Path(cfg.json_path).write_text(json.dumps(out, indent=2) + "\n")
        print(f"[demo] wrote {cfg.json_path}")
    return 1 if lost_frames(summaries) else 0


def run_session(cfg: DemoConfig) -> list[tuple[dict, Collector]]:
    """One run per policy, on a private ROS domain; the summaries and their collectors."""
    cfg = replace(cfg, policies=live_policies(cfg))
    if cfg.domain_id is not None:
        return _run_all(cfg, cfg.domain_id)
    with private_domain_id() as domain_id:
        return _run_all(cfg, domain_id)


def live_policies(cfg: DemoConfig) -> tuple[str, ...]:
    """The config's policies, or with none every live policy the model's profile has the data for.

    ValueError for a policy the profile lacks the data for: live, the controller would refuse
    it, and the drone would keep its start-up plan under that policy's name.
    """
    from edgeml_ros.policy.registry import chosen_policies
    from edgeml_ros.policy.world import World

    world = World.load(DemoModel.of(cfg).profile)
    names, left_out = chosen_policies(cfg.policies, world, live_only=True)
    for reason in left_out:
        print(f"[demo] left out: {reason}", file=sys.stderr)
    return names


def demo_trace(cfg: DemoConfig) -> Trace:
    """The link the demo replays: a trace file, or the throttle schedule fit to the run."""
    if cfg.trace == "throttle":
        return throttle_schedule(phase_s=cfg.duration_s / 5, unthrottled_mbps=20.0, rtt_ms=20.0)
    return load_trace(cfg.trace)


def _run_all(cfg: DemoConfig, domain_id: int) -> list[tuple[dict, Collector]]:
    launch_env = dict(os.environ)  # the launches': DDS settings come from the launch files
    shaper, reason = open_link(cfg.shape)
    if shaper is None:
        print(f"[demo] link not shaped ({reason}): drone and base station talk over loopback")
    else:
        os.environ.update(dds_env())  # this process's participant, as radio_link sets the nodes'
    session = Session(domain_id, shaper, demo_trace(cfg), DemoModel.of(cfg), launch_env,
                      process_started_at())  # fmt: skip
    runs = []
    try:
        for policy in cfg.policies:
            recorder = McapRecorder(Path(cfg.mcap_dir) / f"demo_{policy}.mcap") \
                if cfg.mcap_dir else None  # fmt: skip
            try:
                # before the participant: its quick announcements are for the launch's nodes
                host_reference_ms = session.model.reference_now()
                with ros_context(domain_id) as context:
                    collector = Collector(cfg.deadline_ms, session.model.device,
                                          recorder, context)  # fmt: skip
                    with spinning(collector) as spin_for:
                        summary = run_policy(cfg, session, policy, collector, spin_for,
                                             host_reference_ms)  # fmt: skip
                    collector.destroy_node()
                if recorder is not None:
                    write_run_record(recorder, cfg, session.model.compute_slowdown, policy,
                                     collector)  # fmt: skip
            finally:
                if recorder is not None:
                    recorder.close()
            if recorder is not None:
                summary["mcap"] = str(recorder.path)
                print(f"[demo] recorded {recorder.messages} messages to {recorder.path}")
            runs.append((summary, collector))
    finally:
        if shaper is not None:
            shaper.teardown()
    return runs


def process_started_at() -> float:
    """Wall-clock time at which this process started (Linux: /proc), to 10 ms.

    `make demo` execs the demo in the process that set up its environment, so the time counts
    from the command's start.
    """
    fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    started_since_boot = int(fields[19]) / os.sysconf("SC_CLK_TCK")
    return time.time() - (time.clock_gettime(time.CLOCK_BOOTTIME) - started_since_boot)
