"""The life of a frame, ROS-free: drone-side head/offload/fallback and base-side tail.

`DronePipeline` turns each camera frame into exactly one `FrameResult`, either at once (an exit
fired, the whole model ran locally, or the input was bad) or later, when the base station
replies or the offload's fallback time passes. `TailServer` validates offload requests and
finishes them. The ROS nodes only convert messages to and from these types.

Deadlines: every frame has `deadline_s` from its arrival. An offload falls back when the reply
is not back by the deadline less the time the drone needs to reach an exit (measured per block
at start-up), and answers there: the deepest exit it can reach in time, unless recent replies
took longer than that leaves them; then a shallower one (core.decisions.fallback_time).
A frame whose offload the link cannot take now (core.offload_window) finishes on the drone.
These rules are core.decisions', which the simulator follows too.

Audits: under a plan with an `audit_share`, an early answer on the drone is also sent to the
base station (core.decisions.audit_due) when the offload window could take it and the link
carries it within a frame interval (`audit_fits`, at the link monitor's estimate,
`link_estimate_bps`), as the camera frame in AUDIT_ENCODING; the
base station's final exit then tells whether the early answer agreed (`AuditOutcome`). The
frame's result goes out at once, as without the audit.

At cut 0 a plan with an image encoding (core.codec.IMAGE_ENCODINGS) ships the camera frame at
the model's input size instead of the input tensor; the base station preprocesses it as the
drone does (core.images.to_model_input) and runs the whole model.

Emulating a slower drone: with `compute_slowdown` > 1 the drone pads its measured compute time
to that multiple (sleeping), so a desktop can stand in for, say, a Jetson Nano. Given the
device's times (`device_times`: a profile's, core.profiles.Profile.drone_times, calibrated where
the profile is, with its fixed time per call), it pads each compute call instead to that multiple
of the device's time of what it ran, so the emulated drone keeps its speed whatever this
machine's load, and computes as the simulator's drone does. Off (1) on a real robot.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from edgeml_ros.core.checkpoint import OFFLOAD_DIGEST_CHARS, ModelBundle, digest_matches
from edgeml_ros.core.codec import (
    IMAGE_ENCODINGS,
    CodecError,
    EncodedTensor,
    decode_tensor,
    encode_tensor,
    max_wire_bytes,
)
from edgeml_ros.core.decisions import (
    AUDIT_ENCODING,
    LocalTimes,
    audit_due,
    audit_fits,
    fallback_budget,
    fallback_exit,
    fallback_time,
    head_exits,
)
from edgeml_ros.core.decisions import (
    EXPIRE_PERIOD_S as EXPIRE_PERIOD_S,  # the perception node's, re-exported
)
from edgeml_ros.core.images import (
    ImageDecodeError,
    decode_compressed,
    decode_frame,
    decode_image,
    encode_frame,
    input_frame,
    to_model_input,
)
from edgeml_ros.core.offload_window import OffloadWindow
from edgeml_ros.core.outcome import Status, Where
from edgeml_ros.core.plan import ExecutionPlan, check_plan
from edgeml_ros.core.runtime import ExitDecision, HeadOutcome, SplitRunner
from edgeml_ros.core.untrusted import RecentKeys, shown, shown_shape


@dataclass
class RawImage:
    """The fields of a sensor_msgs/Image, with `data` as bytes-like (not copied)."""

    encoding: str
    height: int
    width: int
    step: int
    is_bigendian: bool
    data: Any


@dataclass
class CompressedFrame:
    """The fields of a sensor_msgs/CompressedImage."""

    format: str
    data: Any


@dataclass
class FrameResult:
    """The one result of one frame; `context` is the caller's handle (the camera header)."""

    frame_seq: int
    context: Any
    status: Status
    where: Where
    reason: str = ""
    class_id: int = -1
    class_name: str = ""
    confidence: float = 0.0
    exit_index: int = -1
    cut_point: int = 0
    policy_name: str = ""
    decode_ms: float = 0.0
    head_ms: float = 0.0
    encode_ms: float = 0.0
    transfer_ms: float = 0.0
    tail_ms: float = 0.0
    total_ms: float = 0.0
    input_age_ms: float = 0.0
    # the drone's compute for this frame (its head, and a fallback's finish) at the drone's
    # profiled speed (`DronePipeline.profiled_times`): core.outcome.drone_compute_ms over it
    # is how many times slower than profiled the drone ran it
    profiled_ms: float = 0.0
    offload_bytes: int = 0
    # under a plan with audits: whether the link could have carried an audit of this frame,
    # and the audit sent for it (to publish beside the result), if any
    auditable: bool = False
    audit: OffloadRequest | None = None


