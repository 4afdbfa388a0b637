import contextlib
import itertools
import re

import numpy as np
import pytest

from edgeml_ros.core.checkpoint import OFFLOAD_DIGEST_CHARS
from edgeml_ros.core.codec import encode_tensor
from edgeml_ros.core.decisions import (
    AUDIT_ENCODING,
    EXPIRE_PERIOD_S,
    FALLBACK_MARGIN_S,
    LocalTimes,
    fallback_exit,
)
from edgeml_ros.core.offload_window import IN_FLIGHT_HORIZON_S
from edgeml_ros.core.pipeline import (
    DUPLICATE_WINDOW,
    MAX_REASON_CHARS,
    AuditOutcome,
    CompressedFrame,
    DronePipeline,
    OffloadReply,
    OffloadRequest,
    RawImage,
    ReplyError,
    Status,
    TailServer,
    Where,
)
from edgeml_ros.core.plan import ExecutionPlan

NEVER = (2.0, 2.0, 2.0)


def raw(img: np.ndarray) -> RawImage:
    return RawImage("mono8", img.shape[0], img.shape[1], img.shape[1], False, img.tobytes())


def ok_reply(request: OffloadRequest, **change) -> OffloadReply:
    """A well-formed answer to `request` (class 0 at the final exit), with `change` made."""
    reply = OffloadReply(request.frame_seq, Status.OK, "", 0, 0.9, 2, 1.0, request.context)
    for k, v in change.items():
        setattr(reply, k, v)
    return reply


def make(bundle, cut=2, thresholds=NEVER, deadline_s=0.2, encoding="fp32"):
    return DronePipeline(bundle, ExecutionPlan(cut, thresholds, encoding=encoding), deadline_s)


def test_local_run_gives_result_at_once(bundle, fmnist_test):
    pipe = make(bundle, cut=bundle.model.num_blocks)
    result = pipe.process(raw(fmnist_test.images[0]), "hdr")
    assert result.status == Status.OK and result.where == Where.DRONE
    assert result.context == "hdr" and result.exit_index == 2
    assert result.class_name == fmnist_test.class_names[result.class_id]
    assert pipe.counters.results_out == pipe.counters.frames_in == 1


def test_an_emulated_drone_computes_in_its_devices_time_whatever_this_machines(
    bundle, fmnist_test
):
    model = bundle.model
    # the model's times on the emulated device (x3): 10 ms a block, 1 ms an exit head
    device = LocalTimes([0.010] * model.num_blocks, [0.001] * model.num_exits, model.exit_after)
    n = model.num_blocks

    def head_ms(thresholds, device_ms: float) -> float:
        pipe = DronePipeline(bundle, ExecutionPlan(n, thresholds), 1.0, compute_slowdown=3.0,
                             device_times=device)  # fmt: skip
        result = pipe.process(raw(fmnist_test.images[0]), "hdr")
        assert result.status == Status.OK and result.where == Where.DRONE
        # the result says what the work takes at the device's profiled speed, against which
        # the controller reads the drone's speed
        assert result.profiled_ms == pytest.approx(device_ms)
        return result.head_ms

    # the whole model with the final exit alone, padded to 3 x its device time (this
    # machine's own is a few ms), whatever this machine's speed or load
    whole = 10.0 * n + 1.0
    assert 3.0 * whole <= head_ms(NEVER, whole) < 3.0 * whole + 20.0
    # the first exit fires: the blocks up to it and its head
    first = 10.0 * (model.exit_after[0] + 1) + 1.0
    assert 3.0 * first <= head_ms((0.0, 2.0, 2.0), first) < 3.0 * first + 20.0
    # the fallbacks plan with the same times
    pipe = DronePipeline(bundle, ExecutionPlan(n, NEVER), 1.0, compute_slowdown=3.0,
                         device_times=device)  # fmt: skip
    assert pipe.local_times.finish(0) == pytest.approx(3.0 * whole / 1000)


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


