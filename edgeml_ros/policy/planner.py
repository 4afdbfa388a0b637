"""A model-based planner: every action's utility tabulated in the simulator, conditions read.

The conditions it cannot observe it reads from the controller's telemetry.

`tabulate` holds every discrete action (`policy.observation`) through steady simulated worlds
over a grid of link rates, drone compute slowdowns and input conditions, and keeps per world and
action the mean utility (its energy term apart, which the battery weighs) and the telemetry the
controller would see under it (per decision window: the latency over the deadline, the mean
confidence of the answering exits, the share of early exits), with its spread from window to
window.

`Planner` reads the drone's compute slowdown and the input condition it cannot observe from that
telemetry: a belief over (slowdown, condition) pairs (the grid's slowdowns and more between
them, `SLOWDOWN_SUBSTEPS`, the table interpolated there), updated after each window by
how likely the window's telemetry was under the plan in force at the estimated link rate (a
Gaussian per feature, with the table's spread), and partly forgotten each window
(`BELIEF_FORGETTING`) so that it follows changes. It then picks the action of best expected
utility under the belief, at the link estimate and the battery's charge. It uses only what the
live controller observes; it knows nothing of the world it runs in beyond its table.
"""

from __future__ import annotations

from dataclasses import dataclass
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
# training range, both log-spaced; each world a steady link at TABLE_RTT_MS (the middle of the
# scenarios' 10-60 ms) for TABLE_DURATION_S.
TABLE_RATES_MBPS = tuple(
    float(r) for r in np.geomspace(0.75 * STEADY_RATES_MBPS[0], 1.25 * STEADY_RATES_MBPS[1], 9)
)
TABLE_SLOWDOWNS = tuple(float(s) for s in np.geomspace(*DRONE_SLOWDOWNS, 7))
TABLE_RTT_MS = 35.0
TABLE_DURATION_S = 120.0
# The telemetry the belief reads (Observation fields), and the least spread assumed for each.
TELEMETRY = ("recent_latency_ratio", "recent_confidence", "recent_early_exit_rate")
TELEMETRY_SPREAD_FLOOR = np.array([0.02, 0.01, 0.05])
# The share of the belief spread evenly again each window: conditions change every 10-40 s.
BELIEF_FORGETTING = 0.05
# The belief's slowdowns per step of the table's grid (the table interpolated between them).
SLOWDOWN_SUBSTEPS = 4


