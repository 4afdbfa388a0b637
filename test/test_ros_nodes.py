"""Real nodes as separate processes over real DDS, each test on its own ROS_DOMAIN_ID."""

from __future__ import annotations

import numpy as np
import pytest
from edgeml_ros.msg import ExecutionPolicy, FeatureTensor, InferenceResult, LinkQuality
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import BatteryState, Image

from edgeml_ros.bringup.processes import NodeProcess, node_processes, share_file
from edgeml_ros.core.checkpoint import TINY_CHECKPOINT

RELIABLE = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
OK, BAD_INPUT, REJECTED = (
    InferenceResult.STATUS_OK,
    InferenceResult.STATUS_BAD_INPUT,
    InferenceResult.STATUS_OFFLOAD_REJECTED,
)
DRONE_YAML, BASE_YAML = "drone.yaml", "base_station.yaml"
# The camera subscription defaults to best-effort sensor QoS (a late frame is dropped by DDS
# before it reaches the node). Tests that count frames override it to reliable, through the
# QoS override parameters any user has.
RELIABLE_CAMERA = {
    "qos_overrides./camera/image_raw.subscription.reliability": "reliable",
    "qos_overrides./camera/image_raw.subscription.depth": 100,
}


# The tests run the tiny four-block model (exits after blocks 0 and 1, final after block 3).
TINY = {"checkpoint": str(TINY_CHECKPOINT)}
THRESHOLDS = [0.95, 0.95, 0.0]
DEFAULTS = {
    "perception": {**TINY, "cut_point": 2, "exit_thresholds": THRESHOLDS},
    "controller": {**TINY, "offload_cut": 2, "exit_thresholds": THRESHOLDS},
}


def start(node, executable, params_file=None, **overrides):
    params = share_file("config", params_file) if params_file else None
    overrides = {**DEFAULTS.get(executable, TINY), **overrides}
    return NodeProcess(executable, node.domain_id, params, overrides)


def image_msg(pixels: np.ndarray, frame_id: str, encoding="mono8", step=None) -> Image:
    msg = Image(height=pixels.shape[0], width=pixels.shape[1], encoding=encoding)
    msg.step = pixels.shape[1] if step is None else step
    msg.data = pixels.tobytes()
    msg.header.frame_id = frame_id
    return msg


class Peer:
    """The test's side of the conversation: camera publisher and result collector."""

    def __init__(self, node):
        self.node = node
        self.results: list[InferenceResult] = []
        self.camera = node.create_publisher(Image, "camera/image_raw", RELIABLE)
        self.result_sub = node.create_subscription(
            InferenceResult, "perception/result", self.results.append, RELIABLE
        )

    def wait_for_perception(self):
        """Wait until both directions are matched; best-effort camera frames sent before
        discovery completes never reach the node (and so are not frames it lost)."""
        assert self.node.spin_until(
            lambda: (
                self.camera.get_subscription_count() > 0
                and self.result_sub.get_publisher_count() > 0
            ),
            60,
        ), "perception node did not come up"
        self.node.spin_until(lambda: False, 0.5)

    def send(self, msg: Image):
        msg.header.stamp = self.node.get_clock().now().to_msg()
        self.camera.publish(msg)
        self.node.spin_until(lambda: False, 0.03)

    def wait_results(self, n: int, timeout_s=30.0) -> list[InferenceResult]:
        self.node.spin_until(lambda: len(self.results) >= n, timeout_s)
        self.node.spin_until(lambda: False, 0.5)  # nothing more may come
        return self.results


def test_every_frame_gets_one_result_with_exits_and_offloads(ros_node, fmnist_test):
    procs = [
        start(ros_node, "offload", BASE_YAML),
        start(ros_node, "perception", DRONE_YAML, follow_controller=False, **RELIABLE_CAMERA),
    ]
    with node_processes(procs):
        peer = Peer(ros_node)
        peer.wait_for_perception()
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
        assert ros_node.spin_until(lambda: pub.get_subscription_count() > 0, 60)
        pub.publish(tensor(1, nbytes=100))  # shape does not match the bytes
        pub.publish(tensor(2, shape=(1, 3, 7, 7)))  # shape does not match the cut
        pub.publish(tensor(3, model_id="other/model"))
        pub.publish(tensor(4, nbytes=100_000))  # oversized
        pub.publish(tensor(5))  # well-formed
        ros_node.spin_until(lambda: len(replies) >= 5, 30)
    by_seq = {r.frame_seq: r for r in replies}
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
    assert all(r.exit_index == 1 and "deadline" in r.reason for r in results)


