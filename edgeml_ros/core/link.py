"""Link-quality estimation from real offload transfers: goodput, RTT and loss."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

MIN_GOODPUT_BYTES = 512
# Bytes one probe takes on the wire besides its padding: the LinkProbe message and the RTPS,
# UDP, IP and Ethernet headers.
PROBE_OVERHEAD_BYTES = 150


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
    dominated by it); goodput is the median, over the samples carrying at least
    `MIN_GOODPUT_BYTES`, of payload bits over the time beyond that RTT (small payloads measure
    only timing jitter). Offloads that got no reply count as lost.
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
        rates = [8 * b / max(ms - rtt_ms, 0.05) / 1000.0 for b, ms in done
                 if b >= MIN_GOODPUT_BYTES]  # fmt: skip
        bandwidth = float(np.median(rates)) if rates else 0.0
        return LinkEstimate(bandwidth, rtt_ms, loss, len(self._samples))


class ProbeTracker:
    """Sends link probes, alternately small (RTT) and padded (goodput), and matches the echoes.

    Echoes feed the estimator like transfers; a probe not echoed within `timeout_s` counts as
    lost, so a dead link shows as loss and no bandwidth even when no frame is offloaded.
    Probes take at most `budget` (a fraction) of the estimated bandwidth: on a slow link they
    are spaced out so that they do not crowd out the offloads they measure the link for.
    """

    def __init__(
        self, estimator: LinkEstimator, payload_bytes: int, timeout_s: float, budget: float = 1.0
    ) -> None:
        if payload_bytes < 0 or timeout_s <= 0 or not 0 < budget <= 1:
            raise ValueError(
                "probe payload must be >= 0 bytes, the timeout > 0 s and the budget in (0, 1]"
            )
        self.estimator, self.payload_bytes, self.timeout_s = estimator, payload_bytes, timeout_s
        self.budget = budget
        self._sent: dict[int, tuple[float, int]] = {}
        self._seq = 0
        self._last_sent = float("-inf")

    def next_probe(self, now: float) -> tuple[int, int] | None:
        """Sequence number and padding of the probe to send at `now`; None: over budget."""
        padding = self.payload_bytes if (self._seq + 1) % 2 == 0 else 0
        estimate = self.estimator.estimate()
        if estimate is not None and estimate.bandwidth_mbps > 0:
            spacing_s = (
                8
                * (padding + PROBE_OVERHEAD_BYTES)
                / (self.budget * estimate.bandwidth_mbps * 1e6)
            )
            if now - self._last_sent < spacing_s:
                return None
        self._seq += 1
        self._sent[self._seq] = (now, padding)
        self._last_sent = now
        return self._seq, padding

    def on_echo(self, seq: int, now: float) -> float | None:
        """Round trip in ms of an echoed probe; None for an unknown or expired one."""
        sent = self._sent.pop(seq, None)
        if sent is None:
            return None
        rtt_ms = (now - sent[0]) * 1000.0
        self.estimator.add_transfer(sent[1], rtt_ms)
        return rtt_ms

    def expire(self, now: float) -> int:
        """Count probes past the timeout as lost; how many were."""
        late = [s for s, (t, _) in self._sent.items() if now - t > self.timeout_s]
        for seq in late:
            del self._sent[seq]
            self.estimator.add_loss()
        return len(late)
