"""Link traces: bandwidth (and RTT) over time, read from CSV files or generated.

File format (users bring their own):

    # comments start with '#'
    t_s,mbps,rtt_ms
    0,20,15
    10,0.04,80
    25,0,80        # mbps 0 is an outage

The `rtt_ms` column is optional. Each row's values hold from its `t_s` until the next row's;
the last row holds forever. Times must start at 0 and increase. A bad file is refused with an
error naming its line. The simulator and the live link shaper replay the same traces.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from edgeml_ros.core.untrusted import non_negative

DEFAULT_RTT_MS = 20.0
HEADER_WITH_RTT = ("t_s", "mbps", "rtt_ms")


class TraceError(ValueError):
    """A trace file or trace that breaks the format."""


@dataclass(frozen=True)
class Trace:
    """Piecewise-constant bandwidth (Mbit/s) and RTT (ms) starting at t = 0 s."""

    t_s: np.ndarray
    mbps: np.ndarray
    rtt_ms: np.ndarray
    name: str = "trace"

    def __post_init__(self) -> None:
        n = len(self.t_s)
        if n == 0 or len(self.mbps) != n or len(self.rtt_ms) != n:
            raise TraceError(f"{self.name}: needs equally long, non-empty t_s, mbps and rtt_ms")
        if self.t_s[0] != 0 or np.any(np.diff(self.t_s) <= 0):
            raise TraceError(f"{self.name}: times must start at 0 and increase")
        if np.any(self.mbps < 0) or np.any(self.rtt_ms < 0):
            raise TraceError(f"{self.name}: bandwidth and RTT must be >= 0")

    @property
    def duration_s(self) -> float:
        """Time of the last change (the last value holds after it)."""
        return float(self.t_s[-1])

    @cached_property
    def _times(self) -> list[float]:
        return self.t_s.tolist()

    def at(self, t_s: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Bandwidth and RTT in force at time(s) `t_s`."""
        if isinstance(t_s, float):  # one time (the simulator's many calls): as below, faster
            i = max(bisect_right(self._times, t_s) - 1, 0)
            return self.mbps[i], self.rtt_ms[i]
        i = np.searchsorted(self.t_s, np.asarray(t_s, dtype=np.float64), side="right") - 1
        i = np.clip(i, 0, len(self.t_s) - 1)
        return self.mbps[i], self.rtt_ms[i]

    def save(self, path: Path) -> None:
        """Write the trace in the CSV format above."""
        lines = [",".join(HEADER_WITH_RTT)]
        lines += [
            f"{t:g},{b:g},{r:g}" for t, b, r in zip(self.t_s, self.mbps, self.rtt_ms, strict=True)
        ]
        Path(path).write_text("\n".join(lines) + "\n")


def load_trace(path: Path | str, default_rtt_ms: float = DEFAULT_RTT_MS) -> Trace:
    """Read a trace file; errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise TraceError(f"trace file {path} not found")
    header: tuple[str, ...] | None = None
    rows: list[tuple[float, float, float]] = []
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"{path}:{number}"
        cells = [c.strip() for c in line.split(",")]
        if header is None:
            header = tuple(cells)
            if header not in (HEADER_WITH_RTT, HEADER_WITH_RTT[:2]):
                raise TraceError(f"{where}: header must be 't_s,mbps,rtt_ms' or 't_s,mbps'")
            continue
        if len(cells) != len(header):
            raise TraceError(f"{where}: {len(cells)} values, the header has {len(header)}")
        t = non_negative(cells[0], "t_s", where, TraceError)
        mbps = non_negative(cells[1], "mbps", where, TraceError)
        rtt = (non_negative(cells[2], "rtt_ms", where, TraceError) if len(cells) == 3
               else default_rtt_ms)  # fmt: skip
        if rows and t <= rows[-1][0]:
            raise TraceError(f"{where}: t_s {t:g} does not come after {rows[-1][0]:g}")
        if not rows and t != 0:
            raise TraceError(f"{where}: the first row must be at t_s 0, got {t:g}")
        rows.append((t, mbps, rtt))
    if not rows:
        raise TraceError(f"{path}: no data rows")
    t, mbps, rtt = (np.array(col, dtype=np.float64) for col in zip(*rows, strict=True))
    return Trace(t, mbps, rtt, path.stem)


def markov_trace(
    rng: np.random.Generator,
    duration_s: float,
    states_mbps: tuple[float, ...] = (0.1, 1.0, 5.0, 20.0),
    mean_dwell_s: float = 8.0,
    rtt_ms: float = DEFAULT_RTT_MS,
) -> Trace:
    """Markov-modulated bandwidth: exponential dwell times, moves to a neighbouring state."""
    t, state, times, rates = 0.0, int(rng.integers(len(states_mbps))), [], []
    while t < duration_s:
        times.append(t)
        rates.append(states_mbps[state])
        t += float(rng.exponential(mean_dwell_s))
        state = int(np.clip(state + rng.choice((-1, 1)), 0, len(states_mbps) - 1))
    return Trace(np.array(times), np.array(rates), np.full(len(times), rtt_ms), "markov")


def step_trace(
    levels_mbps: tuple[float, ...], step_s: float, rtt_ms: float = DEFAULT_RTT_MS
) -> Trace:
    """Bandwidth that steps through `levels_mbps`, `step_s` seconds each."""
    n = len(levels_mbps)
    return Trace(np.arange(n) * float(step_s), np.array(levels_mbps, dtype=np.float64),
                 np.full(n, rtt_ms), "steps")  # fmt: skip


def outage_trace(
    mbps: float, outage_start_s: float, outage_s: float, rtt_ms: float = DEFAULT_RTT_MS
) -> Trace:
    """A steady link that drops to 0 for `outage_s` seconds."""
    return Trace(np.array([0.0, outage_start_s, outage_start_s + outage_s]),
                 np.array([mbps, 0.0, mbps]), np.full(3, rtt_ms), "outage")  # fmt: skip


def throttle_schedule(
    phase_s: float = 20.0, unthrottled_mbps: float = 50.0, rtt_ms: float = DEFAULT_RTT_MS
) -> Trace:
    """The EdgeML authors' throttling runs, one phase each.

    Unthrottled, 130 kbit/s, 40 kbit/s, 130 kbit/s, unthrottled.
    """
    levels = (unthrottled_mbps, 0.13, 0.04, 0.13, unthrottled_mbps)
    return Trace(np.arange(len(levels)) * float(phase_s), np.array(levels),
                 np.full(len(levels), rtt_ms), "throttle")  # fmt: skip