@dataclass
class OffloadRequest:
    """The features of one frame, on their way to the base station.

    `stamp_ns`: the frame's capture stamp, as received; with `frame_seq` it tells a request
    from a duplicate (a drone that restarts numbers its frames from 0 again).
    """

    frame_seq: int
    context: Any
    model_id: str
    weights_digest: str
    cut_point: int
    tensor: EncodedTensor
    stamp_ns: int = 0


@dataclass
class OffloadReply:
    """The base station's answer to one request; `context` echoes the request's."""

    frame_seq: int
    status: int  # a Status, as received (the drone refuses others)
    reason: str = ""
    class_id: int = -1
    confidence: float = 0.0
    exit_index: int = -1
    tail_ms: float = 0.0
    context: Any = None


@dataclass(frozen=True)
class AuditOutcome:
    """The base station's final exit on a frame the drone answered early, to compare."""

    frame_seq: int
    exit_index: int  # the drone's early exit
    class_id: int  # the drone's answer
    final_class_id: int  # the final exit's, at the base station

    @property
    def agrees(self) -> bool:
        """Whether the early answer was the final exit's."""
        return self.class_id == self.final_class_id


class ReplyError(ValueError):
    """A reply the drone does not take: it answers no offload awaiting one, or is malformed."""


# What a base station answers with; a reason it gives is cut to MAX_REASON_CHARS.
REPLY_STATUSES = (Status.OK, Status.OFFLOAD_REJECTED, Status.INTERNAL_ERROR)
MAX_REASON_CHARS = 512


@dataclass
class _Pending:
    result: FrameResult
    arrived: float
    sent: float
    fallback_at: float
    features: torch.Tensor
    deepest_local: ExitDecision | None
    rule: str


@dataclass
class PipelineCounters:
    """Frame accounting: every frame in ends as exactly one result (`results_out`)."""

    frames_in: int = 0
    results_out: int = 0
    offloaded: int = 0
    fallbacks: int = 0
    bad_input: int = 0
    stale: int = 0
    internal_errors: int = 0
    rejected: int = 0
    late_replies: int = 0
    unknown_replies: int = 0
    bad_replies: int = 0
    bad_plans: int = 0
    window_full: int = 0
    offloads_lost: int = 0
    offload_replies: int = 0
    audits_sent: int = 0
    audits_answered: int = 0
    audits_agreeing: int = 0
    audits_rejected: int = 0
    exits: Counter = field(default_factory=Counter)
    where: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict[str, int]:
        """Flat name -> count view, for diagnostics and summaries."""
        out = {k: v for k, v in self.__dict__.items() if isinstance(v, int)}
        out.update({f"exit_{k}": v for k, v in sorted(self.exits.items())})
        out.update({f"where_{Where(k).name.lower()}": v for k, v in sorted(self.where.items())})
        return out


def _ms(seconds: float) -> float:
    return seconds * 1000.0


def validate_plan(bundle: ModelBundle, plan: ExecutionPlan) -> None:
    """Raise ValueError naming the field of `plan` that does not fit the bundle's model."""
    check_plan(plan, bundle.model.num_blocks, bundle.model.num_exits)


def model_input_shape(bundle: ModelBundle) -> tuple[int, ...]:
    """Shape of one preprocessed frame (batch of one) for the bundle's model."""
    return (1, *bundle.meta.input_shape)


