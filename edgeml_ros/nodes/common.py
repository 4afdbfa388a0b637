"""Shared node plumbing: managed (lifecycle) nodes, self-describing parameters, diagnostics, main.

Torch-free: the nodes that need no model (camera source, link monitor, battery simulator) start
without importing it.
"""

from __future__ import annotations

import gc
import os
import signal
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import rclpy
from builtin_interfaces.msg import Time as TimeMsg
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    SetParametersResult,
)
from rclpy.executors import MultiThreadedExecutor
from rclpy.experimental import EventsExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.publisher import Publisher
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from rclpy.timer import Timer

# Results, replies and ground truth: every message counts.
RELIABLE = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
# Offload tensors: a repair would come after the frame's deadline (the drone has finished it by
# then), and on a throttled link the reliable protocol resent fragments that were only queued
# (docs/system.md, "DDS on the radio link"). A lost tensor is a fallback on the drone.
OFFLOAD = QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT)
# The base station's reader of offload tensors: deeper, so that a burst from several drones
# waits instead of being replaced unseen (DDS reports no loss for a sample a newer one replaced).
OFFLOAD_SERVED = QoSProfile(depth=32, reliability=ReliabilityPolicy.BEST_EFFORT)
# Link probes and their echoes: a train of probes is published back to back, so the readers
# keep a whole train; a lost probe is information (the link dropped it), never repaired.
PROBES = QoSProfile(depth=64, reliability=ReliabilityPolicy.BEST_EFFORT)
# Monitoring read across the radio link (diagnostics, the base station's load): a lost report is
# replaced by the next one a second later, where a reliable reader would acknowledge the
# writer's heartbeats over the link.
MONITOR = QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT)
# Execution policy: late joiners get the latest one.
LATCHED = QoSProfile(
    depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
)
# The perception node's reader of plans: a plan that arrives together with a repaired older one
# does not replace it unseen, so every plan is checked (and a refused one counted) in order.
LATCHED_IN_ORDER = QoSProfile(
    depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
)

UNCONFIGURED = "unconfigured"


def stamp_age_s(node: Node, stamp: TimeMsg) -> float:
    """Seconds from a header stamp to now on the node's clock; 0 for an unset (zero) stamp.

    Arithmetic on the fields (rclpy's Time refuses negative seconds): a stamp from before 1970
    is merely very old.
    """
    then_ns = stamp.sec * 1_000_000_000 + stamp.nanosec
    return (node.get_clock().now().nanoseconds - then_ns) / 1e9 if then_ns else 0.0


@dataclass(frozen=True)
class Param:
    """A node parameter: default, description, optional range and validator.

    `check` raises ValueError with a reason when a value is unacceptable; the set-parameters
    callback turns that into a rejection, so `ros2 param set` prints the reason. A parameter
    `at_configure` is read when the node configures: it can be changed only while the node is
    unconfigured. A `default` that is a `Parameter.Type` declares the parameter without a value
    (the node fills it in on configure, e.g. from the model).
    """

    name: str
    default: Any
    description: str
    float_range: tuple[float, float] | None = None
    int_range: tuple[int, int] | None = None
    at_configure: bool = False
    check: Callable[[Any], None] | None = None
    dynamic_typing: bool = False  # accept a value of any type (`check` judges it)


AT_CONFIGURE_NOTE = " Read on configure: change it while the node is unconfigured."


def declare_params(node: ManagedNode, params: Sequence[Param]) -> None:
    """Declare parameters with descriptors and validate every later change."""
    by_name = {}
    for p in params:
        description = p.description + (AT_CONFIGURE_NOTE if p.at_configure else "")
        descriptor = ParameterDescriptor(description=description, dynamic_typing=p.dynamic_typing)
        if p.float_range is not None:
            descriptor.floating_point_range = [
                FloatingPointRange(from_value=p.float_range[0], to_value=p.float_range[1])
            ]
        if p.int_range is not None:
            descriptor.integer_range = [
                IntegerRange(from_value=p.int_range[0], to_value=p.int_range[1], step=1)
            ]
        declared = node.declare_parameter(p.name, p.default, descriptor)
        by_name[p.name] = p
        if p.check is not None and declared.type_ != Parameter.Type.NOT_SET:
            p.check(declared.value)

    def validate(changes: list[Parameter]) -> SetParametersResult:
        for change in changes:
            spec = by_name.get(change.name)
            if spec is None:
                continue
            if spec.at_configure and node.lifecycle_state != UNCONFIGURED:
                return SetParametersResult(
                    successful=False,
                    reason=f"{change.name}: read on configure; the node is "
                    f"{node.lifecycle_state} (ros2 lifecycle set {node.get_fully_qualified_name()}"
                    " deactivate, then cleanup, to change it)",
                )
            if spec.check is None:
                continue
            try:
                spec.check(change.value)
            except ValueError as exc:  # the reason names the parameter once
                reason = str(exc)
                if reason.split(" ", 1)[0].rstrip(":") != change.name:
                    reason = f"{change.name}: {reason}"
                return SetParametersResult(successful=False, reason=reason)
        return SetParametersResult(successful=True)

    floats = {p.name for p in params if isinstance(p.default, float) and not p.dynamic_typing}

    def integers_as_floats(changes: list[Parameter]) -> list[Parameter]:
        """`ros2 param set ... severity 2` means 2.0: a float parameter takes an integer."""
        return [
            Parameter(c.name, Parameter.Type.DOUBLE, float(c.value))
            if c.name in floats and c.type_ == Parameter.Type.INTEGER
            else c
            for c in changes
        ]

    node.add_pre_set_parameters_callback(integers_as_floats)
    node.add_on_set_parameters_callback(validate)


