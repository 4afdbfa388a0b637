"""Controller node: turns link quality, battery state and perception telemetry into plans.

A managed node: configure loads the profile and the policy, activate starts deciding. It runs
a learned policy (`rl`: PPO, `dqn`) or a named baseline through the `policy`
parameter (edgeml_ros.policy.live), on the same observation the policy was trained on in the
simulator. It publishes ExecutionPolicy on every change and at least every
`publish_period_s`. Without a fresh link estimate or battery reading it falls back to the safe
plan (everything on the drone); below `battery_critical_soc` it answers at the first exit.
A reading that cannot be true is ignored with a warning that counts them (and a count of each
kind in its shutdown log). Results from a model other than the profile's (their batches carry
the perception node's weights digest) stop the plans, with the reason on /diagnostics.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from sensor_msgs.msg import BatteryState

from edgeml_ros.core.checkpoint import OFFLOAD_DIGEST_CHARS, digest_matches
from edgeml_ros.core.codec import COMPRESSIONS, ENCODINGS
from edgeml_ros.core.outcome import Status, drone_compute_ms
from edgeml_ros.core.paths import POLICY_DIR
from edgeml_ros.core.plan import MAX_AUDIT_SHARE, ExecutionPlan, with_tensor_transport
from edgeml_ros.core.profiles import DEFAULT_PROFILE
from edgeml_ros.core.untrusted import shown
from edgeml_ros.msg import ExecutionPolicy, LinkQuality, ResultBatch
from edgeml_ros.nodes.common import (
    LATCHED,
    RELIABLE,
    ManagedNode,
    Param,
    one_of,
    param_values,
    run_node,
    stamp_age_s,
)
from edgeml_ros.nodes.conversions import plan_to_msg
from edgeml_ros.policy.live import LiveController
from edgeml_ros.policy.registry import named_policies, policy_names, training_differences
from edgeml_ros.policy.sim import SimConfig
from edgeml_ros.policy.world import World

CONTROLLER_PARAMS = ("policy", "stale_after_s", "battery_critical_soc", "deadline_ms")
LIVE_POLICIES = policy_names(live_only=True)


class ControllerNode(ManagedNode):
    """Publishes the execution policy chosen for the current conditions."""

    def __init__(self) -> None:
        self.controller: LiveController | None = None  # the policy check reads it
        super().__init__(
            "controller",
            [
                Param("profile", str(DEFAULT_PROFILE), "Measured profile of the drone's model "
                      "(edgeml profile); the policies are trained for it.", at_configure=True),
                Param("policy_dir", str(POLICY_DIR), "Directory of the trained policies.",
                      at_configure=True),
                Param("device_class", "", "The drone computer (energy model and compute "
                      "speed) the policies plan for; empty: the one the profile names.",
                      at_configure=True),
                Param("fps", 10.0, "Nominal camera rate, until results arrive.",
                      float_range=(0.1, 1000.0), at_configure=True),
                Param("window_s", 1.0, "Decision period and telemetry window.",
                      float_range=(0.1, 60.0), at_configure=True),
                Param("publish_period_s", 1.0, "Longest time between two policy messages.",
                      float_range=(0.05, 60.0), at_configure=True),
                Param("policy", "rl", f"Policy choosing the plan: {', '.join(LIVE_POLICIES)}.",
                      check=self._check_policy),
                Param("deadline_ms", 100.0, "Frame deadline the policies plan for.",
                      float_range=(1.0, 60000.0)),
                Param("stale_after_s", 3.0, "Inputs older than this count as missing.",
                      float_range=(0.1, 3600.0)),
                Param("battery_critical_soc", 0.1, "Below this battery charge: first exit, on "
                      "the drone.", float_range=(0.0, 1.0)),
                Param("encoding", "fp32", "Offloaded tensor encoding: fp32, fp16 or int8. A "
                      "policy that ships the camera frame itself (cloud_png, cloud_jpeg) sends "
                      "it in the image encoding it chose instead, uncompressed.",
                      check=one_of(*ENCODINGS)),
                Param("compression", "none", "Lossless compression of offloaded tensors: none, "
                      "zlib or zstd.", check=one_of(*COMPRESSIONS)),
                Param("audit_share", 0.0, "Audit this share of the drone's early answers under "
                      "every plan (the base station's final exit tells whether they agreed: "
                      "label-free accuracy, in perception/result_batch); a policy that audits "
                      "(apparate) keeps its own share; 0: only those.",
                      float_range=(0.0, MAX_AUDIT_SHARE)),
            ],
        )  # fmt: skip
        self.add_post_set_parameters_callback(self._on_params_set)
        self.policy_pub = self.create_publisher(ExecutionPolicy, "execution_policy", LATCHED)
        self._last: ExecutionPlan | None = None
        self._warned: dict[str, float] = {}  # kind of reading -> when its refusal was logged
        self._last_sent = 0.0
        self._model_mismatch = ""  # why no plans go out, while the models differ

    def configure(self) -> None:
        """Load the profile and the policy."""
        self.controller = self._build()
        self.get_logger().info(
            f"policy {self.controller.policy.name} for {self.controller.world.profile.model_id}"
        )

    def activate(self) -> None:
        """Read the link, the battery and the results; decide every window."""
        self._last = None
        self.subscribe(LinkQuality, "link_quality", self._on_link, 10)
        self.subscribe(BatteryState, "battery_state", self._on_battery, 10)
        self.subscribe(ResultBatch, "perception/result_batch", self._on_results, RELIABLE)
        self.every(self.get_parameter("window_s").value, self._update)

    def cleanup(self) -> None:
        """Release the policy."""
        self.controller = None

    def diagnostic_values(self) -> dict:
        """The policy and the plan last published."""
        plan = self._last
        refused = {f"refused_{kind}": n for kind, n in self.controller.refused.items()}
        return {"policy": self.controller.policy.name,
                "cut_point": "-" if plan is None else plan.cut_point,
                "model_mismatch": self._model_mismatch or "none", **refused}  # fmt: skip

    def _world(self, deadline_ms: float) -> World:
        p = param_values(self, ("profile", "fps", "device_class"))
        config = SimConfig(fps=p["fps"], deadline_ms=deadline_ms,
                           device_class=p["device_class"] or None)  # fmt: skip
        return World.load(p["profile"], config)

    def _check_policy(self, name: str) -> None:
        one_of(*LIVE_POLICIES)(name)
        if self.controller is not None:  # load it now, so a broken policy is refused
            named_policies(self.controller.world, [name], Path(self._param("policy_dir")))

    def _param(self, name: str):
        return self.get_parameter(name).value

    def _build(self) -> LiveController:
        p = param_values(self, CONTROLLER_PARAMS)
        world = self._world(p["deadline_ms"])
        policy_dir = Path(self._param("policy_dir"))
        policy = named_policies(world, [p["policy"]], policy_dir)
        if (differences := training_differences(p["policy"], world, policy_dir)) is not None:
            self.get_logger().warning(differences)
        return LiveController(world, policy[p["policy"]], self._param("window_s"),
                              p["stale_after_s"], p["battery_critical_soc"])  # fmt: skip

    def _on_params_set(self, params) -> None:
        if self.controller is not None and {p.name for p in params} & set(CONTROLLER_PARAMS):
            previous, self.controller = self.controller, self._build()
            self.controller.keep_readings(previous)
            self.get_logger().info(f"now running policy {self.controller.policy.name}")

    def _ignore(self, kind: str, what: str, exc: ValueError) -> None:
        """Warn of a refused reading, at most once a second for each kind."""
        now = time.monotonic()
        if now - self._warned.get(kind, float("-inf")) >= 1.0:
            self._warned[kind] = now
            count = self.controller.refused[kind]
            self.get_logger().warning(f"ignoring {what} ({count} so far): {exc}")

    def _on_link(self, msg: LinkQuality) -> None:
        if msg.samples == 0:
            return
        try:
            self.controller.on_link(time.monotonic(), msg.bandwidth_mbps, msg.rtt_ms)
        except ValueError as exc:
            self._ignore("link", "LinkQuality", exc)

    def _on_battery(self, msg: BatteryState) -> None:
        try:
            self.controller.on_battery(time.monotonic(), float(msg.percentage))
        except ValueError as exc:
            self._ignore("battery", "BatteryState", exc)

    def _on_results(self, msg: ResultBatch) -> None:
        if not self._same_model(msg.weights_digest):
            return
        now = time.monotonic()
        if msg.audits_answered:
            try:
                self.controller.on_audits(now, msg.audits_answered, msg.audits_agreeing)
            except ValueError as exc:
                self._ignore("audits", "the batch's audits", exc)
        for r in msg.results:
            if r.status != Status.OK:
                continue
            captured = now - max(0.0, stamp_age_s(self, r.header.stamp))  # the window counts
            try:  # the frames captured in it
                self.controller.on_result(
                    captured,
                    r.total_ms / 1000.0,
                    r.confidence,
                    r.exit_index,
                    r.where,
                    r.auditable,
                    drone_compute_ms(r.where, r.head_ms, r.tail_ms) / 1000.0,
                    r.profiled_ms / 1000.0,
                )
            except ValueError as exc:
                self._ignore("result", f"result {r.frame_seq}", exc)

    def _same_model(self, digest: str) -> bool:
        """Whether the perception node's model (`digest`) is the profile's.

        A mismatch stops the plans, with the reason in the log and on /diagnostics, until the
        results come from the profile's model again.
        """
        profile = self.controller.world.profile
        if digest_matches(digest, profile.weights_digest):
            if self._model_mismatch:
                self.get_logger().info(f"the perception node runs {profile.model_id} again")
            self._model_mismatch = ""
            return True
        mismatch = (
            f"the perception node runs weights {shown(digest, 30)}, but the profile and its "
            f"policies are for {profile.model_id} "
            f"({profile.weights_digest[:OFFLOAD_DIGEST_CHARS]}...): no plans until the profile "
            "fits (set `profile` to the perception model's and configure again)"
        )
        if mismatch != self._model_mismatch:
            self.get_logger().error(mismatch)
        self._model_mismatch = mismatch
        return False

    def _update(self) -> None:
        if self._model_mismatch:
            return
        decision = self.controller.decide(time.monotonic())
        transport = with_tensor_transport(
            decision.plan, **param_values(self, ("encoding", "compression"))
        )
        audit_share = transport.audit_share or self._param("audit_share")
        plan = dataclasses.replace(
            transport, policy_name=self.controller.policy.name, audit_share=audit_share
        )
        now = time.monotonic()
        changed = plan != self._last
        if changed or now - self._last_sent >= self._param("publish_period_s"):
            digest = self.controller.world.profile.weights_digest
            msg = plan_to_msg(plan, digest, f"[{decision.mode}] {decision.reason}")
            msg.header.stamp = self.get_clock().now().to_msg()
            self.policy_pub.publish(msg)
            self._last_sent = now
            if changed:
                thresholds = [round(t, 3) for t in plan.exit_thresholds]
                self.get_logger().info(
                    f"plan: cut {plan.cut_point}, thresholds {thresholds} ({decision.reason})"
                )
            self._last = plan

    def finish(self) -> None:
        """Log the readings refused, by kind."""
        self.get_logger().info(f"stopping: refused {dict(self.controller.refused)}")


def main(args: list[str] | None = None) -> int:
    """Run the controller node."""
    return run_node(ControllerNode, args)
