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
- ucb: a discounted-UCB bandit over the cut points at BranchyNet's threshold, learning online
  from a label-free reward (the exits' confidence for accuracy), SplitEE-style (Bajpai et al.,
  2023; discounting: Garivier and Moulines, ALT 2011).
- apparate: everything on the drone, one exit threshold tuned online without labels, in the
  manner of Apparate (Dai et al., SOSP 2024): a share of the early exits is audited against
  the final exit, and the threshold moves one step down while the estimated agreement with the
  final exit is within the budget, one step up when not (`ThresholdLoop`). The budget is the
  drift requirement's (policy.thresholds): within 1 point of the whole model in 95 % of 10-s
  windows.
- oracle: per window, the best configuration in hindsight (true future bandwidth, the very
  frames that come), by simulating every action. It is the limit, not a policy one can run.
- conditions_oracle: per window, the configuration of best expected utility knowing the
  conditions in hindsight (link, drone compute, input condition, battery) but not the frames:
  every action simulated on other draws of frames in the same conditions. What a policy that
  read the conditions perfectly could reach; the oracle's lead over it is its knowledge of
  which frames come, which no policy has.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from edgeml_ros.core.plan import NO_EARLY_EXIT, ExecutionPlan, shared_thresholds
from edgeml_ros.core.profiles import ExitTable
from edgeml_ros.policy.observation import (
    Decision,
    Observation,
    action_plan,
    num_actions,
    plan_action,
)
from edgeml_ros.policy.sim import THRESHOLD_LEVELS, ModelCosts, Simulation, UtilityWeights
from edgeml_ros.policy.thresholds import pick_agreeing_threshold, window_agreement_budget

SPINN_ACCURACY_SLACK = 0.005
# Discounted UCB (see `Ucb`): discount per decision, and the index's constants.
UCB_DISCOUNT = 0.995
UCB_XI = 0.6
UCB_EXPLORATION = 0.1


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


APPARATE_HORIZON_FRAMES = 6000  # audits older than this many frames are forgotten


def apparate_min_audits(budget: float) -> int:
    """Audits an `Apparate` policy waits for before it lowers its threshold: ln 2 / (1 - budget).

    Why: with a few percent of the early exits audited, one disagreeing audit stands for so
    many frames that it puts the estimate below the budget for thousands of frames, so the
    policy lowers only after a run of this many agreeing audits and raises at a disagreement.
    Such a run is as likely as not when ln 2 / n of the early exits disagree; with n = ln 2 /
    (1 - budget) the threshold settles where about 1 - budget of them do, so that the agreement
    over all frames is within the budget (70 audits for 99 %, 196 for the drift requirement's
    99.64 % at 10 frames/s).
    """
    return math.ceil(math.log(2.0) / (1.0 - budget))


