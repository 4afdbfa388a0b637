"""The execution plan: where the model is cut, which exits may answer, how offloads travel.

One type everywhere: the policies and the controller choose an `ExecutionPlan`, the drone
pipeline runs it, the simulator prices it. `check_plan` is the one check of a plan against a
model, from its block and exit counts (the torch model's or a profile's).

Exit thresholds come one per exit, the final exit last: an exit answers once its confidence
reaches its threshold. Both exit rules score confidence in [0, 1], so a threshold above 1
disables that exit (`exit_enabled`); the final exit always answers, whatever its threshold.

Audits: under a plan with an `audit_share` above 0, that share of the frames answered at an
early exit on the drone is also sent to the base station, whose final exit says whether the
early answer agreed (a label-free accuracy signal, core.decisions.audit_due). The frame's own
answer never waits for it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from edgeml_ros.core.codec import COMPRESSIONS, ENCODINGS, IMAGE_ENCODINGS
from edgeml_ros.core.untrusted import shown

EXIT_RULES = ("max_prob", "entropy")
MAX_CONFIDENCE = 1.0  # the highest score of either exit rule
MAX_POLICY_NAME_CHARS = 64  # a plan's name travels in every result
NO_EARLY_EXIT = 2.0  # a threshold above MAX_CONFIDENCE: the exit never fires
DEFAULT_THRESHOLD = 0.9  # every early exit's, until the parameters or the controller say
MAX_AUDIT_SHARE = 0.2  # audits are a small sample: more would load the link like offloads


@dataclass(frozen=True)
class ExecutionPlan:
    """The execution policy in force: cut point, exit thresholds and offload encoding.

    The drone runs blocks [0, cut_point) and offloads the rest unless an exit fires first
    (cut_point = number of blocks: everything on the drone). `encoding` is a tensor encoding
    or, at cut 0 only, an image encoding: the camera frame itself is shipped (core.codec).
    The simulator prices tensor offloads at its configured encoding (ignoring `encoding` and
    `compression`) and frames in an image encoding at that encoding, from the profile.
    `audit_share`: the share of early exits on the drone audited (0: none).
    """

    cut_point: int
    exit_thresholds: tuple[float, ...]
    exit_rule: str = "max_prob"
    encoding: str = "fp32"
    compression: str = "none"
    policy_name: str = "manual"
    audit_share: float = 0.0


def exit_enabled(threshold: float | np.ndarray) -> bool | np.ndarray:
    """Whether an early exit with this threshold (or each of these) can ever fire."""
    return threshold <= MAX_CONFIDENCE


def shared_thresholds(threshold: float, num_exits: int) -> tuple[float, ...]:
    """Exit thresholds with one `threshold` for every early exit (the final exit's is 0)."""
    return (threshold,) * (num_exits - 1) + (0.0,)


def default_plan(num_blocks: int, num_exits: int) -> ExecutionPlan:
    """A perception node's plan until its parameters or the controller say otherwise.

    The whole model on the drone, every early exit at threshold DEFAULT_THRESHOLD: it needs no
    link, so it meets the deadline wherever the whole model does.
    """
    return ExecutionPlan(num_blocks, shared_thresholds(DEFAULT_THRESHOLD, num_exits))


def check_exit_thresholds(thresholds: Sequence[float], num_exits: int) -> None:
    """Raise ValueError with the reason when `thresholds` do not fit a model's exits.

    The reason leaves out the field's name, for callers that name it themselves (a node
    parameter); `check_plan` names it.
    """
    if len(thresholds) != num_exits:
        raise ValueError(f"needs {num_exits} values (one per exit), got {len(thresholds)}")
    if any(not math.isfinite(t) or t < 0.0 for t in thresholds):
        raise ValueError(f"values must be finite and >= 0, got {list(thresholds)}")


def check_plan(plan: ExecutionPlan, num_blocks: int, num_exits: int) -> None:
    """Raise ValueError naming the field of `plan` that does not fit the model or the runtime.

    `num_blocks` and `num_exits` are the model's, from the model itself or from its profile.
    """
    if not 0 <= plan.cut_point <= num_blocks:
        raise ValueError(f"cut_point: {plan.cut_point} outside 0..{num_blocks}")
    try:
        check_exit_thresholds(plan.exit_thresholds, num_exits)
    except ValueError as exc:
        raise ValueError(f"exit_thresholds: {exc}") from None
    for field, value, known in (
        ("exit_rule", plan.exit_rule, EXIT_RULES),
        ("encoding", plan.encoding, ENCODINGS + IMAGE_ENCODINGS),
        ("compression", plan.compression, COMPRESSIONS),
    ):
        if value not in known:
            raise ValueError(f"{field}: {shown(value)} unknown; known: {', '.join(known)}")
    if plan.encoding in IMAGE_ENCODINGS:
        if plan.cut_point != 0:
            raise ValueError(
                f"encoding: {plan.encoding} ships the camera frame, so cut_point must be 0, "
                f"not {plan.cut_point}"
            )
        if plan.compression != "none":
            raise ValueError(
                f"compression: {plan.encoding} frames travel as they are, so it must be none, "
                f"not {plan.compression}"
            )
    if not 0.0 <= plan.audit_share <= MAX_AUDIT_SHARE:  # NaN fails too
        raise ValueError(f"audit_share: {plan.audit_share} outside [0, {MAX_AUDIT_SHARE}]")
    if len(plan.policy_name) > MAX_POLICY_NAME_CHARS:
        raise ValueError(
            f"policy_name: {len(plan.policy_name)} characters, more than {MAX_POLICY_NAME_CHARS}"
        )


def with_tensor_transport(plan: ExecutionPlan, encoding: str, compression: str) -> ExecutionPlan:
    """`plan` with its offloaded tensors sent as `encoding` and `compression`.

    A plan that ships the camera frame in an image encoding keeps it: that choice is its
    policy's (cloud_png, cloud_jpeg), and a tensor encoding would not fit it.
    """
    if plan.encoding in IMAGE_ENCODINGS:
        return plan
    return replace(plan, encoding=encoding, compression=compression)
