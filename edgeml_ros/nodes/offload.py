"""Offload node (base station): finishes the DNN for one or more drones.

A managed node: configure loads the checkpoint (it must be the drones'), activate serves. For
every drone namespace in `drone_namespaces` it serves `<ns>/offload/request` and answers on
`<ns>/offload/reply`, and echoes the link monitor's probes (`<ns>/link/probe` ->
`<ns>/link/probe_echo`, without their padding). Each request is validated (model id, weights
digest, cut point, shape, dtype, size) before it is touched; a bad one gets a rejection that
names the problem. A request already answered (same drone, frame_seq and stamp) is dropped and
counted, as are requests DDS lost on the way (its message-lost event), in diagnostics. It
publishes its load on `offload/load` every second.

`emulated_rtt_ms` (demos and benchmarks only, 0 on a real link) holds every reply and echo that
long before sending it, all on one thread (core.delay_line): the link shaper's stand-in for
network delay where netem is missing. Deactivating sends what it still holds.
"""

from __future__ import annotations

import functools
import time

import torch
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.subscription import MessageInfo

from edgeml_ros.core.checkpoint import load_checkpoint
from edgeml_ros.core.delay_line import DelayLine
from edgeml_ros.core.outcome import Status
from edgeml_ros.core.pipeline import TailServer
from edgeml_ros.msg import BaseStationLoad, FeatureTensor, InferenceResult, LinkProbe
from edgeml_ros.nodes.common import (
    OFFLOAD_SERVED,
    PROBES,
    RELIABLE,
    ManagedNode,
    Param,
    param_values,
    run_node,
)
from edgeml_ros.nodes.conversions import msg_to_request, reply_to_msg
from edgeml_ros.nodes.model_params import checkpoint_param, device_param


def _topic(namespace: str, name: str) -> str:
    namespace = namespace.strip("/")
    return f"/{namespace}/{name}" if namespace else name