@dataclass
class ThresholdLoop:
    """One exit threshold, tuned online against audits within an agreement budget (Apparate).

    It starts at `start` and moves one step along the grid (THRESHOLD_LEVELS below "no early
    exit", and the start) per window: down (more early exits, less compute) while the
    audit-estimated agreement with the final exit is within `budget`, up while it is not.

    The estimate weights each audit by the inverse of the audit probability (`audit_share`):
    an audit stands for 1 / share early exits, so disagreeing audits / share estimates how many
    of the window's frames disagreed with the final exit (Horvitz-Thompson); over all frames of
    the window, those answered at the final exit agreeing with it by definition, that is the
    agreement of everything the drone answered, which is what the budget bounds. The audits
    counted are those since the last move (an older one measured another threshold), at most
    APPARATE_HORIZON_FRAMES frames back. It lowers once `min_audits` audits are in (see
    `apparate_min_audits`) and raises as soon as the estimate would stay below the budget even
    if all the audits still missing to `min_audits` agreed. With no audits (`audit_share` 0)
    it never moves.
    """

    start: float
    audit_share: float
    budget: float
    min_audits: int | None = None  # None: apparate_min_audits(budget)
    _windows: deque = field(default_factory=deque, init=False, repr=False)

    def __post_init__(self) -> None:
        if not 0 < self.budget < 1:
            raise ValueError(f"apparate budget must be in (0, 1), got {self.budget}")
        if self.min_audits is None:
            self.min_audits = apparate_min_audits(self.budget)
        if self.min_audits < 1:
            raise ValueError(f"apparate min_audits must be at least 1, got {self.min_audits}")
        self.levels = tuple(sorted({*THRESHOLD_LEVELS[:-1], float(self.start)}))
        self.reset()

    @property
    def threshold(self) -> float:
        """The exit threshold in force."""
        return self.levels[self.level]

    def reset(self) -> None:
        """Back to the start threshold, no audits."""
        self.level = self.levels.index(float(self.start))
        self._windows.clear()

    def agreement(self) -> tuple[float, int, int]:
        """Estimated agreement with the final exit, audits and frames since the last move."""
        frames = sum(w[0] for w in self._windows)
        audits = sum(w[1] for w in self._windows)
        disagreeing = sum(w[2] for w in self._windows)
        if not frames or not self.audit_share:
            return 1.0, audits, frames
        return 1.0 - disagreeing / self.audit_share / frames, audits, frames

    def features(self) -> np.ndarray:
        """The loop's state for a learned policy: its threshold, agreement and audits so far."""
        agreement, audits, _ = self.agreement()
        return np.array([self.threshold, agreement, min(audits / self.min_audits, 1.0)],
                        dtype=np.float32)  # fmt: skip

    def update(self, obs: Observation) -> float:
        """Take the last window's audits in, move the threshold one step if they say so."""
        if obs.recent_auditable_frames:
            disagreeing = round(obs.recent_audits * (1.0 - obs.recent_audit_agreement))
            self._windows.append((obs.recent_auditable_frames, obs.recent_audits, disagreeing))
            while sum(w[0] for w in self._windows) > APPARATE_HORIZON_FRAMES:
                self._windows.popleft()
        agreement, audits, _ = self.agreement()
        move = 0
        if audits >= self.min_audits:
            move = -1 if agreement >= self.budget else 1
        elif audits and agreement < self.budget:
            # the estimate at min_audits audits, should the missing ones all agree
            projected = 1.0 - (1.0 - agreement) * audits / self.min_audits
            move = 1 if projected < self.budget else 0
        level = min(max(self.level + move, 0), len(self.levels) - 1)
        if level != self.level:
            self._windows.clear()
            self.level = level
        return self.threshold


def threshold_loop(tables: dict[str, ExitTable], audit_share: float, fps: float) -> ThresholdLoop:
    """The threshold loop the policies share: it keeps the drift requirement at `fps`.

    Its budget is the agreement the requirement asks for (`window_agreement_budget`), and it
    starts at the threshold of least compute that meets it on the clean validation frames.
    """
    budget = window_agreement_budget(fps)
    return ThresholdLoop(pick_agreeing_threshold(tables["clean"], budget), audit_share, budget)


@dataclass
class Apparate:
    """Everything on the drone, its exit threshold kept by a `ThresholdLoop` (Apparate).

    It starts at the validation threshold that keeps its loop's budget; every plan asks for
    audits (its `audit_share`).
    """

    costs: ModelCosts
    loop: ThresholdLoop
    name: str = "apparate"

    def reset(self) -> None:
        """Back to the start threshold, no audits."""
        self.loop.reset()

    def decide(self, obs: Observation, sim: Simulation | None = None) -> Decision:
        """Take the last window's audits in, and move the threshold one step if they say so."""
        costs = self.costs
        thresholds = shared_thresholds(self.loop.update(obs), costs.num_exits)
        plan = ExecutionPlan(costs.num_blocks, thresholds, audit_share=self.loop.audit_share)
        return Decision(plan)


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
        return Decision(self._best(action_utilities(self.costs, self.rule, _needed(sim))))

    def _best(self, utilities: np.ndarray) -> ExecutionPlan:
        """The plan of the action of greatest utility (the first of equals)."""
        costs = self.costs
        return action_plan(int(np.argmax(utilities)), costs.num_blocks, costs.num_exits,
                           self.rule)  # fmt: skip