def test_no_reply_falls_back_in_time_for_the_deadline(bundle, fmnist_test):
    pipe = make(bundle, deadline_s=0.1)
    request = pipe.process(raw(fmnist_test.images[0]), "hdr", now=100.0)
    finish = pipe.local_times.finish(2)
    fallback_at = 100.1 - finish - FALLBACK_MARGIN_S
    assert pipe.expire(now=fallback_at - 0.001) == []
    [result] = pipe.expire(now=fallback_at)
    # time was left to run the rest of the model on the drone: the final exit answers
    assert result.where == Where.FALLBACK and result.exit_index == bundle.model.num_exits - 1
    assert "in time" in result.reason
    # the time it waited for the reply counts as time on the link (as its radio listened)
    assert 0 < result.transfer_ms <= 1000 * (fallback_at - 100.0)
    assert pipe.on_reply(ok_reply(request)) is None
    assert pipe.counters.late_replies == 1 and pipe.counters.fallbacks == 1


def test_offload_window_keeps_frames_off_a_busy_link(bundle, fmnist_test):
    pipe = DronePipeline(bundle, ExecutionPlan(2, NEVER), 0.1, max_in_flight=2)
    images = iter(fmnist_test.images)
    first, second = (pipe.process(raw(next(images)), i, now=100.0) for i in range(2))
    assert isinstance(first, OffloadRequest) and isinstance(second, OffloadRequest)
    # two offloads on the link: the third frame finishes on the drone at once, in full
    third = pipe.process(raw(next(images)), 2, now=100.01)
    assert third.where == Where.FALLBACK and third.exit_index == bundle.model.num_exits - 1
    assert third.reason.startswith("2 offloads already in flight") and third.offload_bytes == 0
    assert third.transfer_ms == 0.0
    assert pipe.counters.window_full == 1 and pipe.counters.offloaded == 2
    # the link monitor's report: no rate known yet, one frame held back, no reply
    assert pipe.link_report() == (0.0, 1, 0)
    # both fall back at their deadline but stay on the link until their (late) replies come
    assert len(pipe.expire(now=100.2)) == 2
    assert not isinstance(pipe.process(raw(next(images)), 3, now=100.3), OffloadRequest)
    assert pipe.on_reply(ok_reply(first), now=100.4) is None
    # since the last report: one more held back, and a late reply, which measured the link
    kbps, held_back, replies = pipe.link_report()
    assert (held_back, replies) == (1, 1)
    assert kbps == pytest.approx(pipe.window.delivery_rate_bps * 8 / 1000) and kbps > 0
    # the link took up the second when the first's reply came: it is busy until about 100.8
    busy = pipe.process(raw(next(images)), 4, now=100.5)
    assert busy.reason.startswith("the link is busy for another")
    assert isinstance(pipe.process(raw(next(images)), 5, now=100.9), OffloadRequest)
    # a reply lost for good holds its place only for IN_FLIGHT_HORIZON_S
    assert not isinstance(pipe.process(raw(next(images)), 6, now=101.0), OffloadRequest)
    later = 100.9 + IN_FLIGHT_HORIZON_S + 0.1
    assert isinstance(pipe.process(raw(next(images)), 7, now=later), OffloadRequest)
    c = pipe.counters
    assert c.results_out + pipe.pending_count == c.frames_in == 8
    assert c.offloads_lost == 2


def test_the_next_reply_finds_a_lost_offload(bundle, fmnist_test):
    pipe = DronePipeline(bundle, ExecutionPlan(2, NEVER), 0.1, max_in_flight=2)
    images = itertools.cycle(fmnist_test.images[:50])
    lost, answered = (pipe.process(raw(next(images)), i, now=100.0) for i in range(2))
    assert not isinstance(pipe.process(raw(next(images)), 2, now=100.01), OffloadRequest)
    pipe.expire(now=100.2)
    # requests cross the link in order: the second one's reply means the first was lost
    assert pipe.on_reply(ok_reply(answered), now=100.3) is None
    assert lost.frame_seq < answered.frame_seq and pipe.counters.offloads_lost == 1
    # the lost offload left the window: the link takes the next frame's offload
    assert isinstance(pipe.process(raw(next(images)), 3, now=100.4), OffloadRequest)