class OffloadNode(ManagedNode):
    """Runs the tail of the model for offload requests."""

    diagnostic_name = "offload"

    def __init__(self) -> None:
        super().__init__(
            "offload",
            [
                checkpoint_param("Model checkpoint (.pt) loaded on configure; must be the "
                                 "drones'."),
                Param("drone_namespaces", [""], "Namespaces of the drones to serve ('' = this "
                      "node's own namespace).", at_configure=True),
                Param("max_payload_bytes", 0, "Largest accepted offload payload, in bytes (0: "
                      "the most the model's tensors take, fp32 at its largest cut point, "
                      "compressed at worst).", int_range=(0, 1 << 30)),
                device_param(),
                Param("emulated_rtt_ms", 0.0, "Emulation only (0 on a real link): hold replies "
                      "and probe echoes this long, to add round-trip delay to a shaped link.",
                      float_range=(0.0, 10000.0)),
                Param("threads", 1, "torch CPU threads for the tail. More pays only on a base "
                      "station with cores to spare: with its two cores busy, the Fashion-MNIST "
                      "tail took up to 0.5 s on 2 threads against 14 ms on 1 "
                      "(tools/tail_threads.py).", int_range=(1, 64), at_configure=True),
            ],
        )  # fmt: skip
        self.server: TailServer | None = None
        self.add_post_set_parameters_callback(self._on_params_set)
        self.load_pub = self.create_publisher(BaseStationLoad, "offload/load", 10)
        self._drones: list[str] = []
        self._load_since = time.monotonic()
        self._load = BaseStationLoad()
        self._held = DelayLine(self._held_not_sent, "emulated-rtt")

    def configure(self) -> None:
        """Load the checkpoint and build the tail server."""
        p = param_values(self, ("checkpoint", "max_payload_bytes", "device", "threads"))
        bundle = load_checkpoint(p["checkpoint"])
        torch.set_num_threads(p["threads"])
        self.server = TailServer(bundle, p["max_payload_bytes"], p["device"])
        self._drones = [ns or "(own namespace)"
                        for ns in self.get_parameter("drone_namespaces").value]  # fmt: skip

    def activate(self) -> None:
        """Serve every drone's requests and probes; report the load every second."""
        tails = MutuallyExclusiveCallbackGroup()
        probes = MutuallyExclusiveCallbackGroup()  # echoes never wait behind a tail
        for ns in self.get_parameter("drone_namespaces").value:
            echo_pub = self.publisher(LinkProbe, _topic(ns, "link/probe_echo"), PROBES)
            self.subscribe(LinkProbe, _topic(ns, "link/probe"),
                           functools.partial(self._echo, pub=echo_pub), PROBES,
                           callback_group=probes)  # fmt: skip
            reply_pub = self.publisher(InferenceResult, _topic(ns, "offload/reply"), RELIABLE)
            self.subscribe(
                FeatureTensor,
                _topic(ns, "offload/request"),
                lambda msg, pub=reply_pub, ns=ns: self._on_request(msg, pub, ns),
                OFFLOAD_SERVED,
                callback_group=tails,
                event_callbacks=SubscriptionEventCallbacks(
                    message_lost=lambda info: self.server.count_lost(info.total_count_change)
                ),
            )
        self._load_since = time.monotonic()
        self.every(1.0, self._publish_load, callback_group=tails)
        self.get_logger().info(
            f"serving {self.server.bundle.meta.model_id} to drones: {', '.join(self._drones)}"
        )

    def finish(self) -> None:
        """Send the replies and echoes the emulated round trip still holds."""
        self._held.drain()

    def cleanup(self) -> None:
        """Release the model."""
        self.server = None

    def _on_params_set(self, params) -> None:
        if self.server is not None:
            self.server.max_payload_bytes = self.get_parameter("max_payload_bytes").value

    def _on_request(self, msg: FeatureTensor, reply_pub, drone: str) -> None:
        request = msg_to_request(msg)
        reply = self.server.handle(request, drone)
        if reply is None:
            self.get_logger().warning(
                f"dropped a duplicate of frame {msg.frame_seq} ({self.server.duplicates} so far)",
                throttle_duration_sec=1.0,
            )
            return
        if reply.status != Status.OK:
            self.get_logger().warning(
                f"rejected frame {msg.frame_seq}: {reply.reason}", throttle_duration_sec=1.0
            )
        self._send(reply_pub, reply_to_msg(reply, request))

    def _echo(self, probe: LinkProbe, info: MessageInfo, pub) -> None:
        """Echo a probe without its padding, stamped with when DDS received it.

        The stamp times the train: the executor's wake-up and the emulated RTT's timer add no
        jitter to it.
        """
        sec, nanosec = divmod(info["received_timestamp"], 1_000_000_000)
        echo = LinkProbe(header=probe.header, seq=probe.seq)
        echo.received.sec, echo.received.nanosec = sec, nanosec
        self._send(pub, echo)

    def _send(self, pub, msg) -> None:
        """Publish now, or after `emulated_rtt_ms` when the link shaper asks for delay."""
        delay_s = self.get_parameter("emulated_rtt_ms").value / 1000.0
        if delay_s <= 0:
            pub.publish(msg)
            return
        self._held.call_later(delay_s, pub.publish, msg)  # publishing is thread-safe

    def _held_not_sent(self, error: Exception) -> None:
        self.get_logger().warning(f"a held reply or echo was not sent: {error}",
                                  throttle_duration_sec=1.0)  # fmt: skip

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
        self._load = load

    def diagnostic_values(self) -> dict:
        """Requests served, rejected, duplicated and lost on the way; the last second's load."""
        return {"served": self.server.served, "rejected": self.server.rejected,
                "duplicates": self.server.duplicates,
                "lost_in_transport": self.server.lost_in_transport,
                "utilization": f"{self._load.utilization:.3f}",
                "requests_per_s": f"{self._load.requests_per_s:.1f}"}  # fmt: skip


def main(args: list[str] | None = None) -> int:
    """Run the offload node."""
    return run_node(OffloadNode, args, threads=2)  # probe echoes never wait behind a tail