@dataclass(frozen=True)
class UtilityTable:
    """Per (rate, slowdown, condition, action): utility parts and the telemetry it shows."""

    rates_mbps: np.ndarray  # (R,)
    slowdowns: np.ndarray  # (S,)
    conditions: tuple[str, ...]  # (C,)
    gain: np.ndarray  # (R, S, C, A): mean utility without its energy term
    energy: np.ndarray  # (R, S, C, A): mean energy over the reference energy
    telemetry_mean: np.ndarray  # (R, S, C, A, F): per window, TELEMETRY's means
    telemetry_spread: np.ndarray  # (R, S, C, A, F): and their standard deviations

    def at_rate(self, mbps: float) -> UtilityTable:
        """The table at one link rate: linear in log rate between grid rates, held beyond."""
        rates = np.array([mbps])
        return UtilityTable(rates, self.slowdowns, self.conditions,
                            *self._interpolated(0, self.rates_mbps, rates))  # fmt: skip

    def refined(self, substeps: int) -> UtilityTable:
        """The table over `substeps` log-spaced slowdowns per grid step, interpolated the same.

        A drone between two grid slowdowns is then not read as one of them with its inputs'
        condition misread to explain the rest of its latency.
        """
        steps = len(self.slowdowns) - 1
        at = np.linspace(0, steps, steps * substeps + 1)  # in grid steps
        fine = np.exp(np.interp(at, np.arange(steps + 1), np.log(self.slowdowns)))
        return UtilityTable(self.rates_mbps, fine, self.conditions,
                            *self._interpolated(1, self.slowdowns, fine))  # fmt: skip

    def _interpolated(self, axis: int, grid: np.ndarray, points: np.ndarray) -> list[np.ndarray]:
        """The four arrays at `points` along `axis` (whose values are `grid`).

        Linear in log `grid` between its values, held beyond them.
        """
        log_grid = np.log(grid)
        x = np.clip(np.log(np.maximum(points, 1e-9)), log_grid[0], log_grid[-1])
        i = np.clip(np.searchsorted(log_grid, x) - 1, 0, len(log_grid) - 2)
        w = (x - log_grid[i]) / (log_grid[i + 1] - log_grid[i])

        def at_points(a: np.ndarray) -> np.ndarray:
            weight = np.expand_dims(w, tuple(d for d in range(a.ndim) if d != axis))
            return (1 - weight) * np.take(a, i, axis) + weight * np.take(a, i + 1, axis)

        return [at_points(a) for a in (self.gain, self.energy, self.telemetry_mean,
                                       self.telemetry_spread)]  # fmt: skip

    def grid(self) -> dict:
        """The grid the table covers (for a policy's metadata)."""
        return {"rates_mbps": [round(float(r), 4) for r in self.rates_mbps],
                "slowdowns": [round(float(s), 3) for s in self.slowdowns],
                "conditions": list(self.conditions), "rtt_ms": TABLE_RTT_MS}  # fmt: skip

    def save(self, path: Path) -> None:
        """Write the table as `path` (.npz)."""
        np.savez_compressed(path, rates_mbps=self.rates_mbps, slowdowns=self.slowdowns,
                            conditions=np.array(self.conditions), gain=self.gain,
                            energy=self.energy, telemetry_mean=self.telemetry_mean,
                            telemetry_spread=self.telemetry_spread)  # fmt: skip

    @classmethod
    def load(cls, path: Path, actions: int) -> UtilityTable:
        """Read a table written by `save`; ValueError if it is not one for `actions` actions."""
        try:
            with np.load(path) as f:
                conditions = tuple(str(c) for c in f["conditions"])
                table = cls(f["rates_mbps"], f["slowdowns"], conditions, f["gain"], f["energy"],
                            f["telemetry_mean"], f["telemetry_spread"])  # fmt: skip
        except (OSError, KeyError, ValueError) as exc:
            raise ValueError(f"planner table {path}: unreadable ({exc})") from None
        shape = (len(table.rates_mbps), len(table.slowdowns), len(table.conditions), actions)
        if table.gain.shape != shape or table.telemetry_mean.shape != (*shape, len(TELEMETRY)):
            raise ValueError(f"planner table {path}: shaped {table.gain.shape}, not {shape} "
                             f"(rates, slowdowns, conditions, actions)")  # fmt: skip
        return table


def window_telemetry(records: FrameRecords, world: World) -> np.ndarray:
    """TELEMETRY of each decision window of a run, as the controller observes it: (W, F)."""
    costs, config = world.costs, world.config
    frames = config.window_frames
    rows = []
    for start in range(0, len(records.t_s) - frames + 1, frames):
        part = slice(start, start + frames)
        stats = recent_stats(records.confidence[part], records.exit_index[part],
                             records.where[part], records.latency_s[part], costs.num_exits,
                             config.deadline_ms / 1000.0)  # fmt: skip
        rows.append([stats[name] for name in TELEMETRY])
    return np.array(rows)


