import json
import re
import subprocess
import sys
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import yaml
from builtin_interfaces.msg import Time
from ros_helpers import host_slower
from std_msgs.msg import Header

from edgeml_ros.bringup.demo import DemoConfig, DemoModel, demo_trace, live_policies
from edgeml_ros.bringup.demo_run import Session, launch_arguments
from edgeml_ros.bringup.run_record import load_run
from edgeml_ros.bringup.shaper import DISCOVERY_MBPS, LinkShaper
from edgeml_ros.bringup.system_bench import (
    goodput_phases,
    goodput_ratio,
    markdown_system,
    phase_rows,
    phase_utility,
)
from edgeml_ros.core.workloads import DEFAULT_WORKLOAD, workload
from edgeml_ros.policy.world import World


def test_demo_launches_sim_launch_and_accounts_for_every_frame(tmp_path):
    out = tmp_path / "demo.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgeml_ros.cli",
            "demo",
            "--duration",
            "10",
            "--rate",
            "10",
            "--json",
            str(out),
            "--audit-share",
            "0.2",
            "--condition-schedule",
            "0:clean,3:blur",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "frames without result 0" in proc.stdout
    summary = json.loads(out.read_text())
    # Every frame that reached perception has exactly one result. The demo's camera QoS is
    # best effort (as for a real camera), so a frame may be lost before it gets there.
    assert summary["frames_published"] == 100
    assert 90 <= summary["frames_in"] == summary["results_out"] <= 100
    assert summary["frames_without_result"] == 0 and summary["duplicate_results"] == 0
    # most frames are answered where the plan put them; the throttled phases last 2 s here,
    # and frames offloaded into one fall back until the controller's next plan
    assert summary["where"].get("drone", 0) + summary["where"].get("base", 0) >= 70
    # the camera blurred its frames from 3 s on: accuracy is scored per condition too
    by_condition = summary["accuracy_by_condition"]
    assert set(by_condition) == {"clean", "blur"}
    assert sum(c["frames"] for c in by_condition.values()) == summary["scored_frames"]
    # 30 clean frames, all under the learned plan, which answers most at the first exit (66 %
    # accurate in `make evaluate`): well above chance (10 classes)
    assert 0.4 < by_condition["clean"]["accuracy"] <= 1.0
    assert "(blur " in proc.stdout and "clean " in proc.stdout
    assert 0 < summary["latency_ms_p50"] <= summary["latency_ms_p95"]
    # the controller ran the learned policy, and the camera started only after its first plan
    # (it comes up last): every frame ran under the policy
    assert summary["policy"] == "rl" and summary["first_plan_s"] == 0.0
    # every plan audits a fifth of the early answers the link can carry: over 2-s phases
    # the link monitor's estimate may not read a fast link in time for a 19-KB PNG frame, so
    # none may go (test_launch's audit test sees them answered on a fast link)
    assert 0 <= summary["audits_answered"] <= summary["audits_sent"]
    agreement = summary["audit_agreement"]
    assert (agreement is None) == (summary["audits_answered"] == 0)
    assert agreement is None or 0.0 <= agreement <= 1.0
    assert f"{summary['audits_sent']} sent, {summary['audits_answered']} answered" in proc.stdout
    # as root the demo shapes a real link (network namespaces + tc tbf), else it says why not
    shaped = LinkShaper.available() is None
    assert summary["link_shaped"] is shaped
    # the drone computer of the default workload's profile, against this machine
    model = DemoModel.of(DemoConfig())
    assert summary["compute_slowdown_emulated"] == round(model.compute_slowdown, 3) >= 1
    # each compute call padded to the profile's time for it; this machine's speed reported
    here = summary["host_reference_ms"]
    assert here > 0 and f"reference model {here:.1f} ms here" in proc.stdout
    drone_params = yaml.safe_load((tmp_path / "log" / "demo" / "rl" / "drone.yaml").read_text())
    assert drone_params["/**/perception"]["ros__parameters"]["emulate_profile"] == str(
        model.profile
    )
    assert summary["device_class"] == model.device.name
    assert summary["link_trace"] == ("throttle" if shaped else None)
    # the link estimate per phase of the throttle schedule (error, settling time)
    assert [p["shaped_mbps"] for p in summary["link_estimate"]] == (
        [20.0, 0.13, 0.04, 0.13, 20.0] if shaped else []
    )
    if shaped:  # the nodes started on the discovery rate, never on the bare (unshaped) veth
        run = load_run(tmp_path / "out" / "demo_rl.mcap")
        first_frame = run.frames.stamp_s.min()
        before = run.estimates[run.estimates[:, 0] < first_frame + 0.5, 1]
        assert len(before) > 0 and (before <= 1.3 * DISCOVERY_MBPS).all(), before
    assert 0 <= summary["deadline_miss_rate"] <= 1 and summary["energy_j_per_frame"] > 0
    assert (tmp_path / "out" / "demo.png").stat().st_size > 10_000
    # the nodes came from sim.launch.py (ros2 launch's log), the camera's first frame soon after
    launch_log = (tmp_path / "log" / "demo" / "rl" / "launch.log").read_text()
    started = re.findall(r"\[(\w+)-\d+\]: process started with pid", launch_log)
    assert sorted(started) == ["battery_sim", "camera_source", "controller", "link_monitor",
                               "offload", "perception"]  # fmt: skip
    # within 30 s on the machine that profiled the model; start-up is CPU work, so longer in
    # proportion where this machine runs the reference model slower now
    bound = 30 * host_slower(here)
    assert 0 < summary["first_frame_s"] < summary["first_frame_since_demo_start_s"] < bound
    # the telemetry was recorded to MCAP, with ros2msg schemas (Foxglove, ros2 bag)
    from mcap.reader import make_reader

    with open(tmp_path / "out" / "demo_rl.mcap", "rb") as f:
        reader = make_reader(f)
        channels = {c.id: c.topic for c in reader.get_summary().channels.values()}
        schemas = {s.name: s for s in reader.get_summary().schemas.values()}
        counts = {}
        for _, channel, _ in reader.iter_messages():
            counts[channel.topic] = counts.get(channel.topic, 0) + 1
    assert {"perception/result", "execution_policy", "battery_state"} <= set(channels.values())
    assert counts["perception/result"] == summary["results_out"]
    definition = schemas["edgeml_ros/msg/InferenceResult"].data.decode()
    assert "MSG: std_msgs/Header" in definition and "MSG: builtin_interfaces/Time" in definition


