"""The drone's per-frame decisions, written once for the live pipeline and the simulator.

`core.pipeline.DronePipeline` (the live drone) and `policy.sim.Simulation` both decide with
these, so a policy the simulator finds best is scored on the rules the drone follows:

- which exit answers: the exits a plan lets the drone check (`checked_exits`) and whether a
  checked exit fires on its confidence (`exit_fires`);
- which early answers go to the base station as audits (`audit_due`), when the link can carry
  one (`audit_fits`), and how: the camera frame at the model's input size in AUDIT_ENCODING
  (lossless, so the base station's final exit answers on the drone's input);
- whether an offload may go: `core.offload_window.OffloadWindow`, fed the same times (a frame's
  arrival, the end of its head when the offload is asked for and sent, each reply's arrival);
- which frames are too old to run (`MAX_FRAME_AGE_MS`, the default of both);
- when an offload stops waiting for its reply (`fallback_time`) and at which exit the drone
  then answers (`fallback_budget`, `fallback_exit`), from the drone's per-block and per-exit
  compute times (`LocalTimes`).

Pure Python: no ROS, no torch. Times are seconds on any one clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edgeml_ros.core.plan import exit_enabled

# The perception node checks for fallbacks this often. An offload falls back FALLBACK_MARGIN_S
# before the last moment at which its fallback still meets the deadline: the check may
# come up to one period late, and FALLBACK_SLACK_S is left for the drone's compute running longer
# than its measured median.
EXPIRE_PERIOD_S = 0.01
FALLBACK_SLACK_S = 0.002
FALLBACK_MARGIN_S = EXPIRE_PERIOD_S + FALLBACK_SLACK_S
# An audit ships the camera frame at the model's input size, losslessly (core.codec).
AUDIT_ENCODING = "png"
# A frame older than this (capture to the drone getting to it) is dropped unrun as STALE: the
# perception node's max_frame_age_ms by default, and the simulator's.
MAX_FRAME_AGE_MS = 100.0


@dataclass(frozen=True)
class LocalTimes:
    """A device's compute time per block and per exit head, and the block each exit follows.

    `block_s` and `head_s` are measured (seconds); `call_s` is the fixed time of one compute call
    around them (a calibrated simulator's, core.calibration; 0 for measured times); `slowdown`
    stretches them all (an emulated or modelled slower device).
    """

    block_s: Sequence[float]
    head_s: Sequence[float]
    exit_after: Sequence[int]
    slowdown: float = 1.0
    call_s: float = 0.0

    @property
    def final_exit(self) -> int:
        """Index of the final exit."""
        return len(self.head_s) - 1

    def exits_after(self, cut_point: int) -> list[int]:
        """The exits the features at `cut_point` can still reach, shallowest first."""
        return [e for e, block in enumerate(self.exit_after) if block >= cut_point]

    def to_exit(self, cut_point: int, exit_index: int) -> float:
        """Time from the features at `cut_point` to exit `exit_index`'s answer."""
        stop = self.exit_after[exit_index] + 1
        compute = sum(self.block_s[cut_point:stop]) + self.head_s[exit_index] + self.call_s
        return compute * self.slowdown

    def exits_within(self, cut_point: int, budget_s: float) -> list[int]:
        """The exits after `cut_point` the features reach within `budget_s`, shallowest first."""
        return [e for e in self.exits_after(cut_point) if self.to_exit(cut_point, e) <= budget_s]

    def finish(self, cut_point: int) -> float:
        """Time from the features at `cut_point` to the final exit's answer."""
        return self.to_exit(cut_point, self.final_exit)

    def head(self, stop: int, checked: Sequence[int]) -> float:
        """Time of a head through blocks [0, stop) that checked the exits `checked`."""
        compute = sum(self.block_s[:stop]) + sum(self.head_s[e] for e in checked) + self.call_s
        return compute * self.slowdown


def checked_exits(
    exit_after: Sequence[int], start: int, stop: int, thresholds: Sequence[float]
) -> list[int]:
    """The exits that blocks [start, stop) reach and check, in order.

    The final exit always answers once reached; an early exit is checked only when its threshold
    lets it fire (core.plan.exit_enabled), and is otherwise not even evaluated.
    """
    final = len(exit_after) - 1
    return [e for e, block in enumerate(exit_after)
            if start <= block < stop and (e == final or exit_enabled(thresholds[e]))]  # fmt: skip


def head_exits(
    exit_after: Sequence[int],
    stop: int,
    thresholds: Sequence[float] | None,
    answered: int | None,
) -> list[int]:
    """The exits a head through blocks [0, stop) checked, up to the one that `answered`.

    Where the plan is unknown (`thresholds` None), all the exits the head passed.
    """
    if thresholds is not None and len(thresholds) == len(exit_after):
        checked = checked_exits(exit_after, 0, stop, thresholds)
    else:
        checked = [e for e, block in enumerate(exit_after) if block < stop]
    return [e for e in checked if answered is None or e <= answered]


def exit_fires(
    exit_index: int, confidence: float | np.ndarray, thresholds: Sequence[float]
) -> bool | np.ndarray:
    """Whether a checked exit answers (per frame, for an array of confidences).

    The final exit always does; an early exit once its confidence reaches its threshold, both
    in float64 (as the live drone compares its Python floats, whatever an array's dtype).
    """
    return exit_index == len(thresholds) - 1 or confidence >= np.float64(thresholds[exit_index])


def audit_due(
    exit_index: int | np.ndarray, num_exits: int, draw: float | np.ndarray, share: float
) -> bool | np.ndarray:
    """Whether a frame answered on the drone at `exit_index` is audited (per frame, for arrays).

    An early exit's answer is, when the frame's uniform draw in [0, 1) is below the plan's
    audit share and the link can carry the audit (the caller's to know); the final exit's
    never: it is what an audit asks for.
    """
    return (exit_index < num_exits - 1) & (draw < share)


def audit_fits(
    nbytes: float | np.ndarray, rate_bps: float | np.ndarray | None, interval_s: float | None
) -> bool | np.ndarray:
    """Whether the link carries an audit of `nbytes` within one frame interval (per frame).

    At `rate_bps` bytes a second; with the rate or the interval not known yet (None), it may:
    the audit's reply will tell.
    """
    if rate_bps is None or interval_s is None:
        return True
    return nbytes <= rate_bps * interval_s


def fallback_time(
    times: LocalTimes,
    cut_point: int,
    deepest_checked: int | None,
    arrived: float,
    sent: float,
    deadline_s: float,
    reply_delay_s: float | None = None,
) -> float:
    """When an offload sent at `sent` stops waiting for its reply.

    FALLBACK_MARGIN_S before the drone could no longer answer by the deadline at the exit its
    fallback then takes (`fallback_exit`: the deepest still in time). Which exit that is, the
    wait chooses: the deepest one in time at `sent` (on a drone that finishes the model in
    time, the final exit), unless the reply, expected `reply_delay_s` after the send (the
    offload window's recent replies; None: not known), comes later than that allows. Then the
    deepest exit that leaves the reply its time, down to the head's deepest checked exit (no
    compute, so the wait lasts to the deadline); if none does, the reply is not waited for.
    Never before it was sent.
    """
    last = arrived + deadline_s - FALLBACK_MARGIN_S  # a fallback with no compute left
    budget = last - sent  # and the compute a fallback then has, still in time at a late check
    in_time = reversed(times.exits_within(cut_point, budget))  # deepest first
    waits = [last - times.to_exit(cut_point, e) for e in in_time]
    if deepest_checked is not None:
        waits.append(last)
    if not waits:
        return sent  # no exit in time: the fastest at once (fallback_exit)
    if reply_delay_s is not None:
        waits = [w for w in waits if w >= sent + reply_delay_s] or waits
    return max(sent, waits[0])


def fallback_budget(arrived: float, now: float, deadline_s: float) -> float:
    """Compute time a fallback at `now` has left to answer by the deadline, slack kept.

    Only the slack: the rest of FALLBACK_MARGIN_S is there for a check that comes late, and a
    check up to EXPIRE_PERIOD_S late still has the time to finish the model.
    """
    return arrived + deadline_s - now - FALLBACK_SLACK_S


def fallback_exit(
    times: LocalTimes, cut_point: int, budget_s: float, deepest_checked: int | None
) -> tuple[int, bool]:
    """The exit a fallback answers with, and whether the drone must still compute it.

    The deepest exit after the cut that the drone reaches within `budget_s`; with none, the
    deepest exit the head already checked (`deepest_checked`, no more compute); with none
    either, the first exit after the cut (the fastest).
    """
    if affordable := times.exits_within(cut_point, budget_s):
        return affordable[-1], True
    if deepest_checked is not None:
        return deepest_checked, False
    return times.exits_after(cut_point)[0], True
