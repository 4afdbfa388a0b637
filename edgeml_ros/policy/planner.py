"""A model-based planner: every action's utility tabulated in the simulator, conditions read.

The conditions it cannot observe it reads from the controller's telemetry.

`tabulate` holds every discrete action (`policy.observation`) through steady simulated worlds
over a grid of link rates, round-trip times, drone compute slowdowns and input conditions, and
keeps per world and action the mean utility (its energy term apart, which the battery weighs)
and the telemetry the controller would see under it (per decision window: the latency over the
deadline, the mean confidence of the answering exits, the share of early exits), with its
covariance from window to window (the three move together: a window of more early exits is one
of less latency).

`Planner` reads the drone's compute slowdown and the input condition it cannot observe from that
telemetry: a belief over (slowdown, condition) pairs (the grid's slowdowns and more between them,
`SLOWDOWN_SUBSTEPS`, the table interpolated there), updated after each window by how likely the
window's telemetry was under the plan in force at the link estimate (a Gaussian with the table's
covariance, so that features that move together count once) and how likely the drone's measured
compute ratio (its compute over the profiled time of the same work: its slowdown, read directly
wherever the drone computed) was at each slowdown, and partly forgotten each window
(`BELIEF_FORGETTING`) so that it follows changes. It then picks the action of best expected utility
under the belief, at the link estimate (rate and RTT, the table interpolated there) and the
battery's charge; where the drone's speed has gone unread for `SPEED_PROBE_WINDOWS` (cut 0 shows
nothing of it), the best of those that compute on the drone. It uses only what the live controller
observes; it knows nothing of the world it runs in beyond its table.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from edgeml_ros.core.degrade import CONDITIONS
from edgeml_ros.policy.baselines import FixedPolicy
from edgeml_ros.policy.evaluate import run_policy
from edgeml_ros.policy.observation import (
    Decision,
    Observation,
    action_index,
    action_plan,
    num_actions,
    recent_stats,
)
from edgeml_ros.policy.scenarios import (
    CONDITION_ODDS,
    DRONE_SLOWDOWNS,
    STEADY_RATES_MBPS,
    steady_scenario,
)
from edgeml_ros.policy.sim import FrameRecords, Simulation
from edgeml_ros.policy.world import World

# The grid: link rates over a little more than the regime map's range, slowdowns over the
# training range (a half octave apart), both log-spaced; RTTs over the scenarios' 10-60 ms an
# eighth of the deadline apart (an offload's latency grows with it linearly, but its utility
# falls off a cliff where replies start to miss the drone's fallback check: 25 ms apart, the
# table put that cliff of cut 0 between grid points); each world a steady link for
# TABLE_DURATION_S.
TABLE_RATES_MBPS = tuple(
    float(r) for r in np.geomspace(0.75 * STEADY_RATES_MBPS[0], 1.25 * STEADY_RATES_MBPS[1], 9)
)
TABLE_RTTS_MS = (10.0, 22.5, 35.0, 47.5, 60.0)
TABLE_SLOWDOWNS = tuple(float(s) for s in np.geomspace(*DRONE_SLOWDOWNS, 9))
TABLE_DURATION_S = 120.0
# The telemetry the belief reads (Observation fields), and a spread assumed of each beyond the
# table's (added in variance: what a table of finite runs and a live drone may show besides).
TELEMETRY = ("recent_latency_ratio", "recent_confidence", "recent_early_exit_rate")
TELEMETRY_SPREAD_FLOOR = np.array([0.02, 0.01, 0.05])
# The spread assumed of the drone's measured compute ratio around its slowdown, in log units
# (the window's jitter and a shared machine's load; assumed, not fitted).
COMPUTE_RATIO_SPREAD = 0.1
# Windows the planner goes without reading the drone's speed (under plans that compute nothing
# on the drone: cut 0) before it spends one on the best plan that computes there, to read it.
SPEED_PROBE_WINDOWS = 10
# The share of the belief spread evenly again each window: conditions change every 10-40 s.
BELIEF_FORGETTING = 0.05
# The belief's slowdowns per step of the table's grid (the table interpolated between them).
SLOWDOWN_SUBSTEPS = 4


@dataclass(frozen=True)
class UtilityTable:
    """Per (rate, RTT, slowdown, condition, action): utility parts and the telemetry it shows."""

    rates_mbps: np.ndarray  # (R,)
    rtts_ms: np.ndarray  # (T,)
    slowdowns: np.ndarray  # (S,)
    conditions: tuple[str, ...]  # (C,)
    gain: np.ndarray  # (R, T, S, C, A): mean utility without its energy term
    energy: np.ndarray  # (R, T, S, C, A): mean energy over the reference energy
    telemetry_mean: np.ndarray  # (R, T, S, C, A, F): per window, TELEMETRY's means
    telemetry_covariance: np.ndarray  # (R, T, S, C, A, F, F): and their covariance

    def at_link(self, mbps: float, rtt_ms: float) -> UtilityTable:
        """The table at one link rate and RTT.

        Linear in log rate and in RTT between grid points, held beyond them.
        """
        rates, rtts = np.array([mbps]), np.array([rtt_ms])
        at_rate = replace(self, rates_mbps=rates,
                          **self._interpolated(0, self.rates_mbps, rates))  # fmt: skip
        return replace(at_rate, rtts_ms=rtts,
                       **at_rate._interpolated(1, self.rtts_ms, rtts, log=False))  # fmt: skip

    def refined(self, substeps: int) -> UtilityTable:
        """The table over `substeps` log-spaced slowdowns per grid step, interpolated the same.

        A drone between two grid slowdowns is then not read as one of them with its inputs'
        condition misread to explain the rest of its latency.
        """
        steps = len(self.slowdowns) - 1
        at = np.linspace(0, steps, steps * substeps + 1)  # in grid steps
        fine = np.exp(np.interp(at, np.arange(steps + 1), np.log(self.slowdowns)))
        return replace(self, slowdowns=fine, **self._interpolated(2, self.slowdowns, fine))

    def _interpolated(
        self, axis: int, grid: np.ndarray, points: np.ndarray, log: bool = True
    ) -> dict[str, np.ndarray]:
        """The four arrays at `points` along `axis` (whose values are `grid`), by field name.

        Linear (in log `grid` where `log`) between its values, held beyond them; a grid of one
        value holds it everywhere.
        """
        if len(grid) == 1:
            return {name: np.repeat(getattr(self, name), len(points), axis) for name in _ARRAYS}
        scale = np.log if log else np.asarray
        at_grid = scale(grid)
        x = np.clip(scale(np.maximum(points, 1e-9)), at_grid[0], at_grid[-1])
        i = np.clip(np.searchsorted(at_grid, x) - 1, 0, len(at_grid) - 2)
        w = (x - at_grid[i]) / (at_grid[i + 1] - at_grid[i])

        def at_points(a: np.ndarray) -> np.ndarray:
            weight = np.expand_dims(w, tuple(d for d in range(a.ndim) if d != axis))
            return (1 - weight) * np.take(a, i, axis) + weight * np.take(a, i + 1, axis)

        return {name: at_points(getattr(self, name)) for name in _ARRAYS}

    def grid(self) -> dict:
        """The grid the table covers (for a policy's metadata)."""
        return {"rates_mbps": [round(float(r), 4) for r in self.rates_mbps],
                "rtts_ms": [round(float(t), 2) for t in self.rtts_ms],
                "slowdowns": [round(float(s), 3) for s in self.slowdowns],
                "conditions": list(self.conditions)}  # fmt: skip

    def save(self, path: Path) -> None:
        """Write the table as `path` (.npz)."""
        np.savez_compressed(path, rates_mbps=self.rates_mbps, rtts_ms=self.rtts_ms,
                            slowdowns=self.slowdowns,
                            conditions=np.array(self.conditions), gain=self.gain,
                            energy=self.energy, telemetry_mean=self.telemetry_mean,
                            telemetry_covariance=self.telemetry_covariance)  # fmt: skip

    @classmethod
    def load(cls, path: Path, actions: int) -> UtilityTable:
        """Read a table written by `save`; ValueError if it is not one for `actions` actions."""
        try:
            with np.load(path) as f:
                conditions = tuple(str(c) for c in f["conditions"])
                table = cls(f["rates_mbps"], f["rtts_ms"], f["slowdowns"], conditions,
                            f["gain"], f["energy"], f["telemetry_mean"],
                            f["telemetry_covariance"])  # fmt: skip
        except (OSError, KeyError, ValueError) as exc:
            raise ValueError(f"planner table {path}: unreadable ({exc})") from None
        shape = (len(table.rates_mbps), len(table.rtts_ms), len(table.slowdowns),
                 len(table.conditions), actions)  # fmt: skip
        features = len(TELEMETRY)
        if (table.gain.shape != shape or table.telemetry_mean.shape != (*shape, features)
                or table.telemetry_covariance.shape != (*shape, features, features)):  # fmt: skip
            raise ValueError(f"planner table {path}: shaped {table.gain.shape}, not {shape} "
                             f"(rates, RTTs, slowdowns, conditions, actions)")  # fmt: skip
        return table


# UtilityTable's arrays over its grid (its other fields are the grid's axes).
_ARRAYS = ("gain", "energy", "telemetry_mean", "telemetry_covariance")


def window_telemetry(records: FrameRecords, world: World) -> np.ndarray:
    """TELEMETRY of each decision window of a run, as the controller observes it: (W, F)."""
    costs, config = world.costs, world.config
    frames = config.window_frames
    rows = []
    for start in range(0, len(records.t_s) - frames + 1, frames):
        part = slice(start, start + frames)
        stats = recent_stats(records.confidence[part], records.exit_index[part],
                             records.where[part], records.latency_s[part],
                             records.compute_s[part], records.profiled_s[part],
                             costs.num_exits, config.deadline_ms / 1000.0)  # fmt: skip
        rows.append([stats[name] for name in TELEMETRY])
    return np.array(rows)


def tabulate(
    world: World,
    rates_mbps: tuple[float, ...] = TABLE_RATES_MBPS,
    rtts_ms: tuple[float, ...] = TABLE_RTTS_MS,
    slowdowns: tuple[float, ...] = TABLE_SLOWDOWNS,
    duration_s: float = TABLE_DURATION_S,
    seed: int = 0,
) -> UtilityTable:
    """Hold every action through a steady world per grid point; tabulate what it earns, shows."""
    actions = num_actions(world.costs.num_blocks)
    shape = (len(rates_mbps), len(rtts_ms), len(slowdowns), len(CONDITIONS), actions)
    gain, energy = np.zeros(shape), np.zeros(shape)
    features = len(TELEMETRY)
    mean, covariance = np.zeros((*shape, features)), np.zeros((*shape, features, features))
    weights, deadline_s = world.config.weights, world.config.deadline_ms / 1000.0
    seeds = np.random.default_rng(seed).integers(0, 2**31, shape[:4])
    with tqdm(total=int(np.prod(shape)), desc="tabulate planner", unit="run") as bar:
        for j, slowdown in enumerate(slowdowns):
            slowed = world.slowed(slowdown)
            costs = slowed.costs
            for (i, mbps), (t, rtt_ms), (k, condition) in itertools.product(
                enumerate(rates_mbps), enumerate(rtts_ms), enumerate(CONDITIONS)
            ):
                scenario = steady_scenario(f"{condition}@{mbps:g}Mbps", mbps, rtt_ms,
                                           ((0.0, condition),), duration_s, initial_soc=0.9,
                                           seed=int(seeds[i, t, j, k]))  # fmt: skip
                for a in range(actions):
                    plan = action_plan(a, costs.num_blocks, costs.num_exits)
                    r = run_policy(slowed, FixedPolicy("static", plan), scenario)
                    reference_j = costs.reference_energy_j
                    no_energy = np.zeros_like(r.energy_j)  # the utility but its energy term
                    at = (i, t, j, k, a)
                    gain[at] = np.mean(
                        weights.utility(r.correct, r.latency_s, deadline_s, no_energy,
                                        reference_j, 1.0)
                    )  # fmt: skip
                    energy[at] = np.mean(r.energy_j) / reference_j
                    seen = window_telemetry(r, slowed)
                    mean[at] = seen.mean(0)
                    covariance[at] = np.cov(seen, rowvar=False, bias=True)
                    bar.update()
    return UtilityTable(np.array(rates_mbps), np.array(rtts_ms), np.array(slowdowns),
                        tuple(CONDITIONS), gain, energy, mean, covariance)  # fmt: skip


class Planner:
    """The action of best expected utility under a belief read from telemetry (module doc)."""

    def __init__(self, table: UtilityTable, world: World, name: str = "planner") -> None:
        self.table, self.name = table.refined(SLOWDOWN_SUBSTEPS), name
        self.weights = world.config.weights
        self.costs = world.costs
        self.num_blocks, self.num_exits = world.costs.num_blocks, world.costs.num_exits
        # the actions whose plans compute on the drone (a head of at least one block)
        self.computes = np.array([action_plan(a, self.num_blocks, self.num_exits).cut_point > 0
                                  for a in range(num_actions(self.num_blocks))])  # fmt: skip
        self.reset()

    def _prior(self) -> np.ndarray:
        """Every slowdown of the grid equally likely, the conditions as training draws them."""
        odds = np.array([CONDITION_ODDS[c] for c in self.table.conditions])
        return np.outer(np.full(len(self.table.slowdowns), 1.0 / len(self.table.slowdowns)),
                        odds / odds.sum())  # fmt: skip

    def reset(self) -> None:
        """Forget what the telemetry said: back to the prior, the drone's speed unread."""
        self.belief = self._prior()
        self.windows_unmeasured = SPEED_PROBE_WINDOWS

    def read(self, obs: Observation, here: UtilityTable) -> None:
        """Update the belief with the last window's telemetry under the plan in force."""
        self.belief = (1 - BELIEF_FORGETTING) * self.belief + BELIEF_FORGETTING * self._prior()
        log_likelihood = np.zeros_like(self.belief)
        if obs.recent_latency_ratio > 0:  # some frame answered: its telemetry
            action = action_index(obs.cut_point, obs.threshold_level)
            seen = np.array([getattr(obs, name) for name in TELEMETRY])
            misfit = seen - here.telemetry_mean[0, 0, :, :, action]  # (S, C, F)
            covariance = (here.telemetry_covariance[0, 0, :, :, action]
                          + np.diag(TELEMETRY_SPREAD_FLOOR**2))  # fmt: skip
            scaled = np.linalg.solve(covariance, misfit[..., None])[..., 0]
            log_likelihood -= 0.5 * (np.sum(misfit * scaled, -1)
                                     + np.linalg.slogdet(covariance)[1])  # fmt: skip
        if obs.recent_compute_ratio > 0:  # the drone computed: its speed, measured
            misfit = np.log(obs.recent_compute_ratio / here.slowdowns) / COMPUTE_RATIO_SPREAD
            log_likelihood -= 0.5 * misfit[:, None] ** 2
        posterior = self.belief * np.exp(log_likelihood - log_likelihood.max())
        self.belief = posterior / posterior.sum()

    def expected_utility(self, obs: Observation) -> np.ndarray:
        """Each action's utility in expectation under the belief, after reading `obs`."""
        # tabulated over the path's RTT (the trace's), read with the link monitor's excess
        here = self.table.at_link(obs.bandwidth_mbps, self.costs.path_rtt_ms(obs.rtt_ms))
        self.read(obs, here)
        utility = here.gain[0, 0] - self.weights.energy_weight(obs.battery_soc) * here.energy[0, 0]
        return np.einsum("sc,sca->a", self.belief, utility)

    def decide(self, obs: Observation, sim: Simulation | None = None) -> Decision:
        """The plan of the action of best expected utility.

        Of those that compute on the drone, when its speed has gone unread SPEED_PROBE_WINDOWS.
        """
        utility = self.expected_utility(obs)
        measured = obs.recent_compute_ratio > 0
        self.windows_unmeasured = 0 if measured else self.windows_unmeasured + 1
        if self.windows_unmeasured >= SPEED_PROBE_WINDOWS:
            utility = np.where(self.computes, utility, -np.inf)
        action = int(np.argmax(utility))
        return Decision(action_plan(action, self.num_blocks, self.num_exits))