class DronePipeline:
    """Drone side: decode, head, exits, offload requests, replies and deadline fallbacks.

    `compute_clock` times the drone's compute (seconds). A replay in a time of its own (the
    `now` arguments) may stop it (a constant): the drone then computes in no time, whatever the
    host's load. `audit_seed` seeds the draws that pick the audited frames (None: fresh).
    `device_times`: the model's times on the emulated device (slowdown 1, core.profiles'
    `drone_times`), which the drone's compute is padded to `compute_slowdown` times of, and
    plans its fallbacks with (None: this machine's, measured at start-up).
    """

    def __init__(
        self,
        bundle: ModelBundle,
        plan: ExecutionPlan,
        deadline_s: float,
        compute_slowdown: float = 1.0,
        max_age_s: float = float("inf"),
        device: str = "cpu",
        max_in_flight: int = 2,
        compute_clock: Callable[[], float] = time.perf_counter,
        audit_seed: int | None = None,
        device_times: LocalTimes | None = None,
    ) -> None:
        self.bundle = bundle
        self.compute_clock = compute_clock
        self.runner = SplitRunner(bundle.model, device)
        self.counters = PipelineCounters()
        self._pending: dict[int, _Pending] = {}
        self.window = OffloadWindow(max_in_flight)
        # Offloads a reply may still come for (pending, or on the link): seq -> context.
        self._awaiting: dict[int, Any] = {}
        # Audits on the link: seq -> (context, the drone's early answer).
        self._audits: dict[int, tuple[Any, ExitDecision]] = {}
        self._audit_draws = np.random.default_rng(audit_seed)
        self._audit_bytes = 0  # the last audit's (the next one's size, until it is encoded)
        # the link monitor's estimate of the link in bytes/s (None: none yet), which audits
        # go by; the offload window's delivery rate stands in without one (it learns only
        # from replies, so it keeps a slow link's rate until offloads measure it again)
        self.link_estimate_bps: float | None = None
        self._next_seq = 0
        self._reported: dict[str, int] = {}  # counters at their last report
        self.plan = plan
        self.deadline_s = deadline_s
        self.compute_slowdown = compute_slowdown
        self.device_times = device_times
        self.max_age_s = max_age_s
        self.set_plan(plan)
        self.runner.warm_up(model_input_shape(bundle))
        self.block_s, self.head_s = self.runner.measure(model_input_shape(bundle))

    @property
    def local_times(self) -> LocalTimes:
        """The drone's compute times, slowdown included: the device's, else measured here."""
        if self.device_times is not None:
            return replace(self.device_times, slowdown=self.compute_slowdown)
        return LocalTimes(self.block_s, self.head_s, self.bundle.model.exit_after,
                          self.compute_slowdown)  # fmt: skip

    @property
    def profiled_times(self) -> LocalTimes:
        """The drone's compute times at slowdown 1: the device's, else measured at start-up."""
        return replace(self.local_times, slowdown=1.0)

    def _pad(self, started: float, profiled_s: float) -> None:
        """Emulate a slower device: stretch the compute since `started` to the device's time.

        With `device_times`, to `compute_slowdown` times `profiled_s`, the compute's time there
        at slowdown 1 (nothing where this machine took longer); else to the slowdown times
        this machine's.
        """
        took = self.compute_clock() - started
        if self.device_times is not None:
            time.sleep(max(0.0, profiled_s * self.compute_slowdown - took))
        elif self.compute_slowdown > 1.0:
            time.sleep(took * (self.compute_slowdown - 1.0))

    def _head_time(self, plan: ExecutionPlan, outcome: HeadOutcome) -> float:
        """The profiled time (slowdown 1) of the head that produced `outcome` under `plan`."""
        after = self.bundle.model.exit_after
        answered = None if outcome.fired is None else outcome.fired.exit_index
        stop = plan.cut_point if answered is None else after[answered] + 1
        if stop == 0:  # a head that runs no block computes nothing (as the simulator's)
            return 0.0
        checked = head_exits(after, stop, plan.exit_thresholds, answered)
        return self.profiled_times.head(stop, checked)

    def set_plan(self, plan: ExecutionPlan) -> None:
        """Switch to a new execution plan from the next frame on (ValueError if invalid)."""
        validate_plan(self.bundle, plan)
        self.plan = plan

    def check_plan(self, plan: ExecutionPlan, weights_digest: str) -> None:
        """validate_plan for a plan sent from outside (a controller); a refusal is counted.

        `weights_digest` names the model the plan was made for: it must be this one's.
        """
        try:
            ours = self.bundle.meta.weights_digest
            if not digest_matches(weights_digest, ours):
                raise ValueError(
                    f"weights_digest: made for {shown(weights_digest, 30)}, not this model's "
                    f"{ours[:OFFLOAD_DIGEST_CHARS]}..."
                )
            validate_plan(self.bundle, plan)
        except ValueError:
            self.counters.bad_plans += 1
            raise

    def link_report(self) -> tuple[float, int, int]:
        """The offload window's view of the link, for the link monitor (core.link).

        Its delivery rate in kbit/s (0: not known yet), and since the last report the frames it
        kept on the drone because the link was still busy, and the offload replies it received.
        """
        rate = self.window.delivery_rate_bps
        held, replies = self._since_report("window_full", "offload_replies")
        return 0.0 if rate is None else rate * 8 / 1000, held, replies

    def audit_report(self) -> tuple[int, int, int]:
        """Audits sent, answered and agreeing with the final exit since the last report."""
        return self._since_report("audits_sent", "audits_answered", "audits_agreeing")

    def _since_report(self, *names: str) -> tuple[int, ...]:
        """How much each named counter grew since its last report."""
        counts = [getattr(self.counters, name) for name in names]
        grown = tuple(
            n - self._reported.get(name, 0) for name, n in zip(names, counts, strict=True)
        )
        self._reported.update(zip(names, counts, strict=True))
        return grown

    @property
    def pending_count(self) -> int:
        """Frames waiting for a base-station reply."""
        return len(self._pending)

    def _finish(self, result: FrameResult, arrived: float, now: float) -> FrameResult:
        result.total_ms = _ms(now - arrived)
        self.counters.results_out += 1
        self.counters.where[int(result.where)] += 1
        if result.status == Status.OK:
            self.counters.exits[result.exit_index] += 1
        return result

    def _answer(self, result: FrameResult, decision: ExitDecision, where: Where) -> None:
        result.status = Status.OK
        result.where = where
        result.class_id = decision.class_id
        result.class_name = self.bundle.meta.class_names[decision.class_id]
        result.confidence = decision.confidence
        result.exit_index = decision.exit_index

    def process(
        self,
        image: RawImage | CompressedFrame,
        context: Any,
        now: float | None = None,
        age_s: float = 0.0,
    ) -> FrameResult | OffloadRequest:
        """Handle one camera frame: a finished result, or an offload request to send.

        A frame already older than `max_age_s` when it gets here (`age_s`, from its capture
        stamp) is dropped as STALE: the drone works on fresh frames, never on a backlog.
        """
        arrived = time.monotonic() if now is None else now
        self.window.frame_arrived(arrived)
        plan = self.plan
        seq = self._next_seq
        self._next_seq += 1
        self.counters.frames_in += 1
        result = FrameResult(
            seq,
            context,
            Status.OK,
            Where.DRONE,
            cut_point=plan.cut_point,
            policy_name=plan.policy_name,
        )
        result.input_age_ms = 1000.0 * age_s
        t0 = self.compute_clock()
        if age_s > self.max_age_s:
            self.counters.stale += 1
            result.status, result.where = Status.STALE, Where.NONE
            result.reason = f"stale frame dropped: {1000 * age_s:.0f} ms old on arrival"
            return self._finish(result, arrived, arrived)
        try:
            return self._run(image, result, plan, arrived, t0)
        except ImageDecodeError as exc:
            self.counters.bad_input += 1
            status, reason = Status.BAD_INPUT, str(exc)
        except Exception as exc:  # a frame must never vanish: report it and carry on
            self.counters.internal_errors += 1
            status, reason = Status.INTERNAL_ERROR, f"{type(exc).__name__}: {exc}"
        result.status, result.where, result.reason = status, Where.NONE, reason
        return self._finish(result, arrived, arrived + self.compute_clock() - t0)

    def decode(self, image: RawImage | CompressedFrame) -> np.ndarray:
        """A camera frame as an (H, W, C) [0, 1] image with the model's channels."""
        channels = self.bundle.meta.channels
        if isinstance(image, CompressedFrame):
            return decode_compressed(image.format, image.data, channels)
        return decode_image(image.encoding, image.height, image.width, image.step,
                            image.is_bigendian, image.data, channels)  # fmt: skip

    def _run(
        self, image: RawImage, result: FrameResult, plan: ExecutionPlan, arrived: float, t0: float
    ) -> FrameResult | OffloadRequest:
        meta = self.bundle.meta
        pixels = self.decode(image)
        x = to_model_input(pixels, tuple(meta.input_size), meta.norm_mean, meta.norm_std)
        t1 = self.compute_clock()
        outcome = self.runner.run_head(x, plan.cut_point, plan.exit_thresholds, plan.exit_rule)
        profiled_s = self._head_time(plan, outcome)
        self._pad(t1, profiled_s)
        t2 = self.compute_clock()
        result.decode_ms, result.head_ms = _ms(t1 - t0), _ms(t2 - t1)
        result.profiled_ms = _ms(profiled_s)
        if outcome.fired is not None:
            self._answer(result, outcome.fired, Where.DRONE)
            if plan.audit_share > 0:
                self._audit(result, pixels, plan, arrived + (t2 - t0))
            return self._finish(result, arrived, arrived + (t2 - t0))
        pending = _Pending(result, arrived, arrived + (t2 - t0), 0.0, outcome.features,
                           outcome.deepest_local, plan.exit_rule)  # fmt: skip
        busy = self._window_busy(pending.sent)
        if busy is not None:
            # The link is still busy with earlier offloads: queueing behind them would only
            # make this frame late, so it finishes on the drone now.
            self.counters.window_full += 1
            return self._fallback(pending, pending.sent, busy)
        if plan.encoding in IMAGE_ENCODINGS:  # the camera frame itself (cut 0, check_plan)
            tensor = encode_frame(input_frame(pixels, tuple(meta.input_size)), plan.encoding)
        else:
            tensor = encode_tensor(outcome.features.cpu().numpy(), plan.encoding,
                                   plan.compression)  # fmt: skip
        t3 = self.compute_clock()
        result.encode_ms = _ms(t3 - t2)
        result.offload_bytes = len(tensor.data)
        pending.sent = arrived + (t3 - t0)
        deepest = outcome.deepest_local
        pending.fallback_at = fallback_time(
            self.local_times,
            plan.cut_point,
            None if deepest is None else deepest.exit_index,
            arrived,
            pending.sent,
            self.deadline_s,
            self.window.reply_delay_s,
        )
        self._pending[result.frame_seq] = pending
        self._awaiting[result.frame_seq] = result.context
        self.window.sent(result.frame_seq, pending.sent, len(tensor.data))
        self.counters.offloaded += 1
        return OffloadRequest(
            result.frame_seq,
            result.context,
            meta.model_id,
            meta.weights_digest[:OFFLOAD_DIGEST_CHARS],
            plan.cut_point,
            tensor,
        )

    def _audit(
        self, result: FrameResult, pixels: np.ndarray, plan: ExecutionPlan, now: float
    ) -> None:
        """Note whether the link could carry an audit of `result`, and send one if it is due."""
        window = self.window
        busy = self._window_busy(now)
        rate = self.link_estimate_bps
        if rate is None:
            rate = window.delivery_rate_bps
        result.auditable = busy is None and audit_fits(
            self._audit_bytes, rate, window.frame_interval_s
        )
        draw = self._audit_draws.random()
        if not result.auditable or not audit_due(
            result.exit_index, self.bundle.model.num_exits, draw, plan.audit_share
        ):
            return
        meta, seq = self.bundle.meta, result.frame_seq
        frame = encode_frame(input_frame(pixels, tuple(meta.input_size)), AUDIT_ENCODING)
        digest = meta.weights_digest[:OFFLOAD_DIGEST_CHARS]
        result.audit = OffloadRequest(seq, result.context, meta.model_id, digest, 0, frame)
        self._audits[seq] = (result.context, ExitDecision(result.exit_index, result.class_id,
                                                          result.confidence))  # fmt: skip
        self._audit_bytes = len(frame.data)
        window.sent(seq, now, len(frame.data))
        self.counters.audits_sent += 1

    def _window_busy(self, now: float) -> str | None:
        """Why the offload window takes nothing now (None: it takes one), losses counted."""
        busy, lost = self.window.full(now)
        self.counters.offloads_lost += lost
        self._forget_unawaited()
        return busy

    def _forget_unawaited(self) -> None:
        """Offloads and audits not on the link (the window found them lost): no reply comes.

        An offload still pending is awaited until it falls back (its reply may yet come).
        """
        self._awaiting = {
            s: c for s, c in self._awaiting.items() if s in self._pending or s in self.window
        }
        self._audits = {s: a for s, a in self._audits.items() if s in self.window}

    def _reply_problem(self, reply: OffloadReply) -> str | None:
        """What in a reply's fields no base station sends (None: nothing)."""
        if reply.status not in REPLY_STATUSES:
            names = ", ".join(s.name for s in REPLY_STATUSES)
            return f"status {reply.status} is not a base station's ({names})"
        if not (math.isfinite(reply.tail_ms) and reply.tail_ms >= 0.0):
            return f"tail_ms {reply.tail_ms} is not a time (finite, >= 0)"
        if reply.status != Status.OK:
            return None
        classes, exits = len(self.bundle.meta.class_names), self.bundle.model.num_exits
        if not 0 <= reply.class_id < classes:
            return f"class_id {reply.class_id} outside 0..{classes - 1}"
        if not 0 <= reply.exit_index < exits:
            return f"exit_index {reply.exit_index} outside 0..{exits - 1}"
        if not 0.0 <= reply.confidence <= 1.0:
            return f"confidence {reply.confidence} outside [0, 1]"
        return None

    def on_reply(
        self, reply: OffloadReply, now: float | None = None
    ) -> FrameResult | AuditOutcome | None:
        """Finish the frame a reply belongs to, or score an audit.

        None for a late reply (its frame fell back) and for an audit the base station refused
        (counted). Only a reply to an offload or audit still awaiting one, with the request's
        context (the camera header) echoed back and fields a base station sends, is taken. Any
        other (a duplicate, one for a frame never offloaded, a forged or garbled one) raises
        ReplyError, counted, and changes nothing: that frame still ends by its own reply or its
        fallback.
        """
        now = time.monotonic() if now is None else now
        seq = reply.frame_seq
        if seq in self._awaiting:
            context = self._awaiting[seq]
        elif seq in self._audits:
            context = self._audits[seq][0]
        else:
            self.counters.unknown_replies += 1
            raise ReplyError(f"no offload of frame {seq} awaits a reply (a duplicate, or unsent)")
        problem = self._reply_problem(reply)
        if problem is None and reply.context != context:
            problem = "its header is not the request's"
        if problem is not None:
            self.counters.bad_replies += 1
            raise ReplyError(problem)
        self.counters.offload_replies += 1
        self.counters.offloads_lost += self.window.answered(seq, now, reply.tail_ms / 1000.0)
        if seq in self._audits:
            early = self._audits.pop(seq)[1]
            self._forget_unawaited()
            if reply.status != Status.OK:
                self.counters.audits_rejected += 1
                return None
            outcome = AuditOutcome(seq, early.exit_index, early.class_id, reply.class_id)
            self.counters.audits_answered += 1
            self.counters.audits_agreeing += outcome.agrees
            return outcome
        del self._awaiting[seq]
        self._forget_unawaited()
        pending = self._pending.pop(seq, None)
        if pending is None:
            self.counters.late_replies += 1
            return None
        result = pending.result
        result.tail_ms = reply.tail_ms
        result.transfer_ms = max(0.0, _ms(now - pending.sent) - reply.tail_ms)
        if reply.status == Status.OK:
            decision = ExitDecision(reply.exit_index, reply.class_id, reply.confidence)
            self._answer(result, decision, Where.BASE)
        else:
            self.counters.rejected += 1
            result.status, result.where = Status(reply.status), Where.BASE
            result.reason = reply.reason[:MAX_REASON_CHARS]
        return self._finish(result, pending.arrived, now)

    def expire(self, now: float | None = None, force: bool = False) -> list[FrameResult]:
        """Fall back locally for offloads past their fallback time (all of them when `force`)."""
        now = time.monotonic() if now is None else now
        late = [s for s, p in self._pending.items() if force or now >= p.fallback_at]
        results = [self._fallback(self._pending.pop(seq), now, "no offload reply in time")
                   for seq in late]  # fmt: skip
        self._forget_unawaited()
        return results

    def _fallback(self, pending: _Pending, now: float, why: str) -> FrameResult:
        """Finish an offloaded frame on the drone, at the deepest exit still in time."""
        result = pending.result
        self.counters.fallbacks += 1
        result.transfer_ms = _ms(now - pending.sent)  # waiting on the link for a reply (or 0)
        budget = fallback_budget(pending.arrived, now, self.deadline_s)
        deepest = pending.deepest_local
        exit_index, compute = fallback_exit(
            self.local_times,
            result.cut_point,
            budget,
            None if deepest is None else deepest.exit_index,
        )
        if not compute:
            decision = deepest
            result.reason = f"{why}, no time left: deepest local exit answered"
        else:
            t0 = self.compute_clock()
            decision = self.runner.run_to_exit(
                pending.features, result.cut_point, exit_index, pending.rule
            )
            profiled_s = self.profiled_times.to_exit(result.cut_point, exit_index)
            self._pad(t0, profiled_s)
            result.tail_ms = _ms(self.compute_clock() - t0)
            result.profiled_ms += _ms(profiled_s)
            now += self.compute_clock() - t0
            result.reason = f"{why}: finished on the drone at exit {exit_index}"
        self._answer(result, decision, Where.FALLBACK)
        return self._finish(result, pending.arrived, now)


