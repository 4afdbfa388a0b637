"""Faults, with real node processes over real DDS: no crash, every frame a result or a counted
drop, and recovery (its time is printed with `pytest -s`). Tests of several nodes start them
through the launch files, as a user does; tests of one node start its executable."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest
from edgeml_ros.msg import ExecutionPolicy, InferenceResult, LinkQuality, ResultBatch
from ros_helpers import (
    BASE_YAML,
    DEFAULTS,
    DRONE_YAML,
    OK,
    PROFILE_DIGEST,
    RELIABLE,
    RELIABLE_CAMERA,
    TINY,
    NodeProcess,
    Peer,
    image_msg,
    node_processes,
    start,
)
from sensor_msgs.msg import BatteryState

from edgeml_ros.bringup.params import write_params
from edgeml_ros.bringup.processes import LaunchProcess, share_file
from edgeml_ros.bringup.shaper import LinkShaper


def test_base_station_killed_and_restarted(ros_node, fmnist_test, tmp_path):
    drone_params = write_params(tmp_path / "drone.yaml", DRONE_YAML, {"perception": {
        **DEFAULTS["perception"], "follow_controller": False, "exit_thresholds": [2.0, 2.0, 0.0],
        "deadline_ms": 3000.0, **RELIABLE_CAMERA}})  # fmt: skip
    base_params = write_params(tmp_path / "base.yaml", BASE_YAML, {"offload": TINY})

    def base_station(log: str) -> LaunchProcess:
        return LaunchProcess("base_station.launch.py", ros_node.domain_id,
                             {"params_file": base_params}, tmp_path / log)  # fmt: skip

    with (
        LaunchProcess("drone.launch.py", ros_node.domain_id, {"params_file": drone_params},
                      tmp_path / "drone.log"),
        base_station("base.log") as base,
    ):  # fmt: skip
        peer = Peer(ros_node)
        peer.wait_for_perception()
        assert ros_node.spin_until(lambda: ros_node.count_subscribers("offload/request") > 0, 60)
        ros_node.spin_until(lambda: False, 2.0)  # the perception node matched the base station
        for i in range(5):  # one at a time: a burst could meet a full offload window under load
            peer.send(image_msg(fmnist_test.images[i], f"before/{i}"))
            peer.wait_results(i + 1)
        base.kill()  # no goodbye: the base station just vanishes
        for i in range(5):
            peer.send(image_msg(fmnist_test.images[i], f"down/{i}"))
        peer.wait_results(10)
        restarted = time.monotonic()
        with base_station("base_restarted.log"):
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


def test_controller_killed_leaves_perception_on_its_last_plan(ros_node, fmnist_test, tmp_path):
    # the default B-VGG model, so the controller's plans fit it
    params = write_params(tmp_path / "drone.yaml", DRONE_YAML, {
        "perception": {**RELIABLE_CAMERA, "max_frame_age_ms": 60000.0},
        "controller": {"window_s": 0.2},
    })  # fmt: skip
    plans = []
    ros_node.create_subscription(ExecutionPolicy, "execution_policy", plans.append, RELIABLE)
    with LaunchProcess("drone.launch.py", ros_node.domain_id,
                       {"params_file": params, "policy": "edge_only"},
                       tmp_path / "drone.log") as drone:  # fmt: skip
        peer = Peer(ros_node)
        peer.wait_for_perception()
        assert ros_node.spin_until(lambda: bool(plans), 60), "the controller published no plan"
        ros_node.spin_until(lambda: False, 1.0)  # perception applies it
        peer.send(image_msg(fmnist_test.images[0], "with_controller"))
        peer.wait_results(1)
        os.kill(drone.node_pids()["controller"], signal.SIGKILL)
        killed = time.monotonic()
        for i in range(5):
            peer.send(image_msg(fmnist_test.images[i], f"without/{i}"))
        ros_node.spin_until(lambda: len(peer.results) >= 2, 30)
        first_after_s = time.monotonic() - killed
        results = peer.wait_results(6)
        assert drone.ended_nodes() == ["controller"]
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


def _bad_results() -> ResultBatch:
    return ResultBatch(results=[
        InferenceResult(confidence=math.nan, total_ms=5.0, head_ms=5.0),
        InferenceResult(confidence=0.9, total_ms=math.inf, head_ms=math.inf),
        InferenceResult(confidence=7.0, total_ms=-3.0, transfer_ms=math.nan, where=2),
    ], weights_digest=PROFILE_DIGEST)  # fmt: skip


def test_controller_ignores_malformed_link_battery_and_result_readings(ros_node, tmp_path):
    policies = []
    ros_node.create_subscription(ExecutionPolicy, "execution_policy", policies.append, RELIABLE)
    link_pub = ros_node.create_publisher(LinkQuality, "link_quality", 10)
    battery_pub = ros_node.create_publisher(BatteryState, "battery_state", 10)
    results_pub = ros_node.create_publisher(ResultBatch, "perception/result_batch", RELIABLE)
    bad_results = _bad_results()
    log = tmp_path / "controller.log"
    proc = NodeProcess("controller", ros_node.domain_id, share_file("config", DRONE_YAML),
                       {"window_s": 0.2}, log=log.open("w"))  # fmt: skip
    with node_processes([proc]):
        assert ros_node.spin_until(lambda: bool(policies), 30)

        def garbage():
            link_pub.publish(LinkQuality(bandwidth_mbps=math.inf, rtt_ms=math.nan, samples=3))
            battery_pub.publish(BatteryState(percentage=math.nan))
            results_pub.publish(bad_results)
            return False

        ros_node.spin_until(garbage, 2.0)
        count = len(policies)
        assert ros_node.spin_until(lambda: len(policies) > count + 2, 10)  # still publishing
        assert proc.alive()
    assert "[stale]" in policies[-1].reason  # the garbage never counted as a reading
    controller_log = log.read_text()
    assert "ignoring result" in controller_log and "confidence in [0, 1]" in controller_log


def test_battery_simulator_ignores_malformed_results(ros_node, tmp_path):
    results_pub = ros_node.create_publisher(ResultBatch, "perception/result_batch", RELIABLE)
    batteries = []
    ros_node.create_subscription(BatteryState, "battery_state", batteries.append, 10)
    bad_results = _bad_results()
    log = tmp_path / "battery_sim.log"
    proc = NodeProcess("battery_sim", ros_node.domain_id, None, {"publish_period_s": 0.1},
                       log=log.open("w"))  # fmt: skip
    with node_processes([proc]):
        assert ros_node.spin_until(lambda: bool(batteries), 30)

        def garbage():
            results_pub.publish(bad_results)
            return False

        ros_node.spin_until(garbage, 2.0)
        readings = len(batteries)
        assert ros_node.spin_until(lambda: len(batteries) > readings + 2, 10)
        assert proc.alive()
    assert all(math.isfinite(b.percentage) for b in batteries)
    assert "non-finite timings" in log.read_text()


@pytest.mark.skipif(LinkShaper.available() is not None, reason="shaping needs root and iproute2")
def test_link_cut_for_ten_seconds(tmp_path):
    trace = tmp_path / "cut.csv"
    trace.write_text("t_s,mbps,rtt_ms\n0,20,20\n6,0,20\n16,20,20\n")
    out = tmp_path / "cut.json"
    # the Fashion-MNIST workload: its frames (3 KB as fp32) offload in time on the 20 Mbit/s
    # link; the drone workload's (110 KB) mostly fall back there even before the cut
    cmd = [sys.executable, "-m", "edgeml_ros.cli", "demo", "--workload", "fashion_mnist",
           "--duration", "24", "--policy", "cloud_only", "--trace", str(trace), "--json",
           str(out), "--plot", "", "--mcap-dir", ""]  # fmt: skip
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
