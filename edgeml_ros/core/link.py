"""Link-quality estimation: the uplink's rate, the round trip, losses and outages.

Two sources measure the rate, each where the other cannot:

- Probe trains, on links the offloads leave room on. The link monitor sends `train_length`
  padded probes back to back and the base station stamps each echo with when the probe came.
  From the middle of the train on (before it, a token bucket may still pass its burst at line
  rate: 10 ms of traffic, at least 1600 B, on the shaped link) the probes come as fast as the
  link delivers them: the rate is a probe's bytes over the median gap between successive echoed
  probes. A lone small probe fits in the burst and reads the line rate, which is why single
  probes read about 2 Mbit/s on a 40 kbit/s link. A train is sized to keep the link busy for
  `train_s` at the rate it expects; one that reads more than GROWTH times that may have passed
  within the burst, so the estimate (and the next train) grows by GROWTH at most. Trains take at
  most `budget` of the rate.
- The drone's offload window, on links the offloads fill. While the offloads the plan sends for
  want more than the window's delivery rate (it holds frames back), that rate, which it learns
  from its replies (core.offload_window: one estimator for both), is the link's, and a train would
  take capacity from the offloads and, on a link whose queue holds one tensor, drop them: trains
  pause, and a single small probe checks the link only when no reply came for longer than an
  offload takes. If the link echoes it and answers no offload for longer than the window awaits a
  reply (its in-flight horizon), at a rate at which the window expects none within that time
  either, the offloads do not cross it (tensors larger than its queue are dropped whole, and the
  window, halving its rate after every loss, reads a link ever slower): trains measure it again.
  Not while the last train read the link ROOM times faster than the offloads want: they cannot
  fill it, and frames held back there mean late replies (a base station busy with other work
  answers nothing for up to a second), not a full link. The trains stay in charge until one reads
  the link slower, or goes unanswered.

An outage: a probe sent after the link last showed it works (an echo, an offload reply) got no
echo in time. The bandwidth then reads 0 until the link shows it works again, and nothing read
before counts: the link that comes back may be another (a train goes at once, and where the
offloads fill it, the window measures it). Echoes that come later still measure the link with
their receive stamps (the base station was busy, not the link down).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from edgeml_ros.core.offload_window import IN_FLIGHT_HORIZON_S

# Bytes one probe takes on the wire besides its padding: the LinkProbe message and the RTPS,
# UDP, IP and Ethernet headers; each IP fragment after the first adds its IP and Ethernet
# headers (as tc's byte counter of the shaped link counted them).
PROBE_OVERHEAD_BYTES = 210
FRAGMENT_PAYLOAD_BYTES, FRAGMENT_OVERHEAD_BYTES = 1480, 34
# A probe stays one UDP datagram (64 KB) with the message around its padding, and a train
# within what a reader's socket buffer holds. A train lasts `train_s` at up to
# MAX_TRAIN_BYTES / train_s (8.7 MB/s, 70 Mbit/s, at 30 ms); at most GROWTH times that is
# measurable (280 Mbit/s).
MAX_PROBE_PADDING, MAX_TRAIN_BYTES = 60_000, 256 * 1024
# Most probes in a train: the probe topics' readers keep this many (nodes.common.PROBES).
MAX_TRAIN_LENGTH = 64
# How much a train may raise the estimate over the rate it was sized for.
GROWTH = 4.0
# Bytes/s of the slowest link the package is built for (40 kbit/s, the regime map's floor): the
# budget spaces trains as if the link carried at least this, so an estimate that collapsed
# below it (the offload window's rate halved after every lost tensor) is probed again within
# 13 s, not minutes later.
SLOWEST_LINK_BPS = 5_000.0
# A train that reads the link more than TOLERANCE off the estimate, reads GROWTH times the rate
# it was sized for, or gets one echo only, puts the estimate in doubt: up to this many trains
# follow it at once, without the budget's spacing (4 s at 130 kbit/s), so that the median of
# the last MEDIAN_OF moves within a few trains' time. While readings keep disagreeing, trains
# take up to 1 + QUICK_TRAINS times the budget.
QUICK_TRAINS = 2
# Offloads that want less than 1/ROOM of the rate the last train read cannot fill the link.
ROOM = 2.0
# How long after its due time a train without echoes still takes late ones.
LATE_ECHOES_S = 2.0
# The offloads want more than the link carries while over this (perception publishes its
# batches every 0.25 s) the window held frames back and the offloads the plan sent for would
# take more than its delivery rate.
HELD_BACK_MEMORY_S = 1.0
# The estimate is the lower median of the last MEDIAN_OF trains' rates, or of the window's last
# MEDIAN_OF rates while the offloads fill the link (as it was when they began to, then at each
# loss that changed it until a reply came, and at each reply; kept until a train reads the link
# or an outage, not forgotten over a second without frames held back): one train whose echoes
# the base station stamped late, or one reply that crossed in the link's refilled burst or a
# rate halved after a loss that the queue, not the link, caused, moves it only with the next
# ones; where tensors that the link's queue drops whole are lost between rare replies
# (`cloud_png`'s 19-KB frames at 130 kbit/s), the halved rates do not outvote the replies.
MEDIAN_OF = 3
# The window's rate after a loss at its horizon is the tensor's bytes over the horizon: this
# much under that is still a tensor the link does not carry within it (rounding).
HORIZON_SLACK = 0.99
# Rates and round trips beyond these are not a radio link's: a report claiming one is refused.
MAX_RATE_KBPS = 100e6
MAX_ROUND_TRIP_MS = 600_000.0
# An estimate at most this reads an outage.
OUTAGE_MBPS = 0.001
# The target for `edgeml bench link` and the demo: within TOLERANCE of the shaped rate,
# settled within SETTLE_TARGET_S of each change.
TOLERANCE, SETTLE_TARGET_S = 0.3, 3.0
# The shaped rate of each phase of `edgeml bench link` by default (Mbit/s; 0: an outage).
BENCH_PHASES_MBPS = (0.04, 0.13, 2.0, 20.0, 0.0, 20.0)


def probe_wire_bytes(padding: int) -> int:
    """Bytes a probe with `padding` takes on the link."""
    fragments = max(0, math.ceil((padding + PROBE_OVERHEAD_BYTES) / FRAGMENT_PAYLOAD_BYTES) - 1)
    return padding + PROBE_OVERHEAD_BYTES + fragments * FRAGMENT_OVERHEAD_BYTES


def train_rate(probe_bytes: int, received: Mapping[int, float], length: int) -> float | None:
    """Bytes per second a train of `length` probes reached the base station at.

    `received`: each echoed probe's position in the train -> when the base station got it (s).
    Each gap between successive echoed probes from the middle of the train on carried one probe
    (a probe the link's queue dropped took none of its rate); the median gap resists one long
    gap (an offload between two probes). With fewer than two echoes there, all echoes count.
    None with fewer than two echoes; infinite when the probes came all at once.
    """
    positions = sorted(received)
    if len(positions) < 2:
        return None
    late = [p for p in positions if p >= length // 2 - 1]
    times = [received[p] for p in (late if len(late) >= 2 else positions)]
    gap = float(np.median(np.diff(times)))
    return probe_bytes / gap if gap > 0 else math.inf


def lower_median(values: Sequence[float]) -> float:
    """The median of an odd count; of an even count, the lower of the two middle values."""
    ordered = sorted(values)
    return ordered[(len(ordered) - 1) // 2]


@dataclass(frozen=True)
class ProbeSettings:
    """How the link monitor probes: trains' length and duration, their budget, the timeout."""

    train_length: int = 16
    train_s: float = 0.03
    budget: float = 0.05
    timeout_s: float = 0.5

    def __post_init__(self) -> None:
        if not 2 <= self.train_length <= MAX_TRAIN_LENGTH:
            raise ValueError(f"train_length must be in 2..{MAX_TRAIN_LENGTH}, not "
                             f"{self.train_length}")  # fmt: skip
        if not (self.train_s > 0 and self.timeout_s > 0 and 0 < self.budget <= 1):
            raise ValueError("train_s and timeout_s must be > 0 s and the budget in (0, 1]")


@dataclass(frozen=True)
class LinkEstimate:
    """Bandwidth in Mbit/s, RTT in ms, loss ratio, samples, and what measured the bandwidth."""

    bandwidth_mbps: float
    rtt_ms: float
    loss_ratio: float
    samples: int
    source: str


@dataclass
class _Train:
    first_seq: int
    length: int
    padding: int
    sent_at: float
    sized_for: float  # bytes/s
    due_at: float
    received: dict[int, float] = field(default_factory=dict)  # position -> base station's time
    overdue: bool = False  # past due without an echo; late ones still count


class LinkEstimator:
    """The link's rate (probe trains or the offload window), RTT, loss and outages.

    The caller sends the trains `next_train` plans, and feeds in their echoes (`on_echo`), the
    offload window's reports (`on_window`) and offload round trips (`on_round_trip`); `expire`
    deals with trains whose echoes are overdue. RTT is the smallest round trip among the last
    `window` (trains' first echoes, answered offloads); loss is the share of the last `window`
    trains' probes that got no echo.
    """

    def __init__(self, window: int = 12, settings: ProbeSettings | None = None) -> None:
        if window < 1:
            raise ValueError(f"window must be at least 1, not {window}")
        self.settings = settings or ProbeSettings()
        self._round_trips: deque[float] = deque(maxlen=window)
        self._probes: deque[tuple[int, int]] = deque(maxlen=window)  # (sent, echoed) per train
        self._trains: dict[int, _Train] = {}  # in flight, by first sequence number
        self._seq = 0
        self._last_train_at = -math.inf
        # bytes/s, as the last measuring trains read them (since the offloads last filled the
        # link)
        self._train_rates: deque[float] = deque(maxlen=MEDIAN_OF)
        self._size_for: float | None = None  # bytes/s the next train is sized for
        self._last_read: float | None = None  # bytes/s the last train read (None: it failed)
        self._in_doubt = False  # the last train disagreed with the estimate: the next goes now
        self._quick_run = 0  # trains sent in a row without the budget's spacing
        self._heard_at = -math.inf  # when the link last showed it works
        self._back_at = -math.inf  # when it last showed it after an outage
        self._outage = False
        # The offload window's reports: its rate (bytes/s), its last rates while the offloads
        # fill the link (MEDIAN_OF), and the bytes of the offloads the plan sent for.
        self._delivery: float | None = None
        self._delivered: deque[float] = deque(maxlen=MEDIAN_OF)
        self._replies_measured = False  # a reply came since _delivered was last emptied
        self._demand: deque[tuple[float, int]] = deque()  # (reported, bytes wanted)
        self._held_back_at = -math.inf
        self._replied_at = -math.inf
        self._reported_at = -math.inf
        self._offload_bytes = 0

    def _offloads_busy(self, now: float) -> bool:
        """Whether the offloads want more than the window's rate, so that it holds them back.

        Not while they want less than 1/ROOM of what the last train read, and no train since
        is overdue without an echo: they cannot fill that link, and the window's rate then
        shows late replies, not the link. (A train sent into an outage that has ended since
        says nothing of the link that came back.)
        """
        wanted = sum(b for t, b in self._demand if now - t <= HELD_BACK_MEMORY_S)
        wanted /= HELD_BACK_MEMORY_S
        unanswered = any(t.overdue and not t.received and t.sent_at >= self._back_at
                         for t in self._trains.values())  # fmt: skip
        return (
            self._delivery is not None
            and now - self._held_back_at <= HELD_BACK_MEMORY_S
            and wanted >= self._delivery
            and (unanswered or ROOM * wanted > (self._last_read or 0.0))
        )

    def _reply_wait_s(self) -> float:
        """How long without a reply puts the link in doubt: an offload's time, then the timeout.

        An offload's time at most IN_FLIGHT_HORIZON_S: the window awaits no reply longer.
        """
        offload_s = min(self._offload_bytes / self._delivery, IN_FLIGHT_HORIZON_S)
        return self.settings.timeout_s + offload_s

    def _offloads_lost(self, now: float) -> bool:
        """Whether the link works but answers no offload: they do not cross it, trains measure it.

        It echoed a probe since the last reply, no reply came for longer than the window awaits
        one, and at its rate the window expects none within that time either (tensors too large
        for the link's queue, which drops them whole, while the window halves its rate after
        every loss). Not where replies only paused: trains there drop tensors.
        """
        silent_s = now - self._replied_at
        # (a loss at the horizon leaves the window's rate at the tensor over the horizon)
        too_large = self._offload_bytes >= IN_FLIGHT_HORIZON_S * self._delivery * HORIZON_SLACK
        return self._heard_at > self._replied_at and too_large and \
            silent_s > self.settings.timeout_s + IN_FLIGHT_HORIZON_S  # fmt: skip

    def offloads_fill_link(self, now: float) -> bool:
        """Whether the offloads fill the link, so that their delivery rate is its rate."""
        return self._offloads_busy(now) and now - self._replied_at <= self._reply_wait_s()

    def next_train(self, now: float) -> tuple[int, int, int] | None:
        """(first sequence number, probes, padding) of the train to send now; None: not now."""
        s = self.settings
        if any(not t.overdue for t in self._trains.values()) or self.offloads_fill_link(now):
            return None  # one train at a time; none while the offloads measure the link
        if self._offloads_busy(now) and not self._offloads_lost(now):
            # but no reply came: is the link still there?
            if now - max(self._heard_at, self._last_train_at) < self._reply_wait_s():
                return None
            return self._send(now, 1, 0, self._delivery, ahead=self._offload_bytes)
        rate = self._size_for
        per_probe = min((rate or 0.0) * s.train_s, MAX_TRAIN_BYTES) / s.train_length
        padding = int(min(max(per_probe - PROBE_OVERHEAD_BYTES, 0), MAX_PROBE_PADDING))
        train_bytes = s.train_length * probe_wire_bytes(padding)
        sized_for = train_bytes / s.train_s  # the rate at which it lasts train_s
        quick = self._in_doubt and self._quick_run < QUICK_TRAINS
        spacing = train_bytes / (s.budget * max(rate or sized_for, SLOWEST_LINK_BPS))
        if not quick and now - self._last_train_at < spacing:
            return None
        self._quick_run = self._quick_run + 1 if quick else 0
        return self._send(now, s.train_length, padding, sized_for)

    def _send(self, now: float, length: int, padding: int, sized_for: float,
              ahead: int = 0) -> tuple[int, int, int]:  # fmt: skip
        """Plan a train: due once it crossed at `sized_for` after `ahead` bytes, an RTT later.

        On the link IN_FLIGHT_HORIZON_S at most, as the window's offloads: a probe planned at the
        rate the window halved to through an outage (1.2 kbit/s after 15 s in `edgeml bench
        link`) was due 30 s later, and no train goes while one is in flight.
        """
        first = self._seq + 1
        self._seq += length
        on_link_s = min((ahead + length * probe_wire_bytes(padding)) / sized_for,
                        IN_FLIGHT_HORIZON_S)  # fmt: skip
        rtt_s = min(self._round_trips, default=0.0) / 1000.0
        due = now + on_link_s + rtt_s + self.settings.timeout_s
        self._trains[first] = _Train(first, length, padding, now, sized_for, due)
        self._last_train_at = now
        return first, length, padding

    def on_echo(self, seq: int, received_s: float, now: float) -> bool:
        """A probe's echo (`received_s`: when the base station got it); False if unknown.

        A late echo of a train already ended still shows that the link works.
        """
        if not 0 < seq <= self._seq:
            return False
        self._heard(now)
        train = next((t for t in self._trains.values()
                      if t.first_seq <= seq < t.first_seq + t.length), None)  # fmt: skip
        if train is None or seq - train.first_seq in train.received:
            return False
        if not train.received:
            self._round_trips.append(1000.0 * (now - train.sent_at))
        train.received[seq - train.first_seq] = received_s
        if len(train.received) == train.length:
            self._finish(train)
        return True

    def expire(self, now: float) -> None:
        """End the trains past due; one without an echo is an outage, and awaits late ones.

        Not an outage if the link showed it works since the train was sent.
        """
        for train in [t for t in self._trains.values() if now > t.due_at]:
            if not train.received and not self._outage and self._heard_at < train.sent_at:
                self._outage = True
                # the link that comes back may be another: nothing read before says what it is
                self._train_rates.clear()
                self._forget_delivered()
                self._last_read = None
            if train.received or now > train.due_at + LATE_ECHOES_S:
                self._finish(train)
            else:
                train.overdue = True

    def _finish(self, train: _Train) -> None:
        del self._trains[train.first_seq]
        self._probes.append((train.length, len(train.received)))
        if train.length == 1:
            return
        rate = train_rate(probe_wire_bytes(train.padding), train.received, train.length)
        if rate is None:  # one echo or none: the link is slower than the train was sized for
            self._last_read = None
            self._in_doubt = bool(train.received)  # none: an outage, read as one
            if train.received:
                self._size_for = train.sized_for / GROWTH
            return
        estimate = lower_median(self._train_rates) if self._train_rates else None
        read = min(rate, GROWTH * train.sized_for)
        self._in_doubt = (
            estimate is None or read == GROWTH * train.sized_for
            or abs(read - estimate) > TOLERANCE * estimate
        )  # fmt: skip
        self._size_for = self._last_read = read
        self._train_rates.append(read)
        self._forget_delivered()  # the trains measure the link again

    def _forget_delivered(self) -> None:
        self._delivered.clear()
        self._replies_measured = False

    def on_round_trip(self, round_trip_ms: float) -> None:
        """An answered offload's round trip (the base station's compute excluded).

        Its reply shows the link works once the window's report counts it (`on_window`).
        """
        if not 0.0 <= round_trip_ms <= MAX_ROUND_TRIP_MS:
            raise ValueError(f"round trip must be in [0, {MAX_ROUND_TRIP_MS:g}] ms, got "
                             f"{round_trip_ms}")  # fmt: skip
        self._round_trips.append(round_trip_ms)

    def on_window(self, now: float, delivery_kbps: float, held_back: int, replies: int,
                  wanted: int, offload_bytes: int) -> None:  # fmt: skip
        """A report of the drone's offload window (perception's result batches).

        `delivery_kbps`: the rate its replies show (0: not known); `held_back`: frames it kept
        on the drone since the last report because the link was busy; `replies`: offload
        replies since then (the link showed it works after the last report, not necessarily
        later: a report just after an outage began still counts replies from before it);
        `wanted`: the batch's frames that the plan sent to the base station
        (answered there, held back or fallen back); `offload_bytes`: the largest offload among
        them (0: none went).
        """
        if not 0.0 <= delivery_kbps <= MAX_RATE_KBPS:
            raise ValueError(f"delivery rate must be in [0, {MAX_RATE_KBPS:g}] kbit/s, got "
                             f"{delivery_kbps}")  # fmt: skip
        self._offload_bytes = offload_bytes or self._offload_bytes
        self._demand.append((now, wanted * self._offload_bytes))
        while now - self._demand[0][0] > HELD_BACK_MEMORY_S:
            self._demand.popleft()
        if held_back > 0:
            self._held_back_at = now
        self._delivery = delivery_kbps * 125.0 if delivery_kbps > 0 else None
        reported_at, self._reported_at = self._reported_at, now
        if replies > 0:
            self._heard(reported_at)
            if self._delivery is not None:
                self._replied_at = now
        measuring = self.offloads_fill_link(now)
        if measuring:
            self._train_rates.clear()
        if self._offloads_busy(now) and self._delivery is not None:
            # until a reply measures the link, its rate after each loss is all there is (the
            # descent after a slowdown); after one, a loss's halved rate is the window's guess
            if (
                replies > 0
                or not self._delivered
                or (not self._replies_measured and self._delivery != self._delivered[-1])
            ):
                self._delivered.append(self._delivery)
            self._replies_measured = self._replies_measured or replies > 0
        if replies == 0 or self._delivery is None:
            return
        if measuring or self._delivery > (self._size_for or 0.0):
            self._size_for = self._delivery  # trains, when they start again, fit the link

    def _heard(self, at: float) -> None:
        """The link showed it works at `at` or later: no outage; after one, a train at once."""
        self._heard_at = max(self._heard_at, at)
        if self._outage:
            self._in_doubt, self._quick_run, self._back_at = True, 0, at
            for train in self._trains.values():  # sent into the outage: the next goes now
                train.overdue = True
        self._outage = False

    def estimate(self, now: float) -> LinkEstimate | None:
        """The current estimate; None before anything was measured."""
        rtt = min(self._round_trips, default=0.0)
        sent = sum(n for n, _ in self._probes)
        loss = 1.0 - sum(n for _, n in self._probes) / sent if sent else 0.0
        samples = len(self._probes) + len(self._round_trips)
        if self._outage:
            return LinkEstimate(0.0, rtt, 1.0, samples, "outage")
        if self._offloads_busy(now) and (not self._train_rates or self.offloads_fill_link(now)):
            rate, source = lower_median(self._delivered or [self._delivery]), "offloads"
        elif self._train_rates:
            rate, source = lower_median(self._train_rates), "probe trains"
        elif self._delivery is not None:
            rate, source = self._delivery, "offloads"
        else:
            return None
        return LinkEstimate(rate * 8 / 1e6, rtt, loss, samples, source)


@dataclass(frozen=True)
class PhaseScore:
    """How an estimate followed one phase of a shaped link.

    `estimate_mbps`: the median estimate once settled (over the whole phase if it never did);
    `error`: its relative error (None in an outage); `settle_s`: from the change to the first
    estimate from which every estimate in the phase stayed within the tolerance (None: never).
    """

    start_s: float
    end_s: float
    shaped_mbps: float
    estimate_mbps: float | None
    error: float | None
    settle_s: float | None

    @property
    def met(self) -> bool:
        """Within TOLERANCE once settled, and settled within SETTLE_TARGET_S."""
        close = self.error is None or abs(self.error) <= TOLERANCE
        return self.settle_s is not None and self.settle_s <= SETTLE_TARGET_S and close

    def as_dict(self) -> dict:
        """The fields and `met`, for JSON."""
        return {**asdict(self), "met": self.met}


def score_estimate(
    shaped: Sequence[tuple[float, float]],
    estimates: Sequence[tuple[float, float]],
    end_s: float,
    tolerance: float = TOLERANCE,
) -> list[PhaseScore]:
    """Score estimates against a shaped link, phase by phase.

    `shaped`: (time, Mbit/s) of each rate change (0: an outage); `estimates`: (time, Mbit/s) as
    published, each holding until the next; times in seconds on one clock, `end_s` the end of
    the last phase. An estimate is within the tolerance when it is within `tolerance` of the
    shaped rate, or in an outage at most OUTAGE_MBPS.
    """
    changes = [c for i, c in enumerate(shaped) if i == 0 or c[1] != shaped[i - 1][1]]
    times = np.array([t for t, _ in estimates])
    scores = []
    for (start, rate), (end, _) in zip(changes, [*changes[1:], (end_s, 0.0)], strict=True):
        held = np.searchsorted(times, start, side="right") - 1
        phase = [(start, estimates[held][1])] if held >= 0 else []
        phase += [e for e in estimates if start < e[0] < end]
        ok = [v <= OUTAGE_MBPS if rate == 0 else abs(v - rate) <= tolerance * rate
              for _, v in phase]  # fmt: skip
        settled = next((i for i in range(len(phase)) if all(ok[i:])), None)
        values = [v for _, v in phase[settled or 0 :]]
        median = float(np.median(values)) if values else None
        error = (median - rate) / rate if rate > 0 and median is not None else None
        settle = None if settled is None else phase[settled][0] - start
        scores.append(PhaseScore(start, end, rate, median, error, settle))
    return scores


def annotate_scores(ax, scores: Sequence[PhaseScore]) -> None:
    """Draw each phase's shaped rate, tolerance band, error and settling time on an axis.

    `ax`: a matplotlib axis of Mbit/s (made log scale; an outage shows at OUTAGE_MBPS) over time.
    """
    for s in scores:
        rate = max(s.shaped_mbps, OUTAGE_MBPS)
        ax.hlines(rate, s.start_s, s.end_s, colors="k", alpha=0.5)
        if s.shaped_mbps > 0:
            ax.fill_between([s.start_s, s.end_s], rate * (1 - TOLERANCE), rate * (1 + TOLERANCE),
                            color="k", alpha=0.08, lw=0)  # fmt: skip
        error = "" if s.error is None else f"{100 * s.error:+.0f}%, "
        settle = "never" if s.settle_s is None else f"{s.settle_s:.1f} s"
        ax.annotate(f"{error}{settle}", (s.start_s, rate * (1 + TOLERANCE)), fontsize=7,
                    xytext=(2, 3), textcoords="offset points")  # fmt: skip
    ax.set_yscale("log")
