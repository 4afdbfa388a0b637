"""The drone's offload window: whether the link can take another offload now.

Two limits, both of which must allow a send:

- A count: at most `max_in_flight` offloads sent and not yet answered.
- The link's pace: the replies show how fast the link delivers (the delivery rate), so the
  window knows how long the link still needs for what is in flight. Another offload goes only
  when the link has at most `lead` frame intervals of work left: up to one, so that the link
  does not idle until the next frame, and the queue then never holds much more than one tensor.
  Where the link's queue holds little more than a tensor (5 KB, one second, at 40 kbit/s,
  against a 4 KB tensor that takes 4.5 KB on the wire) even that overflows it: each loss
  halves the lead, and each answered offload gives back a tenth of an interval up to most of
  the lead the loss came at, then a hundredth (as TCP grows its window slowly near the size of
  its last loss): where the queue holds only a little more than a tensor, losses to the lead
  become rare instead of coming every few offloads. A link that got much faster than at that
  loss is a different link: the lead grows back fast again.

Requests cross the link in order, so a reply to one offload means any sent before it and still
unanswered were lost on the way (best effort). A loss means the link got slower than the
window knew (its queue overflowed): the rate is halved until replies to offloads sent after the
loss have measured it anew. The window keeps sending at that pace rather than waiting for the
lost offload's reply, so the next reply finds the loss at once.
"""

from __future__ import annotations

from collections import deque

# An offload counts as on the link until its reply (even a late one), a reply to a later one, or
# for this long: a request or reply lost for good must not hold the window shut.
IN_FLIGHT_HORIZON_S = 2.0
# Delivery-rate samples older than this are forgotten (the link changes).
RATE_MEMORY_S = 3.0
# Another offload goes when the link's work in flight is down to `lead` frame intervals: at most
# LEAD_MAX, halved by a loss, LEAD_REGROWTH more per answered offload up to LEAD_CEILING of the
# lead at the last loss, LEAD_PROBE more above it (until the rate exceeds FASTER_LINK times the
# rate at that loss).
LEAD_MAX, LEAD_REGROWTH, LEAD_PROBE, LEAD_CEILING = 1.0, 0.1, 0.01, 0.8
FASTER_LINK = 1.5
# Frame interval: exponentially weighted mean of the gaps between frames, this weight per frame.
INTERVAL_WEIGHT = 0.2


