"""Real nodes as separate processes over real DDS, each test on its own ROS_DOMAIN_ID."""

from __future__ import annotations

import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from edgeml_ros.msg import (
    ExecutionPolicy,
    FeatureTensor,
    GroundTruth,
    InferenceResult,
    LinkProbe,
    LinkQuality,
    ResultBatch,
)
from rcl_interfaces.msg import Log
from rclpy.duration import Duration
from rclpy.parameter import Parameter
from rclpy.qos import (
    DurabilityPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)
from ros_helpers import (
    BAD_INPUT,
    BASE_YAML,
    DEFAULTS,
    DRONE_YAML,
    OK,
    PROFILE_DIGEST,
    REJECTED,
    RELIABLE,
    RELIABLE_CAMERA,
    TINY,
    TINY_DIGEST,
    NodeProcess,
    Peer,
    image_msg,
    node_processes,
    param_setter,
    start,
)
from sensor_msgs.msg import BatteryState, CompressedImage, Image

from edgeml_ros.bringup.params import write_params
from edgeml_ros.bringup.processes import LaunchProcess, share_file
from edgeml_ros.core.checkpoint import TINY_CHECKPOINT
from edgeml_ros.core.data import open_dataset
from edgeml_ros.core.link import probe_wire_bytes
from edgeml_ros.core.profiles import load_profile
from edgeml_ros.core.workloads import workload
from edgeml_ros.nodes.common import PROBES

RTT_MS = 40.0  # the base station's emulated round trip where a test holds its messages


def test_every_frame_gets_one_result_with_exits_and_offloads(ros_node, fmnist_test):
    procs = [
        start(ros_node, "offload", BASE_YAML),
        # accounting, not speed: a deadline no CI stall reaches, so offloads are answered
        start(
            ros_node,
            "perception",
            DRONE_YAML,
            follow_controller=False,
            deadline_ms=10000.0,
            **RELIABLE_CAMERA,
        ),
    ]
    with node_processes(procs):
        peer = Peer(ros_node)
        peer.wait_for_perception()
        assert ros_node.spin_until(lambda: ros_node.count_subscribers("offload/request") > 0, 60)
        # the perception node's writer matches the base station's reader a moment after this
        # node sees that reader; offloads sent before are lost and hold the window for 2 s
        ros_node.spin_until(lambda: False, 1.0)
        n = 60
        for i in range(n):
            peer.send(image_msg(fmnist_test.images[i], f"cam/{i}"))
        results = peer.wait_results(n)
    assert len(results) == n
    assert sorted(int(r.header.frame_id.split("/")[1]) for r in results) == list(range(n))
    assert len({r.frame_seq for r in results}) == n
    assert all(r.status == OK for r in results)
    where = {r.where for r in results}
    assert InferenceResult.WHERE_DRONE in where and InferenceResult.WHERE_BASE in where
    accuracy = np.mean(
        [r.class_id == fmnist_test.labels[int(r.header.frame_id[4:])] for r in results]
    )
    assert accuracy > 0.75
    offloaded = [r for r in results if r.where == InferenceResult.WHERE_BASE]
    assert all(r.offload_bytes > 0 and r.cut_point == 2 for r in offloaded)


def test_bad_images_get_error_results_and_node_keeps_running(ros_node, fmnist_test):
    with node_processes([start(ros_node, "perception", DRONE_YAML, cut_point=4)]):
        peer = Peer(ros_node)
        peer.wait_for_perception()
        good = fmnist_test.images[0]
        peer.send(image_msg(np.zeros((2, 4), np.uint8), "yuv", encoding="yuv422"))
        peer.send(image_msg(np.zeros((0, 0), np.uint8), "empty"))
        peer.send(image_msg(good, "short_step", step=10))
        peer.send(image_msg(good[:, :27].copy(), "data_mismatch", step=28))
        peer.send(image_msg(good, "good"))
        results = {r.header.frame_id: r for r in peer.wait_results(5)}
    assert len(peer.results) == 5
    assert "unsupported encoding 'yuv422'" in results["yuv"].reason
    assert "zero-size" in results["empty"].reason
    assert "step 10 is less than" in results["short_step"].reason
    assert "data has" in results["data_mismatch"].reason
    for key in ("yuv", "empty", "short_step", "data_mismatch"):
        assert results[key].status == BAD_INPUT and results[key].class_id == -1
    assert results["good"].status == OK