def test_late_fallback_answers_at_the_deepest_affordable_exit(bundle, fmnist_test):
    # the tiny model: exits after blocks 0, 1 and 3; pretend each block takes 10 ms
    pipe = make(bundle, cut=1, thresholds=(1.0, 1.0, 1.0), deadline_s=0.1)
    pipe.block_s = [0.01] * bundle.model.num_blocks
    pipe.head_s = [0.0] * bundle.model.num_exits
    times = pipe.local_times
    assert fallback_exit(times, 1, 0.015, None) == (1, True)
    assert fallback_exit(times, 1, 0.5, None) == (2, True)
    assert fallback_exit(times, 1, 0.005, 0) == (0, False)  # the head's exit: no more compute
    assert fallback_exit(times, 1, 0.005, None) == (1, True)  # else the fastest after the cut
    requests = [pipe.process(raw(img), i, now=100.0 * (i + 1))
                for i, img in enumerate(fmnist_test.images[:20])]  # fmt: skip
    unsure = [r for r in requests if isinstance(r, OffloadRequest)][:2]
    assert len(unsure) == 2  # exit 0 is rarely exactly 1.0 sure
    first, second = (100.0 * (r.context + 1) for r in unsure)
    [result] = pipe.expire(now=first + 0.075)  # 23 ms left: room for exit 1, not the final
    assert result.where == Where.FALLBACK and result.exit_index == 1
    [result] = pipe.expire(now=second + 0.0995)  # no time left: exit 0, already computed
    assert result.exit_index == 0 and "deepest local exit" in result.reason
    pipe = make(bundle, cut=2, deadline_s=0.1)
    pipe.process(raw(fmnist_test.images[0]), "hdr", now=100.0)
    [result] = pipe.expire(now=100.0995)  # nothing computed yet: the first exit after the cut
    assert result.exit_index == 2


def test_a_fallback_checked_up_to_a_timer_period_late_still_finishes_the_model(
    bundle, fmnist_test
):
    pipe = make(bundle, cut=1, deadline_s=0.1)
    pipe.block_s = [0.01] * bundle.model.num_blocks  # 30 ms from the cut to the final exit
    pipe.head_s = [0.0] * bundle.model.num_exits
    pipe.process(raw(fmnist_test.images[0]), "hdr", now=100.0)
    fallback_at = 100.1 - 0.03 - FALLBACK_MARGIN_S
    assert pipe.expire(now=fallback_at - 0.001) == []
    [result] = pipe.expire(now=fallback_at + 0.9 * EXPIRE_PERIOD_S)
    assert result.exit_index == bundle.model.num_exits - 1


def test_fallback_without_local_exit_finishes_on_drone(bundle, fmnist_test):
    pipe = make(bundle, cut=0)
    pipe.process(raw(fmnist_test.images[0]), "hdr")
    [result] = pipe.expire(force=True)
    assert result.where == Where.FALLBACK and result.exit_index == bundle.model.num_exits - 1
    # the head ran no block (nothing computed); the fallback, the whole model
    assert result.profiled_ms == pytest.approx(1000.0 * pipe.profiled_times.finish(0))


def test_bad_image_gives_bad_input_result(bundle):
    pipe = make(bundle)
    result = pipe.process(RawImage("yuv422", 2, 2, 4, False, bytes(8)), "hdr")
    assert result.status == Status.BAD_INPUT and "yuv422" in result.reason
    assert pipe.counters.bad_input == 1 and pipe.counters.results_out == 1


def test_rejected_offload_still_ends_the_frame(bundle, fmnist_test):
    pipe = make(bundle)
    request = pipe.process(raw(fmnist_test.images[0]), "hdr")
    result = pipe.on_reply(
        OffloadReply(request.frame_seq, Status.OFFLOAD_REJECTED, "nope", context="hdr")
    )
    assert result.status == Status.OFFLOAD_REJECTED and result.reason == "nope"
    assert pipe.counters.frames_in == pipe.counters.results_out


def test_invalid_plan_is_refused(bundle):
    pipe = make(bundle)
    with pytest.raises(ValueError, match="encoding: 'bf16'"):
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
        ({"weights_digest": "sha256:00"}, "weights digest 'sha256:00' is not"),
        ({"weights_digest": "sha256:0123456789abcdef"}, "weights digest"),
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
        request.frame_seq += 1  # another request, not a duplicate
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


