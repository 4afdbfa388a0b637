"""Perception node (drone): camera frames in, one InferenceResult out per frame.

Each result goes out as its frame finishes (`perception/result`) and again, with the others of
its period, in a `ResultBatch` (`perception/result_batch`) for the controller, the link monitor
and the battery simulator.

Runs the early-exit head under the current execution policy, offloads the features at the cut
point to the base station when no exit fired, and falls back locally when no reply arrives by
the deadline. All model work happens in one mutually exclusive callback group, so parameter
services stay responsive.
"""

from __future__ import annotations

import time

import torch
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import (
    qos_profile_sensor_data,
)
from rclpy.qos_overriding_options import QoSOverridingOptions
from sensor_msgs.msg import CompressedImage, Image

from edgeml_ros.core.annotate import annotate
from edgeml_ros.core.pipeline import (
    EXPIRE_PERIOD_S,
    DronePipeline,
    ExecutionPlan,
    OffloadRequest,
    ReplyError,
    Where,
)
from edgeml_ros.msg import ExecutionPolicy, FeatureTensor, InferenceResult, ResultBatch
from edgeml_ros.nodes.common import (
    LATCHED,
    OFFLOAD,
    RELIABLE,
    Param,
    declare_params,
    device_param,
    diagnostic_array,
    exit_plan_params,
    load_model_param,
    run_node,
    stamp_age_s,
)
from edgeml_ros.nodes.conversions import (
    compressed_to_frame,
    image_to_raw,
    msg_to_plan,
    msg_to_reply,
    request_to_msg,
    result_to_msg,
    rgb_to_image,
)

PLAN_PARAMS = ("cut_point", "exit_thresholds", "exit_rule", "encoding", "compression")


