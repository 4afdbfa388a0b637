"""The drone's offload window: whether the link can take another offload now.

Three limits, all of which must allow a send:

- A count: at most `max_in_flight` offloads sent and not yet answered.
- The link's pace: the replies show how fast the link delivers (the delivery rate), so the
  window knows how long the link still needs for what is in flight. Another offload goes only
  when the link has at most LEAD frame intervals of work left, so that it does not idle until
  the next frame.
- The link's queue: an offload lost while others were ahead of it on the link may not have
  fitted in the queue with them, so the queue holds less than that, and no more offloads stay
  in flight than fit in it (at least one). Where it holds little more than a tensor (5 KB, one
  second, at 40 kbit/s, against a 4 KB tensor that takes 4.5 KB on the wire; and tc's token
  bucket keeps a packet in the queue until all its bytes can go), the next offload waits for
  the reply to the one ahead: the delivery rate the replies show cannot time a send to the
  moment the link is done (a reply to an offload that went alone reads faster than the link).
  The learnt size grows back slowly (the link may have changed) and is forgotten when the link
  gets FASTER_LINK times faster.

Requests cross the link in order, so a reply to one offload means any sent before it and still
unanswered were lost on the way (best effort). If that reply came much later than the window
expected, the link got slower than it knew: the rate is halved (or set to what the reply shows,
if less) until replies to offloads sent after the loss have measured it anew. If it came in
time, the link kept its rate and something else filled its queue for a moment (another node's
packet, or an offload sent too early): the window keeps its pace, since halving it would idle
the link for a tensor's time after every such loss. Either way the window keeps sending rather
than waiting for the lost offload's reply, so the next reply finds the loss at once.

An offload lost with every other in flight (the link cut, or its queue flushed when its rate
changed) leaves no reply to reveal it: it counts as lost once its reply is overdue, later than
a late one would be (the link may have got slower: the rate is halved), or, while the rate is
unknown, after IN_FLIGHT_HORIZON_S. Offloads that were in flight when a slower link was found
shared its slowdown: their loss does not slow the pace again.
"""

from __future__ import annotations

import copy
from collections import deque
from statistics import median

# An offload counts as on the link until its reply (even a late one), a reply to a later one, or
# for this long: a request or reply lost for good must not hold the window shut.
IN_FLIGHT_HORIZON_S = 2.0
# Delivery-rate samples older than this are forgotten (the link changes).
RATE_MEMORY_S = 3.0
# Another offload goes when the link's work in flight is down to this many frame intervals.
LEAD = 1.0
# Offloads in flight stay within this share of the queue size the losses showed (at least one);
# the learnt size grows this much per answered offload.
QUEUE_FILL, QUEUE_REGROWTH = 0.9, 1.002
# A link this many times faster than when the queue size was learnt is another link.
FASTER_LINK = 1.5
# A reply later than this many times the link time the window expected: the link got slower.
SLOWER_LINK = 1.5
# An offload whose reply is this much later still (for the reply's way back and jitter) than a
# late reply would be, after the base station's time on the last, counts as lost.
REPLY_SLACK_S = 0.3
# Frame interval: exponentially weighted mean of the gaps between frames, this weight per frame.
INTERVAL_WEIGHT = 0.2