def test_offload_node_rejects_lying_tensors(ros_node, bundle):
    replies: list[InferenceResult] = []
    ros_node.create_subscription(InferenceResult, "offload/reply", replies.append, RELIABLE)
    pub = ros_node.create_publisher(FeatureTensor, "offload/request", RELIABLE)
    meta = bundle.meta

    def tensor(seq, shape=(1, 32, 7, 7), nbytes=None, model_id=meta.model_id):
        msg = FeatureTensor(frame_seq=seq, model_id=model_id, weights_digest=meta.weights_digest)
        msg.cut_point, msg.shape, msg.dtype = 2, list(shape), "float32"
        msg.encoding, msg.compression = "fp32", "none"
        msg.data = bytes(nbytes if nbytes is not None else 4 * int(np.prod(shape)))
        return msg

    with node_processes([start(ros_node, "offload", BASE_YAML, max_payload_bytes=65536)]):
        # a well-formed probe, resent until answered: both directions are matched after it
        answered = False
        for _ in range(60):
            pub.publish(tensor(0))
            answered = ros_node.spin_until(lambda: any(r.frame_seq == 0 for r in replies), 1.0)
            if answered:
                break
        assert answered, "the offload node never answered the well-formed probe"
        pub.publish(tensor(1, nbytes=100))  # shape does not match the bytes
        pub.publish(tensor(2, shape=(1, 3, 7, 7)))  # shape does not match the cut
        pub.publish(tensor(3, model_id="other/model"))
        pub.publish(tensor(4, nbytes=100_000))  # oversized
        pub.publish(tensor(5))  # well-formed
        ros_node.spin_until(lambda: {1, 2, 3, 4, 5} <= {r.frame_seq for r in replies}, 30)
    by_seq = {r.frame_seq: r for r in replies if r.frame_seq != 0}
    assert sorted(by_seq) == [1, 2, 3, 4, 5]
    assert by_seq[1].status == REJECTED and "payload has 100 bytes" in by_seq[1].reason
    assert by_seq[2].status == REJECTED and "does not match cut 2" in by_seq[2].reason
    assert by_seq[3].status == REJECTED and "model_id 'other/model'" in by_seq[3].reason
    assert by_seq[4].status == REJECTED and "exceeds 65536" in by_seq[4].reason
    assert by_seq[5].status == OK and by_seq[5].where == InferenceResult.WHERE_BASE


def test_no_base_station_means_fallbacks_not_lost_frames(ros_node, fmnist_test):
    proc = start(
        ros_node,
        "perception",
        DRONE_YAML,
        follow_controller=False,
        deadline_ms=100.0,
        exit_thresholds=[2.0, 2.0, 0.0],
        **RELIABLE_CAMERA,
    )
    with node_processes([proc]):
        peer = Peer(ros_node)
        peer.wait_for_perception()
        for i in range(10):
            peer.send(image_msg(fmnist_test.images[i], f"cam/{i}"))
        results = peer.wait_results(10)
    assert len(results) == 10
    assert all(r.where == InferenceResult.WHERE_FALLBACK and r.status == OK for r in results)
    # the fallback left time to finish the model on the drone (whether the executor met the
    # deadline is a matter for the benchmarks, not a timed test on a loaded machine); with two
    # unanswered offloads on the link, later frames finish on the drone without offloading
    assert all(r.exit_index == 2 for r in results)
    timed_out = [r for r in results if r.reason.startswith("no offload reply in time")]
    window_full = [r for r in results if r.reason.startswith("2 offloads already in flight")]
    assert len(timed_out) >= 2 and window_full and len(timed_out) + len(window_full) == 10
    assert all(r.offload_bytes == 0 for r in window_full)