def test_controller_follows_link_and_battery(ros_node):
    policies: list[ExecutionPolicy] = []
    ros_node.create_subscription(ExecutionPolicy, "execution_policy", policies.append, RELIABLE)
    link_pub = ros_node.create_publisher(LinkQuality, "link_quality", 10)
    battery_pub = ros_node.create_publisher(BatteryState, "battery_state", 10)

    def latest_after(publish, predicate):
        def check():
            publish()
            return bool(policies) and predicate(policies[-1])

        return ros_node.spin_until(check, 20)

    def link(mbps):
        return lambda: link_pub.publish(LinkQuality(bandwidth_mbps=mbps, rtt_ms=5.0, samples=5))

    with node_processes([start(ros_node, "controller", DRONE_YAML)]):
        assert latest_after(lambda: None, lambda p: p.cut_point == 2)  # unknown link: probe
        assert latest_after(link(0.2), lambda p: p.cut_point == 4 and "too slow" in p.reason)
        assert latest_after(link(50.0), lambda p: p.cut_point == 2)

        def low_battery():
            link(50.0)()
            battery_pub.publish(BatteryState(percentage=0.1))

        assert latest_after(low_battery, lambda p: p.exit_thresholds[0] < 0.95 - 1e-6)
    assert policies[-1].policy_name == "rule"


def test_policy_update_changes_perception(ros_node, fmnist_test):
    policy_pub = ros_node.create_publisher(
        ExecutionPolicy,
        "execution_policy",
        QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=1),
    )
    with node_processes([start(ros_node, "perception", DRONE_YAML)]):
        peer = Peer(ros_node)
        peer.wait_for_perception()
        policy = ExecutionPolicy(cut_point=4, exit_thresholds=[2.0, 2.0, 0.0], exit_rule="entropy")
        policy.encoding, policy.compression, policy.policy_name = "fp32", "none", "test"
        policy_pub.publish(policy)
        ros_node.spin_until(lambda: False, 1.0)
        peer.send(image_msg(fmnist_test.images[0], "after"))
        bad = ExecutionPolicy(cut_point=9, exit_thresholds=[0.5], exit_rule="max_prob")
        bad.encoding, bad.compression, bad.policy_name = "fp32", "none", "broken"
        policy_pub.publish(bad)  # refused: the node keeps the previous policy
        ros_node.spin_until(lambda: False, 1.0)
        peer.send(image_msg(fmnist_test.images[1], "after_bad"))
        results = {r.header.frame_id: r for r in peer.wait_results(2)}
    for key in ("after", "after_bad"):
        r = results[key]
        assert r.cut_point == 4 and r.policy_name == "test"
        assert r.where == InferenceResult.WHERE_DRONE and r.exit_index == 2


@pytest.mark.parametrize("follow_controller", [False])
def test_parameters_are_validated_and_applied_live(ros_node, fmnist_test, follow_controller):
    from rclpy.parameter import Parameter
    from rclpy.parameter_client import AsyncParameterClient

    proc = start(ros_node, "perception", DRONE_YAML, follow_controller=follow_controller)
    with node_processes([proc]):
        peer = Peer(ros_node)
        peer.wait_for_perception()
        client = AsyncParameterClient(ros_node, "perception")
        assert client.wait_for_services(timeout_sec=30)

        def set_params(*params):
            future = client.set_parameters(list(params))
            ros_node.spin_until(future.done, 10)
            return future.result().results

        [res] = set_params(Parameter("cut_point", value=9))
        assert not res.successful
        [res] = set_params(Parameter("exit_thresholds", value=[0.5, 0.5]))
        assert not res.successful and "needs 3 values" in res.reason
        [res] = set_params(Parameter("encoding", value="bf16"))
        assert not res.successful and "'bf16' is not one of" in res.reason
        [res] = set_params(Parameter("cut_point", value=4))
        assert res.successful
        peer.send(image_msg(fmnist_test.images[0], "after"))
        [result] = peer.wait_results(1)
    assert result.cut_point == 4 and result.where == InferenceResult.WHERE_DRONE
