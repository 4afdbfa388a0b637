"""Link monitor (drone): measures the offload link and publishes LinkQuality.

Two sources: RTT probes to the base station (`link/probe`, echoed on `link/probe_echo`;
every second probe is padded to `probe_payload_bytes` to measure goodput), and the real offloads
in the perception results (payload size and round trip, from `perception/result_batch`). Probes
keep the estimate fresh while everything runs on the drone; unanswered probes count as loss.
While frames are being offloaded the offloads themselves measure the link, and probes pause so
as not to take its capacity from them; otherwise they take at most `probe_budget` of the
estimated bandwidth (at full pace a padded probe every 0.5 s is 16 kbit/s: 40 % of a 40 kbit/s
link).
"""

from __future__ import annotations

import time

from edgeml_ros.core.link import LinkEstimator, ProbeTracker
from edgeml_ros.core.offload_window import IN_FLIGHT_HORIZON_S
from edgeml_ros.core.outcome import Status, Where
from edgeml_ros.msg import LinkProbe, LinkQuality, ResultBatch
from edgeml_ros.nodes.common import PROBES, RELIABLE, ManagedNode, Param, param_values, run_node

# Probes pause while a batch with an offloaded frame's result came within this: at 40 kbit/s a
# 4 KB offload takes about 0.9 s, after a lost one the drone may wait up to the offload window's
# horizon before the next, and batches come every 0.25 s. (A padded probe queued with a tensor
# at 40 kbit/s is enough to drop the tensor.)
OFFLOADS_MEASURE_S = IN_FLIGHT_HORIZON_S + 1.0


class LinkMonitorNode(ManagedNode):
    """Publishes LinkQuality from probes and offload round trips."""

    def __init__(self) -> None:
        super().__init__(
            "link_monitor",
            [
                Param("window", 12, "Number of recent probes and offloads the estimate covers.",
                      int_range=(1, 10000), at_configure=True),
                Param("publish_period_s", 0.5, "Period of LinkQuality messages.",
                      float_range=(0.05, 60.0), at_configure=True),
                Param("probe_period_s", 0.25, "Period of link probes.",
                      float_range=(0.01, 60.0), at_configure=True),
                Param("probe_payload_bytes", 1024, "Padding of every second probe (goodput); "
                      "costs payload*4/probe_period bit/s of the link.",
                      int_range=(0, 1 << 20), at_configure=True),
                Param("probe_budget", 0.05, "Most of the estimated bandwidth (a fraction) the "
                      "probes may take; on a slow link they are spaced out to stay within it.",
                      float_range=(0.001, 1.0), at_configure=True),
                Param("probe_timeout_s", 2.0, "An unanswered probe counts as lost after this.",
                      float_range=(0.01, 600.0), at_configure=True),
            ],
        )  # fmt: skip
        self.pub = self.create_publisher(LinkQuality, "link_quality", 10)
        self.probe_pub = self.create_publisher(LinkProbe, "link/probe", PROBES)
        self.estimator: LinkEstimator | None = None
        self.probes: ProbeTracker | None = None

    def configure(self) -> None:
        """A fresh estimate with the configured window and probe settings."""
        p = param_values(self, ("window", "probe_payload_bytes", "probe_timeout_s",
                                "probe_budget", "probe_period_s"))  # fmt: skip
        self.estimator = LinkEstimator(p["window"])
        self.probes = ProbeTracker(self.estimator, p["probe_payload_bytes"], p["probe_timeout_s"],
                                   p["probe_budget"])  # fmt: skip
        self.probe_period_s = p["probe_period_s"]
        self.last_offload = float("-inf")  # when a batch last had an offloaded frame's result

    def activate(self) -> None:
        """Probe, read the results, publish the estimate."""
        self.subscribe(LinkProbe, "link/probe_echo", self._on_echo, PROBES)
        # Results a period at a time: the perception node's per-frame results wake only the
        # nodes that need each one at once.
        self.subscribe(ResultBatch, "perception/result_batch", self._on_results, RELIABLE)
        self.every(self.probe_period_s, self._probe)
        self.every(self.get_parameter("publish_period_s").value, self._publish)

    def cleanup(self) -> None:
        """Forget the estimate."""
        self.estimator, self.probes = None, None

    def diagnostic_values(self) -> dict:
        """The current estimate."""
        estimate = self.estimator.estimate()
        if estimate is None:
            return {"samples": 0}
        return {"bandwidth_mbps": f"{estimate.bandwidth_mbps:.3f}",
                "rtt_ms": f"{estimate.rtt_ms:.1f}", "loss_ratio": f"{estimate.loss_ratio:.3f}",
                "samples": estimate.samples}  # fmt: skip

    def _probe(self) -> None:
        now = time.monotonic()
        self.probes.expire(now)
        if now - self.last_offload < max(self.probe_period_s, OFFLOADS_MEASURE_S):
            return  # offloads are measuring the link
        probe = self.probes.next_probe(now)
        if probe is None:
            return  # over the probe budget
        seq, padding = probe
        msg = LinkProbe(seq=seq, payload=bytes(padding))
        msg.header.stamp = self.get_clock().now().to_msg()
        self.probe_pub.publish(msg)

    def _on_echo(self, msg: LinkProbe) -> None:
        self.probes.on_echo(msg.seq, time.monotonic())

    def _on_results(self, msg: ResultBatch) -> None:
        for r in msg.results:
            if r.offload_bytes == 0:
                continue
            self.last_offload = time.monotonic()
            if r.where == Where.BASE and r.status == Status.OK:
                self.estimator.add_transfer(r.offload_bytes, r.transfer_ms)
            elif r.where == Where.FALLBACK:
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
