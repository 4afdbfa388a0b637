"""Offload node (base station): finishes the DNN for one or more drones.

For every drone namespace in `drone_namespaces` it serves `<ns>/offload/request` and answers on
`<ns>/offload/reply`, and echoes the link monitor's probes (`<ns>/link/probe` ->
`<ns>/link/probe_echo`, without their padding). Each request is validated (model id, weights
digest, cut point, shape, dtype, size) before it is touched; a bad one gets a rejection that
names the problem. A request already answered (same drone, frame_seq and stamp) is dropped and
counted, as are requests DDS lost on the way (its message-lost event), in diagnostics. It
publishes its load on `offload/load` every second.

`emulated_rtt_ms` (demos and benchmarks only, 0 on a real link) holds every reply and echo that
long before sending it: the link shaper's stand-in for network delay where netem is missing.
"""

from __future__ import annotations

import threading
import time

import torch
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.node import Node

from edgeml_ros.core.pipeline import Status, TailServer
from edgeml_ros.msg import BaseStationLoad, FeatureTensor, InferenceResult, LinkProbe
from edgeml_ros.nodes.common import (
    OFFLOAD,
    RELIABLE,
    Param,
    declare_params,
    device_param,
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
                    0,
                    "Largest accepted offload payload, in bytes (0: the most the model's "
                    "tensors take, fp32 at its largest cut point, compressed at worst).",
                    int_range=(0, 1 << 30),
                ),
                device_param(),
                Param(
                    "emulated_rtt_ms",
                    0.0,
                    "Emulation only (0 on a real link): hold replies and probe echoes this long, "
                    "to add round-trip delay to a shaped link.",
                    float_range=(0.0, 10000.0),
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
        self.server = TailServer(
            self.bundle,
            self.get_parameter("max_payload_bytes").value,
            self.get_parameter("device").value,
        )
        self.add_post_set_parameters_callback(self._on_params_set)
        group = MutuallyExclusiveCallbackGroup()
        probes = MutuallyExclusiveCallbackGroup()  # echoes never wait behind a tail
        self._drones = []
        for ns in self.get_parameter("drone_namespaces").value:
            echo_pub = self.create_publisher(LinkProbe, _topic(ns, "link/probe_echo"), 10)
            self.create_subscription(
                LinkProbe,
                _topic(ns, "link/probe"),
                lambda msg, pub=echo_pub: self._send(
                    pub, LinkProbe(header=msg.header, seq=msg.seq)
                ),
                10,
                callback_group=probes,
            )
            reply_pub = self.create_publisher(
                InferenceResult, _topic(ns, "offload/reply"), RELIABLE
            )
            self.create_subscription(
                FeatureTensor,
                _topic(ns, "offload/request"),
                lambda msg, pub=reply_pub, ns=ns: self._on_request(msg, pub, ns),
                OFFLOAD,
                callback_group=group,
                event_callbacks=SubscriptionEventCallbacks(
                    message_lost=lambda info: self.server.count_lost(info.total_count_change)
                ),
            )
            self._drones.append(ns or "(own namespace)")
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.load_pub = self.create_publisher(BaseStationLoad, "offload/load", 10)
        self._load_since = time.monotonic()
        self.create_timer(1.0, self._publish_load, callback_group=group)
        self.get_logger().info(
            f"serving {self.bundle.meta.model_id} to drones: {', '.join(self._drones)}"
        )

    def _on_params_set(self, params) -> None:
        self.server.max_payload_bytes = self.get_parameter("max_payload_bytes").value

    def _on_request(self, msg: FeatureTensor, reply_pub, drone: str) -> None:
        request = msg_to_request(msg)
        reply = self.server.handle(request, drone)
        if reply is None:
            self.get_logger().warn(
                f"dropped a duplicate of frame {msg.frame_seq} ({self.server.duplicates} so far)",
                throttle_duration_sec=1.0,
            )
            return
        if reply.status != Status.OK:
            self.get_logger().warn(
                f"rejected frame {msg.frame_seq}: {reply.reason}", throttle_duration_sec=1.0
            )
        self._send(reply_pub, reply_to_msg(reply, request))

    def _send(self, pub, msg) -> None:
        """Publish now, or after `emulated_rtt_ms` when the link shaper asks for delay."""
        delay_s = self.get_parameter("emulated_rtt_ms").value / 1000.0
        if delay_s <= 0:
            pub.publish(msg)
            return
        threading.Timer(delay_s, pub.publish, (msg,)).start()  # publishing is thread-safe

    def _publish_load(self) -> None:
        now = time.monotonic()
        period, self._load_since = now - self._load_since, now
        requests, busy_s, service_ms = self.server.take_load()
        load = BaseStationLoad(
            utilization=busy_s / period,
            requests_per_s=requests / period,
            service_ms_p50=service_ms,
            drones=len(self._drones),
        )
        load.header.stamp = self.get_clock().now().to_msg()
        self.load_pub.publish(load)
        values = {"served": self.server.served, "rejected": self.server.rejected,
                  "duplicates": self.server.duplicates,
                  "lost_in_transport": self.server.lost_in_transport,
                  "utilization": f"{load.utilization:.3f}",
                  "requests_per_s": f"{load.requests_per_s:.1f}"}  # fmt: skip
        self.diag_pub.publish(
            diagnostic_array(self, "offload", values, "running", DiagnosticStatus.OK)
        )


def main(args: list[str] | None = None) -> int:
    """Run the offload node."""
    return run_node(OffloadNode, args, threads=2)  # probe echoes never wait behind a tail
