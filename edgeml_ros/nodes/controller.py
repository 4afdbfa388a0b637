"""Controller node: turns link quality and battery state into ExecutionPolicy updates.

This version runs the rule policy (edgeml_ros.policy.rule). It publishes on every change and at
least every `publish_period_s`; inputs older than `stale_after_s` count as unknown.
"""

from __future__ import annotations

import time

from rclpy.node import Node
from sensor_msgs.msg import BatteryState

from edgeml_ros.core.pipeline import ExecutionPlan
from edgeml_ros.msg import ExecutionPolicy, LinkQuality
from edgeml_ros.nodes.common import (
    LATCHED,
    Param,
    declare_params,
    exit_plan_params,
    load_model_param,
    one_of,
    param_values,
    run_node,
)
from edgeml_ros.nodes.conversions import plan_to_msg
from edgeml_ros.policy.rule import Conditions, RulePolicy

RULE_PARAMS = (
    "offload_cut",
    "exit_thresholds",
    "min_offload_mbps",
    "max_offload_rtt_ms",
    "low_battery_soc",
    "low_battery_threshold_scale",
)


class ControllerNode(Node):
    """Publishes the execution policy chosen for the current conditions."""

    def __init__(self) -> None:
        super().__init__("controller")
        model = load_model_param(
            self, "Model checkpoint whose block and exit counts the policy is for."
        ).model
        self.num_blocks, num_exits = model.num_blocks, model.num_exits
        declare_params(
            self,
            [
                Param(
                    "policy",
                    "rule",
                    "Policy that chooses the execution plan.",
                    check=one_of("rule"),
                ),
                Param(
                    "offload_cut",
                    1,
                    "Cut point used when the link allows offloading.",
                    int_range=(0, self.num_blocks),
                ),
                *exit_plan_params(num_exits),
                Param(
                    "min_offload_mbps",
                    1.0,
                    "Below this link bandwidth everything runs locally.",
                    float_range=(0.0, 10000.0),
                ),
                Param(
                    "max_offload_rtt_ms",
                    100.0,
                    "Above this RTT everything runs locally.",
                    float_range=(0.0, 100000.0),
                ),
                Param(
                    "low_battery_soc",
                    0.2,
                    "Battery fraction below which exits fire earlier.",
                    float_range=(0.0, 1.0),
                ),
                Param(
                    "low_battery_threshold_scale",
                    0.8,
                    "Factor applied to the exit thresholds on low battery.",
                    float_range=(0.0, 1.0),
                ),
                Param(
                    "stale_after_s",
                    3.0,
                    "Inputs older than this are treated as unknown.",
                    float_range=(0.1, 3600.0),
                ),
                Param(
                    "publish_period_s",
                    1.0,
                    "Longest time between two policy messages.",
                    float_range=(0.05, 60.0),
                    read_only=True,
                ),
            ],
        )
        self.policy_pub = self.create_publisher(ExecutionPolicy, "execution_policy", LATCHED)
        self.create_subscription(LinkQuality, "link_quality", self._on_link, 10)
        self.create_subscription(BatteryState, "battery_state", self._on_battery, 10)
        self._link: tuple[float, LinkQuality] | None = None
        self._battery: tuple[float, BatteryState] | None = None
        self._last: tuple[ExecutionPlan, str] | None = None
        self._last_sent = 0.0
        self.create_timer(0.1, self._update)

    def _fresh(self, stamped):
        if stamped is None:
            return None
        received, msg = stamped
        return (
            msg
            if time.monotonic() - received <= self.get_parameter("stale_after_s").value
            else None
        )

    def _on_link(self, msg: LinkQuality) -> None:
        self._link = (time.monotonic(), msg)

    def _on_battery(self, msg: BatteryState) -> None:
        self._battery = (time.monotonic(), msg)

    def conditions(self) -> Conditions:
        """What is known now, with stale inputs dropped."""
        link, battery = self._fresh(self._link), self._fresh(self._battery)
        soc = None
        if battery is not None and 0.0 <= battery.percentage <= 1.0:
            soc = float(battery.percentage)
        if link is None or link.samples == 0:
            return Conditions(battery_soc=soc)
        return Conditions(float(link.bandwidth_mbps), float(link.rtt_ms), soc)

    def _update(self) -> None:
        p = param_values(self, RULE_PARAMS)
        rule = RulePolicy(self.num_blocks, tuple(p.pop("exit_thresholds")), **p)
        choice = rule.decide(self.conditions())
        extra = param_values(self, ("exit_rule", "encoding", "compression", "policy"))
        plan = ExecutionPlan(
            choice.cut_point,
            choice.exit_thresholds,
            extra["exit_rule"],
            extra["encoding"],
            extra["compression"],
            extra["policy"],
        )
        now = time.monotonic()
        changed = self._last is None or self._last[0] != plan
        if changed or now - self._last_sent >= self.get_parameter("publish_period_s").value:
            msg = plan_to_msg(plan, choice.reason)
            msg.header.stamp = self.get_clock().now().to_msg()
            self.policy_pub.publish(msg)
            self._last_sent = now
            if changed:
                self.get_logger().info(f"policy: cut {plan.cut_point} ({choice.reason})")
            self._last = (plan, choice.reason)


def main(args: list[str] | None = None) -> int:
    """Run the controller node."""
    return run_node(ControllerNode, args)
