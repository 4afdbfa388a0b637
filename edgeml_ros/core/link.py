"""Link-quality estimation from real offload transfers: goodput, RTT and loss."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class LinkEstimate:
    """Bandwidth (goodput) in Mbit/s, RTT in ms and loss ratio over the recent window."""

    bandwidth_mbps: float
    rtt_ms: float
    loss_ratio: float
    samples: int


class LinkEstimator:
    """Sliding-window estimate over the last `window` offloads.

    RTT is the smallest round trip in the window (the transfer of the smallest payloads is
    dominated by it); goodput is payload bits over the time spent beyond that RTT. Offloads that
    got no reply count as lost.
    """

    def __init__(self, window: int = 20) -> None:
        self._samples: deque[tuple[int, float] | None] = deque(maxlen=window)

    def add_transfer(self, payload_bytes: int, round_trip_ms: float) -> None:
        """Record one offload that got its reply after `round_trip_ms` (compute excluded)."""
        self._samples.append((payload_bytes, max(round_trip_ms, 1e-3)))

    def add_loss(self) -> None:
        """Record one offload that got no reply in time."""
        self._samples.append(None)

    def estimate(self) -> LinkEstimate | None:
        """The current estimate, or None before any offload was seen."""
        if not self._samples:
            return None
        done = [s for s in self._samples if s is not None]
        loss = 1.0 - len(done) / len(self._samples)
        if not done:
            return LinkEstimate(0.0, 0.0, loss, len(self._samples))
        rtt_ms = min(ms for _, ms in done)
        bits = sum(8 * b for b, _ in done)
        beyond_rtt_s = sum(max(ms - rtt_ms, 0.05) for _, ms in done) / 1000.0
        return LinkEstimate(bits / beyond_rtt_s / 1e6, rtt_ms, loss, len(self._samples))