def test_goodput_counts_the_settled_seconds_of_saturated_phases():
    # 20 Mbit/s, then 130 and 40 kbit/s, 10 s each; every frame (10 Hz, 4 KB) sent to the base
    collector = SimpleNamespace(
        shaped=[(100.0, 20.0, 20.0), (110.0, 0.13, 20.0), (120.0, 0.04, 20.0)],
        base_load=[(100.5 + s, 10.0 if s < 10 else 3.5 if s < 20 else 1.0) for s in range(30)],
        offload_wanted=[100.05 + 0.1 * k for k in range(300)],
    )
    summary = {"offloaded": 300, "offload_bytes_mean": 4096}
    phases = goodput_phases(collector, summary)
    tensor_mbit = 4096 * 8 / 1e6
    # 20 Mbit/s was not the limit; the first 3 s after each change are not counted
    assert [(p["start_s"], p["mbps"]) for p in phases] == [(10.0, 0.13), (20.0, 0.04)]
    assert phases[0]["capacity_mbit"] == pytest.approx(7 * 0.13)
    assert phases[0]["goodput_ratio"] == pytest.approx(3.5 * tensor_mbit / 0.13)
    assert phases[1]["goodput_ratio"] == pytest.approx(tensor_mbit / 0.04)
    assert goodput_ratio(phases) == pytest.approx(4.5 * tensor_mbit / 0.17)
    # a plan that kept its frames on the drone at 40 kbit/s did not saturate that phase
    collector.offload_wanted = [t for t in collector.offload_wanted if t < 120.0]
    assert [p["mbps"] for p in goodput_phases(collector, summary)] == [0.13]
    assert goodput_ratio(goodput_phases(collector, {**summary, "offloaded": 0})) is None


