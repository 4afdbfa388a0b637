"""Perception node (drone): camera frames in, one InferenceResult out per frame.

A managed node: configure loads the checkpoint and checks the plan parameters against it,
activate subscribes to the camera, the offload replies, the controller's policy and the link
monitor's estimate (which audits go by). Each result
goes out as its frame finishes (`perception/result`) and again, with the others of its period,
in a `ResultBatch` (`perception/result_batch`) for the controller, the link monitor and the
battery simulator; the batch also carries the offload window's view of the link (its delivery
rate, frames it held back, replies) for the link monitor.

It runs the early-exit head under the current execution plan, offloads the features at the cut
point to the base station when no exit fired, and falls back locally when no reply arrives by
the deadline. One thread serves everything (rclpy's events executor; `make bench-dds` measured
it fastest): a parameter or lifecycle request waits at most for the frame being computed.
"""

from __future__ import annotations

import dataclasses
import math
import time

import torch
from rclpy.exceptions import ParameterUninitializedException
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data
from rclpy.qos_overriding_options import QoSOverridingOptions
from sensor_msgs.msg import CompressedImage, Image

from edgeml_ros.core.annotate import annotate
from edgeml_ros.core.checkpoint import ModelBundle, load_checkpoint
from edgeml_ros.core.codec import COMPRESSIONS, ENCODINGS, IMAGE_ENCODINGS
from edgeml_ros.core.decisions import MAX_FRAME_AGE_MS
from edgeml_ros.core.outcome import Status, Where
from edgeml_ros.core.pipeline import (
    EXPIRE_PERIOD_S,
    AuditOutcome,
    DronePipeline,
    OffloadRequest,
    ReplyError,
    validate_plan,
)
from edgeml_ros.core.plan import (
    EXIT_RULES,
    MAX_AUDIT_SHARE,
    ExecutionPlan,
    check_exit_thresholds,
    default_plan,
)
from edgeml_ros.core.profiles import load_profile
from edgeml_ros.msg import (
    ExecutionPolicy,
    FeatureTensor,
    InferenceResult,
    LinkQuality,
    ResultBatch,
)
from edgeml_ros.nodes.common import (
    LATCHED_IN_ORDER,
    OFFLOAD,
    RELIABLE,
    ManagedNode,
    Param,
    one_of,
    param_values,
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
from edgeml_ros.nodes.model_params import checkpoint_param, device_param

PLAN_PARAMS = (
    "cut_point",
    "exit_thresholds",
    "exit_rule",
    "encoding",
    "compression",
    "audit_share",
)
PLAN_CHOICES = {"encoding": ENCODINGS + IMAGE_ENCODINGS, "compression": COMPRESSIONS}
IMAGE_TOPIC = "camera/image_raw"
# Ranges before a model is loaded; configure and every later change check against the model.
MAX_BLOCKS = 256


class PerceptionNode(ManagedNode):
    """Early-exit, partition-offloading inference on the drone."""

    diagnostic_name = "frames"

    def __init__(self) -> None:
        self.bundle: ModelBundle | None = None
        self.pipeline: DronePipeline | None = None  # the plan checks read it from declaration on
        super().__init__("perception", self._params())
        self.add_post_set_parameters_callback(self._on_params_set)
        self.result_pub = self.create_publisher(InferenceResult, "perception/result", RELIABLE)
        self.batch_pub = self.create_publisher(ResultBatch, "perception/result_batch", RELIABLE)
        self.request_pub = self.create_publisher(FeatureTensor, "offload/request", OFFLOAD)
        self.annotated_pub = self.create_publisher(Image, "perception/annotated", 2)
        self._batch: list[InferenceResult] = []
        self._to_annotate: dict[int, Image | CompressedImage] = {}
        self._last_annotated = 0.0
        self.expire_timer = None

    def _params(self) -> list[Param]:
        return [
            checkpoint_param("Model checkpoint (.pt) loaded on configure."),
            device_param(),
            Param(
                "cut_point",
                Parameter.Type.INTEGER,
                "Blocks run on the drone before offloading, 0 to the model's block count (= all "
                "on the drone, the default).",
                int_range=(0, MAX_BLOCKS),
                check=self._plan_check("cut_point"),
            ),
            Param(
                "exit_thresholds",
                Parameter.Type.DOUBLE_ARRAY,
                "Confidence threshold per exit, final exit last (ignored); > 1 disables an exit. "
                "One value per exit of the model (default 0.9 each).",
                check=self._plan_check("exit_thresholds"),
            ),
            Param("exit_rule", "max_prob", "Exit confidence score: max_prob or entropy.",
                  check=one_of(*EXIT_RULES)),
            Param("encoding", "fp32", "Offload encoding: a tensor encoding (fp32, fp16, int8) "
                  "or, at cut_point 0 with compression none, an image encoding that ships the "
                  f"camera frame at the model's input size ({', '.join(IMAGE_ENCODINGS)}).",
                  check=self._plan_check("encoding")),
            Param("compression", "none", "Lossless compression of offloaded tensors: none, "
                  "zlib or zstd.", check=self._plan_check("compression")),
            Param("audit_share", 0.0, "Share of the early answers on the drone also sent to "
                  "the base station, whose final exit tells whether they agreed (label-free "
                  "accuracy; counts in perception/result_batch); 0: no audits.",
                  float_range=(0.0, MAX_AUDIT_SHARE)),
            Param(
                "image_transport",
                "raw",
                f"Camera input: raw (sensor_msgs/Image on {IMAGE_TOPIC}) or compressed "
                f"(sensor_msgs/CompressedImage, JPEG or PNG, on {IMAGE_TOPIC}/compressed), "
                "as image_transport names them; remap camera/image_raw to your camera's topic.",
                at_configure=True,
                check=one_of("raw", "compressed"),
            ),
            Param(
                "deadline_ms",
                100.0,
                "Deadline of each frame from its arrival; an offload without a reply falls "
                "back on the drone in time to finish by it.",
                float_range=(1.0, 60000.0),
            ),
            Param(
                "max_frame_age_ms",
                MAX_FRAME_AGE_MS,
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
                "multiple (of emulate_profile's times where set, else of this machine's) to "
                "stand in for a slower computer (reported in diagnostics).",
                float_range=(1.0, 100.0),
            ),
            Param(
                "emulate_profile",
                "",
                "Emulation only, empty on a real robot: a profile of this model (edgeml "
                "profile). Each compute call is then padded to compute_slowdown times the "
                "profile's time for the blocks and exits it ran (a calibrated profile's: "
                "scaled, plus its fixed time per call, as the simulator's drone), rather than "
                "to compute_slowdown times this machine's, so the emulated drone keeps its "
                "speed whatever this machine's load; its fallbacks plan with the same times.",
                at_configure=True,
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
                at_configure=True,
            ),
        ]  # fmt: skip

    def _plan_check(self, name: str):
        """A validator of one plan parameter: against the model once it is loaded."""

        def check(value) -> None:
            if name in PLAN_CHOICES:
                one_of(*PLAN_CHOICES[name])(value)
            if self.pipeline is not None:
                plan = dataclasses.replace(self.pipeline.plan, **{name: _plan_field(name, value)})
                validate_plan(self.bundle, plan)
            elif name == "exit_thresholds":  # the count is checked on configure
                check_exit_thresholds(value, len(value))

        return check

    def configure(self) -> None:
        """Load the checkpoint, fill the model's defaults, check the plan, measure the model."""
        bundle = load_checkpoint(self.get_parameter("checkpoint").value)
        model = bundle.model
        default = default_plan(model.num_blocks, model.num_exits)
        defaults = {"cut_point": default.cut_point,
                    "exit_thresholds": list(default.exit_thresholds)}  # fmt: skip
        unset = [Parameter(n, value=v) for n, v in defaults.items() if not self._is_set(n)]
        if unset:
            self.set_parameters(unset)
        plan = self._plan_from_params()
        try:
            validate_plan(bundle, plan)
        except ValueError as exc:
            raise ValueError(
                f"the plan parameters do not fit {bundle.meta.model_id}: {exc}"
            ) from None
        torch.set_num_threads(1)
        p = param_values(self, ("deadline_ms", "compute_slowdown", "max_frame_age_ms", "device",
                                "max_offloads_in_flight", "emulate_profile"))  # fmt: skip
        device_times = None
        if p["emulate_profile"]:
            try:
                device_times = load_profile(p["emulate_profile"])[0].drone_times_of(bundle)
            except (OSError, ValueError) as exc:
                raise ValueError(f"emulate_profile: {exc}") from None
        self.pipeline = DronePipeline(bundle, plan, p["deadline_ms"] / 1e3, p["compute_slowdown"],
                                      p["max_frame_age_ms"] / 1e3, p["device"],
                                      p["max_offloads_in_flight"],
                                      device_times=device_times)  # fmt: skip
        self.bundle = bundle
        self.get_logger().info(
            f"model {bundle.meta.model_id} ({model.num_blocks} blocks, {model.num_exits} "
            f"exits); plan {plan}"
        )

    def _is_set(self, name: str) -> bool:
        try:
            self.get_parameter(name)
        except ParameterUninitializedException:
            return False
        return True

    def activate(self) -> None:
        """Subscribe to the camera, the replies and the policy; start the timers."""
        if self.get_parameter("image_transport").value == "compressed":
            msg_type, topic = CompressedImage, self.resolve_topic_name(IMAGE_TOPIC) + "/compressed"
        else:
            msg_type, topic = Image, IMAGE_TOPIC
        self.subscribe(
            msg_type,
            topic,
            self._on_image,
            qos_profile_sensor_data,
            qos_overriding_options=QoSOverridingOptions.with_default_policies(),
        )
        self.subscribe(InferenceResult, "offload/reply", self._on_reply, RELIABLE)
        self.subscribe(ExecutionPolicy, "execution_policy", self._on_policy, LATCHED_IN_ORDER)
        self.subscribe(LinkQuality, "link_quality", self._on_link, 10)
        # Checks for offloads past their fallback time; runs only while some are pending.
        self.expire_timer = self.every(EXPIRE_PERIOD_S, self._expire)
        self.expire_timer.cancel()
        self.every(self.get_parameter("result_batch_period_s").value, self._publish_batch)
        self.get_logger().info(f"reading {msg_type.__name__} frames on "
                               f"{self.resolve_topic_name(topic)}")  # fmt: skip

    def finish(self) -> None:
        """Finish every in-flight offload locally so no frame is left without a result."""
        if self.pipeline is None:
            return
        for result in self.pipeline.expire(force=True):
            self._publish(result)
        self._publish_batch()
        self.publish_diagnostics()
        self.get_logger().info(f"stopping: {self.pipeline.counters.as_dict()}")
        time.sleep(0.2)  # let DDS deliver the last results before the work stops

    def cleanup(self) -> None:
        """Release the model."""
        self.pipeline, self.bundle = None, None
        self._to_annotate.clear()

    def _plan_from_params(self, policy_name: str = "parameters") -> ExecutionPlan:
        p = param_values(self, PLAN_PARAMS)
        return ExecutionPlan(p["cut_point"], tuple(p["exit_thresholds"]), p["exit_rule"],
                             p["encoding"], p["compression"], policy_name,
                             p["audit_share"])  # fmt: skip

    def _on_params_set(self, params) -> None:
        """Apply changed parameters from the next frame on.

        The plan parameters always show the plan in force: a plan from the controller is
        written into them, and only values that differ from it are a plan set by hand.
        """
        pipeline = self.pipeline
        if pipeline is None:
            return
        names = {p.name for p in params}
        if names & set(PLAN_PARAMS):
            plan = self._plan_from_params()
            if dataclasses.replace(plan, policy_name=pipeline.plan.policy_name) != pipeline.plan:
                pipeline.set_plan(plan)
        p = param_values(self, ("deadline_ms", "compute_slowdown", "max_frame_age_ms",
                                "max_offloads_in_flight"))  # fmt: skip
        pipeline.deadline_s = p["deadline_ms"] / 1e3
        pipeline.compute_slowdown = p["compute_slowdown"]
        pipeline.max_age_s = p["max_frame_age_ms"] / 1e3
        pipeline.window.max_in_flight = p["max_offloads_in_flight"]

    def _on_policy(self, msg: ExecutionPolicy) -> None:
        if not self.get_parameter("follow_controller").value:
            return
        plan = msg_to_plan(msg)
        try:
            self.pipeline.check_plan(plan, msg.weights_digest)
        except ValueError as exc:
            self.get_logger().error(
                f"ignoring ExecutionPolicy ({self.pipeline.counters.bad_plans} so far): {exc}",
                throttle_duration_sec=1.0,
            )
            return
        if plan == self.pipeline.plan:
            return
        previous = self.pipeline.plan
        self.pipeline.set_plan(plan)
        outcome = self.set_parameters_atomically(
            [Parameter(n, value=_param_value(getattr(plan, n))) for n in PLAN_PARAMS]
        )
        if not outcome.successful:
            self.pipeline.set_plan(previous)
            self.get_logger().error(f"ignoring ExecutionPolicy: {outcome.reason}")
            return
        self.get_logger().info(f"policy {plan.policy_name}: {msg.reason} -> {plan}")

    def _on_link(self, msg: LinkQuality) -> None:
        """The link monitor's estimate, which audits go by (none before its first sample)."""
        if msg.samples and math.isfinite(msg.bandwidth_mbps) and msg.bandwidth_mbps >= 0:
            self.pipeline.link_estimate_bps = msg.bandwidth_mbps * 1e6 / 8

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
        if outcome.audit is not None:
            self.request_pub.publish(request_to_msg(outcome.audit))

    def _on_reply(self, msg: InferenceResult) -> None:
        try:
            result = self.pipeline.on_reply(msg_to_reply(msg))
        except ReplyError as exc:
            self.get_logger().warning(
                f"ignoring offload reply for frame {msg.frame_seq}: {exc}",
                throttle_duration_sec=1.0,
            )
            return
        if result is None:
            self.get_logger().warning(f"late or refused reply for frame {msg.frame_seq}")
        elif isinstance(result, AuditOutcome):
            self.get_logger().debug(f"audit of frame {result.frame_seq}: agrees {result.agrees}")
        else:
            self._publish(result)

    def _expire(self) -> None:
        for result in self.pipeline.expire():
            self._publish(result)
        if not self.pipeline.pending_count:
            self.expire_timer.cancel()

    def _publish(self, result) -> None:
        if result.reason and result.status != Status.OK:
            self.get_logger().warning(
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
            digest = self.bundle.meta.weights_digest
            batch = ResultBatch(results=self._batch, weights_digest=digest)
            (batch.offload_delivery_kbps, batch.offloads_held_back,
             batch.offload_replies) = self.pipeline.link_report()  # fmt: skip
            (batch.audits_sent, batch.audits_answered,
             batch.audits_agreeing) = self.pipeline.audit_report()  # fmt: skip
            batch.header.stamp = self.get_clock().now().to_msg()
            self.batch_pub.publish(batch)
            self._batch = []

    def diagnostic_values(self) -> dict:
        """Frame counters, the offload window's view of the link, and the plan in force."""
        pipeline = self.pipeline
        values = pipeline.counters.as_dict()
        values["pending"] = pipeline.pending_count
        rate = pipeline.window.delivery_rate_bps
        values["offload_delivery_kbps"] = "n/a" if rate is None else f"{rate * 8 / 1000:.1f}"
        queue = pipeline.window.queue_bytes
        values["offload_link_queue_bytes"] = (
            "not seen full" if queue == float("inf") else round(queue)
        )
        values["cut_point"] = pipeline.plan.cut_point
        values["policy"] = pipeline.plan.policy_name
        values["compute_slowdown_emulated"] = pipeline.compute_slowdown
        return values


def _plan_field(name: str, value):
    """A parameter's value as the plan holds it."""
    return tuple(value) if name == "exit_thresholds" else value


def _param_value(value):
    """A plan field as a parameter value."""
    return [float(v) for v in value] if isinstance(value, tuple) else value


def main(args: list[str] | None = None) -> int:
    """Run the perception node."""
    return run_node(PerceptionNode, args)