def param_values(node: Node, names: Sequence[str]) -> dict[str, Any]:
    """Current values of the named parameters."""
    return {n: node.get_parameter(n).value for n in names}


def one_of(*choices: str) -> Callable[[Any], None]:
    """A validator accepting only the given strings."""

    def check(value: Any) -> None:
        if value not in choices:
            raise ValueError(f"{value!r} is not one of {', '.join(choices)}")

    return check


def diagnostic_array(
    node: Node, name: str, values: dict[str, Any], message: str, level: bytes
) -> DiagnosticArray:
    """One DiagnosticStatus for this node, stamped now."""
    status = DiagnosticStatus(
        level=level,
        name=f"{node.get_fully_qualified_name()}: {name}",
        message=message,
        hardware_id=node.get_fully_qualified_name(),
        values=[KeyValue(key=k, value=str(v)) for k, v in values.items()],
    )
    array = DiagnosticArray(status=[status])
    array.header.stamp = node.get_clock().now().to_msg()
    return array


class ManagedNode(LifecycleNode):
    """A lifecycle node: parameters at construction, work built on configure, run while active.

    Subclasses implement `configure()` (load and check; an exception fails the transition with
    its message as the reason, logged and on /diagnostics, and the node stays unconfigured),
    `activate()` (create the subscriptions, timers and publishers that do the work through
    `subscribe`, `every` and `publisher`; deactivating removes them), and where needed
    `finish()` (before the work stops: answer what is in flight), `cleanup()` (release what
    configure built) and `diagnostic_values()`. Parameter and lifecycle services answer in
    every state.
    """

    diagnostic_name = "state"

    def __init__(self, name: str, params: Sequence[Param]) -> None:
        super().__init__(name)
        self._work: list[Any] = []
        self._failure = ""
        declare_params(
            self,
            [
                *params,
                Param("diagnostics_period_s", 1.0, "Period of /diagnostics updates.",
                      float_range=(0.1, 60.0), at_configure=True),
                Param("autostart", False, "Configure and activate right after start (the launch "
                      "files set it; false: wait for `ros2 lifecycle set`).", at_configure=True),
            ],
        )  # fmt: skip
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._diag_timer = self.create_timer(
            self.get_parameter("diagnostics_period_s").value, self.publish_diagnostics
        )

    # What subclasses implement.
    def configure(self) -> None:
        """Load and check what the work needs (raise with a reason to refuse)."""

    def activate(self) -> None:
        """Start the work: subscriptions and timers, through `subscribe` and `every`."""

    def finish(self) -> None:
        """Before the work stops: answer what is still in flight."""

    def cleanup(self) -> None:
        """Release what `configure` built."""

    def diagnostic_values(self) -> dict[str, Any]:
        """Counters for /diagnostics while configured."""
        return {}

    # Work that lives while the node is active.
    def subscribe(self, msg_type, topic: str, callback, qos, **kwargs):
        """A subscription that deactivating removes."""
        sub = self.create_subscription(msg_type, topic, callback, qos, **kwargs)
        self._work.append(sub)
        return sub

    def publisher(self, msg_type, topic: str, qos, **kwargs):
        """A publisher that deactivating removes."""
        pub = self.create_publisher(msg_type, topic, qos, **kwargs)
        self._work.append(pub)
        return pub

    def every(self, period_s: float, callback, **kwargs):
        """A timer that deactivating removes."""
        timer = self.create_timer(period_s, callback, **kwargs)
        self._work.append(timer)
        return timer

    def _stop_work(self) -> None:
        for entity in self._work:
            if isinstance(entity, Timer):
                entity.cancel()
                self.destroy_timer(entity)
            elif isinstance(entity, Publisher):
                self.destroy_publisher(entity)
            else:
                self.destroy_subscription(entity)
        self._work.clear()

    @property
    def lifecycle_state(self) -> str:
        """The current lifecycle state's label (unconfigured, inactive, active, ...)."""
        return self._state_machine.current_state[1]

    def _run_step(self, step: str, fn: Callable[[], None]) -> TransitionCallbackReturn:
        try:
            fn()
        except Exception as exc:  # a transition fails with its reason; the node lives on
            self._failure = f"{step} failed: {exc}"
            self.get_logger().error(self._failure)
            self.publish_diagnostics()
            return TransitionCallbackReturn.FAILURE
        self._failure = ""
        return TransitionCallbackReturn.SUCCESS

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Build the work; `diagnostics_period_s` applies from here."""
        self._diag_timer.timer_period_ns = int(
            self.get_parameter("diagnostics_period_s").value * 1e9
        )
        self._diag_timer.reset()
        result = self._run_step("configure", self.configure)
        if result == TransitionCallbackReturn.SUCCESS:
            # What lives as long as the node (the modules, the model) leaves the collector's
            # full collections, which took 86-132 ms over it and held every callback
            # (docs/system.md, "The base station's held replies").
            gc.collect()
            gc.freeze()
            self.get_logger().info("configured")
        return result

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Start the work (what started before a failure is removed again)."""
        result = self._run_step("activate", self.activate)
        if result != TransitionCallbackReturn.SUCCESS:
            self._stop_work()
        else:
            self.get_logger().info("active")
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Finish what is in flight, then stop the work."""
        self.finish()
        self._stop_work()
        return TransitionCallbackReturn.SUCCESS

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Release the work."""
        self.cleanup()
        gc.unfreeze()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Leave nothing unanswered, from whatever state."""
        if state.label == "active":
            self.on_deactivate(state)
        if state.label in ("active", "inactive"):
            self.cleanup()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        """An exception escaped a transition: drop the work and return to unconfigured."""
        self.get_logger().error(f"error while {state.label}: work stopped, node unconfigured")
        self._stop_work()
        self.cleanup()
        return TransitionCallbackReturn.SUCCESS

    def start_up(self) -> None:
        """Configure and activate when `autostart` is set; otherwise say what to do."""
        if not self.get_parameter("autostart").value:
            self.get_logger().info(
                f"unconfigured: `ros2 lifecycle set {self.get_fully_qualified_name()} configure`,"
                " then activate (or start it with -p autostart:=true)"
            )
        elif self.trigger_configure() == TransitionCallbackReturn.SUCCESS:
            self.trigger_activate()

    def publish_diagnostics(self) -> None:
        """The lifecycle state, the last failure (if any) and the node's counters."""
        state = self.lifecycle_state
        values: dict[str, Any] = {"lifecycle_state": state}
        if state in ("inactive", "active"):
            values.update(self.diagnostic_values())
        if self._failure:
            level, message = DiagnosticStatus.ERROR, self._failure
        elif state == "active":
            level, message = DiagnosticStatus.OK, "running"
        else:
            level, message = DiagnosticStatus.WARN, f"not active ({state})"
        self.diag_pub.publish(diagnostic_array(self, self.diagnostic_name, values, message,
                                               level))  # fmt: skip


