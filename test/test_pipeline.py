import numpy as np
import pytest

from edgeml_ros.core.codec import encode_tensor
from edgeml_ros.core.pipeline import (
    DronePipeline,
    ExecutionPlan,
    OffloadReply,
    OffloadRequest,
    RawImage,
    Status,
    TailServer,
    Where,
)

NEVER = (2.0, 2.0, 2.0)


def raw(img: np.ndarray) -> RawImage:
    return RawImage("mono8", img.shape[0], img.shape[1], img.shape[1], False, img.tobytes())


def make(bundle, cut=2, thresholds=NEVER, deadline_s=0.2):
    return DronePipeline(bundle, ExecutionPlan(cut, thresholds), deadline_s)


def test_local_run_gives_result_at_once(bundle, fmnist_test):
    pipe = make(bundle, cut=bundle.model.num_blocks)
    result = pipe.process(raw(fmnist_test.images[0]), "hdr")
    assert result.status == Status.OK and result.where == Where.DRONE
    assert result.context == "hdr" and result.exit_index == 2
    assert result.class_name == fmnist_test.class_names[result.class_id]
    assert pipe.counters.results_out == pipe.counters.frames_in == 1


def test_offload_round_trip_through_tail_server(bundle, fmnist_test):
    pipe, server = make(bundle), TailServer(bundle)
    correct = 0
    for i in range(50):
        request = pipe.process(raw(fmnist_test.images[i]), i)
        assert isinstance(request, OffloadRequest)
        result = pipe.on_reply(server.handle(request))
        assert result.where == Where.BASE and result.status == Status.OK and result.context == i
        assert result.offload_bytes == len(request.tensor.data)
        correct += result.class_id == fmnist_test.labels[i]
    assert correct >= 40  # a real model on real images
    assert pipe.pending_count == 0 and server.served == 50


def test_no_reply_falls_back_to_deepest_local_exit(bundle, fmnist_test):
    pipe = make(bundle, deadline_s=0.1)
    request = pipe.process(raw(fmnist_test.images[0]), "hdr", now=100.0)
    assert pipe.expire(now=100.05) == []
    [result] = pipe.expire(now=100.2)
    assert result.where == Where.FALLBACK and result.exit_index == 1
    assert "deadline" in result.reason
    assert pipe.on_reply(OffloadReply(request.frame_seq, Status.OK)) is None
    assert pipe.counters.late_replies == 1 and pipe.counters.fallbacks == 1


def test_fallback_without_local_exit_finishes_on_drone(bundle, fmnist_test):
    pipe = make(bundle, cut=0)
    pipe.process(raw(fmnist_test.images[0]), "hdr")
    [result] = pipe.expire(force=True)
    assert result.where == Where.FALLBACK and result.exit_index == bundle.model.num_exits - 1


def test_bad_image_gives_bad_input_result(bundle):
    pipe = make(bundle)
    result = pipe.process(RawImage("yuv422", 2, 2, 4, False, bytes(8)), "hdr")
    assert result.status == Status.BAD_INPUT and "yuv422" in result.reason
    assert pipe.counters.bad_input == 1 and pipe.counters.results_out == 1


def test_rejected_offload_still_ends_the_frame(bundle, fmnist_test):
    pipe = make(bundle)
    request = pipe.process(raw(fmnist_test.images[0]), "hdr")
    result = pipe.on_reply(OffloadReply(request.frame_seq, Status.OFFLOAD_REJECTED, "nope"))
    assert result.status == Status.OFFLOAD_REJECTED and result.reason == "nope"
    assert pipe.counters.frames_in == pipe.counters.results_out


def test_invalid_plan_is_refused(bundle):
    pipe = make(bundle)
    with pytest.raises(ValueError, match="encoding 'bf16'"):
        pipe.set_plan(ExecutionPlan(1, NEVER, encoding="bf16"))
    with pytest.raises(ValueError, match="cut_point"):
        pipe.set_plan(ExecutionPlan(7, NEVER))
    assert pipe.plan.cut_point == 2


def _request(bundle, fmnist_test, **change):
    pipe = make(bundle)
    request = pipe.process(raw(fmnist_test.images[0]), "hdr")
    for k, v in change.items():
        if hasattr(request.tensor, k):
            setattr(request.tensor, k, v)
        else:
            setattr(request, k, v)
    return request


@pytest.mark.parametrize(
    "change,match",
    [
        ({"model_id": "imagenet/resnet50"}, "model_id 'imagenet/resnet50' is not served"),
        ({"weights_digest": "sha256:00"}, "weights digest"),
        ({"cut_point": 9}, "cut_point 9 outside"),
        ({"shape": (1, 3, 14, 14)}, "does not match cut 2"),
        ({"data": b"\x00" * 100}, "payload has 100 bytes"),
        ({"encoding": "bf16"}, "unknown encoding"),
    ],
)
def test_tail_server_rejects_bad_requests(bundle, fmnist_test, change, match):
    server = TailServer(bundle)
    reply = server.handle(_request(bundle, fmnist_test, **change))
    assert reply.status == Status.OFFLOAD_REJECTED
    assert match in reply.reason
    assert server.rejected == 1


def test_tail_server_refuses_oversized_payload(bundle, fmnist_test):
    server = TailServer(bundle, max_payload_bytes=1000)
    reply = server.handle(_request(bundle, fmnist_test))
    assert reply.status == Status.OFFLOAD_REJECTED and "exceeds 1000" in reply.reason


def test_tail_server_accepts_every_encoding(bundle, fmnist_test):
    server = TailServer(bundle)
    pipe = make(bundle)
    request = pipe.process(raw(fmnist_test.images[0]), "hdr")
    features = np.frombuffer(request.tensor.data, "<f4").reshape(request.tensor.shape)
    baseline = server.handle(request).class_id
    for encoding in ("fp16", "int8"):
        request.tensor = encode_tensor(features, encoding, "zstd")
        reply = server.handle(request)
        assert reply.status == Status.OK and reply.class_id == baseline


def test_unexpected_failure_still_ends_the_frame(bundle, fmnist_test):
    pipe = make(bundle, cut=bundle.model.num_blocks)
    pipe.bundle.meta.input_size, saved = [0, 0], pipe.bundle.meta.input_size  # breaks resizing
    try:
        result = pipe.process(raw(fmnist_test.images[0]), "hdr")
    finally:
        pipe.bundle.meta.input_size = saved
    assert result.status == Status.INTERNAL_ERROR and result.reason
    assert pipe.counters.internal_errors == 1 and pipe.counters.results_out == 1
    assert pipe.process(raw(fmnist_test.images[0]), "hdr").status == Status.OK
