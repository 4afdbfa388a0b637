"""A simulated drone battery for demos and the simulator: flight drain plus modelled energy.

State of charge falls by a constant flight drain (a fraction per second: motors dominate a
drone's draw) and by the energy-model joules of each frame over the capacity. Synthetic: on a
real robot, subscribe to the flight controller's BatteryState instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edgeml_ros.core.energy import DeviceEnergy


def soc_after(
    soc: float,
    seconds: float | np.ndarray,
    flight_drain_per_s: float,
    energy_j: float | np.ndarray,
    capacity_wh: float,
) -> float | np.ndarray:
    """State of charge after `seconds` of flight that also spent `energy_j` on perception."""
    spent = seconds * flight_drain_per_s + energy_j / (capacity_wh * 3600.0)
    return np.clip(soc - spent, 0.0, 1.0)


def result_energy_j(device: DeviceEnergy, drone_compute_ms: float, radio_ms: float) -> float:
    """Modelled energy of one live frame: drone compute, plus the radio on for the round trip.

    From a result message the transmit and receive parts of an offload cannot be told apart,
    so the whole round trip counts at receive power (the lower of the two).
    """
    return device.frame_energy_j(drone_compute_ms / 1000.0, 0.0, radio_ms / 1000.0)


@dataclass
class Battery:
    """A battery that drains with flight time and perception energy."""

    capacity_wh: float
    soc: float
    flight_drain_per_s: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.capacity_wh) and self.capacity_wh > 0):
            raise ValueError(f"capacity_wh must be > 0, got {self.capacity_wh}")
        if not 0.0 <= self.soc <= 1.0:
            raise ValueError(f"state of charge must be in [0, 1], got {self.soc}")
        self.energy_j = 0.0

    def drain(self, seconds: float, energy_j: float = 0.0) -> float:
        """Advance by `seconds` of flight that spent `energy_j` on perception; the new charge."""
        self.energy_j += energy_j
        self.soc = float(soc_after(self.soc, seconds, self.flight_drain_per_s, energy_j,
                                   self.capacity_wh))  # fmt: skip
        return self.soc