def test_each_phase_scores_its_live_frames_with_the_simulators_utility():
    world = World.load(workload(DEFAULT_WORKLOAD).profile)
    deadline_s = world.config.deadline_ms / 1000.0
    # two phases of 10 s: right, fast and cheap answers in the first; wrong and late in the
    # second, where 7 frames fell back
    t = np.arange(200) / 10.0
    frames = {"t_s": t, "correct": (t < 10).astype(float),
              "latency_s": np.where(t < 10, 0.01, 0.2),
              "energy_j": np.full(200, 0.05), "fallback": (t >= 10) & (t < 10.7),
              "image": np.arange(200)}  # fmt: skip
    collector = SimpleNamespace(shaped=[(0.0, 20.0, 20.0), (10.0, 0.04, 20.0), (20.0, 0.04, 20.0)],
                                frames=lambda: frames)  # fmt: skip
    phases = phase_utility(collector, world)
    weights, reference = world.config.weights, world.costs.reference_energy_j
    energy = weights.energy_weight(0.9) * 0.05 / reference
    assert [(p["start_s"], p["mbps"], p["frames"], p["fallbacks"]) for p in phases] == [
        (0.0, 20.0, 100, 0),
        (10.0, 0.04, 100, 7),
    ]
    assert phases[0]["utility"] == pytest.approx(1.0 - 0.3 * 0.01 / deadline_s - energy)
    assert phases[1]["utility"] == pytest.approx(-0.3 * 0.2 / deadline_s - energy - 0.5)
    # the table marks the best policy of each phase
    results = {
        "a": {"phase_utility": phases},
        "b": {"phase_utility": [{**phases[0], "utility": 2.0}, phases[1]]},  # equal in 2
    }
    names, rows = phase_rows(results)
    assert names == ["a", "b"] and [row.best for row in rows] == ["b", "a"]
    page = markdown_system(
        {"command": "c", "trace": "t", "duration_s": 20, "rate_hz": 10, "compute_slowdown": 1,
         "sim_profile": "p", "policies": results})  # fmt: skip
    # in phase 2 both answered the same frames alike: a tie
    second = f"{phases[1]['utility']:.3f}"
    assert f"| 0.04 Mbit/s from 10 s | **{second}** | {second} | a | b |" in page
    # and counts each one's fallbacks; a run recorded before they were counted has none to show
    assert "| 0.04 Mbit/s from 10 s | 7 | 7 |" in page
    results["b"]["phase_utility"][1] = {k: v for k, v in phases[1].items() if k != "fallbacks"}
    page = markdown_system(
        {"command": "c", "trace": "t", "duration_s": 20, "rate_hz": 10, "compute_slowdown": 1,
         "sim_profile": "p", "policies": results})  # fmt: skip
    assert "| 0.04 Mbit/s from 10 s | 7 | n/a |" in page
    assert "reference model" not in page  # not measured: not stated
    times = dict(zip(results, (44.0, 42.0), strict=True))
    measured = {name: {**summary, "host_reference_ms": times[name]}
                for name, summary in results.items()}  # fmt: skip
    page = markdown_system(
        {"command": "c", "trace": "t", "duration_s": 20, "rate_hz": 10, "compute_slowdown": 4.5,
         "sim_profile": "p", "policies": measured, "profiled_reference_ms": 40.0,
         "device_reference_ms": 180.0})  # fmt: skip
    assert "machine: 42.0-44.0 ms, against 40.0 ms when the model was profiled" in page
    assert "(1.05-1.10x)" in page and "compute call to 4.5x the profile's time" in page