def test_compressed_frames_decode_like_raw_ones(bundle, fmnist_test):
    import io

    from PIL import Image as PILImage

    pipe = make(bundle, cut=bundle.model.num_blocks)
    img = fmnist_test.images[3]
    png = io.BytesIO()
    PILImage.fromarray(img).save(png, format="PNG")
    from_png = pipe.process(CompressedFrame("png", png.getvalue()), "png")
    from_raw = pipe.process(raw(img), "raw")
    assert from_png.status == Status.OK and from_png.class_id == from_raw.class_id
    assert from_png.confidence == pytest.approx(from_raw.confidence, abs=1e-6)
    bad = pipe.process(CompressedFrame("jpeg", b"\xff\xd8 not a jpeg"), "bad")
    assert bad.status == Status.BAD_INPUT and "not a JPEG image" in bad.reason
    tiff = pipe.process(CompressedFrame("tiff", png.getvalue()), "tiff")
    assert tiff.status == Status.BAD_INPUT and "unsupported compressed format" in tiff.reason


def test_frames_shipped_as_images_are_answered_as_the_drone_would_answer_them(bundle, fmnist_test):
    local = make(bundle, cut=bundle.model.num_blocks)
    for encoding in ("uint8", "png", "jpeg50"):
        pipe, server = make(bundle, cut=0, encoding=encoding), TailServer(bundle)
        same = 0
        for i in range(20):
            request = pipe.process(raw(fmnist_test.images[i]), i)
            assert (request.cut_point, request.tensor.encoding) == (0, encoding)
            assert (request.tensor.shape, request.tensor.dtype) == ((28, 28, 1), "uint8")
            result = pipe.on_reply(server.handle(request))
            assert result.where == Where.BASE and result.status == Status.OK
            assert result.offload_bytes == len(request.tensor.data)
            answer = local.process(raw(fmnist_test.images[i]), i)
            same += result.class_id == answer.class_id
            if encoding != "jpeg50":  # lossless: the very input the drone computes on
                assert result.confidence == pytest.approx(answer.confidence, abs=1e-6)
        assert same >= (20 if encoding != "jpeg50" else 17), encoding
        assert request.tensor.data[:4] == {"uint8": request.tensor.data[:4], "png": b"\x89PNG",
                                           "jpeg50": b"\xff\xd8\xff\xe0"}[encoding]  # fmt: skip


@pytest.mark.parametrize(
    "change,match",
    [
        ({"cut_point": 2}, "encoding png ships the camera frame: cut_point must be 0, not 2"),
        (
            {"shape": (32, 32, 1)},
            r"shape \[32, 32, 1\] is not the model's input frame \[28, 28, 1\]",
        ),
        ({"shape": (1, 1, 28, 28)}, "is not the model's input frame"),
        ({"dtype": "float32"}, "dtype 'float32' unsupported for png frames"),
        ({"data": b"\x89PNG\r\n\x1a\n"}, "'png' data is not a PNG image"),
    ],
)
def test_tail_server_refuses_frames_that_lie(bundle, fmnist_test, change, match):
    pipe, server = make(bundle, cut=0, encoding="png"), TailServer(bundle)
    request = pipe.process(raw(fmnist_test.images[0]), "hdr")
    for k, v in change.items():
        setattr(request.tensor if hasattr(request.tensor, k) else request, k, v)
    reply = server.handle(request)
    assert reply.status == Status.OFFLOAD_REJECTED and re.search(match, reply.reason), reply.reason


def test_stale_frames_are_dropped_and_counted(bundle, fmnist_test):
    pipe = make(bundle, cut=bundle.model.num_blocks)
    pipe.max_age_s = 0.1
    result = pipe.process(raw(fmnist_test.images[0]), "old", age_s=0.25)
    assert result.status == Status.STALE and "250 ms old" in result.reason
    assert pipe.process(raw(fmnist_test.images[0]), "fresh", age_s=0.05).status == Status.OK
    assert pipe.counters.stale == 1 and pipe.counters.results_out == pipe.counters.frames_in == 2