@dataclass
class ConditionsOracle(Oracle):
    """Per window, the action of best mean utility over `draws` other draws of the frames.

    It knows the conditions of the coming window in hindsight, as the oracle does, but not
    which frames come (Simulation.frames_redrawn); the draws are seeded by `seed` at `reset`.
    """

    draws: int = 32
    seed: int = 0
    name: str = "conditions_oracle"
    _rng: np.random.Generator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Restart the draws."""
        self._rng = np.random.default_rng(self.seed)

    def decide(self, obs: Observation, sim: Simulation | None = None) -> Decision:
        """Try every action on `draws` redrawn windows; keep the best on average."""
        sim = _needed(sim)
        total = np.zeros(num_actions(self.costs.num_blocks))
        for _ in range(self.draws):
            with sim.frames_redrawn(self._rng):
                total += action_utilities(self.costs, self.rule, sim)
        return Decision(self._best(total))


def _needed(sim: Simulation | None) -> Simulation:
    """The simulation an oracle looks ahead in (ValueError without one: it cannot run live)."""
    if sim is None:
        raise ValueError("an oracle needs the simulation: it cannot run live")
    return sim


def action_utilities(costs: ModelCosts, rule: str, sim: Simulation) -> np.ndarray:
    """Each discrete action's mean utility over the simulation's coming window."""
    frames = sim.config.window_frames
    return np.array([
        np.mean(sim.preview(action_plan(a, costs.num_blocks, costs.num_exits, rule), frames)
                .utility)
        for a in range(num_actions(costs.num_blocks))
    ])  # fmt: skip


def splitee_arms(costs: ModelCosts, threshold: float) -> list[ExecutionPlan]:
    """SplitEE's arms: every cut point, the early exits before it at one `threshold`."""
    thresholds = shared_thresholds(threshold, costs.num_exits)
    return [ExecutionPlan(cut, thresholds) for cut in range(costs.num_blocks + 1)]


