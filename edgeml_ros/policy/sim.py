"""Frame-by-frame simulator of the drone, its link and the base station.

It is calibrated from a measured profile (per-block latency, bytes per cut, per-sample exit
predictions and confidences) and an energy-model device class. Each frame replays a real
validation sample of the scenario's input condition, so accuracy is exact, and goes through the
decisions of `core.pipeline.DronePipeline`, which are `core.decisions`' and the offload window's
(`core.offload_window`) for both:

- the drone runs blocks [0, cut) on its processor, checking the exits there; a confident exit
  answers on the drone, and with the cut at the end the final exit answers there;
- otherwise the drone asks its offload window whether the link can take the features now (bytes
  of the cut at the configured encoding). If not, the frame finishes on the drone at once, at
  the deepest exit its deadline allows (FALLBACK). If so, they go on the link (`TraceLink`:
  one transfer at a time, bandwidth replayed exactly from the trace, outages included), the
  base station runs the rest at its own speed, and the reply comes back after the RTT; the
  window learns the link's pace and losses from these replies, as the drone's does;
- a plan that ships the camera frame in an image encoding (cut 0) sends each replayed frame's
  own bytes in that encoding, and the base station answers with the final exit's answer on
  that frame as it decodes it (both measured in the profile, core.profiles.ImageExit);
- an offload has a fallback time: the deadline less the time the drone needs to finish the model
  itself, less a margin. If the reply is not back by the perception node's first expire check
  after it, the drone answers at the deepest exit it can still reach by the deadline (FALLBACK);
- audits, under a plan that asks for them (`ExecutionPlan.audit_share`): that share of the
  frames answered at an early exit on the drone is also sent to the base station, which
  answers at the final exit, so that the drone learns whether its early answer agreed with the
  final exit's (a label-free accuracy signal, as Apparate's). See `Simulation.run` for what an
  audit costs here and what is not modelled.

The drone computes one thing at a time (`_DroneRun`). Drone compute is the profiled latency
(at the perception node's thread count) times the device class's `compute_slowdown` against the
profiling machine (core.energy); the base station runs at its own profiled speed (the offload
node's thread count) times `server_slowdown`. Energy is the energy model of `core.energy` (a
model, not a measurement). The utility that rewards a frame is documented on `UtilityWeights`.
"""

from __future__ import annotations

import copy
import heapq
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import NamedTuple

import numpy as np

from edgeml_ros.core.battery import soc_after
from edgeml_ros.core.calibration import Calibration
from edgeml_ros.core.codec import ENCODINGS, IMAGE_ENCODINGS
from edgeml_ros.core.decisions import (
    AUDIT_ENCODING,
    EXPIRE_PERIOD_S,
    MAX_FRAME_AGE_MS,
    LocalTimes,
    audit_due,
    audit_fits,
    checked_exits,
    exit_fires,
    fallback_budget,
    fallback_exit,
    fallback_time,
)
from edgeml_ros.core.degrade import CONDITIONS
from edgeml_ros.core.energy import DeviceEnergy, device_class
from edgeml_ros.core.offload_window import OffloadWindow
from edgeml_ros.core.plan import NO_EARLY_EXIT, ExecutionPlan, check_plan
from edgeml_ros.core.profiles import ExitTable, ImageExit, Profile
from edgeml_ros.core.traces import Trace

# Threshold levels of the learned policies' action space, the last one "no early exit".
THRESHOLD_LEVELS = (0.3, 0.45, 0.55, 0.65, 0.75, 0.85, 0.92, 0.97, 0.99, NO_EARLY_EXIT)
WHERE_NONE, WHERE_DRONE, WHERE_BASE, WHERE_FALLBACK = 0, 1, 2, 3  # as core.pipeline.Where


@dataclass(frozen=True)
class UtilityWeights:
    """Per-frame utility, the quantity every policy is scored on (higher is better).

    utility = accuracy * correct
              - latency * latency / deadline
              - energy * (1 + low_battery * (1 - soc)^2) * frame_energy / reference_energy
              - deadline_miss * (latency > deadline)

    `reference_energy` is the modelled energy of the whole model on the drone, so the energy
    term is "fraction of a full local inference", weighted more as the battery empties.
    """

    accuracy: float = 1.0
    latency: float = 0.3
    energy: float = 0.3
    low_battery: float = 3.0
    deadline_miss: float = 0.5

    def __post_init__(self) -> None:
        for name, value in self.__dict__.items():
            if not math.isfinite(value) or value < 0:
                raise ValueError(
                    f"utility weight {name} must be a finite number >= 0, got {value}"
                )

    def energy_weight(self, soc: float | np.ndarray) -> float | np.ndarray:
        """Weight of the energy term at a battery state of charge in [0, 1]."""
        return self.energy * (1.0 + self.low_battery * (1.0 - soc) ** 2)

    def utility(
        self,
        correct: np.ndarray,
        latency_s: np.ndarray,
        deadline_s: float,
        energy_j: np.ndarray,
        reference_energy_j: float,
        soc: float | np.ndarray,
    ) -> np.ndarray:
        """Each frame's utility (the formula above), in the simulator as in a live run."""
        return (
            self.accuracy * correct
            - self.latency * latency_s / deadline_s
            - self.energy_weight(soc) * energy_j / reference_energy_j
            - self.deadline_miss * (latency_s > deadline_s)
        )