class OffloadWindow:
    """Offloads on the link, their count and the link's pace."""

    def __init__(self, max_in_flight: int = 2) -> None:
        self._in_flight: dict[int, tuple[float, int]] = {}  # seq -> (sent at, bytes)
        # Replies to offloads that waited behind another: (reply at, bytes, seconds on the link),
        # exact but for jitter. Replies to offloads that went alone: (reply at, bytes/s), a
        # lower bound (their time includes the round trip).
        self._queued: deque[tuple[float, int, float]] = deque()
        self._alone: deque[tuple[float, float]] = deque()
        self._last_reply_at = float("-inf")
        self._lost_at = float("-inf")  # offloads sent before this do not measure the rate
        self._rate_after_loss: float | None = None  # the pace until they do
        self.lead = LEAD_MAX
        self._lead_ceiling = LEAD_MAX  # fast regrowth up to here
        self._ceiling_rate = 0.0  # the delivery rate when the ceiling was set
        self._last_frame_at: float | None = None
        self.frame_interval_s: float | None = None
        self.max_in_flight = max_in_flight

    @property
    def max_in_flight(self) -> int:
        """Offloads on the link at most."""
        return self._max_in_flight

    @max_in_flight.setter
    def max_in_flight(self, value: int) -> None:
        if value < 1:
            raise ValueError(f"max_in_flight must be at least 1, not {value}")
        self._max_in_flight = value

    @property
    def delivery_rate_bps(self) -> float | None:
        """Bytes per second the link delivers, as the window paces it (None: not known yet).

        The mean over the recent queued replies (total bytes over total time), unless a reply
        that went alone shows more (the link got faster); after a loss and before new samples,
        half the rate before it.
        """
        queued = sum(b for _, b, _ in self._queued) / sum(t for _, _, t in self._queued) \
            if self._queued else 0.0  # fmt: skip
        alone = max((r for _, r in self._alone), default=0.0)
        return max(queued, alone) or self._rate_after_loss

    def frame_arrived(self, now: float) -> None:
        """Note a camera frame's arrival (the window learns the frame interval)."""
        if self._last_frame_at is not None and now > self._last_frame_at:
            gap = now - self._last_frame_at
            mean = self.frame_interval_s
            self.frame_interval_s = gap if mean is None else mean + INTERVAL_WEIGHT * (gap - mean)
        self._last_frame_at = now

    def drain_s(self, now: float) -> float:
        """Seconds the link still needs for the offloads in flight (0 when unknown or done)."""
        rate = self.delivery_rate_bps
        if not rate:
            return 0.0
        # The link took up the oldest offload in flight when it was sent or, if it waited behind
        # an answered one, when that reply came (a little later than the link was free).
        done = self._last_reply_at
        for sent, size in sorted(self._in_flight.values()):
            done = max(sent, done) + size / rate
        return max(0.0, done - now)

    def full(self, now: float) -> tuple[str | None, int]:
        """(why another offload may not go now, or None; offloads just found lost)."""
        lost = self._lose([s for s, (sent, _) in self._in_flight.items()
                           if now - sent > IN_FLIGHT_HORIZON_S], now)  # fmt: skip
        if not self._in_flight:
            return None, lost
        if len(self._in_flight) >= self.max_in_flight:
            return f"{len(self._in_flight)} offloads already in flight", lost
        drain = self.drain_s(now)
        if self.frame_interval_s is not None and drain > self.lead * self.frame_interval_s:
            return f"the link is busy for another {1000 * drain:.0f} ms", lost
        return None, lost

    def sent(self, seq: int, now: float, size: int) -> None:
        """An offload of `size` bytes went on the link."""
        self._in_flight[seq] = (now, size)

    def answered(self, seq: int, now: float, tail_s: float) -> int:
        """A reply came (`tail_s`: the base station's time on it); returns offloads found lost."""
        lost = self._lose([s for s in self._in_flight if s < seq], now)
        entry = self._in_flight.pop(seq, None)
        if entry is not None:
            sent, size = entry
            # It left when it was sent or, queued behind an earlier one, when that one's reply
            # came: what remains is its time on the link (plus, when it went alone, the RTT).
            waited = sent < self._last_reply_at
            on_link = now - max(sent, self._last_reply_at) - tail_s
            if on_link > 0 and sent > self._lost_at:
                if waited:
                    self._queued.append((now, size, on_link))
                else:
                    self._alone.append((now, size / on_link))
                self._rate_after_loss = None
            if not lost:
                if (self.delivery_rate_bps or 0.0) > FASTER_LINK * self._ceiling_rate:
                    self._lead_ceiling = LEAD_MAX
                fast = self.lead + LEAD_REGROWTH <= self._lead_ceiling
                self.lead = min(LEAD_MAX, self.lead + (LEAD_REGROWTH if fast else LEAD_PROBE))
        self._last_reply_at = now
        for samples in (self._queued, self._alone):
            while samples and now - samples[0][0] > RATE_MEMORY_S:
                samples.popleft()
        return lost

    def _lose(self, seqs: list[int], now: float) -> int:
        """Offloads lost: off the window; the lead and, until measured anew, the rate halve.

        The lead grows back fast only to LEAD_CEILING of what it was. Offloads already on the
        link met the old rate on part of their way, so only those sent from now on measure the
        new one.
        """
        for seq in seqs:
            del self._in_flight[seq]
        if seqs:
            rate = self.delivery_rate_bps
            self._rate_after_loss = None if rate is None else rate / 2
            self._lead_ceiling, self._ceiling_rate = LEAD_CEILING * self.lead, rate or 0.0
            self.lead /= 2
            self._queued.clear()
            self._alone.clear()
            self._lost_at = now
        return len(seqs)
