"""Faults, with real node processes over real DDS: no crash, every frame a result or a counted
drop, and recovery (its time is printed with `pytest -s`)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time

import pytest
from edgeml_ros.msg import ExecutionPolicy, InferenceResult, LinkQuality, ResultBatch
from ros_helpers import (
    BASE_YAML,
    DRONE_YAML,
    OK,
    PROFILE_DIGEST,
    RELIABLE,
    RELIABLE_CAMERA,
    Peer,
    image_msg,
    start,
)
from sensor_msgs.msg import BatteryState

from edgeml_ros.bringup.processes import NodeProcess, node_processes, share_file
from edgeml_ros.bringup.shaper import LinkShaper


def test_base_station_killed_and_restarted(ros_node, fmnist_test):
    perception = start(ros_node, "perception", DRONE_YAML, follow_controller=False,
                       exit_thresholds=[2.0, 2.0, 0.0], deadline_ms=3000.0,
                       **RELIABLE_CAMERA)  # fmt: skip
    base = start(ros_node, "offload", BASE_YAML)
    with node_processes([perception, base]) as procs:
        peer = Peer(ros_node)
        peer.wait_for_perception()
        ros_node.spin_until(lambda: False, 2.0)  # the offload node is up
        for i in range(5):
            peer.send(image_msg(fmnist_test.images[i], f"before/{i}"))
        peer.wait_results(5)
        base.proc.kill()  # no goodbye: the base station just vanishes
        base.proc.wait()
        for i in range(5):
            peer.send(image_msg(fmnist_test.images[i], f"down/{i}"))
        peer.wait_results(10)
        restarted = time.monotonic()
        procs.append(start(ros_node, "offload", BASE_YAML))
        recovered, i = None, 0
        while recovered is None and time.monotonic() - restarted < 60:
            peer.send(image_msg(fmnist_test.images[i % 100], f"after/{i}"))
            i += 1
            ros_node.spin_until(lambda: False, 0.2)
            base_answers = [r for r in peer.results
                            if r.header.frame_id.startswith("after")
                            and r.where == InferenceResult.WHERE_BASE]  # fmt: skip
            if base_answers:
                recovered = time.monotonic() - restarted
        results = peer.wait_results(10 + i)
    by_phase = {p: [r for r in results if r.header.frame_id.startswith(p)]
                for p in ("before", "down", "after")}  # fmt: skip
    assert all(r.where == InferenceResult.WHERE_BASE for r in by_phase["before"])
    assert len(by_phase["down"]) == 5
    assert all(r.where == InferenceResult.WHERE_FALLBACK and r.status == OK
               for r in by_phase["down"])  # fmt: skip
    assert recovered is not None and len(by_phase["after"]) == i  # every frame answered
    print(
        f"\n[fault] base station killed: {len(by_phase['down'])} frames fell back, none lost; "
        f"offloads answered again {recovered:.1f} s after the restart"
    )


def test_controller_killed_leaves_perception_on_its_last_plan(ros_node, fmnist_test):
    # the default B-VGG model, so the controller's plans fit it
    perception = NodeProcess("perception", ros_node.domain_id, share_file("config", DRONE_YAML),
                             {**RELIABLE_CAMERA, "max_frame_age_ms": 60000.0})  # fmt: skip
    controller = NodeProcess("controller", ros_node.domain_id, share_file("config", DRONE_YAML),
                             {"policy": "edge_only", "window_s": 0.2})  # fmt: skip
    plans = []
    ros_node.create_subscription(ExecutionPolicy, "execution_policy", plans.append, RELIABLE)
    with node_processes([perception, controller]):
        peer = Peer(ros_node)
        peer.wait_for_perception()
        assert ros_node.spin_until(lambda: bool(plans), 60), "the controller published no plan"
        ros_node.spin_until(lambda: False, 1.0)  # perception applies it
        peer.send(image_msg(fmnist_test.images[0], "with_controller"))
        peer.wait_results(1)
        controller.proc.kill()
        controller.proc.wait()
        killed = time.monotonic()
        for i in range(5):
            peer.send(image_msg(fmnist_test.images[i], f"without/{i}"))
        ros_node.spin_until(lambda: len(peer.results) >= 2, 30)
        first_after_s = time.monotonic() - killed
        results = peer.wait_results(6)
    assert len(results) == 6 and all(r.status == OK for r in results)
    # the safe plan the controller published last (inputs stale): all on the drone
    assert all(r.cut_point == 5 and r.policy_name == "edge_only" for r in results)
    print(
        f"\n[fault] controller killed: perception answered all 5 frames on its last plan, the "
        f"first {first_after_s:.2f} s after the kill"
    )


def test_camera_burst_at_ten_times_the_rate(ros_node, fmnist_test):
    proc = start(ros_node, "perception", DRONE_YAML, follow_controller=False, cut_point=4,
                 compute_slowdown=100.0, max_frame_age_ms=100.0, **RELIABLE_CAMERA)  # fmt: skip
    with node_processes([proc]):
        peer = Peer(ros_node)
        peer.wait_for_perception()
        n = 100
        for i in range(n):  # 100 Hz for a second, against tens of ms per frame (emulated)
            msg = image_msg(fmnist_test.images[i], f"burst/{i}")
            msg.header.stamp = ros_node.get_clock().now().to_msg()
            peer.camera.publish(msg)
            ros_node.spin_until(lambda: False, 0.01)
        burst_end = time.monotonic()
        ros_node.spin_until(lambda: len(peer.results) >= n, 60)
        backlog_cleared_s = time.monotonic() - burst_end
        results = peer.wait_results(n, timeout_s=60)
    assert len(results) == n and len({r.frame_seq for r in results}) == n
    stale = [r for r in results if r.status == InferenceResult.STATUS_STALE]
    answered = [r for r in results if r.status == OK]
    assert stale and answered and len(stale) + len(answered) == n
    print(
        f"\n[fault] camera burst at 10x: {len(answered)} answered, {len(stale)} dropped as "
        f"stale, none lost; backlog cleared {backlog_cleared_s:.2f} s after the burst"
    )


def test_malformed_link_battery_and_result_readings_are_ignored(ros_node, tmp_path):
    policies = []
    ros_node.create_subscription(ExecutionPolicy, "execution_policy", policies.append, RELIABLE)
    link_pub = ros_node.create_publisher(LinkQuality, "link_quality", 10)
    battery_pub = ros_node.create_publisher(BatteryState, "battery_state", 10)
    results_pub = ros_node.create_publisher(ResultBatch, "perception/result_batch", RELIABLE)
    batteries = []  # the simulator's readings (present), not the garbage published here
    ros_node.create_subscription(
        BatteryState, "battery_state", lambda m: m.present and batteries.append(m), 10
    )
    bad_results = ResultBatch(results=[
        InferenceResult(confidence=math.nan, total_ms=5.0, head_ms=5.0),
        InferenceResult(confidence=0.9, total_ms=math.inf, head_ms=math.inf),
        InferenceResult(confidence=7.0, total_ms=-3.0, transfer_ms=math.nan, where=2),
    ], weights_digest=PROFILE_DIGEST)  # fmt: skip
    logs = {name: open(tmp_path / f"{name}.log", "w") for name in ("controller", "battery_sim")}  # noqa: SIM115
    procs = [
        NodeProcess("controller", ros_node.domain_id, share_file("config", DRONE_YAML),
                    {"window_s": 0.2}, log=logs["controller"]),
        NodeProcess("battery_sim", ros_node.domain_id, None, {"publish_period_s": 0.1},
                    log=logs["battery_sim"]),
    ]  # fmt: skip
    with node_processes(procs):
        assert ros_node.spin_until(lambda: bool(policies) and bool(batteries), 30)

        def garbage():
            link_pub.publish(LinkQuality(bandwidth_mbps=math.inf, rtt_ms=math.nan, samples=3))
            battery_pub.publish(BatteryState(percentage=math.nan))
            results_pub.publish(bad_results)
            return False

        ros_node.spin_until(garbage, 2.0)
        count, readings = len(policies), len(batteries)
        assert ros_node.spin_until(lambda: len(policies) > count + 2, 10)  # still publishing
        assert ros_node.spin_until(lambda: len(batteries) > readings + 2, 10)
        assert all(p.alive() for p in procs)
    assert "[stale]" in policies[-1].reason  # the garbage never counted as a reading
    assert all(math.isfinite(b.percentage) for b in batteries)
    controller_log = (tmp_path / "controller.log").read_text()
    assert "ignoring result" in controller_log and "confidence in [0, 1]" in controller_log
    assert "non-finite timings" in (tmp_path / "battery_sim.log").read_text()


@pytest.mark.skipif(LinkShaper.available() is not None, reason="shaping needs root and iproute2")
def test_link_cut_for_ten_seconds(tmp_path):
    trace = tmp_path / "cut.csv"
    trace.write_text("t_s,mbps,rtt_ms\n0,20,20\n6,0,20\n16,20,20\n")
    out = tmp_path / "cut.json"
    cmd = [sys.executable, "-m", "edgeml_ros.cli", "demo", "--duration", "24", "--policy",
           "cloud_only", "--trace", str(trace), "--json", str(out), "--plot", "",
           "--mcap-dir", ""]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    s = json.loads(out.read_text())
    assert s["link_shaped"] and s["frames_without_result"] == 0
    assert s["frames_in"] == s["results_out"]
    assert s["fallbacks"] >= 50  # ten seconds at 10 Hz had no link
    assert s["where"].get("base", 0) > 0  # before the cut and after it came back
    recovery_s = s["longest_offload_gap_s"] - 10.0
    assert 0.0 <= recovery_s < 8.0
    print(
        f"\n[fault] link cut for 10 s: {s['fallbacks']} frames fell back, none lost; offloads "
        f"answered again {recovery_s:.1f} s after the link came back"
    )