class PerceptionNode(Node):
    """Early-exit, partition-offloading inference on the drone."""

    def __init__(self) -> None:
        super().__init__("perception")
        self.bundle = load_model_param(self, "Model checkpoint (.pt), loaded once at start-up.")
        torch.set_num_threads(1)
        model = self.bundle.model
        declare_params(
            self,
            [
                Param(
                    "cut_point",
                    model.num_blocks,
                    "Blocks run on the drone before offloading (num_blocks = all on the drone).",
                    int_range=(0, model.num_blocks),
                ),
                *exit_plan_params(model.num_exits),
                Param(
                    "deadline_ms",
                    100.0,
                    "Deadline of each frame from its arrival; an offload without a reply falls "
                    "back on the drone in time to finish by it.",
                    float_range=(1.0, 60000.0),
                ),
                device_param(),
                Param(
                    "max_frame_age_ms",
                    100.0,
                    "Frames older than this (capture stamp to processing) are dropped unrun "
                    "with a STALE result, so the node never works through a backlog.",
                    float_range=(1.0, 60000.0),
                ),
                Param(
                    "max_offloads_in_flight",
                    2,
                    "Offloads on the link at once (sent, not yet answered); a frame that would "
                    "exceed it finishes on the drone at once instead of queueing on a slow link. "
                    "Below it, another offload goes only when the link (at the delivery rate the "
                    "replies show) has at most a frame interval of work left and, once a loss "
                    "has shown the link's queue, no more are in flight than it holds.",
                    int_range=(1, 1000),
                ),
                Param(
                    "compute_slowdown",
                    1.0,
                    "Emulation only, 1 on a real robot: pad the drone's compute time to this "
                    "multiple to stand in for a slower computer (reported in diagnostics).",
                    float_range=(1.0, 100.0),
                ),
                Param(
                    "annotate_rate_hz",
                    2.0,
                    "Rate of annotated frames on perception/annotated for rviz (0: off).",
                    float_range=(0.0, 100.0),
                ),
                Param(
                    "follow_controller",
                    True,
                    "Apply ExecutionPolicy messages from the controller (false: parameters only).",
                ),
                Param(
                    "result_batch_period_s",
                    0.25,
                    "Period of perception/result_batch: the results of the period in one "
                    "message, for the controller, the link monitor and the battery simulator "
                    "(one wake-up per period instead of one per frame).",
                    float_range=(0.01, 60.0),
                    read_only=True,
                ),
                Param(
                    "diagnostics_period_s",
                    1.0,
                    "Period of /diagnostics updates.",
                    float_range=(0.1, 60.0),
                    read_only=True,
                ),
            ],
        )
        self.pipeline = DronePipeline(
            self.bundle,
            self._plan_from_params(),
            self.get_parameter("deadline_ms").value / 1e3,
            self.get_parameter("compute_slowdown").value,
            self.get_parameter("max_frame_age_ms").value / 1e3,
            self.get_parameter("device").value,
            self.get_parameter("max_offloads_in_flight").value,
        )
        self._applying_policy: str | None = None
        self.add_post_set_parameters_callback(self._on_params_set)

        group = MutuallyExclusiveCallbackGroup()
        self.result_pub = self.create_publisher(InferenceResult, "perception/result", RELIABLE)
        self.batch_pub = self.create_publisher(ResultBatch, "perception/result_batch", RELIABLE)
        self._batch: list[InferenceResult] = []
        self.request_pub = self.create_publisher(FeatureTensor, "offload/request", OFFLOAD)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.annotated_pub = self.create_publisher(Image, "perception/annotated", 2)
        self._to_annotate: dict[int, Image | CompressedImage] = {}
        self._last_annotated = 0.0
        for msg_type, topic in ((Image, "camera/image_raw"),
                                (CompressedImage, "camera/image_raw/compressed")):  # fmt: skip
            self.create_subscription(
                msg_type,
                topic,
                self._on_image,
                qos_profile_sensor_data,
                callback_group=group,
                qos_overriding_options=QoSOverridingOptions.with_default_policies(),
            )
        self.create_subscription(
            InferenceResult, "offload/reply", self._on_reply, RELIABLE, callback_group=group
        )
        self.create_subscription(
            ExecutionPolicy, "execution_policy", self._on_policy, LATCHED, callback_group=group
        )
        # Checks for offloads past their fallback time; runs only while some are pending.
        self.expire_timer = self.create_timer(EXPIRE_PERIOD_S, self._expire, callback_group=group)
        self.expire_timer.cancel()
        self.create_timer(
            self.get_parameter("diagnostics_period_s").value, self._publish_diagnostics
        )
        self.create_timer(
            self.get_parameter("result_batch_period_s").value,
            self._publish_batch,
            callback_group=group,
        )
        self.get_logger().info(
            f"model {self.bundle.meta.model_id} ({model.num_blocks} blocks, "
            f"{model.num_exits} exits); plan {self.pipeline.plan}"
        )

    def _plan_from_params(self, policy_name: str = "parameters") -> ExecutionPlan:
        p = {n: self.get_parameter(n).value for n in PLAN_PARAMS}
        return ExecutionPlan(
            p["cut_point"],
            tuple(p["exit_thresholds"]),
            p["exit_rule"],
            p["encoding"],
            p["compression"],
            policy_name,
        )

    def _on_params_set(self, params) -> None:
        names = {p.name for p in params}
        if names & set(PLAN_PARAMS):
            policy_name = self._applying_policy or "parameters"
            self.pipeline.set_plan(self._plan_from_params(policy_name))
        if "deadline_ms" in names:
            self.pipeline.deadline_s = self.get_parameter("deadline_ms").value / 1e3
        if "compute_slowdown" in names:
            self.pipeline.compute_slowdown = self.get_parameter("compute_slowdown").value
        if "max_frame_age_ms" in names:
            self.pipeline.max_age_s = self.get_parameter("max_frame_age_ms").value / 1e3
        if "max_offloads_in_flight" in names:
            self.pipeline.window.max_in_flight = self.get_parameter("max_offloads_in_flight").value

    def _on_policy(self, msg: ExecutionPolicy) -> None:
        if not self.get_parameter("follow_controller").value:
            return
        plan = msg_to_plan(msg)
        try:
            self.pipeline.check_plan(plan)
        except ValueError as exc:
            self.get_logger().error(
                f"ignoring ExecutionPolicy ({self.pipeline.counters.bad_plans} so far): {exc}",
                throttle_duration_sec=1.0,
            )
            return
        if plan == self.pipeline.plan:
            return
        self._applying_policy = plan.policy_name
        try:
            outcome = self.set_parameters_atomically(
                [
                    Parameter("cut_point", value=plan.cut_point),
                    Parameter("exit_thresholds", value=list(plan.exit_thresholds)),
                    Parameter("exit_rule", value=plan.exit_rule),
                    Parameter("encoding", value=plan.encoding),
                    Parameter("compression", value=plan.compression),
                ]
            )
        finally:
            self._applying_policy = None
        if not outcome.successful:
            self.get_logger().error(f"ignoring ExecutionPolicy: {outcome.reason}")
            return
        self.get_logger().info(f"policy {plan.policy_name}: {msg.reason} -> {self.pipeline.plan}")

    def _on_image(self, msg: Image | CompressedImage) -> None:
        age_s = stamp_age_s(self, msg.header.stamp)
        frame = image_to_raw(msg) if isinstance(msg, Image) else compressed_to_frame(msg)
        outcome = self.pipeline.process(frame, msg.header, age_s=age_s)
        rate = self.get_parameter("annotate_rate_hz").value
        now = time.monotonic()
        if rate > 0 and now - self._last_annotated >= 1.0 / rate:
            self._last_annotated = now
            self._to_annotate[outcome.frame_seq] = frame
        if isinstance(outcome, OffloadRequest):
            self.request_pub.publish(request_to_msg(outcome))
            if self.expire_timer.is_canceled():
                self.expire_timer.reset()
            return
        self._publish(outcome)

    def _on_reply(self, msg: InferenceResult) -> None:
        try:
            result = self.pipeline.on_reply(msg_to_reply(msg))
        except ReplyError as exc:
            self.get_logger().warn(
                f"ignoring offload reply for frame {msg.frame_seq}: {exc}",
                throttle_duration_sec=1.0,
            )
            return
        if result is None:
            self.get_logger().warn(f"late offload reply for frame {msg.frame_seq}")
            return
        self._publish(result)

    def _expire(self) -> None:
        for result in self.pipeline.expire():
            self._publish(result)
        if not self.pipeline.pending_count:
            self.expire_timer.cancel()

    def _publish(self, result) -> None:
        if result.reason and result.status != 0:
            self.get_logger().warn(
                f"frame {result.frame_seq}: {result.reason}", throttle_duration_sec=1.0
            )
        msg = result_to_msg(result)
        self.result_pub.publish(msg)
        self._batch.append(msg)
        frame = self._to_annotate.pop(result.frame_seq, None)
        if frame is not None and result.where != Where.NONE:  # it decoded
            image = rgb_to_image(annotate(self.pipeline.decode(frame), result))
            image.header = result.context
            self.annotated_pub.publish(image)

    def _publish_batch(self) -> None:
        if self._batch:
            batch = ResultBatch(results=self._batch)
            batch.header.stamp = self.get_clock().now().to_msg()
            self.batch_pub.publish(batch)
            self._batch = []

    def _publish_diagnostics(self) -> None:
        values = self.pipeline.counters.as_dict()
        values["pending"] = self.pipeline.pending_count
        rate = self.pipeline.window.delivery_rate_bps
        values["offload_delivery_kbps"] = "n/a" if rate is None else f"{rate * 8 / 1000:.1f}"
        queue = self.pipeline.window.queue_bytes
        values["offload_link_queue_bytes"] = (
            "not seen full" if queue == float("inf") else round(queue)
        )
        values["cut_point"] = self.pipeline.plan.cut_point
        values["policy"] = self.pipeline.plan.policy_name
        values["compute_slowdown_emulated"] = self.pipeline.compute_slowdown
        self.diag_pub.publish(
            diagnostic_array(self, "frames", values, "running", DiagnosticStatus.OK)
        )

    def on_shutdown(self) -> None:
        """Finish every in-flight offload locally so no frame is left without a result."""
        flushed = self.pipeline.expire(force=True)
        for result in flushed:
            self._publish(result)
        self._publish_batch()
        self._publish_diagnostics()
        self.get_logger().info(f"shutting down: {self.pipeline.counters.as_dict()}")
        time.sleep(0.2)


def main(args: list[str] | None = None) -> int:
    """Run the perception node."""
    return run_node(PerceptionNode, args)
