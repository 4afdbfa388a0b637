"""Messages <-> core types. No logic beyond copying fields."""

from __future__ import annotations

import numpy as np
from sensor_msgs.msg import CompressedImage, Image

from edgeml_ros.core.codec import EncodedTensor
from edgeml_ros.core.pipeline import (
    CompressedFrame,
    FrameResult,
    OffloadReply,
    OffloadRequest,
    RawImage,
    Where,
)
from edgeml_ros.core.plan import ExecutionPlan
from edgeml_ros.msg import ExecutionPolicy, FeatureTensor, InferenceResult


def image_to_raw(msg: Image) -> RawImage:
    """The fields of an Image; `data` is a zero-copy view."""
    return RawImage(
        msg.encoding,
        msg.height,
        msg.width,
        msg.step,
        bool(msg.is_bigendian),
        np.frombuffer(msg.data, np.uint8),
    )


def compressed_to_frame(msg: CompressedImage) -> CompressedFrame:
    """The fields of a CompressedImage."""
    return CompressedFrame(msg.format, msg.data)


def rgb_to_image(pixels: np.ndarray) -> Image:
    """An (H, W, 3) uint8 array as an rgb8 Image."""
    msg = Image(height=pixels.shape[0], width=pixels.shape[1], encoding="rgb8")
    msg.step = pixels.shape[1] * 3
    msg.data = np.ascontiguousarray(pixels, dtype=np.uint8).tobytes()
    return msg


def result_to_msg(result: FrameResult) -> InferenceResult:
    """A finished frame as an InferenceResult carrying the camera header."""
    msg = InferenceResult()
    msg.header = result.context
    msg.frame_seq = result.frame_seq
    msg.class_id = result.class_id
    msg.class_name = result.class_name
    msg.confidence = float(result.confidence)
    msg.exit_index = result.exit_index
    msg.where = int(result.where)
    msg.status = int(result.status)
    msg.reason = result.reason
    msg.cut_point = result.cut_point
    msg.policy_name = result.policy_name
    msg.decode_ms = float(result.decode_ms)
    msg.head_ms = float(result.head_ms)
    msg.encode_ms = float(result.encode_ms)
    msg.transfer_ms = float(result.transfer_ms)
    msg.tail_ms = float(result.tail_ms)
    msg.total_ms = float(result.total_ms)
    msg.input_age_ms = float(result.input_age_ms)
    msg.profiled_ms = float(result.profiled_ms)
    msg.offload_bytes = result.offload_bytes
    msg.auditable = result.auditable
    msg.audited = result.audit is not None
    return msg


def request_to_msg(request: OffloadRequest) -> FeatureTensor:
    """An offload request as a FeatureTensor."""
    t = request.tensor
    msg = FeatureTensor()
    msg.header = request.context
    msg.frame_seq = request.frame_seq
    msg.model_id = request.model_id
    msg.weights_digest = request.weights_digest
    msg.cut_point = request.cut_point
    msg.shape = list(t.shape)
    msg.dtype = t.dtype
    msg.encoding = t.encoding
    msg.compression = t.compression
    msg.quant_scale = float(t.quant_scale)
    msg.quant_zero_point = int(t.quant_zero_point)
    msg.data = t.data
    return msg


def msg_to_request(msg: FeatureTensor) -> OffloadRequest:
    """A received FeatureTensor as a request (validated later by the TailServer)."""
    tensor = EncodedTensor(
        tuple(msg.shape),
        msg.dtype,
        msg.encoding,
        msg.compression,
        np.frombuffer(msg.data, np.uint8),
        msg.quant_scale,
        msg.quant_zero_point,
    )
    stamp_ns = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
    return OffloadRequest(msg.frame_seq, msg.header, msg.model_id, msg.weights_digest,
                          msg.cut_point, tensor, stamp_ns)  # fmt: skip


def reply_to_msg(reply: OffloadReply, request: OffloadRequest) -> InferenceResult:
    """The base station's answer as an InferenceResult (where=BASE)."""
    msg = InferenceResult()
    msg.header = request.context
    msg.frame_seq = reply.frame_seq
    msg.status = int(reply.status)
    msg.reason = reply.reason
    msg.class_id = reply.class_id
    msg.confidence = float(reply.confidence)
    msg.exit_index = reply.exit_index
    msg.where = int(Where.BASE)
    msg.cut_point = request.cut_point
    msg.tail_ms = float(reply.tail_ms)
    return msg


def msg_to_reply(msg: InferenceResult) -> OffloadReply:
    """A received base-station answer (checked by the DronePipeline)."""
    return OffloadReply(
        msg.frame_seq,
        msg.status,
        msg.reason,
        msg.class_id,
        msg.confidence,
        msg.exit_index,
        msg.tail_ms,
        msg.header,
    )


def plan_to_msg(plan: ExecutionPlan, weights_digest: str, reason: str = "") -> ExecutionPolicy:
    """An execution plan for the model of `weights_digest` as an ExecutionPolicy message.

    The header is left for the sender.
    """
    msg = ExecutionPolicy(weights_digest=weights_digest)
    msg.cut_point = plan.cut_point
    msg.exit_thresholds = [float(t) for t in plan.exit_thresholds]
    msg.exit_rule = plan.exit_rule
    msg.encoding = plan.encoding
    msg.compression = plan.compression
    msg.policy_name = plan.policy_name
    msg.audit_share = float(plan.audit_share)
    msg.reason = reason
    return msg


def msg_to_plan(msg: ExecutionPolicy) -> ExecutionPlan:
    """An ExecutionPolicy as a plan (validated by the pipeline before use)."""
    return ExecutionPlan(
        msg.cut_point,
        tuple(round(float(t), 6) for t in msg.exit_thresholds),
        msg.exit_rule,
        msg.encoding,
        msg.compression,
        msg.policy_name,
        round(float(msg.audit_share), 6),
    )