@dataclass(frozen=True)
class SimConfig:
    """What the simulated drone runs at, and how it is scored."""

    fps: float = 10.0
    deadline_ms: float = 100.0
    window_s: float = 1.0
    encoding: str = "fp32"  # of offloaded tensors; a plan's image encoding is its own
    exit_rule: str = "max_prob"
    device_class: str | None = None  # the drone computer; None: the one the profile names
    compute_slowdown: float | None = None  # None: the device class's against the profile
    server_slowdown: float = 1.0
    estimate_noise: float = 0.1  # of the link estimate, where the profile's calibration has none
    battery_wh: float = 50.0
    max_offloads_in_flight: int = 2  # the drone's offload window (its node's parameter)
    # frames older than this when the drone gets to them are dropped unrun, as the perception
    # node's max_frame_age_ms does (core.decisions.MAX_FRAME_AGE_MS); None: never
    max_frame_age_ms: float | None = MAX_FRAME_AGE_MS
    # other drones offloading to the same base station, each this many times a second (None:
    # every frame, at `fps`), each request as long for the base station as this drone's
    other_drones: int = 0
    other_drones_offload_hz: float | None = None
    # the share of early exits on the drone the policies that audit ask to audit (their plans'
    # audit_share: also sent to the base station, to learn whether the final exit agrees)
    audit_share: float = 0.02
    weights: UtilityWeights = field(default_factory=UtilityWeights)

    def __post_init__(self) -> None:
        for name in ("fps", "deadline_ms", "window_s", "server_slowdown", "battery_wh"):
            value = getattr(self, name)
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"sim config {name} must be a finite number > 0, got {value}")
        age = self.max_frame_age_ms
        if age is not None and not (math.isfinite(age) and age > 0):
            raise ValueError(f"max_frame_age_ms must be a finite number > 0, got {age}")
        if self.other_drones < 0:
            raise ValueError(f"other_drones must be >= 0, got {self.other_drones}")
        hz = self.other_drones_offload_hz
        if hz is not None and not (math.isfinite(hz) and hz > 0):
            raise ValueError(f"other_drones_offload_hz must be a finite number > 0, got {hz}")
        if self.max_offloads_in_flight < 1:
            raise ValueError(
                f"max_offloads_in_flight must be at least 1, got {self.max_offloads_in_flight}"
            )
        share = self.audit_share
        if not (math.isfinite(share) and 0 <= share <= 1):
            raise ValueError(f"sim config audit_share must be in [0, 1], got {share}")
        if not 0 <= self.estimate_noise < 1:
            raise ValueError(f"estimate_noise must be in [0, 1), got {self.estimate_noise}")
        if self.device_class is not None:
            device_class(self.device_class)
        if self.encoding not in ENCODINGS:
            raise ValueError(
                f"sim config encoding must be a tensor encoding ({', '.join(ENCODINGS)}), got "
                f"{self.encoding!r}"
            )
        if self.compute_slowdown is not None and not 1 <= self.compute_slowdown <= 1000:
            raise ValueError(
                f"sim config compute_slowdown must be in [1, 1000], got {self.compute_slowdown}"
            )

    @property
    def window_frames(self) -> int:
        """Frames per decision window."""
        return max(1, round(self.fps * self.window_s))


@dataclass(frozen=True)
class Scenario:
    """One run: a link trace, input conditions over time, and the battery."""

    name: str
    trace: Trace
    duration_s: float
    difficulty: tuple[tuple[float, str], ...] = ((0.0, "clean"),)
    initial_soc: float = 0.9
    flight_drain_per_s: float = 0.0
    seed: int = 0
    in_order: bool = False  # frame k replays sample k, as a camera publishes a split in order
    # the drone's compute over the profiling machine's over time, as (start s, slowdown)
    # segments from t = 0 (a throttled, loaded or another computer); empty: the world's drone
    # throughout (SimConfig.compute_slowdown). A change takes effect at the first decision
    # window that starts at or after it.
    compute_schedule: tuple[tuple[float, float], ...] = ()

    def __post_init__(self) -> None:
        if not self.duration_s > 0:
            raise ValueError(f"scenario {self.name}: duration_s must be > 0")
        if not 0 < self.initial_soc <= 1:
            raise ValueError(f"scenario {self.name}: initial_soc must be in (0, 1]")
        if not self.difficulty or self.difficulty[0][0] != 0:
            raise ValueError(f"scenario {self.name}: difficulty must start at t = 0")
        starts = [start for start, _ in self.compute_schedule]
        if starts and (starts[0] != 0 or np.any(np.diff(starts) <= 0)):
            raise ValueError(
                f"scenario {self.name}: compute_schedule must start at t = 0 and go forward, "
                f"got starts {starts}"
            )
        for _, slow in self.compute_schedule:
            if not 1 <= slow <= 1000:
                raise ValueError(
                    f"scenario {self.name}: a compute slowdown must be in [1, 1000], got {slow}"
                )
        for _, condition in self.difficulty:
            if condition not in CONDITIONS:
                raise ValueError(f"scenario {self.name}: unknown input condition {condition!r}")

    def condition_at(self, t_s: np.ndarray) -> np.ndarray:
        """Index into CONDITIONS of the input condition at each time."""
        starts = np.array([s for s, _ in self.difficulty])
        names = [CONDITIONS.index(c) for _, c in self.difficulty]
        return np.asarray(names)[np.searchsorted(starts, t_s, side="right") - 1]


