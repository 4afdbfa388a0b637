"""Calibrating the simulator to recorded live runs (ROS-free).

A live run (bringup.run_record reads one from its recording) gives, per frame, the latency
from the camera stamp to the result's arrival and its breakdown (InferenceResult: decode_ms,
head_ms, encode_ms, transfer_ms, tail_ms, total_ms, input_age_ms). Each term of the simulator
is fitted from the part of the breakdown that isolates it, never from the end-to-end latency:
see `fit_calibration`.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING

import numpy as np

from edgeml_ros.core.decisions import (
    EXPIRE_PERIOD_S,
    FALLBACK_MARGIN_S,
    head_exits,
)
from edgeml_ros.core.link import OUTAGE_MBPS, score_estimate
from edgeml_ros.core.outcome import Status, Where
from edgeml_ros.core.wire import WireFormat

if TYPE_CHECKING:
    from edgeml_ros.core.profiles import Profile


class RunFileError(ValueError):
    """A run file (recording or benchmark JSON) that is missing, malformed or unusable."""


@dataclass(frozen=True)
class LiveFrames:
    """Per-frame fields of a live run's results, as parallel arrays (InferenceResult's).

    `stamp_s`: the camera stamp (wall clock); `latency_ms`: from it to the result's arrival;
    `correct`: 1, 0, or NaN where unscored; `thresholds`: the exit thresholds of the plan in
    force where known (None elsewhere).
    """

    stamp_s: np.ndarray
    latency_ms: np.ndarray
    where: np.ndarray
    status: np.ndarray
    cut_point: np.ndarray
    exit_index: np.ndarray
    decode_ms: np.ndarray
    head_ms: np.ndarray
    encode_ms: np.ndarray
    transfer_ms: np.ndarray
    tail_ms: np.ndarray
    total_ms: np.ndarray
    input_age_ms: np.ndarray
    offload_bytes: np.ndarray
    correct: np.ndarray
    thresholds: tuple[tuple[float, ...] | None, ...]

    @classmethod
    def from_columns(cls, columns: dict[str, list]) -> LiveFrames:
        """From equally long lists, one per field; RunFileError for values no run has."""
        lengths = {len(v) for v in columns.values()}
        if len(lengths) != 1:
            raise RunFileError("the per-frame columns differ in length")
        arrays = {}
        for name, values in columns.items():
            if name == "thresholds":
                arrays[name] = tuple(None if t is None else tuple(map(float, t)) for t in values)
                continue
            arr = np.asarray(values, dtype=np.float64)
            finite = np.isfinite(arr) if name != "correct" else ~np.isinf(arr)
            if not finite.all():
                raise RunFileError(f"{name} holds a value that is not finite")
            arrays[name] = arr
        frames = cls(**arrays)
        for name in ("decode_ms", "head_ms", "encode_ms", "transfer_ms", "tail_ms", "total_ms",
                     "input_age_ms", "offload_bytes", "cut_point"):  # fmt: skip
            if np.any(getattr(frames, name) < 0):
                raise RunFileError(f"{name} holds a negative value")
        return frames

    def __len__(self) -> int:
        return len(self.stamp_s)


@dataclass(frozen=True)
class LiveRun:
    """One recorded live run of one policy.

    `link`: the (wall-clock s, Mbit/s, RTT ms) the shaper applied, in time order (empty: the
    loopback link, no RTT); `compute_slowdown`: the emulated drone's compute time over the
    profiled times;
    `weights_digest`: of the model the controller planned for ('' if it published no plan);
    `frame_id`: the camera frames'.
    """

    source: str
    policy: str
    command: str
    rate_hz: float
    deadline_ms: float
    compute_slowdown: float
    link_shaped: bool
    link: np.ndarray
    weights_digest: str
    frame_id: str
    frames: LiveFrames
    link_burst_ms: float = 0.0  # the shaped link's token bucket (core.calibration.Calibration)
    link_burst_min_bytes: int = 0
    first_plan_s: float | None = None  # the controller's first plan after the first frame
    # the link monitor's estimates as received: (wall-clock s, Mbit/s, RTT ms) rows (none: not
    # recorded)
    estimates: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))


# An affine fit needs work whose predicted times span this factor (else a scale alone).
AFFINE_SPAN = 2.0


@dataclass(frozen=True)
class Fit:
    """An affine fit `measured = scale * predicted + fixed_ms` and its residuals (ms)."""

    scale: float
    fixed_ms: float
    frames: int
    residual_ms_p50: float  # median absolute residual
    residual_ms_p95: float


def fit_affine(predicted_ms: np.ndarray, measured_ms: np.ndarray) -> Fit:
    """Fit `measured = scale * predicted + fixed_ms` (scale > 0, fixed_ms >= 0), robustly.

    Frames with the same predicted time (the same blocks and exits) form a group; the line is
    a least-squares fit through the groups' medians, weighted by their sizes, so a stall of the
    machine moves no term. A fixed time is fitted only where the groups' predicted times span
    a factor of AFFINE_SPAN at least (else the two terms cannot be told apart): otherwise only
    a scale, or only a fixed time where the work is predicted to take none.
    """
    x, y = np.asarray(predicted_ms, np.float64), np.asarray(measured_ms, np.float64)
    if len(x) == 0:
        raise ValueError("no frames to fit")
    keys, group = np.unique(np.round(x, 6), return_inverse=True)
    gx = np.array([np.median(x[group == g]) for g in range(len(keys))])
    gy = np.array([np.median(y[group == g]) for g in range(len(keys))])
    w = np.bincount(group).astype(np.float64)
    scale, fixed = _weighted_line(gx, gy, w)
    residual = np.abs(y - (scale * x + fixed))
    return Fit(float(scale), float(fixed), len(x), float(np.median(residual)),
               float(np.percentile(residual, 95)))  # fmt: skip


def _weighted_line(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    """Scale and offset of the weighted least-squares line, held to scale > 0, offset >= 0."""
    if np.all(x <= 0):
        return 1.0, max(0.0, float(np.average(y, weights=w)))
    if len(x) > 1 and x.max() >= AFFINE_SPAN * x.min():
        mx, my = np.average(x, weights=w), np.average(y, weights=w)
        var = np.average((x - mx) ** 2, weights=w)
        if var > 0:
            scale = np.average((x - mx) * (y - my), weights=w) / var
            fixed = my - scale * mx
            if scale > 0 and fixed >= 0:
                return float(scale), float(fixed)
    # through the origin: a scale alone
    positive = x > 0
    scale = np.sum(w[positive] * x[positive] * y[positive]) / np.sum(
        w[positive] * x[positive] ** 2
    )
    return max(float(scale), 1e-6), 0.0


# The terms whose frame-to-frame distribution a calibration keeps, as this many quantiles.
JITTER_TERMS = ("drone_compute", "input_hop_ms", "output_hop_ms")
JITTER_QUANTILES = 101
JITTER_MIN_FRAMES = 50  # a run's distribution of a term counts from this many frames
# The terms of the link monitor's estimate (link_estimate_terms)
LINK_ESTIMATE_TERMS = (
    "link_estimate_lag_s",
    "link_estimate_lag_kbit",
    "link_estimate_noise",
    "link_estimate_rtt_ms",
)

# Offloads whose tensor and reply take more than this share of a frame interval on the link
# may have queued behind another: they do not measure the fixed round-trip time.
QUIET_LINK_SHARE = 0.25


@dataclass(frozen=True)
class Calibration:
    """The simulator's terms fitted to recorded live runs (`Profile.calibration`).

    Times in ms. Per compute call, the drone takes `compute_slowdown * (drone_scale * profiled
    + drone_call_ms)` (the runs' emulated slowdown; the scale and the fixed time of a call are
    the loaded machine's and the Python around the model's blocks), the base station
    `server_scale * profiled + server_call_ms` per request. Per frame: `input_hop_ms` (camera to
    perception), `conversion_ms` (decoding on the drone's thread, before the head),
    `output_hop_ms` (result to its reader); per offload `encode_ms` (serializing the features)
    and `offload_hop_ms` (the round trip beyond the link's airtime and RTT and the base
    station's compute: the two DDS hops across the link and the reply's timer). Messages cross
    the link with `request_fields_bytes` of fields around the tensor and `reply_bytes` for the
    reply, in RTPS/UDP/IP framing (core.wire), through the runs' link: a token bucket of
    `link_burst_ms` of its rate, at least `link_burst_min_bytes` (the shaper's tc tbf; 0 on a
    link without one) lets a message that fits through at once. The drone decides when to stop
    waiting for a reply from its compute times as it measured them at start-up:
    `drone_plan_scale` times the fitted ones. `jitter` holds, per term that varies from frame to
    frame, its distribution as JITTER_QUANTILES quantiles: the drone's compute over the fitted
    time (`drone_compute`), the hops in ms (`input_hop_ms`, `output_hop_ms`). The link
    monitor's estimate reads a change of the link late (`estimate_lag_s`) and, once settled,
    with a relative spread of `link_estimate_noise` (None: not fitted, the simulator's
    SimConfig.estimate_noise), and its RTT reads `link_estimate_rtt_ms` over the path's (the
    DDS hops and the airtime of a probe and its echo, which the shaped RTT leaves out).
    """

    compute_slowdown: float
    drone_scale: float = 1.0
    drone_call_ms: float = 0.0
    server_scale: float = 1.0
    server_call_ms: float = 0.0
    conversion_ms: float = 0.0
    encode_ms: float = 0.0
    input_hop_ms: float = 0.0
    output_hop_ms: float = 0.0
    offload_hop_ms: float = 0.0
    request_fields_bytes: int = 0
    reply_bytes: int = 0
    link_burst_ms: float = 0.0
    link_burst_min_bytes: int = 0
    drone_plan_scale: float = 1.0
    link_estimate_lag_s: float = 0.0
    link_estimate_lag_kbit: float = 0.0
    link_estimate_noise: float | None = None
    link_estimate_rtt_ms: float = 0.0
    jitter: dict = field(default_factory=dict)
    # where the terms come from: the runs (file, policy, command, frames), the command that
    # fitted them, when, and each term's residuals over the frames it was fitted on (absolute,
    # median and p95, in the term's unit; the drone's compute in ms at slowdown 1)
    runs: tuple[dict, ...] = ()
    command: str = ""
    created: str = ""
    residuals: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type in ("float", "int") and not (
                isinstance(value, int | float) and math.isfinite(value) and value >= 0
            ):
                raise ValueError(f"calibration {f.name} must be a finite number >= 0, got "
                                 f"{value!r}")  # fmt: skip
        if not self.compute_slowdown >= 1 or min(self.drone_scale, self.server_scale,
                                                  self.drone_plan_scale) <= 0:  # fmt: skip
            raise ValueError("calibration: compute_slowdown must be >= 1 and the scales > 0")
        noise = self.link_estimate_noise
        if noise is not None and not (isinstance(noise, int | float) and 0 <= noise < 1):
            raise ValueError(f"calibration link_estimate_noise must be in [0, 1) or null, got "
                             f"{noise!r}")  # fmt: skip
        if not isinstance(self.jitter, dict) or not isinstance(self.residuals, dict):
            raise ValueError("calibration jitter and residuals must be records")
        for name, values in self.jitter.items():
            q = np.asarray(values, dtype=np.float64) if isinstance(values, list | tuple) else None
            if (
                name not in JITTER_TERMS
                or q is None
                or q.shape != (JITTER_QUANTILES,)
                or not (np.all(np.isfinite(q)) and np.all(q >= 0) and np.all(np.diff(q) >= 0))
            ):
                raise ValueError(f"calibration jitter {name!r}: expected one of {JITTER_TERMS} "
                                 f"with {JITTER_QUANTILES} increasing quantiles >= 0")  # fmt: skip

    def draw(self, name: str, u: np.ndarray, constant: float) -> np.ndarray:
        """Values of a jittering term at uniform draws `u` (`constant` where it has none)."""
        if name not in self.jitter:
            return np.full(np.shape(u), constant)
        return np.interp(u, np.linspace(0.0, 1.0, JITTER_QUANTILES), self.jitter[name])

    def estimate_lag_s(self, before_mbps: float, after_mbps: float) -> float:
        """How long the link estimate takes to read a change of the link's rate.

        `link_estimate_lag_s` plus `link_estimate_lag_kbit` over the slower of the two rates (in
        kbit/s; an outage's side left out): a measurement of a slow link takes long.
        """
        slower = slower_rate_mbps(before_mbps, after_mbps)
        if slower <= 0:
            return self.link_estimate_lag_s
        return self.link_estimate_lag_s + self.link_estimate_lag_kbit / (1000.0 * slower)

    def burst_bits(self, mbps: float) -> float:
        """The runs' link's token bucket at `mbps`, in bits (0: no bucket, or an outage)."""
        if mbps <= 0 or not (self.link_burst_ms or self.link_burst_min_bytes):
            return 0.0
        return max(8.0 * self.link_burst_min_bytes, mbps * 1e3 * self.link_burst_ms)

    def as_dict(self) -> dict:
        """The record as the profile stores it: the terms, then where they come from."""
        raw = asdict(self)
        provenance = {k: raw.pop(k) for k in ("runs", "command", "created", "residuals")}
        return {"terms": raw, **provenance}

    @classmethod
    def from_dict(cls, raw: dict) -> Calibration:
        """The record `as_dict` wrote (ValueError naming what is wrong)."""
        if not isinstance(raw, dict) or not isinstance(raw.get("terms"), dict):
            raise ValueError("calibration must be a record with its terms")
        known = {f.name for f in fields(cls)}
        unknown = set(raw["terms"]) - known | set(raw) - known - {"terms"}
        if unknown:
            raise ValueError(f"calibration has unknown fields {sorted(unknown)}")
        provenance = {k: v for k, v in raw.items() if k != "terms"}
        if not isinstance(provenance.get("runs", []), list | tuple):
            raise ValueError("calibration runs must be a list")
        provenance["runs"] = tuple(provenance.get("runs", ()))
        try:
            return cls(**raw["terms"], **provenance)
        except TypeError as exc:
            raise ValueError(f"calibration: {exc}") from None

    def drone_ms(self, profiled_ms: float | np.ndarray) -> float | np.ndarray:
        """The drone's time of a compute call the profile times at `profiled_ms` (slowdown 1)."""
        return self.compute_slowdown * (self.drone_scale * profiled_ms + self.drone_call_ms)

    @property
    def wire(self) -> WireFormat:
        """How messages are framed on the link."""
        return WireFormat()

    def request_wire_bytes(self, payload_bytes: int) -> int:
        """Bytes on the wire of an offload request carrying `payload_bytes` of tensor."""
        return self.wire.message_bytes(payload_bytes + self.request_fields_bytes)

    def reply_wire_bytes(self) -> int:
        """Bytes on the wire of a reply."""
        return self.wire.message_bytes(self.reply_bytes)


def _spread(values: np.ndarray, center: float) -> dict:
    """How far the frames lie from a fitted constant: count, median and p95 absolute value."""
    residual = np.abs(np.asarray(values, np.float64) - center)
    if not len(residual):
        return {"frames": 0}
    return {"frames": len(residual), "residual_p50": float(np.median(residual)),
            "residual_p95": float(np.percentile(residual, 95))}  # fmt: skip


def _median_term(values: np.ndarray) -> tuple[float, dict]:
    """A constant term fitted as the median of its frames (0 without frames), and its spread."""
    center = float(np.median(values)) if len(values) else 0.0
    return max(0.0, center), _spread(values, center)


def drone_work(profile: Profile, runs: Sequence[LiveRun]) -> tuple[np.ndarray, np.ndarray]:
    """Per drone compute call of the runs: its profiled ms (slowdown 1), its measured ms.

    The calls are every answered frame's head that ran a block (blocks before its exit or cut,
    and the exits checked on the way) and every fallback that computed (from the cut to its
    exit). Measured
    times are over the run's emulated slowdown: the drone's time at the profiling machine's
    speed (the demo's perception node pads each call to the profile's time, emulate_profile).
    """
    times = profile.times_ms()
    after, n_exits = list(times.exit_after), len(times.head_s)
    predicted, measured = [], []
    for run in runs:
        f = run.frames
        for k in np.flatnonzero(f.status == Status.OK):
            cut, answered, where = int(f.cut_point[k]), int(f.exit_index[k]), int(f.where[k])
            if not 0 <= answered < n_exits or cut > len(times.block_s):
                raise RunFileError(f"{run.source}: frame with cut {cut} and exit {answered} does "
                                   "not fit the profile's model")  # fmt: skip
            local = where == Where.DRONE
            stop = after[answered] + 1 if local else cut
            heads = head_exits(after, stop, f.thresholds[k], answered if local else None)
            if stop > 0:  # a head that runs no block (cut 0, no exit) computes nothing
                predicted.append(times.head(stop, heads))
                measured.append(f.head_ms[k] / run.compute_slowdown)
            if where == Where.FALLBACK and f.tail_ms[k] > 0:
                predicted.append(times.to_exit(cut, answered))
                measured.append(f.tail_ms[k] / run.compute_slowdown)
    return np.array(predicted), np.array(measured)


def drone_speed(profile: Profile, run: LiveRun, calibration: Calibration) -> float | None:
    """The run's drone compute over the calibration's for the same calls (median; None: none).

    Above 1 the drone computed slower in this run than the simulator prices it: the load of a
    shared machine changes from run to run.
    """
    predicted, measured = drone_work(profile, [run])
    if not len(predicted):
        return None
    return float(np.median(measured * run.compute_slowdown / calibration.drone_ms(predicted)))


def server_work(profile: Profile, runs: Sequence[LiveRun]) -> tuple[np.ndarray, np.ndarray]:
    """Per answered offload: the base station's profiled ms for its tail, and its tail_ms."""
    times = profile.times_ms(server=True)
    predicted, measured = [], []
    for run in runs:
        f = run.frames
        for k in np.flatnonzero((f.status == Status.OK) & (f.where == Where.BASE)):
            predicted.append(times.finish(int(f.cut_point[k])))
            measured.append(f.tail_ms[k])
    return np.array(predicted), np.array(measured)


def link_at(run: LiveRun, t_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mbit/s and RTT ms the shaper had applied at wall-clock times `t_s` (inf and 0: loopback).

    Before the first change the first one's values (the trace starts with the first frame).
    """
    t_s = np.asarray(t_s, np.float64)
    if not len(run.link):
        return np.full(t_s.shape, np.inf), np.zeros(t_s.shape)
    i = np.clip(np.searchsorted(run.link[:, 0], t_s, side="right") - 1, 0, len(run.link) - 1)
    return run.link[i, 1], run.link[i, 2]


def round_trip_extra(run: LiveRun, calibration: Calibration) -> np.ndarray:
    """Per answered offload on a quiet link: its transfer_ms beyond the airtime and the RTT.

    Airtime: the request's and the reply's bytes on the wire (core.wire) beyond the link's
    token bucket, at the shaped rate when the request was sent; only offloads whose airtime is
    at most QUIET_LINK_SHARE of a frame interval count (others may have waited behind another
    on the link).
    """
    f = run.frames
    k = np.flatnonzero((f.status == Status.OK) & (f.where == Where.BASE))
    sent = (
        f.stamp_s[k] + (f.input_age_ms[k] + f.decode_ms[k] + f.head_ms[k] + f.encode_ms[k]) / 1e3
    )
    mbps, rtt_ms = link_at(run, sent)
    burst = np.array([calibration.burst_bits(m) for m in mbps])
    request = 8.0 * np.array([calibration.request_wire_bytes(int(b)) for b in f.offload_bytes[k]])
    reply = 8.0 * calibration.reply_wire_bytes()
    # what the token bucket (full on a quiet link) does not let through at once
    bits = np.maximum(0.0, request - burst) + np.maximum(0.0, reply - burst)
    with np.errstate(divide="ignore", invalid="ignore"):
        airtime_ms = np.where(mbps > 0, bits / (mbps * 1e3), np.inf)
    quiet = airtime_ms <= QUIET_LINK_SHARE * 1000.0 / run.rate_hz
    return (f.transfer_ms[k] - airtime_ms - rtt_ms)[quiet]


def planned_finish_ratio(run: LiveRun, calibration: Calibration, profile: Profile) -> np.ndarray:
    """Per offload that waited in vain: the drone's planned time to finish, over the fitted one.

    The drone's planned time is its own idea of its time to finish the model from the cut. It
    stops waiting FALLBACK_MARGIN_S before it would miss the deadline finishing the
    model itself in the time it measured at start-up; its check comes up to EXPIRE_PERIOD_S
    after that (half of it on average). Offloads that waited less than a period may have given
    up at once (their time tells only a bound) and do not count.
    """
    f = run.frames
    waited = f.transfer_ms > 1000 * EXPIRE_PERIOD_S
    k = np.flatnonzero((f.status == Status.OK) & (f.where == Where.FALLBACK)
                       & (f.offload_bytes > 0) & waited)  # fmt: skip
    before_send = f.decode_ms[k] + f.head_ms[k] + f.encode_ms[k]
    planned = (run.deadline_ms - 1000 * FALLBACK_MARGIN_S - before_send - f.transfer_ms[k]
               + 500 * EXPIRE_PERIOD_S)  # fmt: skip
    times = profile.times_ms()
    fitted = np.array([calibration.drone_ms(times.finish(int(c))) for c in f.cut_point[k]])
    return planned / fitted


def typical_spread(per_run: Sequence[np.ndarray]) -> list[float]:
    """A term's frame-to-frame distribution in a typical run: JITTER_QUANTILES quantiles.

    The median, quantile by quantile, over the runs with JITTER_MIN_FRAMES values or more (all
    pooled where none has): the load of a shared machine changes from run to run, and a few
    busy runs should not stand for all.
    """
    grid = np.linspace(0, 1, JITTER_QUANTILES)
    enough = [v for v in per_run if len(v) >= JITTER_MIN_FRAMES]
    if not enough:
        enough = [np.concatenate(per_run)]
    curves = [np.quantile(np.maximum(v, 0.0), grid) for v in enough]
    return np.median(curves, axis=0).tolist()


def slower_rate_mbps(before_mbps: float, after_mbps: float) -> float:
    """The slower of a change's two rates, an outage's side left out (0: both outages)."""
    return min((r for r in (before_mbps, after_mbps) if r > 0), default=0.0)


def link_estimate_terms(runs: Sequence[LiveRun]) -> tuple[dict | None, dict]:
    """How the link monitor's estimate followed the runs' shaped links: lag, spread and RTT.

    The lag: per change of a run's shaped rate (not its first rate), the time until the
    estimate settled within core.link.TOLERANCE of the new rate (core.link.score_estimate),
    fitted (fit_affine) as `fixed_ms` seconds plus `scale` kbit over the slower rate of the
    change in kbit/s (an outage's side left out): a reading of a slow link takes long. The
    spread: the robust standard deviation (1.4826 times the median absolute deviation) of
    log(estimate / rate) over the settled estimates of the phases with a rate. The RTT: the
    median of the RTT read over the shaped one over the same estimates. Runs without a shaped
    link or without recorded estimates are left out; None for the terms where none is left.
    Residuals: |settling time - fitted lag| over the changes, |log(estimate / rate)| and
    |RTT read - shaped - fitted| over the settled estimates.
    """
    per_kbit, settles, never, deviations, rtt_over = [], [], 0, [], []
    for run in runs:
        if len(run.link) < 2 or not len(run.estimates):
            continue
        shaped = [(t, mbps) for t, mbps, _ in run.link]  # the last: when the run ended
        times, mbps, rtt_ms = run.estimates.T
        scores = score_estimate(shaped[:-1], run.estimates[:, :2].tolist(), shaped[-1][0])
        for before, score in itertools.pairwise(scores):
            if score.settle_s is None:
                never += 1
                continue
            slower = slower_rate_mbps(before.shaped_mbps, score.shaped_mbps)
            per_kbit.append(1.0 / (1000.0 * slower))
            settles.append(score.settle_s)
        for score, shaped_rtt_ms in zip(scores, run.link[:-1, 2], strict=True):
            if score.settle_s is not None and score.shaped_mbps > 0:
                inside = (times >= score.start_s + score.settle_s) & (times < score.end_s)
                ratio = np.maximum(mbps[inside], OUTAGE_MBPS) / score.shaped_mbps
                deviations.extend(np.log(ratio).tolist())
                rtt_over.extend((rtt_ms[inside] - shaped_rtt_ms).tolist())
    lag = fit_affine(np.array(per_kbit), np.array(settles)) if settles else None
    residuals = {"link_estimate_lag": {"frames": len(settles), "never_settled": never}}
    if lag is None or not deviations:
        return None, residuals
    residuals["link_estimate_lag"] |= {"residual_p50": lag.residual_ms_p50,
                                       "residual_p95": lag.residual_ms_p95}  # fmt: skip
    dev = np.asarray(deviations)
    residuals["link_estimate_noise"] = _spread(dev, 0.0)
    rtt_term, residuals["link_estimate_rtt"] = _median_term(np.asarray(rtt_over))
    return {
        "link_estimate_lag_s": lag.fixed_ms,
        "link_estimate_lag_kbit": lag.scale,
        "link_estimate_noise": float(min(1.4826 * np.median(np.abs(dev - np.median(dev))), 0.99)),
        "link_estimate_rtt_ms": rtt_term,
    }, residuals


def fit_calibration(
    runs: Sequence[LiveRun],
    profile: Profile,
    request_fields_bytes: int,
    reply_bytes: int,
    command: str = "",
    previous: Calibration | None = None,
) -> Calibration:
    """Fit every term of `Calibration` to the runs, each from the part that isolates it.

    Where no offload was answered in the runs, the base station's terms and `offload_hop_ms`
    are `previous`'s (a profile's calibration before), their residuals say so (`kept_from`).

    Drone and base-station compute: affine fits (fit_affine) of head_ms and fallback tail_ms,
    and of the base station's tail_ms, against the profile's times for the same work; the
    per-frame and per-offload constants: medians of input_age_ms, decode_ms, the result's hop
    (latency - input_age_ms - total_ms), encode_ms and the round trip's extra time. RunFileError
    where the runs do not fit the profile or one another.
    """
    if not runs:
        raise RunFileError("no runs to calibrate from")
    slowdowns = {run.compute_slowdown for run in runs}
    if len(slowdowns) > 1:
        raise RunFileError(f"the runs emulate different drone slowdowns {sorted(slowdowns)}: "
                           "calibrate from runs of one drone")  # fmt: skip
    for run in runs:
        if run.weights_digest and run.weights_digest != profile.weights_digest:
            raise RunFileError(
                f"{run.source}: the run's plans were for weights {run.weights_digest[:23]}..., "
                f"the profile is of {profile.weights_digest[:23]}... ({profile.model_id})"
            )
    bursts = {(run.link_burst_ms, run.link_burst_min_bytes) for run in runs}
    if len(bursts) > 1:
        raise RunFileError(f"the runs' links had different token buckets {sorted(bursts)}")
    residuals, jitter = {}, {}
    work = [drone_work(profile, [run]) for run in runs]
    drone = fit_affine(*(np.concatenate(w) for w in zip(*work, strict=True)))
    residuals["drone_compute"] = _fit_residuals(drone)
    jitter["drone_compute"] = typical_spread([y / (drone.scale * x + drone.fixed_ms)
                                              for x, y in work])  # fmt: skip
    server_x, server_y = server_work(profile, runs)
    server = fit_affine(server_x, server_y) if len(server_x) else Fit(1.0, 0.0, 0, 0.0, 0.0)
    residuals["server_compute"] = _fit_residuals(server)
    terms = {}
    for name, values in (
        ("input_hop_ms", lambda f: f.input_age_ms),
        ("conversion_ms", lambda f: f.decode_ms),
        ("output_hop_ms", lambda f: f.latency_ms - f.input_age_ms - f.total_ms),
        ("encode_ms", lambda f: np.where(f.offload_bytes > 0, f.encode_ms, np.nan)),
    ):
        per_run = [values(run.frames)[run.frames.status == Status.OK] for run in runs]
        per_run = [v[~np.isnan(v)] for v in per_run]
        terms[name], residuals[name] = _median_term(np.concatenate(per_run))
        if name in JITTER_TERMS and any(len(v) for v in per_run):
            jitter[name] = typical_spread(per_run)
    burst_ms, burst_min = next(iter(bursts))
    partial = Calibration(next(iter(slowdowns)), drone.scale, drone.fixed_ms,
                          request_fields_bytes=request_fields_bytes, reply_bytes=reply_bytes,
                          link_burst_ms=burst_ms, link_burst_min_bytes=burst_min)  # fmt: skip
    extra = np.concatenate([round_trip_extra(run, partial) for run in runs])
    terms["offload_hop_ms"], residuals["offload_hop_ms"] = _median_term(extra)
    ratio = np.concatenate([planned_finish_ratio(run, partial, profile) for run in runs])
    plan_scale, residuals["drone_plan_scale"] = _median_term(ratio)
    if previous is not None and not len(server_x):
        server = Fit(previous.server_scale, previous.server_call_ms, 0, 0.0, 0.0)
        terms["offload_hop_ms"] = previous.offload_hop_ms
        for name in ("server_compute", "offload_hop_ms"):
            residuals[name] = _kept(previous, name)
    link, link_residuals = link_estimate_terms(runs)
    residuals |= link_residuals
    if link is None and previous is not None:
        link = {name: getattr(previous, name) for name in LINK_ESTIMATE_TERMS}
        for name in ("link_estimate_lag", "link_estimate_noise", "link_estimate_rtt"):
            residuals[name] = _kept(previous, name)
    return Calibration(
        compute_slowdown=next(iter(slowdowns)),
        link_burst_ms=burst_ms,
        link_burst_min_bytes=burst_min,
        drone_plan_scale=plan_scale if len(ratio) and plan_scale > 0 else 1.0,
        **(link or {}),
        jitter=jitter,
        drone_scale=drone.scale,
        drone_call_ms=drone.fixed_ms,
        server_scale=server.scale,
        server_call_ms=server.fixed_ms,
        request_fields_bytes=request_fields_bytes,
        reply_bytes=reply_bytes,
        runs=tuple(_run_source(run) for run in runs),
        command=command,
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        residuals=residuals,
        **terms,
    )


def _kept(previous: Calibration, name: str) -> dict:
    """The residuals of a term kept from `previous`: the command that fitted it."""
    fitted_by = previous.residuals.get(name, {}).get("kept_from", previous.command)
    return {"frames": 0, "kept_from": fitted_by}


def _run_source(run: LiveRun) -> dict:
    return {"file": run.source, "policy": run.policy, "command": run.command,
            "frames": len(run.frames)}  # fmt: skip


def _fit_residuals(fit: Fit) -> dict:
    return {"frames": fit.frames, "residual_p50": fit.residual_ms_p50,
            "residual_p95": fit.residual_ms_p95}  # fmt: skip
