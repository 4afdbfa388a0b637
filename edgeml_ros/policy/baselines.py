"""Baseline policies from the literature, and the hindsight oracle.

- edge_only: the whole model on the drone, no early exits.
- cloud_only: ship the input tensor, the base station runs everything.
- cloud_png, cloud_jpeg: ship the camera frame itself, PNG (lossless) or JPEG at the quality of
  fewest bytes that keeps the final exit within 1 point of its accuracy on the unencoded
  frames (validation), the base station runs everything: compressed-input offload, which split
  computing often loses to.
- neurosurgeon: the cut with the least predicted latency for the current bandwidth estimate,
  no early exits (Kang et al., ASPLOS 2017).
- branchynet: everything on the drone, early exits at one fixed threshold, chosen on the
  validation set to cost at most 1 point of accuracy (Teerapittayanon et al., ICPR 2016).
- spinn: cut and threshold chosen jointly by rule, SPINN-style (Laskaridis et al., MobiCom
  2020): the most accurate configuration whose predicted latency, from the profile and the
  bandwidth estimate, meets the deadline; among those within 0.5 points, the fastest.
- oracle: per window, the best configuration in hindsight (true future bandwidth, the very
  frames that come), by simulating every action. It is the limit, not a policy one can run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edgeml_ros.core.plan import NO_EARLY_EXIT, ExecutionPlan, shared_thresholds
from edgeml_ros.core.profiles import ExitTable
from edgeml_ros.policy.observation import (
    Decision,
    Observation,
    action_plan,
    num_actions,
)
from edgeml_ros.policy.sim import ModelCosts, Simulation

SPINN_ACCURACY_SLACK = 0.005


def no_exit_plan(costs: ModelCosts, cut: int, encoding: str = "fp32") -> ExecutionPlan:
    """The plan cutting at `cut` with every early exit disabled, offloading as `encoding`."""
    return ExecutionPlan(cut, shared_thresholds(NO_EARLY_EXIT, costs.num_exits),
                         encoding=encoding)  # fmt: skip


def pick_image_encoding(table: ExitTable, candidates: Sequence[str], max_loss: float) -> str:
    """Of `candidates`, the image encoding of fewest bytes per frame within `max_loss`.

    Within: the final exit's accuracy on the table's frames shipped in it is at most `max_loss`
    below its accuracy on the frames themselves. The most accurate candidate if none is.
    """
    target = table.exit_accuracy()[-1] - max_loss
    accuracy = {c: table.image_accuracy(c) for c in candidates}
    within = [c for c in candidates if accuracy[c] >= target]
    if not within:
        return max(candidates, key=accuracy.__getitem__)
    return min(within, key=lambda c: float(np.mean(table.images[c].payload_bytes)))


@dataclass
class FixedPolicy:
    """The same plan whatever happens (edge_only, cloud_only, cloud_png, branchynet, ...)."""

    name: str
    plan: ExecutionPlan

    def reset(self) -> None:
        """Nothing to forget."""

    def decide(self, obs: Observation, sim: Simulation | None = None) -> Decision:
        """Always the same plan."""
        return Decision(self.plan)


@dataclass
class Neurosurgeon:
    """Least predicted latency over cut points for the bandwidth estimate; no early exits."""

    costs: ModelCosts
    name: str = "neurosurgeon"

    def reset(self) -> None:
        """Nothing to forget."""

    def decide(self, obs: Observation, sim: Simulation | None = None) -> Decision:
        """The fastest cut by prediction."""
        costs = self.costs
        latency = [
            costs.drone_blocks_s[c] + costs.offload_s(c, obs.bandwidth_mbps, obs.rtt_ms)
            for c in range(costs.num_blocks)
        ] + [costs.full_local_s]
        return Decision(no_exit_plan(costs, int(np.argmin(latency))))


@dataclass
class Spinn:
    """SPINN-style joint choice of cut and threshold from the profile and the link estimate."""

    costs: ModelCosts
    table: ExitTable
    rule: str = "max_prob"
    name: str = "spinn"

    def __post_init__(self) -> None:
        costs = self.costs
        conf = self.table.confidence[self.rule].T
        self._plans, self._accuracy, self._local, self._compute = [], [], [], []
        for action in range(num_actions(costs.num_blocks)):
            plan = action_plan(action, costs.num_blocks, costs.num_exits, self.rule)
            local, taken, compute = costs.drone_part(plan, conf)
            correct = self.table.predictions[taken, np.arange(len(taken))] == self.table.labels
            self._plans.append(plan)
            self._accuracy.append(float(np.mean(correct)))
            self._local.append(local)
            self._compute.append(compute)
        self._accuracy = np.array(self._accuracy)

    def reset(self) -> None:
        """Nothing to forget."""

    def decide(self, obs: Observation, sim: Simulation | None = None) -> Decision:
        """The most accurate plan predicted to meet the deadline, fastest among near-ties."""
        latency = np.array([
            np.mean(compute + np.where(local, 0.0, self.costs.offload_s(
                plan.cut_point, obs.bandwidth_mbps, obs.rtt_ms)))
            for plan, local, compute in zip(self._plans, self._local, self._compute, strict=True)
        ])  # fmt: skip
        feasible = latency <= obs.deadline_ms / 1000.0
        if not feasible.any():
            return Decision(self._plans[int(np.argmin(latency))])
        best = self._accuracy[feasible].max()
        near = feasible & (self._accuracy >= best - SPINN_ACCURACY_SLACK)
        return Decision(self._plans[int(np.argmin(np.where(near, latency, np.inf)))])


@dataclass
class Oracle:
    """Per window, the action with the best utility in hindsight."""

    costs: ModelCosts
    rule: str = "max_prob"
    name: str = "oracle"

    def reset(self) -> None:
        """Nothing to forget."""

    def decide(self, obs: Observation, sim: Simulation | None = None) -> Decision:
        """Try every action on the coming window; keep the best."""
        if sim is None:
            raise ValueError("the oracle needs the simulation: it cannot run live")
        frames = sim.config.window_frames
        best, best_utility = None, -np.inf
        for action in range(num_actions(self.costs.num_blocks)):
            plan = action_plan(action, self.costs.num_blocks, self.costs.num_exits, self.rule)
            utility = float(np.mean(sim.preview(plan, frames).utility))
            if utility > best_utility:
                best, best_utility = plan, utility
        return Decision(best)