def test_controller_runs_the_learned_policy_with_safe_modes(ros_node):
    # The controller runs the default B-VGG profile and its committed policies (no model).
    policies: list[ExecutionPolicy] = []
    ros_node.create_subscription(ExecutionPolicy, "execution_policy", policies.append, RELIABLE)
    link_pub = ros_node.create_publisher(LinkQuality, "link_quality", 10)
    battery_pub = ros_node.create_publisher(BatteryState, "battery_state", 10)

    def latest_after(publish, predicate):
        def check():
            publish()
            return bool(policies) and predicate(policies[-1])

        return ros_node.spin_until(check, 20)

    def inputs(soc):
        def publish():
            link_pub.publish(LinkQuality(bandwidth_mbps=20.0, rtt_ms=15.0, samples=5))
            battery_pub.publish(BatteryState(percentage=soc))

        return publish

    proc = NodeProcess("controller", ros_node.domain_id, share_file("config", DRONE_YAML),
                       {"window_s": 0.2})  # fmt: skip
    with node_processes([proc]):
        assert latest_after(lambda: None, lambda p: "[stale]" in p.reason and p.cut_point == 5)
        assert latest_after(inputs(0.8), lambda p: "[policy] rl:" in p.reason)
        assert policies[-1].policy_name == "rl"
        assert latest_after(inputs(0.05), lambda p: "[battery_critical]" in p.reason)
        assert policies[-1].exit_thresholds[0] == 0.0
        set_param = param_setter(ros_node, "controller")
        assert set_param("policy", "oracle").reason.startswith("policy: 'oracle' is not one of")
        # a policy from its committed file (the planner's table), then one built by rule
        assert set_param("policy", "planner").successful
        assert latest_after(inputs(0.8), lambda p: p.policy_name == "planner")
        assert set_param("policy", "spinn").successful
        assert latest_after(inputs(0.8), lambda p: p.policy_name == "spinn")
        assert policies[-1].weights_digest == PROFILE_DIGEST  # the model the plan is for

        # results of another model stop the plans, until the profile's model answers again
        results_pub = ros_node.create_publisher(ResultBatch, "perception/result_batch", RELIABLE)
        diagnostics: list[DiagnosticArray] = []
        ros_node.create_subscription(DiagnosticArray, "/diagnostics", diagnostics.append, 10)

        def results_of(digest):
            def publish():
                inputs(0.8)()
                results_pub.publish(ResultBatch(weights_digest=digest))

            return publish

        other = results_of("sha256:" + "0" * 64)

        def mismatch_reported():
            other()
            return any(kv.key == "model_mismatch" and "perception node runs" in kv.value
                       for a in diagnostics for st in a.status for kv in st.values)  # fmt: skip

        assert ros_node.spin_until(mismatch_reported, 20)
        ros_node.spin_until(lambda: other() and False, 0.5)  # a plan already on its way
        stopped = len(policies)
        ros_node.spin_until(lambda: other() and False, 1.5)
        assert len(policies) == stopped
        assert latest_after(results_of(PROFILE_DIGEST), lambda p: len(policies) > stopped)


def test_a_controller_told_another_deadline_warns_its_policy_was_trained_for_one(ros_node):
    # A saved policy chooses for the deadline it was trained for (100 ms, the drone profile's):
    # the controller says so at configure and on every change of deadline_ms.
    warnings: list[str] = []
    ros_node.create_subscription(
        Log, "/rosout",
        lambda m: m.level == Log.WARN and m.name == "controller" and warnings.append(m.msg),
        QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                   durability=DurabilityPolicy.TRANSIENT_LOCAL),
    )  # fmt: skip
    proc = NodeProcess("controller", ros_node.domain_id, share_file("config", DRONE_YAML),
                       {"window_s": 0.2, "deadline_ms": 150.0})  # fmt: skip

    def warned(deadline: str) -> bool:
        return any(f"trained for deadline_ms 100.0, not {deadline}" in w for w in warnings)

    with node_processes([proc]):
        assert ros_node.spin_until(lambda: warned("150.0"), 20), warnings
        assert param_setter(ros_node, "controller")("deadline_ms", 80.0).successful
        assert ros_node.spin_until(lambda: warned("80.0"), 10), warnings
        assert param_setter(ros_node, "controller")("policy", "spinn").successful
        ros_node.spin_until(lambda: False, 1.0)
        assert sum("spinn" in w for w in warnings) == 0  # built by rule: no training to differ