def tabulate(
    world: World,
    rates_mbps: tuple[float, ...] = TABLE_RATES_MBPS,
    slowdowns: tuple[float, ...] = TABLE_SLOWDOWNS,
    duration_s: float = TABLE_DURATION_S,
    seed: int = 0,
) -> UtilityTable:
    """Hold every action through a steady world per grid point; tabulate what it earns, shows."""
    actions = num_actions(world.costs.num_blocks)
    shape = (len(rates_mbps), len(slowdowns), len(CONDITIONS), actions)
    gain, energy = np.zeros(shape), np.zeros(shape)
    mean, spread = np.zeros((*shape, len(TELEMETRY))), np.zeros((*shape, len(TELEMETRY)))
    weights, deadline_s = world.config.weights, world.config.deadline_ms / 1000.0
    seeds = np.random.default_rng(seed).integers(0, 2**31, shape[:3])
    with tqdm(total=int(np.prod(shape)), desc="tabulate planner", unit="run") as bar:
        for j, slowdown in enumerate(slowdowns):
            slowed = world.slowed(slowdown)
            costs = slowed.costs
            for i, mbps in enumerate(rates_mbps):
                for k, condition in enumerate(CONDITIONS):
                    scenario = steady_scenario(f"{condition}@{mbps:g}Mbps", mbps, TABLE_RTT_MS,
                                               ((0.0, condition),), duration_s, initial_soc=0.9,
                                               seed=int(seeds[i, j, k]))  # fmt: skip
                    for a in range(actions):
                        plan = action_plan(a, costs.num_blocks, costs.num_exits)
                        r = run_policy(slowed, FixedPolicy("static", plan), scenario)
                        reference_j = costs.reference_energy_j
                        no_energy = np.zeros_like(r.energy_j)  # the utility but its energy term
                        gain[i, j, k, a] = np.mean(
                            weights.utility(
                                r.correct, r.latency_s, deadline_s, no_energy, reference_j, 1.0
                            )
                        )
                        energy[i, j, k, a] = np.mean(r.energy_j) / reference_j
                        seen = window_telemetry(r, slowed)
                        mean[i, j, k, a], spread[i, j, k, a] = seen.mean(0), seen.std(0)
                        bar.update()
    return UtilityTable(np.array(rates_mbps), np.array(slowdowns), tuple(CONDITIONS), gain,
                        energy, mean, spread)  # fmt: skip


class Planner:
    """The action of best expected utility under a belief read from telemetry (module doc)."""

    def __init__(self, table: UtilityTable, world: World, name: str = "planner") -> None:
        self.table, self.name = table.refined(SLOWDOWN_SUBSTEPS), name
        self.weights = world.config.weights
        self.num_blocks, self.num_exits = world.costs.num_blocks, world.costs.num_exits
        self.belief = self._prior()

    def _prior(self) -> np.ndarray:
        """Every slowdown of the grid equally likely, the conditions as training draws them."""
        odds = np.array([CONDITION_ODDS[c] for c in self.table.conditions])
        return np.outer(np.full(len(self.table.slowdowns), 1.0 / len(self.table.slowdowns)),
                        odds / odds.sum())  # fmt: skip

    def reset(self) -> None:
        """Forget what the telemetry said: back to the prior."""
        self.belief = self._prior()

    def read(self, obs: Observation, here: UtilityTable) -> None:
        """Update the belief with the last window's telemetry under the plan in force."""
        self.belief = (1 - BELIEF_FORGETTING) * self.belief + BELIEF_FORGETTING * self._prior()
        if obs.recent_latency_ratio <= 0:  # no frame answered: nothing to read
            return
        action = action_index(obs.cut_point, obs.threshold_level)
        seen = np.array([getattr(obs, name) for name in TELEMETRY])
        mean = here.telemetry_mean[0, :, :, action]  # (S, C, F)
        spread = np.maximum(here.telemetry_spread[0, :, :, action], TELEMETRY_SPREAD_FLOOR)
        log_likelihood = -0.5 * np.sum(((seen - mean) / spread) ** 2 + 2 * np.log(spread), -1)
        posterior = self.belief * np.exp(log_likelihood - log_likelihood.max())
        self.belief = posterior / posterior.sum()

    def expected_utility(self, obs: Observation) -> np.ndarray:
        """Each action's utility in expectation under the belief, after reading `obs`."""
        here = self.table.at_rate(obs.bandwidth_mbps)
        self.read(obs, here)
        utility = here.gain[0] - self.weights.energy_weight(obs.battery_soc) * here.energy[0]
        return np.einsum("sc,sca->a", self.belief, utility)

    def decide(self, obs: Observation, sim: Simulation | None = None) -> Decision:
        """The plan of the action of best expected utility."""
        action = int(np.argmax(self.expected_utility(obs)))
        return Decision(action_plan(action, self.num_blocks, self.num_exits))
