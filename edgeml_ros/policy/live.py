"""The controller's decision loop on a real drone, ROS-free: live readings in, a plan out.

`LiveController` keeps the latest link estimate, battery reading and a window of perception
results, builds the same `Observation` the policies saw in the simulator, and asks the policy.
Two modes override the policy:

- stale inputs (no fresh link estimate or battery reading): the safe plan, everything on the
  drone with the validation-tuned exit threshold, which needs no link;
- battery critical: the cheapest plan, everything on the drone answering at the first exit.

A reading that cannot be true (not finite, out of range) is refused with a ValueError naming it
and counted in `refused`; it changes nothing.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from dataclasses import dataclass

import numpy as np

from edgeml_ros.core.outcome import Where
from edgeml_ros.core.plan import ExecutionPlan, shared_thresholds
from edgeml_ros.policy.observation import (
    Observation,
    Policy,
    audit_stats,
    plan_action,
    recent_stats,
)
from edgeml_ros.policy.thresholds import pick_threshold
from edgeml_ros.policy.world import World

# Readings beyond these are not a link's.
MAX_BANDWIDTH_MBPS = 100_000.0
MAX_RTT_MS = 600_000.0
# Results kept for the window at most, however many arrive in it.
MAX_WINDOW_RESULTS = 10_000
# A camera rate this far off a learned policy's training rate is named in the decision's reason.
RATE_TOLERANCE = 0.2


def camera_rate(stamps_s: np.ndarray, nominal: float) -> float:
    """Frames per second the camera took the window's frames at (by their capture stamps).

    Not the count of results in the window, which at 10 Hz reads fewer while the latest
    frames' results are on their way; `nominal` with fewer than two frames.
    """
    span = float(np.ptp(stamps_s)) if len(stamps_s) > 1 else 0.0
    return (len(stamps_s) - 1) / span if span > 0 else nominal


@dataclass(frozen=True)
class LiveDecision:
    """The plan to publish and why."""

    plan: ExecutionPlan
    reason: str
    mode: str  # "policy", "stale" or "battery_critical"


class LiveController:
    """Turns live readings into plans with a policy, with stale and battery-critical modes."""

    def __init__(
        self,
        world: World,
        policy: Policy,
        window_s: float = 1.0,
        stale_after_s: float = 3.0,
        critical_soc: float = 0.1,
    ) -> None:
        self.world, self.policy = world, policy
        self.window_s, self.stale_after_s, self.critical_soc = (
            window_s,
            stale_after_s,
            critical_soc,
        )
        blocks, exits = world.costs.num_blocks, world.costs.num_exits
        safe_threshold = pick_threshold(world.tables["clean"])
        self.safe_plan = ExecutionPlan(blocks, shared_thresholds(safe_threshold, exits))
        self.critical_plan = ExecutionPlan(blocks, shared_thresholds(0.0, exits))
        self._link: deque[tuple[float, float, float]] = deque()  # (t, mbps, rtt_ms)
        self._battery: tuple[float, float] | None = None  # (t, soc)
        # (t, latency_s, confidence, exit_index, where, auditable, compute_s, profiled_s)
        self._results: deque[tuple[float, float, float, int, int, bool, float, float]] = deque(
            maxlen=MAX_WINDOW_RESULTS
        )
        # (t, answered, agreeing) per batch of audits
        self._audits: deque[tuple[float, int, int]] = deque(maxlen=MAX_WINDOW_RESULTS)
        self.plan: ExecutionPlan | None = None
        self.refused: Counter[str] = Counter()  # readings refused, by kind
        policy.reset()

    def _refuse(self, kind: str, why: str) -> ValueError:
        self.refused[kind] += 1
        return ValueError(why)

    def keep_readings(self, previous: LiveController) -> None:
        """Take over `previous`'s readings, refusal counts and plan in force.

        A controller rebuilt for new parameters (another policy, window or deadline) then
        decides from the same recent past, not from none (which reads as stale inputs).
        """
        self._link, self._battery = deque(previous._link), previous._battery
        self._results = deque(previous._results, maxlen=MAX_WINDOW_RESULTS)
        self._audits = deque(previous._audits, maxlen=MAX_WINDOW_RESULTS)
        self.refused, self.plan = Counter(previous.refused), previous.plan

    def on_link(self, now: float, bandwidth_mbps: float, rtt_ms: float) -> None:
        """A link estimate (LinkQuality)."""
        if not 0.0 <= bandwidth_mbps <= MAX_BANDWIDTH_MBPS:
            raise self._refuse(
                "link",
                f"bandwidth must be finite and in [0, {MAX_BANDWIDTH_MBPS:g}] Mbit/s, got "
                f"{bandwidth_mbps}",
            )
        if not 0.0 <= rtt_ms <= MAX_RTT_MS:
            raise self._refuse(
                "link", f"RTT must be finite and in [0, {MAX_RTT_MS:g}] ms, got {rtt_ms}"
            )
        self._link.append((now, bandwidth_mbps, rtt_ms))
        while len(self._link) > 1 and now - self._link[1][0] >= self.window_s:
            self._link.popleft()

    def on_battery(self, now: float, soc: float) -> None:
        """A battery reading: state of charge in [0, 1]."""
        if not 0.0 <= soc <= 1.0:
            raise self._refuse("battery", f"battery state of charge must be in [0, 1], got {soc}")
        self._battery = (now, soc)

    def on_result(
        self,
        now: float,
        latency_s: float,
        confidence: float,
        exit_index: int,
        where: int,
        auditable: bool = False,
        compute_s: float = 0.0,
        profiled_s: float = 0.0,
    ) -> None:
        """One perception result (frames without an answer are left out by the caller).

        `now`: when its frame was captured (the window holds the frames captured in it);
        `auditable`: the link could have carried an audit of it (under a plan with audits);
        `compute_s`: its compute on the drone, `profiled_s` the same at the profiled speed.
        """
        if not (math.isfinite(latency_s) and latency_s >= 0.0 and 0.0 <= confidence <= 1.0):
            raise self._refuse(
                "result",
                f"result needs a finite latency >= 0 and a confidence in [0, 1], got "
                f"{latency_s} s, {confidence}",
            )
        if not all(math.isfinite(t) and t >= 0.0 for t in (compute_s, profiled_s)):
            raise self._refuse(
                "result",
                f"result needs finite compute times >= 0, got {compute_s} s compute, "
                f"{profiled_s} s profiled",
            )
        exits = self.world.costs.num_exits
        if not 0 <= exit_index < exits:
            raise self._refuse("result", f"exit_index {exit_index} outside 0..{exits - 1}")
        if where not in (Where.DRONE, Where.BASE, Where.FALLBACK):
            raise self._refuse("result", f"where {where} is not drone, base or fallback (1..3)")
        self._results.append(
            (now, latency_s, confidence, exit_index, where, auditable, compute_s, profiled_s)
        )
        while self._results and now - self._results[0][0] > self.window_s:
            self._results.popleft()

    def on_audits(self, now: float, answered: int, agreeing: int) -> None:
        """Audits the base station answered, and how many agreed with the drone's answer."""
        if not 0 <= agreeing <= answered:
            raise self._refuse(
                "audits", f"audits agreeing must be in [0, answered], got {agreeing} of {answered}"
            )
        self._audits.append((now, answered, agreeing))

    def observation(self, now: float) -> Observation | None:
        """What the policy sees now, or None while the link or the battery is stale."""
        if not self._link or now - self._link[-1][0] > self.stale_after_s:
            return None
        if self._battery is None or now - self._battery[0] > self.stale_after_s:
            return None
        _, mbps, rtt = self._link[-1]
        before = self._link[0][1]
        for recent in (self._results, self._audits):
            while recent and now - recent[0][0] > self.window_s:
                recent.popleft()
        table = np.array(self._results, dtype=float).reshape(-1, 8)
        captured, rows = table[:, 0], table[:, 1:]
        costs, config = self.world.costs, self.world.config
        cut, level = plan_action(self.plan, costs.num_blocks) if self.plan else (
            costs.num_blocks, 0)  # fmt: skip
        fps = camera_rate(captured, config.fps)
        return Observation(
            bandwidth_mbps=mbps,
            rtt_ms=rtt,
            bandwidth_trend=math.log10(mbps + 0.01) - math.log10(before + 0.01),
            battery_soc=self._battery[1],
            **recent_stats(
                rows[:, 1],
                rows[:, 2].astype(int),
                rows[:, 3].astype(int),
                rows[:, 0],
                rows[:, 5],
                rows[:, 6],
                costs.num_exits,
                config.deadline_ms / 1000.0,
            ),
            **audit_stats(
                rows[:, 4].sum(), sum(a[1] for a in self._audits), sum(a[2] for a in self._audits)
            ),
            fps=fps,
            deadline_ms=config.deadline_ms,
            cut_point=cut,
            threshold_level=level,
        )

    def _rate_warning(self, obs: Observation) -> str:
        """Where the camera runs off the rate a learned policy trained at (it assumes that one)."""
        trained = getattr(self.policy, "trained_fps", None)
        if not trained or abs(obs.fps - trained) <= RATE_TOLERANCE * trained:
            return ""
        return (f"; the camera runs at {obs.fps:.1f} frames/s, the policy was trained at "
                f"{trained:g} (edgeml policy train --fps)")  # fmt: skip

    def decide(self, now: float) -> LiveDecision:
        """The plan for the coming window."""
        if self._battery is not None and now - self._battery[0] <= self.stale_after_s:
            soc = self._battery[1]
            if soc < self.critical_soc:
                decision = LiveDecision(
                    self.critical_plan,
                    f"battery {soc:.0%} below {self.critical_soc:.0%}: first exit on the drone",
                    "battery_critical",
                )
                self.plan = decision.plan
                return decision
        obs = self.observation(now)
        if obs is None:
            missing = "link estimate" if not self._link or now - self._link[-1][0] > \
                self.stale_after_s else "battery reading"  # fmt: skip
            decision = LiveDecision(
                self.safe_plan, f"no fresh {missing}: everything on the drone", "stale"
            )
        else:
            plan = self.policy.decide(obs).plan
            audits = obs.recent_audits
            agreement = f", audits {audits} ({obs.recent_audit_agreement:.0%} agree)" if audits \
                else ""  # fmt: skip
            ratio = obs.recent_compute_ratio
            speed = f", drone compute {ratio:.2f}x profiled" if ratio > 0 else ""
            decision = LiveDecision(
                plan,
                f"{self.policy.name}: link {obs.bandwidth_mbps:.2f} Mbit/s, RTT "
                f"{obs.rtt_ms:.0f} ms, battery {obs.battery_soc:.0%}, confidence "
                f"{obs.recent_confidence:.2f}{speed}{agreement}{self._rate_warning(obs)}",
                "policy",
            )
        self.plan = decision.plan
        return decision