@dataclass
class Ucb:
    """Discounted UCB over configurations, learning online from a label-free reward.

    SplitEE-style (Bajpai et al., 2023): a bandit picks where the drone stops, one arm per cut
    point, the exits before it at one threshold (the registry's: BranchyNet's
    validation-tuned one, as SplitEE fixes its threshold), and rewards the arm with what the
    drone can observe without labels, the confidence of the answering exits standing in for
    accuracy. Reward of a window, the utility of `UtilityWeights` (the world's weights, as they
    are) with observable stand-ins:

        accuracy * recent_confidence - latency * recent_latency_ratio
        - deadline_miss * (recent_latency_ratio > 1)
        - energy_weight(soc) * expected_energy(arm, link) / reference_energy

    The observation carries the mean latency only, not the share of frames over the deadline,
    so the miss term is an indicator on the mean. The energy is the energy model's expected
    energy of the arm (`arm_energy_j`), relative to the whole model on the drone as in the
    utility: the profile's drone compute on the validation frames, the radio's time for the
    share it offloads at the link estimate, and the compute of the share that fell back.

    Each decision reports the last window, so its reward is credited to the arm the
    observation says was in force (`cut_point`, `threshold_level`; none if no arm's plan
    matches): the live controller's stale and battery-critical modes may have overridden the
    bandit's choice. Nothing is credited at the first decision after `reset` (the window before
    it ran a plan the bandit did not choose, which the observation cannot name exactly) nor
    for a window without frames.

    Discounted UCB (Garivier and Moulines, ALT 2011) forgets old rewards, for links that change:
    every decision, each arm's reward sum and play count are multiplied by `discount` before
    the credit. The arms not yet rewarded are played first, in order; then the arm of greatest
    discounted mean + exploration * sqrt(xi * log(n) / n_arm), n the discounted plays of all
    arms, n_arm the arm's (ties: the first). Deterministic, no seed.

    Constants: `discount` 0.995 per decision (window) keeps about 200 windows in memory, so
    every arm stays remembered while the others are played (a bandit over all 60 actions of a
    five-block model, tried first, needed that much). `xi` 0.6 is Garivier and Moulines'
    choice in their experiments. `exploration` 0.1, not their 2B for rewards in [0, B]: a
    window's reward is a mean over its frames, and the bonus should scale with its noise, not
    its range. Its standard deviation, per arm on a steady link in the simulator, is about
    0.05 (measured on the Fashion-MNIST B-VGG profile), and UCB's index for a sigma-sub-Gaussian
    reward, sigma * sqrt(2 log(n) / n_arm), is this form with exploration = sigma *
    sqrt(2 / xi), about 0.09.
    """

    costs: ModelCosts
    table: ExitTable
    weights: UtilityWeights
    arms: list[ExecutionPlan]
    discount: float = UCB_DISCOUNT
    exploration: float = UCB_EXPLORATION
    xi: float = UCB_XI
    name: str = "ucb"

    def __post_init__(self) -> None:
        if not 0 < self.discount <= 1:
            raise ValueError(f"ucb discount must be in (0, 1], got {self.discount}")
        costs = self.costs
        compute, offloaded = [], []
        for plan in self.arms:
            conf = self.table.confidence[plan.exit_rule].T
            local, _, compute_s = costs.drone_part(plan, conf)
            compute.append(float(np.mean(compute_s)))
            offloaded.append(float(np.mean(~local)) if plan.cut_point < costs.num_blocks else 0.0)
        self._compute_s, self._offloaded = np.array(compute), np.array(offloaded)
        # the arm of each observed (cut point, threshold level)
        self._arm_of = {plan_action(plan, costs.num_blocks): i for i, plan in enumerate(self.arms)}
        self.reset()

    def reset(self) -> None:
        """Forget every reward."""
        arms = len(self.arms)
        self._sums = np.zeros(arms)  # discounted reward sums
        self._counts = np.zeros(arms)  # discounted plays
        self._rewarded = np.zeros(arms, dtype=bool)  # ever credited since the reset
        self._decided = False

    def arm_energy_j(self, arm: int, obs: Observation) -> float:
        """Expected modelled energy per frame of `arm` in the window `obs` reports.

        The drone's compute on the validation frames; for the share it offloads, the radio's
        transmit time at the link estimate (at most all of the frame's period: the link is
        saturated) and its wait for the reply (at most the deadline); and for the share that
        fell back (observed), the compute to finish the model on the drone.
        """
        costs, cut = self.costs, self.arms[arm].cut_point
        device, share = costs.device, float(self._offloaded[arm])
        compute = self._compute_s[arm] + obs.recent_fallback_rate * costs.drone.finish(cut)
        if share == 0:
            return device.frame_energy_j(float(compute))
        period_s, deadline_s = 1.0 / max(obs.fps, 1e-3), obs.deadline_ms / 1000.0
        bits = costs.wire_bits(int(costs.cut_bytes[cut]))
        rate = obs.bandwidth_mbps * 1e6
        tx = min(share * bits / rate, period_s) if rate > 0 else period_s
        wait = (
            costs.path_rtt_ms(obs.rtt_ms) / 1000.0 + costs.server_tail_s[cut] + costs.offload_hop_s
        )
        return device.frame_energy_j(float(compute), tx, share * min(wait, deadline_s))

    def reward(self, obs: Observation, arm: int) -> float:
        """The label-free reward of the window `obs` reports, which `arm` ran."""
        w = self.weights
        return float(
            w.accuracy * obs.recent_confidence
            - w.latency * obs.recent_latency_ratio
            - w.deadline_miss * (obs.recent_latency_ratio > 1.0)
            - w.energy_weight(obs.battery_soc)
            * self.arm_energy_j(arm, obs)
            / self.costs.reference_energy_j
        )

    def decide(self, obs: Observation, sim: Simulation | None = None) -> Decision:
        """Credit the last window to the arm in force, then play the next arm."""
        self._sums *= self.discount
        self._counts *= self.discount
        arm = self._arm_of.get((obs.cut_point, obs.threshold_level))
        # recent_stats reports a latency ratio of 0 for a window without frames
        if self._decided and arm is not None and obs.recent_latency_ratio > 0:
            self._sums[arm] += self.reward(obs, arm)
            self._counts[arm] += 1.0
            self._rewarded[arm] = True
        self._decided = True
        if not self._rewarded.all():
            return Decision(self.arms[int(np.argmin(self._rewarded))])
        mean = self._sums / self._counts
        log_plays = np.log(max(self._counts.sum(), 1.0))
        bonus = self.exploration * np.sqrt(self.xi * log_plays / self._counts)
        return Decision(self.arms[int(np.argmax(mean + bonus))])
