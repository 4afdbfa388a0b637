"""Shared node plumbing: self-describing validated parameters, diagnostics, and `main`."""

from __future__ import annotations

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
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions

from edgeml_ros.core.checkpoint import DEFAULT_CHECKPOINT, ModelBundle, load_checkpoint
from edgeml_ros.core.codec import COMPRESSIONS, ENCODINGS
from edgeml_ros.core.runtime import EXIT_RULES, check_device

# Results, replies and ground truth: every message counts.
RELIABLE = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
# Offload tensors: a repair would come after the frame's deadline (the drone has finished it by
# then), and on a throttled link the reliable protocol resent fragments that were only queued
# (docs/system.md, "DDS on the radio link"). A lost tensor is a fallback on the drone.
OFFLOAD = QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT)
# Monitoring read across the radio link (diagnostics, the base station's load): a lost report is
# replaced by the next one a second later, where a reliable reader would acknowledge the
# writer's heartbeats over the link.
MONITOR = QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT)
# Execution policy: late joiners get the latest one.
LATCHED = QoSProfile(
    depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
)


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
    callback turns that into a rejection, so `ros2 param set` prints the reason.
    """

    name: str
    default: Any
    description: str
    float_range: tuple[float, float] | None = None
    int_range: tuple[int, int] | None = None
    read_only: bool = False
    check: Callable[[Any], None] | None = None


def declare_params(node: Node, params: Sequence[Param]) -> None:
    """Declare parameters with descriptors and validate every later change."""
    by_name = {}
    for p in params:
        descriptor = ParameterDescriptor(description=p.description, read_only=p.read_only)
        if p.float_range is not None:
            descriptor.floating_point_range = [
                FloatingPointRange(from_value=p.float_range[0], to_value=p.float_range[1])
            ]
        if p.int_range is not None:
            descriptor.integer_range = [
                IntegerRange(from_value=p.int_range[0], to_value=p.int_range[1], step=1)
            ]
        node.declare_parameter(p.name, p.default, descriptor)
        by_name[p.name] = p
        if p.check is not None:
            p.check(node.get_parameter(p.name).value)

    def validate(changes: list[Parameter]) -> SetParametersResult:
        for change in changes:
            spec = by_name.get(change.name)
            if spec is None or spec.check is None:
                continue
            try:
                spec.check(change.value)
            except ValueError as exc:
                return SetParametersResult(successful=False, reason=f"{change.name}: {exc}")
        return SetParametersResult(successful=True)

    node.add_on_set_parameters_callback(validate)


def load_model_param(node: Node, description: str) -> ModelBundle:
    """Declare the read-only `checkpoint` parameter and load the model it names."""
    declare_params(
        node, [Param("checkpoint", str(DEFAULT_CHECKPOINT), description, read_only=True)]
    )
    return load_checkpoint(node.get_parameter("checkpoint").value)


def device_param() -> Param:
    """The read-only torch `device` parameter (cpu, cuda, cuda:N), checked against the machine."""
    return Param("device", "cpu", "torch device the model runs on: cpu, cuda or cuda:N.",
                 read_only=True, check=check_device)  # fmt: skip


def param_values(node: Node, names: Sequence[str]) -> dict[str, Any]:
    """Current values of the named parameters."""
    return {n: node.get_parameter(n).value for n in names}


def one_of(*choices: str) -> Callable[[Any], None]:
    """A validator accepting only the given strings."""

    def check(value: Any) -> None:
        if value not in choices:
            raise ValueError(f"{value!r} is not one of {', '.join(choices)}")

    return check


def exit_plan_params(num_exits: int) -> list[Param]:
    """The execution-plan parameters that perception and controller share."""

    def check_thresholds(value: Any) -> None:
        if len(value) != num_exits:
            raise ValueError(f"needs {num_exits} values (one per exit), got {len(value)}")
        if any(not 0.0 <= t <= 10.0 for t in value):
            raise ValueError(f"values must lie in [0, 10], got {list(value)}")

    return [
        Param(
            "exit_thresholds",
            [0.9] * num_exits,
            "Confidence threshold per exit, final exit last (ignored); > 1 disables an exit.",
            check=check_thresholds,
        ),
        Param(
            "exit_rule",
            "max_prob",
            "Exit confidence score: max_prob or entropy.",
            check=one_of(*EXIT_RULES),
        ),
        Param(
            "encoding",
            "fp32",
            "Offloaded tensor encoding: fp32, fp16 or int8.",
            check=one_of(*ENCODINGS),
        ),
        Param(
            "compression",
            "none",
            "Lossless compression of offloads: none, zlib or zstd.",
            check=one_of(*COMPRESSIONS),
        ),
    ]


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


def run_node(
    node_factory: Callable[[], Node], args: list[str] | None = None, threads: int = 1
) -> int:
    """Spin a node until SIGINT/SIGTERM, then shut down cleanly.

    One thread with rclpy's events executor (its dispatch runs in C++) unless the node has
    callback groups that must run side by side (`threads` > 1): the multi-threaded executor's
    hand-off to a thread pool makes every message later (`make bench-dds`, docs/system.md).

    A node may define `on_shutdown()`. It runs before the node is destroyed, while the context
    is still up and publishers still work (the perception node finishes in-flight frames there).
    """
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    node = None
    executor = MultiThreadedExecutor(num_threads=threads) if threads > 1 else EventsExecutor()
    try:
        node = node_factory()
        executor.add_node(node)
        while not stop.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=0.2)  # a signal is handled between two calls
    finally:
        if node is not None:
            if hasattr(node, "on_shutdown"):
                node.on_shutdown()
            executor.remove_node(node)
            node.destroy_node()
        executor.shutdown()
        rclpy.try_shutdown()
    return 0
