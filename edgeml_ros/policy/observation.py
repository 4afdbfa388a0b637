"""What a controller sees and what it may choose, shared by the simulator and the ROS node.

Everything in `Observation` is known to the live controller too: the link monitor's estimate,
the battery, the perception telemetry of the last window, the camera rate, the deadline and the
policy in force. The action space is discrete: every cut point times `THRESHOLD_LEVELS` (one
threshold shared by the exits before the cut).

Why discrete: the cut point is a choice among a handful of blocks, and the accuracy and compute
of a threshold move in steps through the per-sample confidences anyway. With a finite action set
PPO and DQN search the same configurations that the baselines and the hindsight oracle
enumerate, so the oracle is the true best of what the agents can pick.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from edgeml_ros.core.plan import ExecutionPlan, shared_thresholds
from edgeml_ros.policy.sim import THRESHOLD_LEVELS, WHERE_FALLBACK, FrameRecords, Simulation


@dataclass(frozen=True)
class Observation:
    """The controller's view at a decision point."""

    bandwidth_mbps: float
    rtt_ms: float
    bandwidth_trend: float  # log10 change of the bandwidth estimate over the last window
    battery_soc: float
    recent_confidence: float  # mean confidence of the answering exits, last window
    recent_early_exit_rate: float  # share of frames answered before the final exit
    recent_fallback_rate: float  # share of frames that fell back to the drone
    recent_latency_ratio: float  # mean latency / deadline, last window
    fps: float
    deadline_ms: float
    cut_point: int  # the plan in force
    threshold_level: int
    # the last window's audits (early exits also answered by the final exit at the base station,
    # under a plan with an audit share: see Simulation.run and the perception node), the frames
    # it could audit (when the link could carry an audit), and the share of audits whose early
    # answer agreed with the final exit's; neutral (none, none, 1.0) without audits
    recent_auditable_frames: int = 0
    recent_audits: int = 0
    recent_audit_agreement: float = 1.0
    # the drone's compute over its profiled time for the same work, last window: how many times
    # slower than profiled it runs (0: it computed nothing, as under cut 0 with no fallback)
    recent_compute_ratio: float = 0.0

    def vector(self, num_blocks: int) -> np.ndarray:
        """Features for the learned policies (float32, roughly unit scale, clipped).

        The audit fields and the compute ratio are left out: the committed learned policies take
        these OBSERVATION_SIZE features, and adding any would mean retraining them.
        """
        features = np.array(
            [
                math.log10(self.bandwidth_mbps + 0.01),
                self.bandwidth_trend,
                self.rtt_ms / 100.0,
                self.battery_soc,
                self.recent_confidence,
                self.recent_early_exit_rate,
                self.recent_fallback_rate,
                min(self.recent_latency_ratio, 5.0),
                self.fps / 30.0,
                self.deadline_ms / 1000.0,
                self.cut_point / num_blocks,
                self.threshold_level / (len(THRESHOLD_LEVELS) - 1),
            ],
            dtype=np.float32,
        )
        return np.clip(features, -OBSERVATION_BOUND, OBSERVATION_BOUND)


OBSERVATION_SIZE = 12
OBSERVATION_BOUND = 10.0


def recent_stats(
    confidence: np.ndarray,
    exit_index: np.ndarray,
    where: np.ndarray,
    latency_s: np.ndarray,
    compute_s: np.ndarray,
    profiled_s: np.ndarray,
    num_exits: int,
    deadline_s: float,
) -> dict[str, float]:
    """Telemetry of the last window's frames (neutral values before the first one).

    `compute_s`: each frame's compute on the drone; `profiled_s`: the same at its profiled speed.
    """
    profiled = float(np.sum(profiled_s))
    ratio = float(np.sum(compute_s)) / profiled if profiled > 0 else 0.0
    if len(confidence) == 0:
        return {"recent_confidence": 1.0, "recent_early_exit_rate": 0.0,
                "recent_fallback_rate": 0.0, "recent_latency_ratio": 0.0,
                "recent_compute_ratio": ratio}  # fmt: skip
    return {
        "recent_confidence": float(np.mean(confidence)),
        "recent_early_exit_rate": float(np.mean(exit_index < num_exits - 1)),
        "recent_fallback_rate": float(np.mean(where == WHERE_FALLBACK)),
        "recent_latency_ratio": float(np.mean(latency_s)) / deadline_s,
        "recent_compute_ratio": ratio,
    }


