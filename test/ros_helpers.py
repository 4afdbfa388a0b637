"""Shared pieces of the ROS tests: QoS, defaults, one node started directly, a camera peer.

Tests of one node start its executable directly (`NodeProcess`, what `ros2 run` starts); tests
of several nodes start them through the launch files (`LaunchProcess`), as the demo does.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from ament_index_python.packages import get_package_prefix
from edgeml_ros.msg import InferenceResult
from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from edgeml_ros.bringup.demo import DemoConfig, DemoModel
from edgeml_ros.bringup.processes import PACKAGE, share_file
from edgeml_ros.core.checkpoint import TINY_CHECKPOINT
from edgeml_ros.core.profiles import DEFAULT_PROFILE

RELIABLE = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
OK, BAD_INPUT, REJECTED, STALE = (
    InferenceResult.STATUS_OK,
    InferenceResult.STATUS_BAD_INPUT,
    InferenceResult.STATUS_OFFLOAD_REJECTED,
    InferenceResult.STATUS_STALE,
)
WHERE_BASE = InferenceResult.WHERE_BASE
DRONE_YAML, BASE_YAML = "drone.yaml", "base_station.yaml"
# The camera subscription defaults to best-effort sensor QoS (a late frame is dropped by DDS
# before it reaches the node). Tests that count frames override it to reliable, through the
# QoS override parameters any user has.
RELIABLE_CAMERA = {
    "qos_overrides./camera/image_raw.subscription.reliability": "reliable",
    "qos_overrides./camera/image_raw.subscription.depth": 100,
}


# The tests run the tiny four-block model (exits after blocks 0 and 1, final after block 3).
TINY = {"checkpoint": str(TINY_CHECKPOINT)}
# The weights digest of the model a plan or a result batch is for: the tiny model's, and the
# default profile's (the controller's)
TINY_DIGEST = torch.load(TINY_CHECKPOINT, weights_only=True)["meta"]["weights_digest"]
PROFILE_DIGEST = json.loads(DEFAULT_PROFILE.read_text())["weights_digest"]
THRESHOLDS = [0.95, 0.95, 0.0]
# Frames the tests send in bursts may wait behind each other on this 2-core machine: the tests
# that count results keep them (a stale-frame test sets its own limit).
DEFAULTS = {
    "perception": {**TINY, "cut_point": 2, "exit_thresholds": THRESHOLDS,
                   "max_frame_age_ms": 60000.0},
}  # fmt: skip


def _ros_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_ros_value(v) for v in value) + "]"
    if isinstance(value, str):
        return f"'{value}'"
    return repr(value)


class NodeProcess:
    """One node executable running as a child process (`env`: added to this one's environment).

    The node brings itself to active (its `autostart` parameter) unless `overrides` say not.
    """

    def __init__(
        self,
        executable: str,
        domain_id: int,
        params_file: Path | None = None,
        overrides: dict[str, Any] | None = None,
        namespace: str = "",
        log: IO | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        exe = Path(get_package_prefix(PACKAGE)) / "lib" / PACKAGE / executable
        cmd = [str(exe), "--ros-args"]
        if params_file is not None:
            cmd += ["--params-file", str(params_file)]
        for name, value in {"autostart": True, **(overrides or {})}.items():
            cmd += ["-p", f"{name}:={_ros_value(value)}"]
        if namespace:
            cmd += ["-r", f"__ns:=/{namespace.strip('/')}"]
        env = dict(os.environ, **(env or {}), ROS_DOMAIN_ID=str(domain_id))
        self.name = f"{namespace}/{executable}" if namespace else executable
        self.proc = subprocess.Popen(
            cmd, env=env, stdout=log or subprocess.DEVNULL, stderr=subprocess.STDOUT
        )

    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.proc.poll() is None

    def stop(self, timeout_s: float = 10.0) -> int:
        """SIGINT (the node finishes in-flight work), then SIGKILL if it does not exit."""
        if self.alive():
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@contextmanager
def node_processes(procs: list[NodeProcess]) -> Iterator[list[NodeProcess]]:
    """Stop every process on exit, newest first."""
    try:
        yield procs
    finally:
        for p in reversed(procs):
            p.stop()


def start(node, executable, params_file=None, **overrides):
    params = share_file("config", params_file) if params_file else None
    overrides = {**DEFAULTS.get(executable, TINY), **overrides}
    return NodeProcess(executable, node.domain_id, params, overrides)


def param_setter(ros_node, node_name):
    """Set one parameter of a running node through its parameter services (as `ros2 param
    set` does); returns the SetParametersResult."""
    client = AsyncParameterClient(ros_node, node_name)
    assert client.wait_for_services(timeout_sec=30)

    def set_param(name, value):
        future = client.set_parameters([Parameter(name, value=value)])
        ros_node.spin_until(future.done, 10)
        return future.result().results[0]

    return set_param


def image_msg(pixels: np.ndarray, frame_id: str, encoding="mono8", step=None) -> Image:
    msg = Image(height=pixels.shape[0], width=pixels.shape[1], encoding=encoding)
    msg.step = pixels.shape[1] if step is None else step
    msg.data = pixels.tobytes()
    msg.header.frame_id = frame_id
    return msg


class Peer:
    """The test's side of the conversation: camera publisher and result collector."""

    def __init__(self, node, namespace: str = ""):
        self.node = node
        self.results: list[InferenceResult] = []
        prefix = f"/{namespace}/" if namespace else ""
        self.camera = node.create_publisher(Image, f"{prefix}camera/image_raw", RELIABLE)
        self.result_sub = node.create_subscription(
            InferenceResult, f"{prefix}perception/result", self.results.append, RELIABLE
        )

    def wait_for_perception(self):
        """Wait until both directions are matched; best-effort camera frames sent before
        discovery completes never reach the node (and so are not frames it lost)."""
        assert self.node.spin_until(
            lambda: (
                self.camera.get_subscription_count() > 0
                and self.result_sub.get_publisher_count() > 0
            ),
            60,
        ), "perception node did not come up"
        self.node.spin_until(lambda: False, 0.5)

    def wait_for_base(self, pixels: np.ndarray, timeout_s: float = 60.0):
        """Send warm-up frames until the base station answers one, wait for every warm-up
        result, then forget them. The base station's reply writer matches the perception
        node's reader a moment after the request path is up: replies sent before are lost."""
        sent = 0
        for _ in range(int(timeout_s)):
            self.send(image_msg(pixels, "warm-up"))
            sent += 1
            if self.node.spin_until(lambda: any(r.where == WHERE_BASE for r in self.results), 1):
                break
        assert any(r.where == WHERE_BASE for r in self.results), "the base never answered"
        assert self.node.spin_until(lambda: len(self.results) >= sent, 30)
        self.results.clear()

    def send(self, msg: Image):
        msg.header.stamp = self.node.get_clock().now().to_msg()
        self.camera.publish(msg)
        self.node.spin_until(lambda: False, 0.03)

    def wait_results(self, n: int, timeout_s=30.0) -> list[InferenceResult]:
        self.node.spin_until(lambda: len(self.results) >= n, timeout_s)
        self.node.spin_until(lambda: False, 0.5)  # nothing more may come
        return self.results


def host_slower(here_ms: float | None = None) -> float:
    """How many times slower this machine runs the reference model than when the drone workload
    was profiled (at least 1): now, or as `here_ms` measured. Start-up is CPU work, so its bounds
    stretch by this much on a slow or loaded machine.
    """
    model = DemoModel.of(DemoConfig())
    here = model.reference_now() if here_ms is None else here_ms
    return max(1.0, here / model.profile_reference_ms)