def test_policy_update_changes_perception(ros_node, fmnist_test):
    policy_pub = ros_node.create_publisher(
        ExecutionPolicy,
        "execution_policy",
        QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=1),
    )
    with node_processes([start(ros_node, "perception", DRONE_YAML)]):
        peer = Peer(ros_node)
        peer.wait_for_perception()
        policy = ExecutionPolicy(cut_point=4, exit_thresholds=[2.0, 2.0, 0.0], exit_rule="entropy",
                                 weights_digest=TINY_DIGEST)  # fmt: skip
        policy.encoding, policy.compression, policy.policy_name = "fp32", "none", "test"
        policy_pub.publish(policy)
        ros_node.spin_until(lambda: False, 1.0)
        peer.send(image_msg(fmnist_test.images[0], "after"))
        bad = ExecutionPolicy(cut_point=9, exit_thresholds=[0.5], exit_rule="max_prob",
                              weights_digest=TINY_DIGEST)  # fmt: skip
        bad.encoding, bad.compression, bad.policy_name = "fp32", "none", "broken"
        policy_pub.publish(bad)  # refused: the node keeps the previous policy
        ros_node.spin_until(lambda: False, 1.0)
        peer.send(image_msg(fmnist_test.images[1], "after_bad"))
        other = ExecutionPolicy(cut_point=0, exit_thresholds=[2.0, 2.0, 0.0], exit_rule="entropy",
                                weights_digest="sha256:" + "0" * 64)  # fmt: skip
        other.encoding, other.compression, other.policy_name = "fp32", "none", "other_model"
        policy_pub.publish(other)  # a fitting plan, made for other weights: refused
        ros_node.spin_until(lambda: False, 1.0)
        peer.send(image_msg(fmnist_test.images[2], "after_other"))
        results = {r.header.frame_id: r for r in peer.wait_results(3)}
    for key in ("after", "after_bad", "after_other"):
        r = results[key]
        assert r.cut_point == 4 and r.policy_name == "test"
        assert r.where == InferenceResult.WHERE_DRONE and r.exit_index == 2


@pytest.mark.parametrize("follow_controller", [False])
def test_parameters_are_validated_and_applied_live(ros_node, fmnist_test, follow_controller):
    proc = start(ros_node, "perception", DRONE_YAML, follow_controller=follow_controller)
    with node_processes([proc]):
        peer = Peer(ros_node)
        peer.wait_for_perception()
        set_param = param_setter(ros_node, "perception")
        assert not set_param("cut_point", 9).successful
        res = set_param("exit_thresholds", [0.5, 0.5])
        assert not res.successful and "needs 3 values" in res.reason
        res = set_param("encoding", "bf16")
        assert not res.successful and "'bf16' is not one of" in res.reason
        assert not set_param("compute_slowdown", 0.5).successful
        assert set_param("cut_point", 4).successful
        peer.send(image_msg(fmnist_test.images[0], "after"))
        [result] = peer.wait_results(1)
    assert result.cut_point == 4 and result.where == InferenceResult.WHERE_DRONE


