"""Battery simulator node (demos): publishes BatteryState draining with flight and perception.

Synthetic, for demos and benchmarks: the charge falls by a flight drain per second plus the
modelled energy (core.energy, a model, not a measurement) of every perception result (taken a
period at a time from `perception/result_batch`). On a real robot, remap the controller's
`battery_state` to the flight controller's battery topic instead.
"""

from __future__ import annotations

import math
import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.node import Node
from sensor_msgs.msg import BatteryState

from edgeml_ros.core.battery import Battery, result_energy_j
from edgeml_ros.core.energy import DEVICE_CLASSES, device_class
from edgeml_ros.core.pipeline import Where
from edgeml_ros.msg import ResultBatch
from edgeml_ros.nodes.common import (
    RELIABLE,
    Param,
    declare_params,
    diagnostic_array,
    one_of,
    run_node,
)


class BatterySimNode(Node):
    """A simulated battery: BatteryState at a fixed rate."""

    def __init__(self) -> None:
        super().__init__("battery_sim")
        declare_params(
            self,
            [
                Param("capacity_wh", 50.0, "Battery capacity.", float_range=(0.001, 100000.0),
                      read_only=True),
                Param("initial_soc", 0.9, "State of charge at start.", float_range=(0.0, 1.0),
                      read_only=True),
                Param("flight_drain_per_s", 0.001, "Charge fraction flight uses per second "
                      "(accelerated for demos).", float_range=(0.0, 1.0)),
                Param("device_class", "jetson_nano", "Energy-model device class of the drone.",
                      check=one_of(*DEVICE_CLASSES)),
                Param("publish_period_s", 0.5, "Period of BatteryState messages.",
                      float_range=(0.05, 60.0), read_only=True),
            ],
        )  # fmt: skip
        self.battery = Battery(
            self.get_parameter("capacity_wh").value,
            self.get_parameter("initial_soc").value,
            self.get_parameter("flight_drain_per_s").value,
        )
        self.frames = 0
        self.pub = self.create_publisher(BatteryState, "battery_state", 10)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_subscription(ResultBatch, "perception/result_batch", self._on_results,
                                 RELIABLE)  # fmt: skip
        self._last = time.monotonic()
        self.create_timer(self.get_parameter("publish_period_s").value, self._publish)

    def _on_results(self, msg: ResultBatch) -> None:
        device = device_class(self.get_parameter("device_class").value)
        for r in msg.results:
            compute_ms = r.head_ms + (r.tail_ms if r.where == Where.FALLBACK else 0.0)
            radio_ms = r.transfer_ms + (r.tail_ms if r.where == Where.BASE else 0.0)
            if not (math.isfinite(compute_ms) and math.isfinite(radio_ms)):
                self.get_logger().warn(f"ignoring result {r.frame_seq}: non-finite timings")
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
        values = {
            "soc": f"{soc:.4f}",
            "frames": self.frames,
            "perception_energy_j": f"{self.battery.energy_j:.3f}",
            "synthetic": True,
        }
        self.diag_pub.publish(
            diagnostic_array(self, "battery", values, "simulated", DiagnosticStatus.OK)
        )


def main(args: list[str] | None = None) -> int:
    """Run the battery simulator node."""
    return run_node(BatterySimNode, args)