def test_a_phase_ties_the_policies_within_two_paired_standard_errors_of_the_best():
    rng = np.random.default_rng(0)
    images = np.arange(100)
    best = rng.uniform(0.2, 0.8, 100)  # what the frames themselves make of any policy's utility

    def phase(utility: np.ndarray, order: np.ndarray = images) -> list[dict]:
        per_frame = {"image": images[order].tolist(), "utility": utility[order].tolist()}
        return [{"start_s": 0.0, "mbps": 20.0, "frames": 100, "utility": float(utility.mean()),
                 "frame_utility": per_frame}]  # fmt: skip

    # 0.01 behind on average, by 0.2 either way frame to frame: a standard error of about 0.02
    close = best - 0.01 + rng.normal(0.0, 0.2, 100)
    # 0.03 behind on every frame, give or take 0.01: far more than two standard errors
    behind = best - 0.03 + rng.normal(0.0, 0.01, 100)
    # the same answers, 0.002 slower on every frame: another run of the same plan
    rerun = best - 0.002
    results = {
        "best": {"phase_utility": phase(best)},
        "close": {"phase_utility": phase(close, rng.permutation(100))},  # paired by image
        "behind": {"phase_utility": phase(behind)},
        "rerun": {"phase_utility": phase(rerun)},
    }
    (row,) = phase_rows(results)[1]
    assert row.best == "best" and row.tied == ["close", "rerun"]
    # a unpaired comparison would tie `behind` too: its mean is within 0.03 of the best's, and
    # the frames' own spread (0.17) gives each 100-frame mean a standard error of 0.017
    assert best.mean() - behind.mean() < 2 * np.hypot(best.std(), behind.std()) / 10
    # a run recorded before per-frame utilities were kept: the best, and no tie claimed
    for summary in results.values():
        del summary["phase_utility"][0]["frame_utility"]
    (row,) = phase_rows(results)[1]
    assert row.best == "best" and row.tied is None


