"""Link monitor (drone): measures the offload link and publishes LinkQuality.

The estimate is core.link's: trains of padded probes to the base station (`link/probe`, echoed
on `link/probe_echo` with when each came) measure links the offloads leave room on; where the
offloads fill the link, the drone's offload window's delivery rate (from
`perception/result_batch`) is its rate, and trains pause so as not to take its capacity or drop
its tensors. An unanswered probe sent after the link last showed it works is an outage.
"""

from __future__ import annotations

import time

from rclpy.parameter import Parameter

from edgeml_ros.core.link import MAX_TRAIN_LENGTH, LinkEstimator, ProbeSettings
from edgeml_ros.core.outcome import Status, Where
from edgeml_ros.msg import LinkProbe, LinkQuality, ResultBatch
from edgeml_ros.nodes.common import PROBES, RELIABLE, ManagedNode, Param, param_values, run_node

# Results of frames the plan sent to the base station: answered there, or finished on the drone
# (the offload window held them back, or no reply came in time).
TO_THE_BASE = (Where.BASE, Where.FALLBACK)
# Parameter -> ProbeSettings field; each changes the probing from the next train on.
PROBE_PARAMS = {"probe_train_length": "train_length", "probe_train_ms": "train_s",
                "probe_budget": "budget", "probe_timeout_s": "timeout_s"}  # fmt: skip


class LinkMonitorNode(ManagedNode):
    """Publishes LinkQuality from probe trains and the offload window's reports."""

    def __init__(self) -> None:
        super().__init__(
            "link_monitor",
            [
                Param("window", 12, "Number of recent probe trains and offload round trips the "
                      "RTT and loss cover.", int_range=(1, 10000), at_configure=True),
                Param("publish_period_s", 0.5, "Period of LinkQuality messages.",
                      float_range=(0.05, 60.0), at_configure=True),
                Param("probe_period_s", 0.1, "How often the monitor considers sending a probe "
                      "train (the budget spaces them further).",
                      float_range=(0.01, 60.0), at_configure=True),
                Param("probe_train_length", 16, "Probes per train, sent back to back; the rate "
                      "is measured over the second half (the first may pass in the link's "
                      "burst).", int_range=(2, MAX_TRAIN_LENGTH)),
                Param("probe_train_ms", 30.0, "How long a train keeps the link busy at the "
                      "estimated rate (its probes are padded to that).",
                      float_range=(1.0, 1000.0)),
                Param("probe_budget", 0.05, "Most of the estimated bandwidth (a fraction) the "
                      "probes may take; trains are spaced out to stay within it (a train that "
                      "reads the link far off the estimate is followed at once by up to two "
                      "more).",
                      float_range=(0.001, 1.0)),
                Param("probe_timeout_s", 0.5, "How long after its time on the link and a round "
                      "trip a train's echoes are awaited; a train without any is an outage.",
                      float_range=(0.01, 600.0)),
            ],
        )  # fmt: skip
        self.add_post_set_parameters_callback(self._on_params_set)
        self.pub = self.create_publisher(LinkQuality, "link_quality", 10)
        self.probe_pub = self.create_publisher(LinkProbe, "link/probe", PROBES)
        self.estimator: LinkEstimator | None = None
        self.refused = 0  # reports and results whose numbers no link has

    def _settings(self) -> ProbeSettings:
        p = param_values(self, PROBE_PARAMS)
        p["probe_train_ms"] /= 1000.0
        return ProbeSettings(**{PROBE_PARAMS[k]: v for k, v in p.items()})

    def configure(self) -> None:
        """A fresh estimate with the configured window and probe settings."""
        self.estimator = LinkEstimator(self.get_parameter("window").value, self._settings())

    def activate(self) -> None:
        """Probe, read the results, publish the estimate."""
        self.subscribe(LinkProbe, "link/probe_echo", self._on_echo, PROBES)
        # Results a period at a time: the perception node's per-frame results wake only the
        # nodes that need each one at once.
        self.subscribe(ResultBatch, "perception/result_batch", self._on_results, RELIABLE)
        self.every(self.get_parameter("probe_period_s").value, self._probe)
        self.every(self.get_parameter("publish_period_s").value, self._publish)

    def cleanup(self) -> None:
        """Forget the estimate."""
        self.estimator = None

    def _on_params_set(self, params: list[Parameter]) -> None:
        if self.estimator is not None and any(p.name in PROBE_PARAMS for p in params):
            self.estimator.settings = self._settings()

    def diagnostic_values(self) -> dict:
        """The current estimate and what measured it."""
        estimate = self.estimator.estimate(time.monotonic())
        if estimate is None:
            return {"samples": 0, "refused": self.refused}
        return {"bandwidth_mbps": f"{estimate.bandwidth_mbps:.3f}",
                "bandwidth_source": estimate.source, "rtt_ms": f"{estimate.rtt_ms:.1f}",
                "loss_ratio": f"{estimate.loss_ratio:.3f}", "samples": estimate.samples,
                "refused": self.refused}  # fmt: skip

    def _probe(self) -> None:
        now = time.monotonic()
        self.estimator.expire(now)
        train = self.estimator.next_train(now)
        if train is None:
            return
        first, length, padding = train
        payload = bytes(padding)
        stamp = self.get_clock().now().to_msg()
        for seq in range(first, first + length):  # back to back: the link spaces them
            msg = LinkProbe(seq=seq, payload=payload)
            msg.header.stamp = stamp
            self.probe_pub.publish(msg)

    def _on_echo(self, msg: LinkProbe) -> None:
        received_s = msg.received.sec + msg.received.nanosec * 1e-9
        self.estimator.on_echo(msg.seq, received_s, time.monotonic())

    def _on_results(self, msg: ResultBatch) -> None:
        now = time.monotonic()
        try:
            for r in msg.results:
                if r.offload_bytes and r.where == Where.BASE and r.status == Status.OK:
                    self.estimator.on_round_trip(r.transfer_ms)
            wanted = [r.offload_bytes for r in msg.results if r.where in TO_THE_BASE]
            self.estimator.on_window(now, msg.offload_delivery_kbps, msg.offloads_held_back,
                                     msg.offload_replies, len(wanted),
                                     max(wanted, default=0))  # fmt: skip
        except ValueError as exc:
            self.refused += 1
            self.get_logger().warning(f"ignoring a result batch: {exc}",
                                      throttle_duration_sec=1.0)  # fmt: skip

    def _publish(self) -> None:
        estimate = self.estimator.estimate(time.monotonic())
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