class ModelCosts:
    """Time, bytes and energy of every part of a profiled model on the simulated devices.

    A calibrated profile (core.calibration) adds what the live system has around the model:
    the drone's compute as the live runs measured it, the framework's time per frame and per
    offload, and the headers of the messages on the link. Without one, all of that is nothing.
    """

    def __init__(self, profile: Profile, config: SimConfig) -> None:
        self.device: DeviceEnergy = device_class(
            config.device_class or profile.device_class["name"]
        )
        cal = self.calibration = profile.calibrated
        # neutral without one: as profiled, nothing around the model
        terms = self.terms = cal or Calibration(compute_slowdown=1.0)
        if config.compute_slowdown:
            slow = config.compute_slowdown
        elif cal is not None and config.device_class is None:
            slow = cal.compute_slowdown  # the drone the live runs emulated
        else:
            slow = profile.compute_slowdown(self.device)
        self.num_blocks = len(profile.blocks)
        self.num_exits = len(profile.exits)
        self.exit_after_block = np.array([e.after_block for e in profile.exits])
        # the drone's compute times (core.decisions), as an emulating drone pads them
        self.drone = replace(profile.drone_times(), slowdown=slow)
        # drone time to run blocks [0, c) (exit heads and the call's fixed time not included)
        self.drone_blocks_s = np.concatenate([[0.0], np.cumsum(self.drone.block_s)]) * slow
        self.drone_exit_s = np.array(self.drone.head_s) * slow
        self.drone_call_s = self.drone.call_s * slow
        # the times the drone plans its fallbacks with: as it measured them at start-up
        self.drone_plan = replace(self.drone, slowdown=slow * terms.drone_plan_scale)
        # base station time to finish the model from cut c with the final exit only, at its
        # own thread count
        server_times = LocalTimes(
            [terms.server_scale * b.server_latency_ms_median / 1000.0 for b in profile.blocks],
            [terms.server_scale * e.server_latency_ms_median / 1000.0 for e in profile.exits],
            self.drone.exit_after,
            config.server_slowdown,
            terms.server_call_ms / 1000.0,
        )
        self.server_tail_s = np.array([server_times.finish(c) for c in range(self.num_blocks + 1)])
        self.frame_bytes = math.prod(profile.input_shape[1:])  # the raw camera frame, uint8
        self.cut_bytes = np.array(
            [profile.input_bytes[config.encoding]]
            + [b.output_bytes[config.encoding] for b in profile.blocks]
        )
        # bits on the link per reply: with a calibration, the message with its fields and the
        # RTPS, UDP, IP and Ethernet headers (core.wire); without, none
        self.reply_bits = 8.0 * cal.reply_wire_bytes() if cal else 0.0
        # the framework's time: camera to perception, decoding (on the drone's thread), result
        # to its reader; per offload, serializing the features and the round trip's DDS hops
        self.input_hop_s = terms.input_hop_ms / 1000.0
        self.conversion_s = terms.conversion_ms / 1000.0
        self.output_hop_s = terms.output_hop_ms / 1000.0
        self.encode_s = terms.encode_ms / 1000.0
        self.offload_hop_s = terms.offload_hop_ms / 1000.0
        self.full_local_s = self.drone.finish(0)
        self.reference_energy_j = self.device.frame_energy_j(self.full_local_s)

    def wire_bits(self, payload_bytes: int) -> float:
        """Bits on the link of an offload carrying `payload_bytes`.

        With a calibration, the request's other fields and its RTPS, UDP, IP and Ethernet
        headers too (core.wire).
        """
        cal = self.calibration
        return 8.0 * (cal.request_wire_bytes(payload_bytes) if cal else payload_bytes)

    def burst_bits(self, mbps: float) -> float:
        """The link's token bucket at `mbps` (bits; 0 without a calibrated one)."""
        return self.terms.burst_bits(mbps)

    def head_exits(self, plan: ExecutionPlan) -> list[int]:
        """Exits the drone's head checks under `plan` (core.decisions.checked_exits)."""
        return checked_exits(self.drone.exit_after, 0, plan.cut_point, plan.exit_thresholds)

    def drone_part(
        self, plan: ExecutionPlan, confidence: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The drone's side of frames with these (frames, exits) confidences under `plan`.

        Returns whether each frame is answered on the drone, the exit that answers it (the
        final exit for offloaded frames), and the drone's compute time.
        """
        cut, head = plan.cut_point, self.head_exits(plan)
        fires = np.zeros(confidence.shape, dtype=bool)
        for e in head:
            fires[:, e] = exit_fires(e, confidence[:, e], plan.exit_thresholds)
        local = fires.any(axis=1)
        exit_taken = np.where(local, np.argmax(fires, axis=1), self.num_exits - 1)
        # time of the blocks up to the answering exit (or the cut), plus the heads evaluated
        heads_s = np.zeros(self.num_exits)
        heads_s[head] = self.drone_exit_s[head]
        heads_until = np.cumsum(heads_s)
        compute_s = np.where(
            local,
            self.drone_blocks_s[self.exit_after_block[exit_taken] + 1] + heads_until[exit_taken],
            self.drone_blocks_s[cut] + heads_s.sum(),
        )
        # a call's fixed time, where the head runs anything (not at cut 0 without exits)
        return local, exit_taken, compute_s + np.where(compute_s > 0, self.drone_call_s, 0.0)

    def _deepest_checked(self, plan: ExecutionPlan) -> int | None:
        head = self.head_exits(plan)
        return head[-1] if head else None

    def fallback_time(
        self,
        plan: ExecutionPlan,
        arrived: float,
        sent: float,
        deadline_s: float,
        reply_delay_s: float | None,
    ) -> float:
        """When an offload under `plan` stops waiting, as the drone believes its times."""
        deepest = self._deepest_checked(plan)
        return fallback_time(self.drone_plan, plan.cut_point, deepest, arrived, sent, deadline_s,
                             reply_delay_s)  # fmt: skip

    def fallback(self, plan: ExecutionPlan, budget_s: float) -> tuple[int, float]:
        """Exit and drone time of a fallback with `budget_s` left (core.decisions)."""
        cut = plan.cut_point
        exit_index, compute = fallback_exit(self.drone_plan, cut, budget_s,
                                            self._deepest_checked(plan))  # fmt: skip
        return exit_index, self.drone.to_exit(cut, exit_index) if compute else 0.0

    def offload_s(self, cut: int, mbps: float, read_rtt_ms: float) -> float:
        """Predicted time from sending the features of `cut` to the reply, on a steady link.

        `read_rtt_ms`: the RTT as the link monitor reads it (path_rtt_ms).
        """
        if mbps <= 0:
            return math.inf
        airtime = (self.wire_bits(int(self.cut_bytes[cut])) + self.reply_bits) / (mbps * 1e6)
        return (airtime + self.path_rtt_ms(read_rtt_ms) / 1000.0 + self.server_tail_s[cut]
                + self.offload_hop_s)  # fmt: skip

    def path_rtt_ms(self, read_rtt_ms: float) -> float:
        """The path's RTT under the link monitor's reading (less its calibrated excess)."""
        return max(0.0, read_rtt_ms - self.terms.link_estimate_rtt_ms)


@dataclass
class FrameRecords:
    """Per-frame outcomes of simulated frames (parallel arrays)."""

    t_s: np.ndarray
    latency_s: np.ndarray
    correct: np.ndarray
    energy_j: np.ndarray
    missed: np.ndarray
    where: np.ndarray
    exit_index: np.ndarray
    confidence: np.ndarray
    utility: np.ndarray
    cut_point: np.ndarray
    threshold: np.ndarray
    bandwidth_mbps: np.ndarray
    offloaded: np.ndarray  # whether the features went on the link
    # the drone's compute (its head, and a fallback's finish), and the same at slowdown 1
    compute_s: np.ndarray
    profiled_s: np.ndarray
    # under a plan run with audits, whether the frame could have been audited had it exited
    # early (the link carried an audit), whether it was (an early exit on the drone, also
    # answered by the final exit at the base station), and whether then its answer was the
    # final exit's (False if not audited)
    auditable: np.ndarray
    audited: np.ndarray
    agrees: np.ndarray
    # whether the whole model (its final exit, on the drone's input) would have answered the
    # frame right: the accuracy any plan is measured against
    full_correct: np.ndarray

    @classmethod
    def empty(cls) -> FrameRecords:
        """No frames."""
        return cls(**{n: np.zeros(0) for n in cls.__dataclass_fields__})

    @classmethod
    def concat(cls, parts: list[FrameRecords]) -> FrameRecords:
        """All frames of several runs, in order."""
        names = cls.__dataclass_fields__
        return cls(**{n: np.concatenate([getattr(p, n) for p in parts]) for n in names})


class Transfer(NamedTuple):
    """One offload on the simulated link: when it arrived, when its reply came, its airtime."""

    delivered_s: float
    reply_s: float
    airtime_s: float


@dataclass
class TraceLink:
    """The simulated link: one transfer at a time, in order, at the trace's bandwidth.

    The bandwidth is replayed exactly (an outage pauses a transfer), and the reply comes back the
    trace's RTT after the base station's time on it (then crossing the link's other direction,
    which nothing else uses, when it has bits). `free_s`: when the link is done with what it was
    given so far. With `burst_bits` (the bucket at a rate), a token bucket like the shaper's tc
    tbf: what it holds goes at once, the rest at the rate; it refills at the rate while the link
    is idle (the other direction's, for replies, is taken as full).
    """

    trace: Trace
    free_s: float = 0.0
    burst_bits: Callable[[float], float] | None = None
    tokens_bits: float = math.inf  # at `free_s`; capped by the bucket's size when used

    def _bucket(self, at_s: float) -> float:
        """The token bucket's size at `at_s`, in bits (0: none)."""
        return self.burst_bits(float(self.trace.at(at_s)[0])) if self.burst_bits else 0.0

    def send(self, sent_s: float, bits: float) -> tuple[float, float]:
        """When `bits` handed to the link at `sent_s` are through, and their time on the air.

        Infinite when the trace ends in an outage before they are.
        """
        start = max(sent_s, self.free_s)
        size, tokens = self._bucket(start), 0.0
        if size and math.isfinite(start):  # refilled at the rate since the link was last busy
            idle = float(self.trace.at(start)[0]) * 1e6 * (start - self.free_s)
            tokens = min(size, self.tokens_bits + idle)
        instant = min(bits, tokens)
        delivered, airtime = _transfer(self.trace, start, bits - instant)
        self.tokens_bits = tokens - instant if instant == bits else 0.0
        self.free_s = delivered
        return delivered, airtime

    def reply(self, delivered_s: float, served_s: float, bits: float = 0.0) -> float:
        """When the reply to a request delivered at `delivered_s`, answered at `served_s`, comes.

        The RTT (the trace's at delivery) after the answer, then its own bits on the link.
        """
        start = served_s + float(self.trace.at(delivered_s)[1]) / 1000.0
        if not math.isfinite(start):
            return math.inf
        return _transfer(self.trace, start, bits - min(bits, self._bucket(start)))[0]

    def round_trip(self, sent_s: float, bits: float, tail_s: float) -> Transfer:
        """An offload of `bits` handed to the link at `sent_s`, taking the base station `tail_s`.

        Its times are infinite when the trace ends in an outage before it is through.
        """
        delivered, airtime = self.send(sent_s, bits)
        return Transfer(delivered, self.reply(delivered, delivered + tail_s), airtime)


@dataclass
class BaseStation:
    """The base station: one request at a time, in order of arrival, shared with other drones.

    (The offload node's tails share one callback group.) Each other drone offloads `rate_hz`
    times a second at its own phase (`phase_s`), each request taking the base station as long
    as the simulated drone's current one; they cross links of their own. `free_s`: when the
    base station is done with what came so far.
    """

    phase_s: np.ndarray  # per other drone, the time of its first request
    rate_hz: float
    free_s: float = 0.0
    sent: np.ndarray | None = None  # per other drone, requests taken so far

    def serve(self, arrived_s: float, service_s: float) -> float:
        """When a request that arrives at `arrived_s` and takes `service_s` is answered.

        The other drones' requests that arrived before it are served first.
        """
        if self.sent is None:
            self.sent = np.zeros(len(self.phase_s), dtype=np.int64)
        while len(self.phase_s):
            due = self.phase_s + self.sent / self.rate_hz
            j = int(np.argmin(due))
            if not due[j] < arrived_s:
                break
            self.free_s = max(self.free_s, float(due[j])) + service_s
            self.sent[j] += 1
        self.free_s = max(self.free_s, arrived_s) + service_s
        return self.free_s

    def copy(self) -> BaseStation:
        """An independent copy (`phase_s` is never changed, so it is shared)."""
        return replace(self, sent=None if self.sent is None else self.sent.copy())


@dataclass
class _State:
    """What carries over from one run of frames to the next."""

    window: OffloadWindow
    base: BaseStation
    link: TraceLink
    t_frame: int = 0
    soc: float = 1.0
    drone_free_s: float = 0.0
    # replies on their way, a heap of (arrival, frame, base station seconds, whether the frame
    # still waits for it then)
    replies: list[tuple[float, int, float, bool]] = field(default_factory=list)


def estimate_ready_times(trace: Trace, terms: Calibration) -> np.ndarray:
    """When a calibrated link estimate has read each step of `trace`.

    A change of rate is read `terms.estimate_lag_s(before, after)` after it; a step that keeps
    the rate before it is read when that rate was.
    """
    ready = np.array(trace.t_s, dtype=np.float64)
    for i in range(1, len(ready)):
        before, after = float(trace.mbps[i - 1]), float(trace.mbps[i])
        if after == before:
            ready[i] = ready[i - 1]
        else:
            ready[i] += terms.estimate_lag_s(before, after)
    return ready


class Simulation:
    """One scenario, frame by frame; deterministic for a given seed.

    The frames (arrival times, input conditions, which validation sample each replays) are
    drawn once from the scenario seed, so any two policies see the same frames, and
    `preview` can try a plan on the coming frames without changing the state (the oracle).
    """

    def __init__(
        self,
        costs: ModelCosts,
        tables: dict[str, ExitTable],
        config: SimConfig,
        scenario: Scenario,
        compute_schedule: Sequence[tuple[float, ModelCosts]] = (),
    ) -> None:
        """Draw the scenario's frames; `compute_schedule` holds the costs from each start on.

        Without a schedule, `costs` hold throughout.
        """
        missing = [c for c in CONDITIONS if c not in tables]
        if missing:
            raise ValueError(f"the profile has no exit data for conditions {missing}")
        self.costs, self.config, self.scenario = costs, config, scenario
        self.compute_schedule = tuple(compute_schedule)
        # only a calibrated link estimate reads the trace late (link_estimate)
        self._estimate_ready_s = (
            estimate_ready_times(scenario.trace, costs.terms)
            if costs.terms.link_estimate_noise is not None
            else None
        )
        self.deadline_s = config.deadline_ms / 1000.0
        rng = np.random.default_rng(scenario.seed)
        n = max(1, int(scenario.duration_s * config.fps))
        self.arrival_s = np.arange(n) / config.fps
        self.condition = scenario.condition_at(self.arrival_s)
        samples = len(tables["clean"].labels)
        # frame k replays sample k (a camera publishing the samples in order) or a random one
        self.sample = np.arange(n) % samples if scenario.in_order else rng.integers(0, samples, n)
        # per condition: predictions (exits, samples), confidences per rule, labels
        self._preds = np.stack([tables[c].predictions for c in CONDITIONS])
        self._conf = {
            r: np.stack([tables[c].confidence[r] for c in CONDITIONS])
            for r in tables["clean"].confidence
        }
        self._labels = np.stack([tables[c].labels for c in CONDITIONS])
        # per image encoding, the same for frames shipped in it and answered by the final exit
        # at the base station, with each frame's bytes
        self._images = {
            encoding: _stacked([tables[c].images[encoding] for c in CONDITIONS])
            for encoding in tables["clean"].images
        }
        self._noise_rng = np.random.default_rng(scenario.seed + 7919)
        others_hz = config.other_drones_offload_hz or config.fps
        phases = np.random.default_rng(scenario.seed + 104729).uniform(
            0.0, 1.0 / others_hz, config.other_drones
        )
        link = TraceLink(scenario.trace, burst_bits=costs.burst_bits)
        window = OffloadWindow(config.max_offloads_in_flight)
        self.state = _State(window, BaseStation(phases, others_hz), link, soc=scenario.initial_soc)
        # what varies from frame to frame (a calibration's jitter): per frame, the drone's
        # compute for its head and for a fallback over the fitted time, and the two hops (s)
        terms, u = costs.terms, np.random.default_rng(scenario.seed + 271828).random((4, n))
        self.head_jitter = terms.draw("drone_compute", u[0], 1.0)
        self.fallback_jitter = terms.draw("drone_compute", u[1], 1.0)
        self.input_hop_s = terms.draw("input_hop_ms", u[2], terms.input_hop_ms) / 1000.0
        self.output_hop_s = terms.draw("output_hop_ms", u[3], terms.output_hop_ms) / 1000.0
        # per frame, the draw that audits it (below the audit share) if it exits early under a
        # plan run with audits: its own generator, so audits change no other draw, and every
        # policy that audits sees the same draws
        self.audit_draw = np.random.default_rng(scenario.seed + 161803).random(n)
        self.history: list[FrameRecords] = []

    @property
    def frames(self) -> int:
        """Frames in the whole scenario."""
        return len(self.arrival_s)

    @property
    def done(self) -> bool:
        """Whether every frame has been simulated."""
        return self.state.t_frame >= self.frames

    @property
    def now_s(self) -> float:
        """Arrival time of the next frame."""
        i = min(self.state.t_frame, self.frames - 1)
        return float(self.arrival_s[i])

    def link_estimate(self, at_s: float | None = None) -> tuple[float, float]:
        """Bandwidth and RTT as the link monitor would report them now (or at `at_s`).

        With a calibration of the estimate (core.calibration.link_estimate_terms): the true link
        as of its last change that the estimate has read by now (`estimate_ready_times`), with
        the calibration's relative noise `link_estimate_noise`. Without one: the time average of
        the true link over the last window (probes and transfers measure the past, not the
        future), with SimConfig.estimate_noise. The noise is multiplicative; 0 Mbit/s during
        outages. The RTT reads the calibration's `link_estimate_rtt_ms` over the path's.
        """
        now = self.now_s if at_s is None else at_s
        trace, terms = self.scenario.trace, self.costs.terms
        if terms.link_estimate_noise is not None:
            read = np.flatnonzero(self._estimate_ready_s <= now)
            step = read[-1] if len(read) else 0
            mbps, rtt, noise_sd = trace.mbps[step], trace.rtt_ms[step], terms.link_estimate_noise
        else:
            times = np.linspace(max(0.0, now - self.config.window_s), now, 9)
            window_mbps, window_rtt = trace.at(times)
            mbps, rtt = np.mean(window_mbps), np.mean(window_rtt)
            noise_sd = self.config.estimate_noise
        noise = 1.0 + noise_sd * self._noise_rng.standard_normal()
        return float(mbps * max(0.1, noise)), float(rtt) + terms.link_estimate_rtt_ms

    def run(self, plan: ExecutionPlan, frames: int) -> FrameRecords:
        """Simulate the next `frames` frames under `plan` and advance the state.

        Under a plan with an `audit_share`, a frame answered on the drone is audited as
        core.decisions.audit_due says, with its own draw, when the frame is auditable: the link
        carries its audit within one frame period (core.decisions.audit_fits, at the true
        trace's bandwidth, standing for the drone's offload window; on a slower link, or in an
        outage, the drone sends none). An audit goes to the base station as the frame in the
        audit encoding (core.decisions.AUDIT_ENCODING, its bytes from the profile; without
        them, the raw frame's), and the record says whether the final exit's answer there
        agreed with the early one. What an audit costs here: the radio's transmit energy
        for those bytes (their wire bits at the trace's bandwidth), added to the frame's energy
        and so to its utility and the battery. Not modelled: its time on the link and at the
        base station (so it delays no offload), the drone's time to serialize it, and its
        reply. The frame's own answer never waits for it. Without audits nothing is audited or
        auditable and nothing is paid.

        ValueError (core.plan.check_plan) when `plan` does not fit the profiled model.
        """
        self._follow_compute_schedule()
        records, self.state = self._simulate(plan, frames, self.state)
        self.history.append(records)
        return records

    def preview(self, plan: ExecutionPlan, frames: int) -> FrameRecords:
        """What `run` would give, leaving the state untouched."""
        self._follow_compute_schedule()
        return self._simulate(plan, frames, self.state)[0]

    @contextmanager
    def frames_redrawn(self, rng: np.random.Generator) -> Iterator[None]:
        """Within it, every frame replays another validation sample, drawn from `rng`.

        The times, the input conditions, the link and the drone stay as they are: what a
        `preview` gives there is what a plan earns in these conditions on frames one cannot
        know in advance.
        """
        kept = self.sample
        self.sample = rng.integers(0, self._labels.shape[1], len(kept))
        try:
            yield
        finally:
            self.sample = kept

    def _follow_compute_schedule(self) -> None:
        """The drone's costs of the compute schedule's segment in force now."""
        for start, costs in self.compute_schedule:
            if start <= self.now_s:
                self.costs = costs

    def _audits(
        self,
        idx: np.ndarray,
        where: np.ndarray,
        exit_taken: np.ndarray,
        mbps: np.ndarray,
        share: float,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Which frames are auditable and audited, and the transmit energy of each audit (J)."""
        costs = self.costs
        # each frame's own bytes in the audit encoding where the profile has them, else the
        # raw frame's
        nbytes = np.full(len(idx), costs.frame_bytes)
        if (frames := self._images.get(AUDIT_ENCODING)) is not None:
            nbytes = frames.payload_bytes[self.condition[idx], self.sample[idx]]
        bits = np.array([costs.wire_bits(int(b)) for b in nbytes])
        rate = np.maximum(mbps, 1e-12) * 1e6
        auditable = (mbps > 0) & audit_fits(bits / 8, rate / 8, 1.0 / self.config.fps)
        on_drone = where == WHERE_DRONE
        audited = auditable & on_drone & audit_due(exit_taken, costs.num_exits,
                                                   self.audit_draw[idx], share)  # fmt: skip
        airtime = np.where(audited, bits / rate, 0.0)
        return auditable, audited, costs.device.radio_tx_w * airtime

    def _simulate(
        self, plan: ExecutionPlan, frames: int, state: _State
    ) -> tuple[FrameRecords, _State]:
        costs, cfg = self.costs, self.config
        check_plan(plan, costs.num_blocks, costs.num_exits)
        idx = np.arange(state.t_frame, min(self.frames, state.t_frame + frames))
        cut, n = plan.cut_point, len(idx)
        cond, sample = self.condition[idx], self.sample[idx]
        conf = self._conf[plan.exit_rule][cond, :, sample]  # (n, exits)
        preds = self._preds[cond, :, sample]
        labels = self._labels[cond, sample]
        thresholds = np.asarray(plan.exit_thresholds, dtype=np.float64)
        sizes = np.full(n, costs.cut_bytes[cut])
        image = None
        if plan.encoding in IMAGE_ENCODINGS:
            if plan.encoding not in self._images:
                raise ValueError(
                    f"encoding: the profile has no data for image encoding {plan.encoding} "
                    "(profile it again with `edgeml profile`)"
                )
            image = self._images[plan.encoding]
            sizes = image.payload_bytes[cond, sample]
        local, exit_taken, compute_s = costs.drone_part(plan, conf)
        drone = _DroneRun(self, plan, state, idx, sizes, local, exit_taken, compute_s)
        drone.run()
        exit_taken, latency = drone.exit_taken, drone.latency
        energy = costs.device.frame_energy_j(drone.compute_s, drone.airtime_s, drone.wait_s)
        mbps = self.scenario.trace.at(self.arrival_s[idx])[0]
        auditable = audited = np.zeros(n, dtype=bool)
        if plan.audit_share > 0 and costs.num_exits > 1:
            auditable, audited, audit_j = self._audits(
                idx, drone.where, exit_taken, mbps, plan.audit_share
            )
            energy = energy + audit_j
        answer = preds[np.arange(n), exit_taken]
        confidence = conf[np.arange(n), exit_taken]
        if image is not None:  # the base station answered on the decoded frame
            at_base = drone.where == WHERE_BASE
            answer = np.where(at_base, image.predictions[cond, sample], answer)
            confidence = np.where(at_base, image.confidence[plan.exit_rule][cond, sample],
                                  confidence)  # fmt: skip
        correct = (answer == labels) & (drone.where != WHERE_NONE)  # a stale drop answers none
        missed = latency > self.deadline_s
        elapsed = np.arange(1, n + 1) / cfg.fps
        drain = self.scenario.flight_drain_per_s
        soc = soc_after(state.soc, elapsed, drain, np.cumsum(energy), cfg.battery_wh)
        utility = cfg.weights.utility(
            correct, latency, self.deadline_s, energy, costs.reference_energy_j, soc
        )
        records = FrameRecords(
            t_s=self.arrival_s[idx],
            latency_s=latency,
            correct=correct,
            energy_j=energy,
            missed=missed,
            where=drone.where,
            exit_index=exit_taken,
            confidence=confidence,
            utility=utility,
            cut_point=np.full(n, cut),
            threshold=np.full(n, float(np.min(thresholds[:-1])) if costs.num_exits > 1 else 0),
            bandwidth_mbps=mbps,
            offloaded=drone.offloaded,
            compute_s=drone.compute_s,
            profiled_s=drone.profiled_s,
            auditable=auditable,
            audited=audited,
            agrees=audited & (answer == preds[:, -1]),
            full_correct=preds[:, -1] == labels,
        )
        new_state = _State(
            drone.window,
            drone.base,
            drone.link,
            int(state.t_frame + n),
            float(soc[-1]) if n else state.soc,
            drone.free_s,
            drone.replies,
        )
        return records, new_state


class _DroneRun:
    """The drone's side of one run of frames under one plan, event by event.

    One thing at a time on the drone's processor (the perception node is single-threaded): a
    frame's head starts once the drone is free, and a fallback, due at the first expire check
    (every EXPIRE_PERIOD_S) after its fallback time, runs once the heads of the frames that came
    before it are done. Fallbacks still due when the run ends run then, before the next run's
    frames. The decisions are core.decisions' and the window is `OffloadWindow`, given the
    times `DronePipeline` gives them: the time the drone takes a frame up (its `arrived`, from
    which its deadline counts), the end of its head (when it asks for and sends an offload) and
    each reply's arrival, taken when the drone takes its next frame up.
    """

    def __init__(
        self,
        sim: Simulation,
        plan: ExecutionPlan,
        state: _State,
        idx: np.ndarray,
        sizes: np.ndarray,
        local: np.ndarray,
        exit_taken: np.ndarray,
        head_s: np.ndarray,
    ) -> None:
        """`head_s`: each frame's head at the drone's modelled speed, before its jitter."""
        self.sim, self.plan, self.idx, self.sizes = sim, plan, idx, sizes
        self.local, self.exit_taken = local, exit_taken
        self.slowdown = sim.costs.drone.slowdown
        self.profiled_s = head_s / self.slowdown
        self.head_s = head_s * sim.head_jitter[idx]
        self.window = state.window.copy()
        self.base = state.base.copy()
        self.replies = list(state.replies)
        self.link = copy.copy(state.link)  # floats only change: the trace is shared
        self.free_s = state.drone_free_s
        n = len(idx)
        self.arrival_s = sim.arrival_s[idx]
        self.taken_up_s = np.zeros(n)
        self.latency = np.zeros(n)
        self.where = np.where(local, WHERE_DRONE, WHERE_BASE)
        self.offloaded = np.zeros(n, dtype=bool)
        self.compute_s = self.head_s.copy()
        self.airtime_s = np.zeros(n)
        self.wait_s = np.zeros(n)
        self._due: list[tuple[float, int]] = []  # fallbacks waiting for their check: (at, k)

    def run(self) -> None:
        """Every frame of the run, then the fallbacks still due."""
        for k in range(len(self.idx)):
            self._run_due(self.arrival_s[k] + self.sim.input_hop_s[self.idx[k]])
            self._frame(k)
        self._run_due(math.inf)
        self.latency += self.sim.output_hop_s[self.idx]  # the result's hop to its reader

    def _frame(self, k: int) -> None:
        sim, costs = self.sim, self.sim.costs
        cut = self.plan.cut_point
        # the frame reaches the drone a DDS hop after its capture, and waits for the drone
        arrived = self.taken_up_s[k] = max(self.arrival_s[k] + sim.input_hop_s[self.idx[k]],
                                           self.free_s)  # fmt: skip
        self.window.frame_arrived(arrived)
        max_age_ms = sim.config.max_frame_age_ms
        if max_age_ms is not None and arrived - self.arrival_s[k] > max_age_ms / 1000.0:
            # too old when the drone gets to it: dropped unrun (the perception node's STALE)
            self.where[k], self.compute_s[k], self.profiled_s[k] = WHERE_NONE, 0.0, 0.0
            self.latency[k] = arrived - self.arrival_s[k]
            return
        self.free_s = head_done = arrived + costs.conversion_s + self.head_s[k]
        if self.local[k]:
            self.latency[k] = head_done - self.arrival_s[k]
            return
        _take_replies(self.window, self.replies, arrived)
        busy, _ = self.window.full(head_done)
        if busy is not None:  # the link is busy: the frame finishes on the drone at once
            self.free_s = self._fall_back(k, head_done)
            return
        seq, size, tail_s = int(self.idx[k]), int(self.sizes[k]), costs.server_tail_s[cut]
        self.free_s = sent = head_done + costs.encode_s
        self.window.sent(seq, sent, size)
        self.offloaded[k] = True
        check_at = _expire_check(costs.fallback_time(self.plan, arrived, sent, sim.deadline_s,
                                                     self.window.reply_delay_s))  # fmt: skip
        delivered, self.airtime_s[k] = self.link.send(sent, costs.wire_bits(size))
        served = self.base.serve(delivered, tail_s) if math.isfinite(delivered) else math.inf
        reply_s = self.link.reply(delivered, served + costs.offload_hop_s, costs.reply_bits)
        answered = reply_s <= check_at
        heapq.heappush(self.replies, (reply_s, seq, tail_s, answered))
        self.wait_s[k] = max(0.0, min(reply_s, check_at) - min(delivered, check_at))
        if answered:
            self.latency[k] = reply_s - self.arrival_s[k]
        else:
            heapq.heappush(self._due, (check_at, k))

    def _run_due(self, until: float) -> None:
        """Run the fallbacks due by `until`, each once the drone is free."""
        while self._due and self._due[0][0] <= until:
            at, k = heapq.heappop(self._due)
            self.free_s = self._fall_back(k, max(at, self.free_s))

    def _fall_back(self, k: int, now: float) -> float:
        """Finish frame k on the drone from `now`; returns when the drone is done."""
        budget = fallback_budget(self.taken_up_s[k], now, self.sim.deadline_s)
        self.exit_taken[k], tail_s = self.sim.costs.fallback(self.plan, budget)
        self.profiled_s[k] += tail_s / self.slowdown
        tail_s *= self.sim.fallback_jitter[self.idx[k]]
        self.where[k] = WHERE_FALLBACK
        self.compute_s[k] += tail_s
        self.latency[k] = now + tail_s - self.arrival_s[k]
        return now + tail_s


def _stacked(images: list[ImageExit]) -> ImageExit:
    """Per-condition image-encoding answers as one, each array (conditions, samples)."""
    return ImageExit(
        np.stack([i.predictions for i in images]),
        {r: np.stack([i.confidence[r] for i in images]) for r in images[0].confidence},
        np.stack([i.payload_bytes for i in images]),
    )


def _expire_check(at_s: float) -> float:
    """The perception node's first fallback check at or after `at_s` (at its timer's ticks)."""
    return math.ceil(at_s / EXPIRE_PERIOD_S) * EXPIRE_PERIOD_S


def _take_replies(
    window: OffloadWindow, replies: list[tuple[float, int, float, bool]], now: float
) -> None:
    """Give the window the replies that came by `now`, in order, as `DronePipeline` does.

    The drone takes a reply while its frame waits for it or while the offload is on the link
    (in the window); any other it refuses (`DronePipeline.on_reply`).
    """
    while replies and replies[0][0] <= now:
        reply_s, seq, tail_s, waited = heapq.heappop(replies)
        if waited or seq in window:
            window.answered(seq, reply_s, tail_s)


def _transfer(trace: Trace, start_s: float, bits: float) -> tuple[float, float]:
    """When a transfer of `bits` starting at `start_s` ends, and its time on the air.

    Integrates the piecewise-constant bandwidth exactly; outages (0 Mbit/s) pause it. Ends at
    infinity if the trace ends in an outage before the bits are through.
    """
    t, left, airtime = start_s, bits, 0.0
    i = int(np.searchsorted(trace.t_s, start_s, side="right") - 1)
    while True:
        rate = float(trace.mbps[i]) * 1e6
        end = float(trace.t_s[i + 1]) if i + 1 < len(trace.t_s) else math.inf
        if rate > 0:
            need = left / rate
            if t + need <= end:
                return t + need, airtime + need
            left -= (end - t) * rate
            airtime += end - t
        if math.isinf(end):
            return math.inf, airtime
        t, i = end, i + 1
