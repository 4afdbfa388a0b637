"""The world the policies act in: a measured model profile priced on the simulated devices."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from edgeml_ros.core.profiles import ExitTable, Profile, load_profile_conditions
from edgeml_ros.policy.sim import ModelCosts, Scenario, SimConfig, Simulation


@dataclass
class World:
    """A profiled model on simulated devices: everything a simulation needs but the scenario."""

    profile: Profile
    tables: dict[str, ExitTable]
    config: SimConfig
    costs: ModelCosts

    @classmethod
    def load(cls, profile_path: Path | str, config: SimConfig | None = None) -> World:
        """Load a profile and set up its costs under `config`."""
        config = config or SimConfig()
        profile, tables = load_profile_conditions(profile_path)
        return cls(profile, tables, config, ModelCosts(profile, config))

    def slowed(self, slowdown: float) -> World:
        """The world with its drone computing `slowdown` times slower than the profiler did."""
        config = dataclasses.replace(self.config, compute_slowdown=slowdown)
        return World(self.profile, self.tables, config, ModelCosts(self.profile, config))

    def simulation(self, scenario: Scenario) -> Simulation:
        """A fresh simulation of `scenario` (its drone's compute following its schedule)."""
        schedule = [(start, self.slowed(slow).costs) for start, slow in scenario.compute_schedule]
        costs = schedule[0][1] if schedule else self.costs
        return Simulation(costs, self.tables, self.config, scenario, schedule)