def test_compressed_stale_and_annotated_frames_probes_and_battery(ros_node, fmnist_test):
    import io

    from PIL import Image as PILImage

    annotated, links, batteries, echoes = [], [], [], []
    ros_node.create_subscription(Image, "perception/annotated", annotated.append, RELIABLE)
    ros_node.create_subscription(LinkQuality, "link_quality", links.append, 10)
    ros_node.create_subscription(LinkProbe, "link/probe_echo", echoes.append, PROBES)
    ros_node.create_subscription(BatteryState, "battery_state", batteries.append, 10)
    compressed_pub = ros_node.create_publisher(
        CompressedImage, "camera/image_raw/compressed", RELIABLE
    )
    procs = [
        start(ros_node, "offload", BASE_YAML, emulated_rtt_ms=RTT_MS),
        start(ros_node, "perception", DRONE_YAML, follow_controller=False, annotate_rate_hz=50.0,
              max_frame_age_ms=1500.0, image_transport="compressed",
              **{"qos_overrides./camera/image_raw/compressed.subscription.reliability":
                 "reliable"}),
        start(ros_node, "link_monitor", DRONE_YAML, probe_period_s=0.1),
        start(ros_node, "battery_sim", initial_soc=0.8, flight_drain_per_s=0.01),
    ]  # fmt: skip

    def png(index: int, frame_id: str, age_s: float = 0.0) -> CompressedImage:
        data = io.BytesIO()
        PILImage.fromarray(fmnist_test.images[index]).save(data, format="PNG")
        msg = CompressedImage(format="png", data=data.getvalue())
        msg.header.frame_id = frame_id
        msg.header.stamp = (ros_node.get_clock().now() - Duration(seconds=age_s)).to_msg()
        return msg

    with node_processes(procs):
        peer = Peer(ros_node)
        assert ros_node.spin_until(lambda: compressed_pub.get_subscription_count() > 0, 60)
        ros_node.spin_until(lambda: False, 0.5)
        compressed_pub.publish(png(5, "png"))
        compressed_pub.publish(png(6, "old", age_s=2.0))  # two seconds old on arrival: dropped
        compressed_pub.publish(png(7, "fresh"))
        results = {r.header.frame_id: r for r in peer.wait_results(3)}
        # probes sent before the base station was up time out; then every probe is answered
        # (waiting until the estimate rests on several: the first echoes can clear the loss
        # before four measurements are in)
        assert ros_node.spin_until(
            lambda: links and links[-1].loss_ratio == 0 and links[-1].samples >= 4, 30
        )
        assert ros_node.spin_until(lambda: len(batteries) >= 3, 20)
        # the echoes the link monitor read reach this node too (its reader may match later)
        assert ros_node.spin_until(lambda: len(echoes) >= 2, 20)
    assert results["png"].status == OK and results["png"].class_id == fmnist_test.labels[5]
    assert results["old"].status == InferenceResult.STATUS_STALE and "old" in results["old"].reason
    assert results["fresh"].status == OK
    assert annotated and annotated[0].encoding == "rgb8" and annotated[0].width == 256
    # the base station echoed the probes, each held for the emulated round trip: no loss
    assert RTT_MS <= links[-1].rtt_ms < RTT_MS + 100
    assert links[-1].bandwidth_mbps > 0 and links[-1].samples >= 4
    # each echo says when the base station received its probe (on its clock), in order
    received = [e.received.sec + e.received.nanosec * 1e-9 for e in echoes]
    assert received and min(received) > 0 and received == sorted(received)
    assert 0 < batteries[-1].percentage < batteries[0].percentage <= 0.8