def test_resimulate_compares_the_simulator_with_recorded_runs(tmp_path):
    """`bench system --resimulate`: no live run; the simulator against a recorded JSON's runs."""
    rng = np.random.default_rng(1)

    def run(policy: str, utility: float) -> dict:
        phases = [{"start_s": 2.0 * i, "mbps": mbps, "frames": 20, "utility": utility,
                   "frame_utility": {"image": list(range(20 * i, 20 * i + 20)),
                                     "utility": (utility + rng.normal(0, 0.1, 20)).tolist()}}
                  for i, mbps in enumerate((20.0, 0.13, 0.04, 0.13, 20.0))]  # fmt: skip
        return {"policy": policy, "frames_in": 100, "results_out": 100, "duplicate_results": 0,
                "latency_ms_p50": 55.0, "latency_ms_p95": 58.0, "latency_ms_p99": 60.0,
                "accuracy": 0.8, "deadline_miss_rate": 0.0, "energy_j_per_frame": 0.34,
                "frames_without_result": 0, "framework_overhead_ms_p50": 2.0,
                "compute_slowdown_emulated": 2.54, "first_plan_s": 0.0,
                "phase_utility": phases}  # fmt: skip

    recorded = {"command": "edgeml bench system --duration 10", "trace": "throttle",
                "trace_arg": "throttle", "duration_s": 10.0, "rate_hz": 10.0,
                "deadline_ms": 100.0, "compute_slowdown": 2.54,
                "policies": {"edge_only": run("edge_only", 0.3),
                             "neurosurgeon": run("neurosurgeon", 0.9)}}  # fmt: skip
    (tmp_path / "live.json").write_text(json.dumps(recorded))
    out, page = tmp_path / "out.json", tmp_path / "page.md"
    proc = subprocess.run(
        [sys.executable, "-m", "edgeml_ros.cli", "bench", "system", "--resimulate",
         str(tmp_path / "live.json"), "--json", str(out), "--markdown", str(page)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(out.read_text())
    # both run every frame on the drone at the final exit: the simulator's p50 near the live one
    for summary in result["policies"].values():
        assert 0.85 < summary["sim_vs_real_latency_ratio"] < 1.15
    # the per-phase verdicts, for scripts: 0.6 ahead on every frame is no tie
    assert [(p["best"], p["tied"]) for p in result["phases"]] == [("neurosurgeon", [])] * 5
    assert result["phases"][1]["phase"] == "0.13 Mbit/s from 2 s"
    text = page.read_text()
    assert "Live runs by `edgeml bench system --duration 10`, the simulator's columns by" in text
    assert "| 20 Mbit/s from 0 s | 0.300 | **0.900** | neurosurgeon | none |" in text


def test_the_collector_pairs_each_frame_with_its_camera_image(ros_node):
    from edgeml_ros.msg import GroundTruth, InferenceResult

    from edgeml_ros.bringup.collector import Collector, image_key
    from edgeml_ros.core.energy import device_class
    from edgeml_ros.nodes.common import RELIABLE

    collector = Collector(100.0, device_class("raspberry_pi_4"), context=ros_node.context)
    ros_node.executor.add_node(collector)
    truth = ros_node.create_publisher(GroundTruth, "camera/ground_truth", RELIABLE)
    results = ros_node.create_publisher(InferenceResult, "perception/result", RELIABLE)
    assert ros_node.spin_until(
        lambda: truth.get_subscription_count() > 0 and results.get_subscription_count() > 0
    )
    # the camera shows image 7, then 3, then 7 again; the last frame's label never comes
    for seq, index in enumerate((7, 3, 7, 5)):
        header = Header(stamp=Time(sec=100 + seq), frame_id="camera")
        if seq < 3:
            truth.publish(GroundTruth(header=header, class_id=1, dataset_index=index))
            ros_node.spin_until(lambda n=seq: len(collector.truth) > n, 10)
        results.publish(InferenceResult(header=header, frame_seq=seq, class_id=1))
    assert ros_node.spin_until(lambda: len(collector.results) == 4, 10)
    frames = collector.frames()
    assert frames["image"].tolist() == [image_key(7, 0), image_key(3, 0), image_key(7, 1), -1]
    assert len(set(frames["image"].tolist())) == 4
    assert frames["correct"].tolist() == [1.0, 1.0, 1.0, 0.0]
    ros_node.executor.remove_node(collector)
    collector.destroy_node()


def test_a_demo_without_drift_passes_no_schedule_to_the_launch(tmp_path):
    cfg = DemoConfig()
    session = Session(7, None, demo_trace(cfg), DemoModel.of(cfg), {}, 0.0)
    assert "condition_schedule" not in launch_arguments(cfg, session, "rl", tmp_path)
    drifting = replace(cfg, condition_schedule="0:clean,5:blur")
    arguments = launch_arguments(drifting, session, "rl", tmp_path)
    assert arguments["condition_schedule"] == "0:clean,5:blur"


def test_the_demo_times_this_machine_on_the_drones_threads():
    model = DemoModel.of(DemoConfig())
    assert model.reference_now() > 0


def test_a_live_run_refuses_a_policy_its_profile_lacks_the_data_for(capsys):
    # the Fashion-MNIST profile has no image encodings: live, the controller would refuse
    # cloud_png and the drone keep its start-up plan, recorded under cloud_png's name
    fashion = DemoConfig(workload="fashion_mnist", policies=("rl", "cloud_png"))
    with pytest.raises(ValueError, match=r"policy cloud_png needs .* png"):
        live_policies(fashion)
    every = live_policies(replace(fashion, policies=()))
    assert "rl" in every and "cloud_png" not in every and "cloud_jpeg" not in every
    assert "left out: policy cloud_png needs" in capsys.readouterr().err
    assert {"cloud_png", "cloud_jpeg"} <= set(live_policies(DemoConfig(policies=())))
    assert live_policies(replace(fashion, policies=("rl",))) == ("rl",)
