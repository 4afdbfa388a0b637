"""Battery simulator node (demos): publishes BatteryState draining with flight and perception.

Synthetic, for demos and benchmarks: the charge falls by a flight drain per second plus the
modelled energy (core.energy, a model, not a measurement) of every perception result (taken a
period at a time from `perception/result_batch`). On a real robot, remap the controller's
`battery_state` to the flight controller's battery topic instead.
"""

from __future__ import annotations

import math
import time

from sensor_msgs.msg import BatteryState

from edgeml_ros.core.battery import Battery, result_energy_j
from edgeml_ros.core.energy import DEVICE_CLASSES, device_class
from edgeml_ros.core.outcome import Where, drone_compute_ms
from edgeml_ros.msg import ResultBatch
from edgeml_ros.nodes.common import RELIABLE, ManagedNode, Param, one_of, param_values, run_node


class BatterySimNode(ManagedNode):
    """A simulated battery: BatteryState at a fixed rate."""

    diagnostic_name = "battery"

    def __init__(self) -> None:
        super().__init__(
            "battery_sim",
            [
                Param("capacity_wh", 50.0, "Battery capacity.", float_range=(0.001, 100000.0),
                      at_configure=True),
                Param("initial_soc", 0.9, "State of charge at start.", float_range=(0.0, 1.0),
                      at_configure=True),
                Param("flight_drain_per_s", 0.001, "Charge fraction flight uses per second "
                      "(accelerated for demos).", float_range=(0.0, 1.0)),
                Param("device_class", "raspberry_pi_4", "The drone computer whose energy model "
                      f"drains the battery: {', '.join(DEVICE_CLASSES)}.",
                      check=one_of(*DEVICE_CLASSES)),
                Param("publish_period_s", 0.5, "Period of BatteryState messages.",
                      float_range=(0.05, 60.0), at_configure=True),
            ],
        )  # fmt: skip
        self.pub = self.create_publisher(BatteryState, "battery_state", 10)
        self.battery: Battery | None = None

    def configure(self) -> None:
        """A battery at its initial charge."""
        p = param_values(self, ("capacity_wh", "initial_soc", "flight_drain_per_s"))
        self.battery = Battery(p["capacity_wh"], p["initial_soc"], p["flight_drain_per_s"])
        self.frames = 0

    def activate(self) -> None:
        """Drain with flight time and the results' modelled energy."""
        self.subscribe(ResultBatch, "perception/result_batch", self._on_results, RELIABLE)
        self._last = time.monotonic()
        self.every(self.get_parameter("publish_period_s").value, self._publish)

    def cleanup(self) -> None:
        """Forget the battery."""
        self.battery = None

    def diagnostic_values(self) -> dict:
        """Charge and modelled energy (synthetic)."""
        return {"soc": f"{self.battery.soc:.4f}", "frames": self.frames,
                "perception_energy_j": f"{self.battery.energy_j:.3f}",
                "synthetic": True}  # fmt: skip

    def _on_results(self, msg: ResultBatch) -> None:
        device = device_class(self.get_parameter("device_class").value)
        for r in msg.results:
            compute_ms = drone_compute_ms(r.where, r.head_ms, r.tail_ms)
            radio_ms = r.transfer_ms + (r.tail_ms if r.where == Where.BASE else 0.0)
            if not (math.isfinite(compute_ms) and math.isfinite(radio_ms)):
                self.get_logger().warning(f"ignoring result {r.frame_seq}: non-finite timings")
                continue
            energy_j = result_energy_j(device, max(0.0, compute_ms), max(0.0, radio_ms))
            self.battery.drain(0.0, energy_j)
            self.frames += 1

    def _publish(self) -> None:
        now = time.monotonic()
        self.battery.flight_drain_per_s = self.get_parameter("flight_drain_per_s").value
        soc = self.battery.drain(now - self._last)
        self._last = now
        msg = BatteryState(
            percentage=soc,
            present=True,
            power_supply_status=BatteryState.POWER_SUPPLY_STATUS_DISCHARGING,
            voltage=math.nan,
            current=math.nan,
            charge=math.nan,
            capacity=math.nan,
            design_capacity=math.nan,
            temperature=math.nan,
        )
        msg.header.stamp = self.get_clock().now().to_msg()
        self.pub.publish(msg)


def main(args: list[str] | None = None) -> int:
    """Run the battery simulator node."""
    return run_node(BatterySimNode, args)
