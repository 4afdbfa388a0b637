"""Link monitor: estimates the offload link from the real transfers the drone makes.

It reads the perception results (their offload payload sizes and round trips) and publishes
LinkQuality: goodput, RTT and the share of offloads that missed their deadline.
"""

from __future__ import annotations

from rclpy.node import Node

from edgeml_ros.core.link import LinkEstimator
from edgeml_ros.core.pipeline import Status, Where
from edgeml_ros.msg import InferenceResult, LinkQuality
from edgeml_ros.nodes.common import RELIABLE, Param, declare_params, run_node


class LinkMonitorNode(Node):
    """Publishes LinkQuality estimated from offload round trips."""

    def __init__(self) -> None:
        super().__init__("link_monitor")
        declare_params(
            self,
            [
                Param(
                    "window",
                    20,
                    "Number of recent offloads the estimate covers.",
                    int_range=(1, 10000),
                    read_only=True,
                ),
                Param(
                    "publish_period_s",
                    0.5,
                    "Period of LinkQuality messages.",
                    float_range=(0.05, 60.0),
                    read_only=True,
                ),
            ],
        )
        self.estimator = LinkEstimator(self.get_parameter("window").value)
        self.pub = self.create_publisher(LinkQuality, "link_quality", 10)
        self.create_subscription(InferenceResult, "perception/result", self._on_result, RELIABLE)
        self.create_timer(self.get_parameter("publish_period_s").value, self._publish)

    def _on_result(self, msg: InferenceResult) -> None:
        if msg.offload_bytes == 0:
            return
        if msg.where == Where.BASE and msg.status == Status.OK:
            self.estimator.add_transfer(msg.offload_bytes, msg.transfer_ms)
        elif msg.where == Where.FALLBACK:
            self.estimator.add_loss()

    def _publish(self) -> None:
        estimate = self.estimator.estimate()
        if estimate is None:
            return
        msg = LinkQuality(
            bandwidth_mbps=estimate.bandwidth_mbps,
            rtt_ms=estimate.rtt_ms,
            loss_ratio=estimate.loss_ratio,
            samples=estimate.samples,
        )
        msg.header.stamp = self.get_clock().now().to_msg()
        self.pub.publish(msg)


def main(args: list[str] | None = None) -> int:
    """Run the link monitor node."""
    return run_node(LinkMonitorNode, args)