def test_raising_the_window_limit_applies_at_once(bundle, fmnist_test):
    pipe = DronePipeline(bundle, ExecutionPlan(2, NEVER), 0.1, max_in_flight=1)
    images = iter(fmnist_test.images)
    assert isinstance(pipe.process(raw(next(images)), 0, now=100.0), OffloadRequest)
    pipe.window.max_in_flight = 3
    assert all(isinstance(pipe.process(raw(next(images)), i, now=100.0), OffloadRequest)
               for i in (1, 2))  # fmt: skip
    with pytest.raises(ValueError, match="at least 1"):
        pipe.window.max_in_flight = 0


def test_requests_carry_the_digest_start_and_the_whole_one_is_accepted(bundle, fmnist_test):
    request = _request(bundle, fmnist_test)
    assert request.weights_digest == bundle.meta.weights_digest[:OFFLOAD_DIGEST_CHARS]
    whole = _request(bundle, fmnist_test, weights_digest=bundle.meta.weights_digest, frame_seq=1)
    server = TailServer(bundle)
    assert [server.handle(r).status for r in (request, whole)] == [Status.OK, Status.OK]


@pytest.mark.parametrize(
    "change,match",
    [
        ({"context": "another frame's header"}, "its header is not the request's"),
        ({"status": 9}, "status 9 is not a base station's"),
        ({"status": Status.BAD_INPUT}, "status 1 is not a base station's"),
        ({"class_id": 10}, "class_id 10 outside 0..9"),
        ({"class_id": -1}, "class_id -1 outside 0..9"),
        ({"exit_index": 3}, "exit_index 3 outside 0..2"),
        ({"confidence": float("nan")}, "confidence nan outside"),
        ({"confidence": 1.5}, "confidence 1.5 outside"),
        ({"tail_ms": float("inf")}, "tail_ms inf is not a time"),
        ({"tail_ms": -1.0, "status": Status.OFFLOAD_REJECTED}, "tail_ms -1.0 is not a time"),
    ],
)
def test_forged_or_garbled_reply_changes_nothing(bundle, fmnist_test, change, match):
    pipe = make(bundle)
    first, second = (pipe.process(raw(fmnist_test.images[i]), f"cam/{i}", now=100.0)
                     for i in range(2))  # fmt: skip
    with pytest.raises(ReplyError, match=match):
        pipe.on_reply(ok_reply(second, **change), now=100.01)
    assert pipe.counters.bad_replies == 1 and pipe.pending_count == 2
    # a reply to the second would have shown the first lost: this one must not
    assert first.frame_seq in pipe.window and pipe.counters.offloads_lost == 0
    result = pipe.on_reply(ok_reply(second), now=100.02)
    assert result.status == Status.OK and result.where == Where.BASE and result.context == "cam/1"


def test_duplicate_and_unknown_replies_are_counted_and_ignored(bundle, fmnist_test):
    pipe = make(bundle)
    request = pipe.process(raw(fmnist_test.images[0]), "cam/0", now=100.0)
    assert pipe.on_reply(ok_reply(request), now=100.01).status == Status.OK
    for reply in (ok_reply(request), ok_reply(request, frame_seq=request.frame_seq + 1)):
        with pytest.raises(ReplyError, match="awaits a reply"):
            pipe.on_reply(reply, now=100.02)
    c = pipe.counters
    assert c.unknown_replies == 2 and c.results_out == c.frames_in == 1


def test_no_reply_is_taken_for_an_offload_found_lost_once_its_frame_fell_back(bundle, fmnist_test):
    pipe = make(bundle, deadline_s=0.1)
    lost, answered = (pipe.process(raw(fmnist_test.images[i]), i, now=100.0 + 0.01 * i)
                      for i in range(2))  # fmt: skip
    assert pipe.on_reply(ok_reply(answered), now=100.05).where == Where.BASE
    assert pipe.counters.offloads_lost == 1 and lost.frame_seq not in pipe.window
    [result] = pipe.expire(now=100.095)
    assert result.where == Where.FALLBACK
    # neither waiting for its reply nor on the link: whatever comes for it now is no reply
    with pytest.raises(ReplyError, match="awaits a reply"):
        pipe.on_reply(ok_reply(lost), now=100.2)
    assert pipe.counters.unknown_replies == 1 and pipe.counters.late_replies == 0