def test_link_monitor_measures_trains_and_defers_to_the_offload_window(ros_node):
    """This test is the base station: it echoes the link monitor's probes stamped with when
    they would have come over a 0.5 Mbit/s link, and publishes the perception node's batches."""
    links, probes, link = [], [], {"free_at": 0.0, "up": True, "rate": 0.5e6 / 8}
    echo_pub = ros_node.create_publisher(LinkProbe, "link/probe_echo", PROBES)

    def echo(msg: LinkProbe) -> None:
        probes.append(msg.seq)
        if not link["up"]:
            return
        on_link_s = probe_wire_bytes(len(msg.payload)) / link["rate"]
        came = max(time.monotonic(), link["free_at"]) + on_link_s
        link["free_at"] = came
        reply = LinkProbe(header=msg.header, seq=msg.seq)
        reply.received.sec, reply.received.nanosec = divmod(round(came * 1e9), 10**9)
        echo_pub.publish(reply)

    ros_node.create_subscription(LinkProbe, "link/probe", echo, PROBES)
    ros_node.create_subscription(LinkQuality, "link_quality", links.append, 10)
    batches = ros_node.create_publisher(ResultBatch, "perception/result_batch", RELIABLE)

    def reads(mbps: float):
        return lambda: links and links[-1].bandwidth_mbps == pytest.approx(mbps, rel=0.1)

    def feed(batch: ResultBatch, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            batches.publish(batch)
            ros_node.spin_until(lambda: False, 0.25)

    with node_processes([start(ros_node, "link_monitor", DRONE_YAML)]):
        assert ros_node.spin_until(reads(0.5), 30)  # the trains measured the link
        # trains of 16 (the first may have gone before this node was discovered)
        assert probes == list(range(probes[0], probes[0] + len(probes))) and len(probes) >= 16
        # the link slows to 37 kbit/s: the next train reads it slower, perception's window holds
        # frames back and its replies show 37 kbit/s: the offloads fill the link; the estimate
        # is their rate, and while replies come no probe goes
        link["rate"] = 37e3 / 8
        full = ResultBatch(
            results=[InferenceResult(where=InferenceResult.WHERE_FALLBACK, offload_bytes=4096)],
            offload_delivery_kbps=37.0,
            offloads_held_back=2,
            offload_replies=1,
        )
        end = time.monotonic() + 10.0
        while not reads(0.037)() and time.monotonic() < end:
            feed(full, 0.25)
        sent = len(probes)
        feed(full, 2.0)
        assert len(probes) == sent and reads(0.037)()
        # a report no link sends is refused; the node keeps its estimate
        full.offload_delivery_kbps = float("nan")
        feed(full, 0.5)
        assert reads(0.037)()
        # the train length changes at run time, within its range
        set_param = param_setter(ros_node, "link_monitor")
        assert not set_param("probe_train_length", 1).successful
        assert set_param("probe_train_length", 4).successful
        # no more batches, the link at 0.5 Mbit/s again: trains again, of four probes
        link["rate"] = 0.5e6 / 8
        sent = len(probes)
        assert ros_node.spin_until(lambda: len(probes) >= sent + 8, 30)
        assert probes[sent + 4] == probes[sent + 3] + 1
        assert ros_node.spin_until(reads(0.5), 10)  # with the next publication
        # the base station stops answering: an outage
        link["up"] = False
        assert ros_node.spin_until(lambda: links[-1].bandwidth_mbps == 0.0, 10)
        assert links[-1].loss_ratio == 1.0


def test_one_base_station_serves_several_drones(ros_node, fmnist_test, tmp_path):
    drones = ("drone1", "drone2")
    peers = {d: Peer(ros_node, d) for d in drones}
    serving = {"offload": {**TINY, "drone_namespaces": list(drones)}}
    base_params = write_params(tmp_path / "base.yaml", BASE_YAML, serving)
    drone_params = write_params(tmp_path / "drone.yaml", DRONE_YAML, {"perception": {
        **DEFAULTS["perception"], "exit_thresholds": [2.0, 2.0, 0.0], "follow_controller": False,
        "deadline_ms": 5000.0, **RELIABLE_CAMERA,
        "max_offloads_in_flight": 20,  # frames come faster than replies here
    }})  # fmt: skip
    launches = [LaunchProcess("base_station.launch.py", ros_node.domain_id,
                              {"params_file": base_params}, tmp_path / "base.log")]  # fmt: skip
    launches += [LaunchProcess("drone.launch.py", ros_node.domain_id,
                               {"namespace": d, "params_file": drone_params},
                               tmp_path / f"{d}.log") for d in drones]  # fmt: skip
    try:
        for peer in peers.values():
            peer.wait_for_perception()
            peer.wait_for_base(fmnist_test.images[0])
        for i in range(10):
            for d in drones:
                peers[d].send(image_msg(fmnist_test.images[i], f"{d}/{i}"))
            # a camera's pace: faster, replies from the shared base station come after the
            # next frame, and the drones' offload pacing reads that as a slow link
            ros_node.spin_until(lambda: False, 0.1)
        ros_node.spin_until(lambda: all(len(p.results) >= 10 for p in peers.values()), 30)
    finally:
        for launch in reversed(launches):
            launch.stop()
    results = {d: peer.results for d, peer in peers.items()}
    for d in drones:
        assert len(results[d]) == 10
        assert all(r.status == OK for r in results[d])
        # the base station answers them; now and then the drone's pacing finishes one at once
        served = [r for r in results[d] if r.where == InferenceResult.WHERE_BASE]
        assert len(served) >= 8, [r.reason for r in results[d] if r not in served]
        assert all(r.header.frame_id.startswith(d) for r in results[d])


@pytest.mark.parametrize(
    ("dataset", "encoding", "size"),
    [("drone_scenes", "rgb8", 96), ("fashion_mnist", "mono8", 28)],
)
def test_camera_source_publishes_frames_at_their_resolution(ros_node, dataset, encoding, size):
    images: list[Image] = []
    truth: list[GroundTruth] = []
    ros_node.create_subscription(Image, "camera/image_raw", images.append,
                                 qos_profile_sensor_data)  # the camera's QoS  # fmt: skip
    ros_node.create_subscription(GroundTruth, "camera/ground_truth", truth.append, RELIABLE)
    proc = start(ros_node, "camera_source", DRONE_YAML, dataset=dataset, rate_hz=20.0,
                 max_frames=3)  # fmt: skip
    with node_processes([proc]):
        assert ros_node.spin_until(lambda: len(images) >= 3 and len(truth) >= 3, 30)
    expected = open_dataset(dataset).frames("test")
    for i, (image, label) in enumerate(zip(images[:3], truth[:3], strict=True)):
        pixels, class_id = expected[i]
        assert (image.encoding, image.height, image.width) == (encoding, size, size)
        assert bytes(image.data) == pixels.tobytes()
        assert label.header == image.header and label.class_id == class_id


def test_the_controller_ships_frames_as_png_then_jpeg_to_the_base_station(
    ros_node, bundle, fmnist_test, tmp_path
):
    """cloud_png and cloud_jpeg live: the controller's plan makes the perception node ship each
    camera frame at cut 0 as PNG, then JPEG, and the base station answers every one; for PNG
    (lossless) with the class the whole model gives on the drone."""
    import torch

    from edgeml_ros.core.energy import device_class
    from edgeml_ros.core.images import decode_image, to_model_input
    from edgeml_ros.core.profiles import profile_model
    from edgeml_ros.core.runtime import SplitRunner
    from edgeml_ros.core.train import split_frames
    from edgeml_ros.nodes.common import OFFLOAD

    frames, labels = split_frames(bundle.meta, "validation")  # the controller's tiny profile
    profile, tables = profile_model(bundle, {"clean": frames[:300]}, labels[:300],
                                    device_class("jetson_nano"), runs=2)  # fmt: skip
    profile.save(tmp_path / "tiny.json", tables)
    torch.set_num_threads(1)  # as the offload node below (its default): the reference computes so
    runner, meta = SplitRunner(bundle.model), bundle.meta
    link_pub = ros_node.create_publisher(LinkQuality, "link_quality", 10)
    battery_pub = ros_node.create_publisher(BatteryState, "battery_state", 10)
    requests: list[FeatureTensor] = []
    ros_node.create_subscription(FeatureTensor, "offload/request", requests.append, OFFLOAD)
    peer = Peer(ros_node)

    def fresh_readings() -> None:
        link_pub.publish(LinkQuality(bandwidth_mbps=20.0, rtt_ms=15.0, samples=5))
        battery_pub.publish(BatteryState(percentage=0.8))

    def answered_by(policy: str, n: int) -> list[InferenceResult]:
        """Once a frame is answered under `policy`, `n` frames more and their results."""
        sent = 0
        while not any(r.policy_name == policy for r in peer.results) and sent < 60:
            fresh_readings()
            peer.send(image_msg(fmnist_test.images[0], "warm-up"))
            sent += 1
            ros_node.spin_until(lambda sent=sent: len(peer.results) >= sent, 1.0)
        assert ros_node.spin_until(lambda: len(peer.results) >= sent, 30), policy
        assert peer.results[-1].policy_name == policy, "the plan never reached perception"
        peer.results.clear()
        requests.clear()
        # fresh readings for longer than the controller's window: its plan is not the stale
        # one (all on the drone) that a long wait for the warm-up's results may have brought
        idle(0.5)
        for i in range(n):  # one at a time: none is held back for an offload in flight
            fresh_readings()
            peer.send(image_msg(fmnist_test.images[i], f"{policy}/{i}"))
            ros_node.spin_until(lambda i=i: len(peer.results) > i, 10.0)
            idle(0.3)  # the offload window sees an idle link
        return peer.wait_results(n)

    def idle(seconds: float) -> None:
        """Spin for `seconds`, the link and battery readings kept fresh."""
        for _ in range(round(seconds / 0.1)):
            fresh_readings()
            ros_node.spin_until(lambda: False, 0.1)

    controller = NodeProcess("controller", ros_node.domain_id, share_file("config", DRONE_YAML),
                             {"profile": str(tmp_path / "tiny.json"), "policy": "cloud_png",
                              "window_s": 0.2})  # fmt: skip
    procs = [
        start(ros_node, "offload", BASE_YAML),
        start(ros_node, "perception", DRONE_YAML, deadline_ms=10000.0, **RELIABLE_CAMERA),
        controller,
    ]
    n = 20
    with node_processes(procs):
        peer.wait_for_perception()
        png = answered_by("cloud_png", n)
        png_requests = list(requests)
        assert param_setter(ros_node, "controller")("policy", "cloud_jpeg").successful
        jpeg = answered_by("cloud_jpeg", n)
        jpeg_requests = list(requests)

    def local(i: int):  # the whole model on the drone's input
        pixels = decode_image("mono8", 28, 28, 28, False, fmnist_test.images[i].tobytes())
        x = to_model_input(pixels, tuple(meta.input_size), meta.norm_mean, meta.norm_std)
        return runner.run_tail(x, 0)

    for results in (png, jpeg):
        assert len(results) == n
        odd = [(r.header.frame_id, r.status, r.where, r.policy_name, r.reason)
               for r in results
               if r.status != OK or r.where != InferenceResult.WHERE_BASE]  # fmt: skip
        assert not odd
        assert all(r.cut_point == 0 and r.offload_bytes > 0 for r in results)
        assert np.mean([r.offload_bytes for r in results]) < 784  # less than the raw frame
    same = [r.class_id == local(int(r.header.frame_id.split("/")[1])).class_id for r in png]
    assert all(same) and all(r.exit_index == 2 for r in png)
    agree = [r.class_id == local(int(r.header.frame_id.split("/")[1])).class_id for r in jpeg]
    assert sum(agree) >= 0.8 * n
    for sent, encodings in ((png_requests, {"png"}), (jpeg_requests, {"jpeg90", "jpeg75",
                                                                     "jpeg50"})):  # fmt: skip
        assert sent and {m.encoding for m in sent} <= encodings, [m.encoding for m in sent]
        assert all((list(m.shape), m.dtype, m.cut_point) == ([28, 28, 1], "uint8", 0)
                   for m in sent)  # fmt: skip


def test_perception_emulates_only_with_a_profile_of_its_own_model():
    import rclpy

    from edgeml_ros.bringup.processes import private_domain_id
    from edgeml_ros.nodes.perception import PerceptionNode

    drone = workload("drone")

    def configured(checkpoint, profile) -> PerceptionNode:
        node = PerceptionNode()
        node.set_parameters([Parameter("checkpoint", value=str(checkpoint)),
                             Parameter("emulate_profile", value=str(profile))])  # fmt: skip
        node.trigger_configure()
        return node

    with private_domain_id() as domain_id:
        rclpy.init(args=["--ros-args", "-p", "autostart:=false", "-p", "compute_slowdown:=3.0"],
                   domain_id=domain_id)  # fmt: skip
        try:
            # the drone workload's profile is of another model than the tiny one: refused on
            # configure, naming the parameter
            other = configured(TINY_CHECKPOINT, drone.profile)
            assert other.lifecycle_state == "unconfigured" and other.pipeline is None
            assert other._failure.startswith("configure failed: emulate_profile: the profile is")
            other.destroy_node()
            # its own profile: the drone pads to 3x the calibrated times (scaled, plus a fixed
            # time per call) and plans with them
            own = configured(drone.checkpoint, drone.profile)
            assert own.lifecycle_state == "inactive"
            profile = load_profile(drone.profile)[0]
            cal, profiled = profile.calibrated, profile.times_ms()
            assert cal.drone_call_ms > 0
            assert own.pipeline.local_times.finish(0) == pytest.approx(
                3.0 * (cal.drone_scale * profiled.finish(0) + cal.drone_call_ms) / 1e3
            )
            own.destroy_node()
        finally:
            rclpy.shutdown()