_placeholder: Node | None = None  # this process's stand-in until its node exists


def join_graph_early(args: list[str] | None = None) -> None:
    """Initialize rclpy and start this process's DDS participant now, before the node's code.

    The participant comes with a process's first node, and a node's module imports its model
    code first (torch: seconds of CPU on a small computer). Processes started together, as a
    launch starts them, find each other at once only while their first, quick announcements
    overlap (config/fastdds_link.xml); one that joins after those may not see the others until
    their next announcement, 30 s later on the radio link. A hidden placeholder node starts the
    participant; run_node removes it once the real node exists.
    """
    global _placeholder
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    _placeholder = rclpy.create_node(
        f"_starting_{os.getpid()}",
        use_global_arguments=False,
        start_parameter_services=False,
        enable_rosout=False,
    )


def run_node(
    node_factory: Callable[[], ManagedNode], args: list[str] | None = None, threads: int = 1
) -> int:
    """Spin a node until SIGINT/SIGTERM, then shut it down through its lifecycle.

    One thread with rclpy's events executor (its dispatch runs in C++) unless the node has
    callback groups that must run side by side (`threads` > 1): the multi-threaded executor's
    hand-off to a thread pool makes every message later (`make bench-dds`, docs/system.md).
    Shutting down runs the node's lifecycle shutdown while the context is still up, so what is
    in flight is answered first (the perception node finishes waiting frames there).
    """
    global _placeholder
    if not rclpy.ok():
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    node = None
    executor = MultiThreadedExecutor(num_threads=threads) if threads > 1 else EventsExecutor()
    try:
        node = node_factory()
        if _placeholder is not None:  # the real node keeps the participant
            _placeholder.destroy_node()
            _placeholder = None
        executor.add_node(node)
        node.start_up()
        while not stop.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=0.2)  # a signal is handled between two calls
    finally:
        if node is not None:
            if node.lifecycle_state in ("unconfigured", "inactive", "active"):
                node.trigger_shutdown()
            executor.remove_node(node)
            node.destroy_node()
        executor.shutdown()
        rclpy.try_shutdown()
    return 0