def audit_stats(auditable_frames: int, audits: int, agreeing: int) -> dict[str, float]:
    """The last window's audit fields: its auditable frames, audits answered, and agreement."""
    return {"recent_auditable_frames": int(auditable_frames), "recent_audits": int(audits),
            "recent_audit_agreement": agreeing / audits if audits else 1.0}  # fmt: skip


def num_actions(num_blocks: int) -> int:
    """Size of the discrete action space: cut points 0..num_blocks times threshold levels."""
    return (num_blocks + 1) * len(THRESHOLD_LEVELS)


def action_plan(
    action: int, num_blocks: int, num_exits: int, rule: str = "max_prob"
) -> ExecutionPlan:
    """The plan of a discrete action."""
    if not 0 <= action < num_actions(num_blocks):
        raise ValueError(f"action {action} outside 0..{num_actions(num_blocks) - 1}")
    cut, level = divmod(int(action), len(THRESHOLD_LEVELS))
    return ExecutionPlan(cut, shared_thresholds(THRESHOLD_LEVELS[level], num_exits), rule)


def action_index(cut_point: int, threshold_level: int) -> int:
    """The discrete action of a cut point and threshold level (`action_plan`'s inverse)."""
    return cut_point * len(THRESHOLD_LEVELS) + threshold_level


def plan_action(plan: ExecutionPlan, num_blocks: int) -> tuple[int, int]:
    """Cut point and nearest threshold level of a plan (for observing the plan in force)."""
    thr = min(plan.exit_thresholds[:-1], default=THRESHOLD_LEVELS[-1])
    level = int(np.argmin([abs(t - thr) for t in THRESHOLD_LEVELS]))
    return plan.cut_point, level


def observe(sim: Simulation, plan: ExecutionPlan | None) -> Observation:
    """The controller's view of a simulation before its next frame, with `plan` in force."""
    costs, cfg = sim.costs, sim.config
    mbps, rtt = sim.link_estimate()
    before = sim.now_s - cfg.window_s
    mbps_before = sim.link_estimate(at_s=before)[0] if before > 0 else mbps
    last = sim.history[-1] if sim.history else FrameRecords.empty()
    cut, level = plan_action(plan, costs.num_blocks) if plan else (costs.num_blocks, 0)
    return Observation(
        bandwidth_mbps=mbps,
        rtt_ms=rtt,
        bandwidth_trend=math.log10(mbps + 0.01) - math.log10(mbps_before + 0.01),
        battery_soc=sim.state.soc,
        **recent_stats(
            last.confidence,
            last.exit_index,
            last.where,
            last.latency_s,
            last.compute_s,
            last.profiled_s,
            costs.num_exits,
            sim.deadline_s,
        ),
        **audit_stats(np.sum(last.auditable), np.sum(last.audited), np.sum(last.agrees)),
        fps=cfg.fps,
        deadline_ms=cfg.deadline_ms,
        cut_point=cut,
        threshold_level=level,
    )


@dataclass(frozen=True)
class Decision:
    """A policy's choice: the plan, and for how many frames (None: one decision window)."""

    plan: ExecutionPlan
    frames: int | None = None


class Policy(Protocol):
    """A controller policy, in the simulator as on the drone."""

    name: str

    def reset(self) -> None:
        """Forget everything from a previous run."""

    def decide(self, obs: Observation, sim: Simulation | None = None) -> Decision:
        """Choose the plan for the coming frames.

        `sim` is given in simulation, for the hindsight oracle only; real policies use `obs`.
        """