# Requests remembered per drone, so that the base station answers each once.
DUPLICATE_WINDOW = 1024
# Fast DDS 3.2 reports, with each fragmented sample lost after the first, a bogus lost-sample
# change of 2**31 - 1 (its 32-bit total wraps) next to the true one: not a count.
_BOGUS_LOST_COUNT = 2**31 - 1


class TailServer:
    """Base-station side: validate an offload request, then finish it with the tail.

    `max_payload_bytes` 0: the most the model's tensors can take (fp32 at its largest cut,
    compressed at worst, `largest_payload_bytes`).
    """

    def __init__(
        self, bundle: ModelBundle, max_payload_bytes: int = 0, device: str = "cpu"
    ) -> None:
        self.bundle = bundle
        self.runner = SplitRunner(bundle.model, device)
        input_shape = model_input_shape(bundle)
        height, width = bundle.meta.input_size
        self._frame_shape = (height, width, bundle.meta.channels)  # as image encodings ship it
        self._feature_shapes = [
            self.runner.feature_shape(input_shape, cut) for cut in range(bundle.model.num_blocks)
        ]
        self.largest_payload_bytes = max(
            max_wire_bytes(math.prod(shape), "fp32", "zlib") for shape in self._feature_shapes
        )
        self.max_payload_bytes = max_payload_bytes
        self.runner.warm_up(input_shape)
        self.served = 0
        self.rejected = 0
        self.duplicates = 0  # requests answered already: dropped
        self.lost_in_transport = 0  # requests DDS lost before delivering them
        self._answered: dict[str, RecentKeys] = {}
        self.busy_s = 0.0  # time spent answering requests, for the load report
        self.service_ms: list[float] = []  # per request since the last load report

    @property
    def max_payload_bytes(self) -> int:
        """Largest accepted payload, in bytes."""
        return self._max_payload_bytes

    @max_payload_bytes.setter
    def max_payload_bytes(self, value: int) -> None:
        self._max_payload_bytes = value or self.largest_payload_bytes

    def take_load(self) -> tuple[int, float, float]:
        """Requests answered, busy seconds and median service ms since the last call."""
        times, self.service_ms = self.service_ms, []
        busy, self.busy_s = self.busy_s, 0.0
        return len(times), busy, float(np.median(times)) if times else 0.0

    def count_lost(self, count_change: int) -> None:
        """Requests DDS lost on the way (a subscription's message-lost event)."""
        if 0 < count_change < _BOGUS_LOST_COUNT:
            self.lost_in_transport += count_change

    def _check(self, request: OffloadRequest) -> torch.Tensor:
        """The request's features, or ValueError naming what is wrong (cheapest checks first)."""
        meta = self.bundle.meta
        if request.model_id != meta.model_id:
            raise ValueError(
                f"model_id {shown(request.model_id)} is not served ({meta.model_id!r})"
            )
        if not digest_matches(request.weights_digest, meta.weights_digest):
            raise ValueError(
                f"weights digest {request.weights_digest[:OFFLOAD_DIGEST_CHARS]!r} is not the "
                f"served model's {meta.weights_digest[:OFFLOAD_DIGEST_CHARS]!r} (the first "
                f"{OFFLOAD_DIGEST_CHARS} characters at least)"
            )
        if not 0 <= request.cut_point < len(self._feature_shapes):
            raise ValueError(
                f"cut_point {request.cut_point} outside 0..{len(self._feature_shapes) - 1}"
            )
        if len(request.tensor.data) > self.max_payload_bytes:
            raise ValueError(
                f"payload of {len(request.tensor.data)} bytes exceeds {self.max_payload_bytes}"
            )
        tensor = request.tensor
        if tensor.encoding in IMAGE_ENCODINGS:
            return self._frame_input(request)
        expected = self._feature_shapes[request.cut_point]
        if tuple(tensor.shape) != expected:
            raise ValueError(
                f"shape {shown_shape(tensor.shape)} does not match cut "
                f"{request.cut_point}, which produces {list(expected)}"
            )
        return torch.from_numpy(decode_tensor(tensor, max_elements=math.prod(expected)))

    def _frame_input(self, request: OffloadRequest) -> torch.Tensor:
        """A camera frame shipped in an image encoding, as the input the drone makes of one.

        ValueError naming what is wrong.
        """
        tensor, meta = request.tensor, self.bundle.meta
        if request.cut_point != 0:
            raise ValueError(
                f"encoding {tensor.encoding} ships the camera frame: cut_point must be 0, not "
                f"{request.cut_point}"
            )
        if tuple(tensor.shape) != self._frame_shape:
            raise ValueError(
                f"shape {shown_shape(tensor.shape)} is not the model's input frame "
                f"{list(self._frame_shape)} (height, width, channels)"
            )
        frame = decode_frame(tensor, meta.channels)
        return to_model_input(frame, tuple(meta.input_size), meta.norm_mean, meta.norm_std)

    def handle(self, request: OffloadRequest, source: str = "") -> OffloadReply | None:
        """Answer a request once; a bad one gets a rejection naming the problem.

        A request from `source` (a drone) already answered, the same frame_seq and stamp among
        its last DUPLICATE_WINDOW, gets None: dropped, counted in `duplicates`.
        """
        if self._answered.setdefault(source, RecentKeys(DUPLICATE_WINDOW)).seen(
            (request.frame_seq, request.stamp_ns)
        ):
            self.duplicates += 1
            return None
        t0 = time.perf_counter()
        try:
            return self._handle(request, t0)
        finally:
            spent = time.perf_counter() - t0
            self.busy_s += spent
            self.service_ms.append(spent * 1000.0)

    def _refuse(
        self, request: OffloadRequest, status: Status, reason: str, t0: float
    ) -> OffloadReply:
        """A rejection; its tail_ms is the time it took to find the problem."""
        self.rejected += 1
        spent_ms = _ms(time.perf_counter() - t0)
        return OffloadReply(request.frame_seq, status, reason, tail_ms=spent_ms,
                            context=request.context)  # fmt: skip

    def _handle(self, request: OffloadRequest, t0: float) -> OffloadReply:
        try:
            features = self._check(request)
        except (ValueError, CodecError) as exc:
            return self._refuse(request, Status.OFFLOAD_REJECTED, str(exc), t0)
        try:
            decision = self.runner.run_tail(features, request.cut_point)
        except Exception as exc:  # a request must always get a reply
            reason = f"{type(exc).__name__}: {exc}"
            return self._refuse(request, Status.INTERNAL_ERROR, reason, t0)
        self.served += 1
        return OffloadReply(
            request.frame_seq,
            Status.OK,
            "",
            decision.class_id,
            decision.confidence,
            decision.exit_index,
            _ms(time.perf_counter() - t0),
            request.context,
        )