def test_a_rejection_reason_is_cut_short(bundle, fmnist_test):
    pipe = make(bundle)
    request = pipe.process(raw(fmnist_test.images[0]), "hdr")
    reply = ok_reply(request, status=Status.OFFLOAD_REJECTED, reason="x" * 100_000)
    assert len(pipe.on_reply(reply).reason) == MAX_REASON_CHARS


def test_every_frame_ends_once_whatever_the_base_station_sends(bundle, fmnist_test):
    rng = np.random.default_rng(1)
    pipe = DronePipeline(bundle, ExecutionPlan(2, NEVER), 10.0, max_in_flight=1000)
    requests = [pipe.process(raw(fmnist_test.images[i]), f"cam/{i}", now=100.0 + i * 0.01)
                for i in range(40)]  # fmt: skip
    replies = [ok_reply(r) for r in requests]
    replies += [ok_reply(r, context="forged") for r in requests]
    replies += [ok_reply(r, class_id=int(rng.integers(-5, 50))) for r in requests]
    replies += [ok_reply(r, frame_seq=r.frame_seq + 1000) for r in requests]
    replies += [ok_reply(requests[i]) for i in rng.integers(0, 40, 40)]  # duplicates
    results = []
    for i in rng.permutation(len(replies)):
        with contextlib.suppress(ReplyError):
            results.append(pipe.on_reply(replies[i], now=101.0))
    results = [r for r in results if r is not None] + pipe.expire(force=True)
    assert sorted(r.context for r in results) == sorted(f"cam/{i}" for i in range(40))
    assert all(r.status == Status.OK and r.class_id != -1 for r in results)
    c = pipe.counters
    assert c.results_out == c.frames_in == 40 and c.bad_replies + c.unknown_replies == 160


def test_plans_from_outside_are_checked_and_refusals_counted(bundle):
    pipe, digest = make(bundle), bundle.meta.weights_digest
    for plan in (ExecutionPlan(9, NEVER), ExecutionPlan(2, (0.5,)),
                 ExecutionPlan(2, (float("nan"),) * 3), ExecutionPlan(2, NEVER, "vote"),
                 ExecutionPlan(2, NEVER, policy_name="p" * 1000)):  # fmt: skip
        with pytest.raises(ValueError):
            pipe.check_plan(plan, digest)
    with pytest.raises(ValueError, match="policy_name: 1000 characters, more than 64"):
        pipe.check_plan(ExecutionPlan(2, NEVER, policy_name="p" * 1000), digest)
    pipe.check_plan(ExecutionPlan(1, NEVER, policy_name="rl"), digest)
    assert pipe.counters.bad_plans == 6 and pipe.plan.cut_point == 2


def test_tail_server_answers_a_request_once(bundle, fmnist_test):
    server = TailServer(bundle)
    request = _request(bundle, fmnist_test)
    request.stamp_ns = 1_000
    assert server.handle(request, "drone1").status == Status.OK
    assert server.handle(request, "drone1") is None  # the same again: dropped
    bad = _request(bundle, fmnist_test, model_id="other/model")
    assert server.handle(bad, "drone1").status == Status.OFFLOAD_REJECTED
    assert server.handle(bad, "drone1") is None  # a rejection is an answer too
    assert server.handle(request, "drone2").status == Status.OK  # another drone's frame
    restarted = _request(bundle, fmnist_test)  # same frame_seq, another capture stamp
    restarted.stamp_ns = 2_000
    assert server.handle(restarted, "drone1").status == Status.OK
    assert server.duplicates == 2 and server.served == 3 and server.rejected == 1


