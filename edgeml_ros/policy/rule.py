"""A rule-based execution policy: offload when the link allows it, exit earlier on low battery.

It is the controller's safe default and a baseline for the learned policies.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Conditions:
    """What the controller knows; None means unknown or stale."""

    bandwidth_mbps: float | None = None
    rtt_ms: float | None = None
    battery_soc: float | None = None


@dataclass(frozen=True)
class PolicyChoice:
    """A chosen cut point and exit thresholds, with the reason for the choice."""

    cut_point: int
    exit_thresholds: tuple[float, ...]
    reason: str


@dataclass(frozen=True)
class RulePolicy:
    """Offload at `offload_cut` when bandwidth and RTT allow it, else run everything locally.

    With no link estimate (none yet, or stale) it offloads when `offload_when_unknown`: the
    offloads themselves measure the link, and the drone's deadline fallback bounds the cost of a
    dead one. Otherwise it stays on the drone.

    Below `low_battery_soc` every threshold is multiplied by `low_battery_threshold_scale`, so
    frames exit earlier and the drone spends less compute.
    """

    num_blocks: int
    exit_thresholds: tuple[float, ...]
    offload_cut: int
    min_offload_mbps: float = 1.0
    max_offload_rtt_ms: float = 100.0
    low_battery_soc: float = 0.2
    low_battery_threshold_scale: float = 0.8
    offload_when_unknown: bool = True

    def __post_init__(self) -> None:
        if not 0 <= self.offload_cut <= self.num_blocks:
            raise ValueError(f"offload_cut {self.offload_cut} outside 0..{self.num_blocks}")

    def decide(self, conditions: Conditions) -> PolicyChoice:
        """The cut point and thresholds for the given conditions."""
        bw, rtt = conditions.bandwidth_mbps, conditions.rtt_ms
        if bw is None and self.offload_when_unknown:
            cut, why = self.offload_cut, "no link estimate: offloading to measure the link"
        elif bw is None:
            cut, why = self.num_blocks, "no link estimate: all on the drone"
        elif bw < self.min_offload_mbps:
            cut, why = self.num_blocks, f"link {bw:.2f} Mbit/s too slow: all on the drone"
        elif rtt is not None and rtt > self.max_offload_rtt_ms:
            cut, why = self.num_blocks, f"RTT {rtt:.0f} ms too long: all on the drone"
        else:
            cut = self.offload_cut
            why = f"link {bw:.2f} Mbit/s: offload after block {cut}"
        thresholds = self.exit_thresholds
        soc = conditions.battery_soc
        if soc is not None and soc < self.low_battery_soc:
            thresholds = tuple(t * self.low_battery_threshold_scale for t in thresholds)
            why += f"; battery {soc:.0%}: earlier exits"
        return PolicyChoice(cut, thresholds, why)
