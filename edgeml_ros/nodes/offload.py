"""Offload node (base station): finishes the DNN for one or more drones.

For every drone namespace in `drone_namespaces` it serves `<ns>/offload/request` and answers on
`<ns>/offload/reply`. Each request is validated (model id, weights digest, cut point, shape,
dtype, size) before it is touched; a bad one gets a rejection that names the problem.
"""

from __future__ import annotations

import torch
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node

from edgeml_ros.core.pipeline import Status, TailServer
from edgeml_ros.msg import FeatureTensor, InferenceResult
from edgeml_ros.nodes.common import (
    RELIABLE,
    Param,
    declare_params,
    diagnostic_array,
    load_model_param,
    run_node,
)
from edgeml_ros.nodes.conversions import msg_to_request, reply_to_msg


def _topic(namespace: str, name: str) -> str:
    namespace = namespace.strip("/")
    return f"/{namespace}/{name}" if namespace else name


class OffloadNode(Node):
    """Runs the tail of the model for offload requests."""

    def __init__(self) -> None:
        super().__init__("offload")
        self.bundle = load_model_param(
            self, "Model checkpoint (.pt), loaded once at start-up; must match the drones'."
        )
        declare_params(
            self,
            [
                Param(
                    "drone_namespaces",
                    [""],
                    "Namespaces of the drones to serve ('' = this node's own namespace).",
                    read_only=True,
                ),
                Param(
                    "max_payload_bytes",
                    16 * 1024 * 1024,
                    "Largest accepted offload payload, in bytes.",
                    int_range=(1, 1 << 30),
                ),
                Param(
                    "threads",
                    2,
                    "torch CPU threads for the tail.",
                    int_range=(1, 64),
                    read_only=True,
                ),
            ],
        )
        torch.set_num_threads(self.get_parameter("threads").value)
        self.server = TailServer(self.bundle, self.get_parameter("max_payload_bytes").value)
        self.add_post_set_parameters_callback(self._on_params_set)
        group = MutuallyExclusiveCallbackGroup()
        self._drones = []
        for ns in self.get_parameter("drone_namespaces").value:
            reply_pub = self.create_publisher(
                InferenceResult, _topic(ns, "offload/reply"), RELIABLE
            )
            self.create_subscription(
                FeatureTensor,
                _topic(ns, "offload/request"),
                lambda msg, pub=reply_pub: self._on_request(msg, pub),
                RELIABLE,
                callback_group=group,
            )
            self._drones.append(ns or "(own namespace)")
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_timer(1.0, self._publish_diagnostics)
        self.get_logger().info(
            f"serving {self.bundle.meta.model_id} to drones: {', '.join(self._drones)}"
        )

    def _on_params_set(self, params) -> None:
        self.server.max_payload_bytes = self.get_parameter("max_payload_bytes").value

    def _on_request(self, msg: FeatureTensor, reply_pub) -> None:
        request = msg_to_request(msg)
        reply = self.server.handle(request)
        if reply.status != Status.OK:
            self.get_logger().warn(f"rejected frame {msg.frame_seq}: {reply.reason}")
        reply_pub.publish(reply_to_msg(reply, request))

    def _publish_diagnostics(self) -> None:
        values = {"served": self.server.served, "rejected": self.server.rejected}
        self.diag_pub.publish(
            diagnostic_array(self, "offload", values, "running", DiagnosticStatus.OK)
        )


def main(args: list[str] | None = None) -> int:
    """Run the offload node."""
    return run_node(OffloadNode, args)