def test_tail_server_remembers_a_bounded_window_of_requests(bundle, fmnist_test):
    server = TailServer(bundle)
    request = _request(bundle, fmnist_test, model_id="other/model")  # cheap to answer
    for seq in range(DUPLICATE_WINDOW + 1):
        request.frame_seq = seq
        assert server.handle(request) is not None
    assert len(server._answered[""]) == DUPLICATE_WINDOW
    request.frame_seq = 0  # forgotten: answered again
    assert server.handle(request) is not None
    request.frame_seq = DUPLICATE_WINDOW
    assert server.handle(request) is None


def test_tail_server_payload_limit_defaults_to_the_models_largest_tensor(bundle, fmnist_test):
    server = TailServer(bundle)
    largest = max(int(np.prod(s)) for s in server._feature_shapes)
    assert largest * 4 < server.max_payload_bytes == server.largest_payload_bytes < 16_000
    request = _request(bundle, fmnist_test, data=bytes(server.max_payload_bytes + 1))
    reply = server.handle(request)
    assert reply.status == Status.OFFLOAD_REJECTED
    assert f"exceeds {server.max_payload_bytes}" in reply.reason
    server.max_payload_bytes = 0  # as the node's parameter: the model's largest
    assert server.max_payload_bytes == server.largest_payload_bytes


@pytest.mark.parametrize(
    "change,match",
    [
        ({"model_id": "m" * 100_000}, r"model_id 'm{64}'\.\.\. \(100000 characters\)"),
        (
            {"shape": (1,) * 100_000},
            r"shape \[1, 1, 1, 1, 1, 1, 1, 1, \.\.\.\] \(100000 dimensions",
        ),
        ({"compression": "zstd", "data": bytes(10_000)}, "payload has 10000 bytes, more than"),
        ({"encoding": "int8", "quant_zero_point": -7}, "quant_zero_point must be in 0..255"),
    ],
)
def test_tail_server_rejections_name_the_problem_briefly(bundle, fmnist_test, change, match):
    reply = TailServer(bundle).handle(_request(bundle, fmnist_test, **change))
    assert reply.status == Status.OFFLOAD_REJECTED and len(reply.reason) < 300
    assert re.search(match, reply.reason), reply.reason
    assert reply.context == "hdr" and 0.0 < reply.tail_ms < 100.0  # the time it took to refuse


def test_lost_requests_are_counted_without_fast_dds_bogus_counts(bundle):
    server = TailServer(bundle)
    for change in (1, 2**31 - 1, 1, 3, 0):  # as Fast DDS 3.2 reports three fragmented losses
        server.count_lost(change)
    assert server.lost_in_transport == 5


def audit_pipeline(bundle, share=0.2, seed=1):
    """Everything on the drone, the first exit always answering, `share` of it audited."""
    num_blocks, num_exits = bundle.model.num_blocks, bundle.model.num_exits
    plan = ExecutionPlan(num_blocks, (0.0,) * num_exits, audit_share=share)
    return DronePipeline(bundle, plan, 0.2, audit_seed=seed)


def test_audits_send_a_share_of_early_answers_and_score_them_at_the_final_exit(
    bundle, fmnist_test
):
    pipe, server = audit_pipeline(bundle), TailServer(bundle)
    final = make(bundle, cut=bundle.model.num_blocks)  # the whole model, no early exit
    outcomes = []
    for i in range(200):
        now = 100.0 + 0.1 * i
        result = pipe.process(raw(fmnist_test.images[i]), i, now=now)
        assert result.where == Where.DRONE and result.exit_index == 0 and result.auditable
        if result.audit is None:
            continue
        audit = result.audit
        assert audit.frame_seq == result.frame_seq and audit.context == i
        # the camera frame at the model's input size, lossless
        assert audit.cut_point == 0 and audit.tensor.encoding == AUDIT_ENCODING == "png"
        assert audit.tensor.shape == (28, 28, 1) and audit.tensor.dtype == "uint8"
        outcome = pipe.on_reply(server.handle(audit), now=now + 0.01)
        assert isinstance(outcome, AuditOutcome) and outcome.frame_seq == result.frame_seq
        assert (outcome.exit_index, outcome.class_id) == (0, result.class_id)
        whole = final.process(raw(fmnist_test.images[i]), i)
        assert outcome.final_class_id == whole.class_id and whole.exit_index == 2
        assert outcome.agrees == (result.class_id == whole.class_id)
        outcomes.append(outcome)
    assert 200 * 0.2 - 3 * 5.7 <= len(outcomes) <= 200 * 0.2 + 3 * 5.7  # binomial, 3 sigma
    assert not all(o.agrees for o in outcomes) and sum(o.agrees for o in outcomes) > 0
    agreeing = sum(o.agrees for o in outcomes)
    assert pipe.audit_report() == (len(outcomes), len(outcomes), agreeing)
    assert pipe.audit_report() == (0, 0, 0)  # since the last report
    assert pipe.counters.results_out == pipe.counters.frames_in == 200  # one result per frame
    # the same seed audits the same frames; an audit holds the link until its reply
    again, server = audit_pipeline(bundle), TailServer(bundle)
    audited = []
    for i in range(200):
        result = again.process(raw(fmnist_test.images[i]), i, now=100.0 + 0.1 * i)
        if result.audit is not None:
            audited.append(result.frame_seq)
            again.on_reply(server.handle(result.audit), now=100.01 + 0.1 * i)
    assert audited == [o.frame_seq for o in outcomes]