class OffloadWindow:
    """Offloads on the link, their count and the link's pace."""

    def __init__(self, max_in_flight: int = 2) -> None:
        # seq -> (sent at, bytes, bytes ahead of it on the link when sent: negative when the
        # link had been idle that long at the rate; None when the rate was not known)
        self._in_flight: dict[int, tuple[float, int, float | None]] = {}
        # Replies to offloads that waited behind another: (reply at, bytes, seconds on the link),
        # exact but for jitter. Replies to offloads that went alone: (reply at, bytes/s), which
        # include the round trip but also any burst an idle link lets through at once (a token
        # bucket's: up to about 40 % more than its rate for a 4 KB tensor at 40 kbit/s).
        self._queued: deque[tuple[float, int, float]] = deque()
        self._alone: deque[tuple[float, float]] = deque()
        # (reply at, seconds from its offload's send): how long recent replies took
        self._reply_delays: deque[tuple[float, float]] = deque()
        self._last_reply_at = float("-inf")
        self._last_tail_s = 0.0  # the base station's time on the last reply
        self._lost_at = float("-inf")  # offloads sent before this do not measure the rate
        # The rate as queued replies last measured it or a loss left it, for when none is recent.
        self._known_rate: float | None = None
        self.queue_bytes = float("inf")  # the link's queue, as the losses showed it
        self._queue_rate = 0.0  # the delivery rate when it was learnt
        self._last_size = 0
        self._last_frame_at: float | None = None
        self.frame_interval_s: float | None = None
        self.max_in_flight = max_in_flight

    def copy(self) -> OffloadWindow:
        """An independent copy, as a deep one but faster (the simulator replays windows).

        Its containers hold tuples of numbers only, so copying them copies all.
        """
        twin = copy.copy(self)
        for name, value in vars(self).items():
            if isinstance(value, dict | deque):
                setattr(twin, name, copy.copy(value))
        return twin

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

        The mean over the recent queued replies (total bytes over total time) or, with none,
        the rate the window last knew. Replies that went alone count where the latest shows a
        link FASTER_LINK times faster (it got faster), where nothing else is known, and, with no
        queued replies, where they show a slower link than the one known. The latest, not the
        fastest in memory: an offload sent onto a link idle long enough to refill its token
        bucket (after a loss) crosses faster than the link, and that one reply must not set the
        pace for RATE_MEMORY_S (at 40 kbit/s it read 54 kbit/s for 4 s in `edgeml bench link`).
        """
        alone = [r for _, r in self._alone]
        if self._queued:
            known = sum(b for _, b, _ in self._queued) / sum(t for _, _, t in self._queued)
        elif (known := self._known_rate) is None or (alone and min(alone) < known):
            known = min(alone, default=None)
        latest = alone[-1] if alone else 0.0
        return latest if known and latest > FASTER_LINK * known else known

    @property
    def reply_delay_s(self) -> float | None:
        """The median time from an offload's send to its reply, over the recent replies.

        Late replies count (their frames fell back): they tell how long waiting would have
        taken. None with no reply in RATE_MEMORY_S, or since a loss found the link slower.
        """
        if not self._reply_delays:
            return None
        return float(median(delay for _, delay in self._reply_delays))

    def __contains__(self, seq: int) -> bool:
        """Whether offload `seq` is on the link (sent, not answered, not found lost)."""
        return seq in self._in_flight

    def frame_arrived(self, now: float) -> None:
        """Note a camera frame's arrival (the window learns the frame interval)."""
        if self._last_frame_at is not None and now > self._last_frame_at:
            gap = now - self._last_frame_at
            mean = self.frame_interval_s
            self.frame_interval_s = gap if mean is None else mean + INTERVAL_WEIGHT * (gap - mean)
        self._last_frame_at = now

    def _link_done(self, rate: float, last_seq: float = float("inf")) -> float:
        """When the link is done with the offloads in flight up to `last_seq`, at `rate`."""
        # The link took up the oldest offload in flight when it was sent or, if it waited behind
        # an answered one, when that reply came (a little later than the link was free).
        done = self._last_reply_at
        for seq, (sent, size, _) in sorted(self._in_flight.items()):
            if seq > last_seq:
                break
            done = max(sent, done) + size / rate
        return done

    def _slower_rate(self, seq: int, now: float, slack_s: float = 0.0) -> float | None:
        """The rate the reply to `seq` shows if it came late (the link got slower), else None.

        `now`: when the link was done with it (the reply's arrival less the base station's time).
        `slack_s`: how much later than that a reply must be to count as late.
        """
        started = max(min(sent for sent, _, _ in self._in_flight.values()), self._last_reply_at)
        rate = self.delivery_rate_bps
        expected = self._link_done(rate, seq) - started if rate else 0.0
        if now <= started or now - started <= SLOWER_LINK * expected + slack_s:
            return None
        delivered = sum(size for s, (_, size, _) in self._in_flight.items() if s <= seq)
        return delivered / (now - started)

    def _lose_overdue(self, now: float) -> int:
        """Lose the offloads past the horizon, and those whose replies are overdue."""
        expired = [s for s, (sent, _, _) in self._in_flight.items()
                   if now - sent > IN_FLIGHT_HORIZON_S]  # fmt: skip
        # the link would have delivered them within the horizon at any faster rate
        lost = self._lose(expired, now, sum(self._in_flight[s][1] for s in expired)
                          / IN_FLIGHT_HORIZON_S)  # fmt: skip
        if not self.delivery_rate_bps:
            return lost
        overdue: list[int] = []
        slower_rate = None
        for seq in sorted(self._in_flight):  # a later offload's reply is due later
            late = self._slower_rate(seq, now - self._last_tail_s, REPLY_SLACK_S)
            if late is None:
                break
            overdue.append(seq)
            slower_rate = late
        return lost + self._lose(overdue, now, slower_rate)

    def full(self, now: float) -> tuple[str | None, int]:
        """(why another offload may not go now, or None; offloads just found lost)."""
        lost = self._lose_overdue(now)
        if not self._in_flight:
            return None, lost
        if len(self._in_flight) >= self.max_in_flight:
            return f"{len(self._in_flight)} offloads already in flight", lost
        if self.queue_bytes < float("inf") and len(self._in_flight) >= max(
            1, int(QUEUE_FILL * self.queue_bytes / self._last_size)
        ):
            return f"the link's queue holds about {self.queue_bytes:.0f} B", lost
        if not (rate := self.delivery_rate_bps):
            return None, lost
        drain = self._link_done(rate) - now
        if self.frame_interval_s is not None and drain > LEAD * self.frame_interval_s:
            return f"the link is busy for another {1000 * drain:.0f} ms", lost
        return None, lost

    def _ahead(self, now: float) -> float | None:
        """Bytes ahead on the link (negative: it has been idle that long), None if not known."""
        rate = self.delivery_rate_bps
        return (self._link_done(rate) - now) * rate if rate and self._in_flight else None

    def sent(self, seq: int, now: float, size: int) -> None:
        """An offload of `size` bytes went on the link."""
        self._in_flight[seq] = (now, size, self._ahead(now))
        self._last_size = size

    def answered(self, seq: int, now: float, tail_s: float) -> int:
        """A reply came (`tail_s`: the base station's time on it); returns offloads found lost."""
        earlier = [s for s in self._in_flight if s < seq]
        lost = self._lose(earlier, now, self._slower_rate(seq, now - tail_s) if earlier else None)
        entry = self._in_flight.pop(seq, None)
        if entry is not None:
            sent, size, _ = entry
            self._reply_delays.append((now, now - sent))
            # It left when it was sent or, queued behind an earlier one, when that one's reply
            # came: what remains is its time on the link (plus, when it went alone, the RTT).
            waited = sent < self._last_reply_at
            on_link = now - max(sent, self._last_reply_at) - tail_s
            if on_link > 0 and sent > self._lost_at:
                if waited:
                    self._queued.append((now, size, on_link))
                    self._known_rate = self.delivery_rate_bps
                else:
                    self._alone.append((now, size / on_link))
            if not lost:
                self.queue_bytes *= QUEUE_REGROWTH
                if (self.delivery_rate_bps or 0.0) > FASTER_LINK * self._queue_rate:
                    self.queue_bytes = float("inf")
        self._last_reply_at = now
        self._last_tail_s = tail_s
        for samples in (self._queued, self._alone, self._reply_delays):
            while samples and now - samples[0][0] > RATE_MEMORY_S:
                samples.popleft()
        return lost

    def _lose(self, seqs: list[int], now: float, slower_rate: float | None) -> int:
        """Offloads lost: off the window.

        `slower_rate`: where the link may have got slower, the most it delivers now (None: it
        kept its pace). A lost offload sent with others ahead of it may not have fitted in the
        link's queue with them: the queue holds less than that. Offloads already on the link
        shared it with the lost ones, so only those sent from now on measure the rate; a slower
        link's rate stays at half what it was, or `slower_rate` if less, until they have. Lost
        offloads all sent before the last loss met the slowdown that loss found: the rate stays.
        """
        lost = [self._in_flight.pop(seq) for seq in seqs]
        if not lost:
            return 0
        slowdown = slower_rate is not None and max(sent for sent, _, _ in lost) > self._lost_at
        if slowdown:
            rate = self.delivery_rate_bps
            self._known_rate = min(rate / 2, slower_rate) if rate else slower_rate
            self._queued.clear()
            self._alone.clear()
            self._reply_delays.clear()
        if slowdown or slower_rate is None:
            self._lost_at = now
        if overflowed := [ahead + size for _, size, ahead in lost if ahead is not None]:
            # the link whose queue this is: its fastest pace since (a halved pace is a guess)
            rate = self.delivery_rate_bps or 0.0
            learnt = self.queue_bytes < float("inf")
            self._queue_rate = max(self._queue_rate, rate) if learnt else rate
            self.queue_bytes = min(self.queue_bytes, *overflowed)
        return len(lost)