def test_audits_wait_for_a_free_link_and_are_forgotten_when_lost(bundle, fmnist_test):
    pipe, server = audit_pipeline(bundle, share=0.2, seed=3), TailServer(bundle)
    images = itertools.cycle(fmnist_test.images[:50])
    audit_plan = pipe.plan
    # two offloads on the link fill the window: no frame is auditable meanwhile
    pipe.set_plan(ExecutionPlan(2, NEVER))
    pending = [pipe.process(raw(next(images)), k, now=100.0) for k in ("a", "b")]
    assert all(isinstance(r, OffloadRequest) for r in pending)
    pipe.set_plan(audit_plan)
    held = [pipe.process(raw(next(images)), k, now=100.01) for k in range(30)]
    assert not any(r.auditable or r.audit is not None for r in held)
    # their replies free the link
    for request in pending:
        pipe.on_reply(server.handle(request), now=100.05)

    def next_audit(now):
        while True:
            result = pipe.process(raw(next(images)), now, now=now)
            assert result.auditable
            if result.audit is not None:
                return result.audit, now
            now += 0.1

    audit, now = next_audit(100.1)
    # a reply with another header is refused and leaves the audit awaited
    with pytest.raises(ReplyError, match="header"):
        pipe.on_reply(ok_reply(audit, context="other"), now=now)
    # a refused audit scores nothing
    assert pipe.on_reply(ok_reply(audit, status=Status.OFFLOAD_REJECTED), now=now) is None
    assert pipe.counters.audits_rejected == 1 and pipe.counters.audits_answered == 0
    # unanswered past the window's horizon, an audit is lost: its reply comes to nothing
    audit, now = next_audit(now + 0.1)
    now += IN_FLIGHT_HORIZON_S + 0.1
    pipe.process(raw(next(images)), "late", now=now)
    with pytest.raises(ReplyError, match="awaits"):
        pipe.on_reply(server.handle(audit), now=now)
    assert pipe.counters.audits_answered == 0 and pipe.counters.audits_sent == 2
    # a link monitor's estimate too slow for an audit within a frame interval: none goes
    # (an audit of the 28x28 frame is a few hundred bytes; 1 kB/s carries 100 B in 0.1 s)
    pipe.link_estimate_bps = 1000.0
    now += 0.1
    slow = [pipe.process(raw(next(images)), k, now=now + 0.1 * k) for k in range(40)]
    assert not any(r.auditable or r.audit is not None for r in slow)
    pipe.link_estimate_bps = 1e6  # fast again: the monitor's estimate, not the window's, counts
    fast = [pipe.process(raw(next(images)), k, now=now + 4.0 + 0.1 * k) for k in range(40)]
    assert all(r.auditable for r in fast[:1])
    # without an audit share nothing is auditable or audited
    plain = make(bundle, cut=bundle.model.num_blocks, thresholds=(0.0, 0.0, 0.0))
    result = plain.process(raw(fmnist_test.images[0]), 0)
    assert not result.auditable and result.audit is None
