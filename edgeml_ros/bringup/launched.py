"""Nodes that launch files started, watched from a node of this process over the ROS graph.

The demo and the benchmarks start the nodes with `LaunchProcess` and then wait here until they
serve (the perception node reads the camera, the base station takes offloads), stop at once
when a node process ends, and start the camera source, which the launch holds with its
`publishing` parameter false until then.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient

from edgeml_ros.bringup.processes import LaunchProcess

SpinFor = Callable[..., None]


def check_running(launches: Sequence[LaunchProcess]) -> None:
    """RuntimeError naming the log if a node process of these launches (or a launch) ended."""
    for launch in launches:
        ended = launch.ended_nodes()
        if ended or not launch.alive():
            raise RuntimeError(
                f"{', '.join(ended) or 'ros2 launch'} exited; see {launch.log_path}"
            )


def wait_until(
    spin_for: SpinFor,
    ready: Callable[[], bool],
    launches: Sequence[LaunchProcess],
    what: str,
    timeout_s: float = 60.0,
) -> float:
    """Spin until `ready()`; the seconds it took. RuntimeError naming `what` on timeout."""
    started = time.monotonic()
    while not ready():
        check_running(launches)
        if time.monotonic() - started > timeout_s:
            logs = ", ".join(str(launch.log_path) for launch in launches)
            raise RuntimeError(f"{what}: not within {timeout_s:.0f} s; see {logs}")
        spin_for(0.05)
    return time.monotonic() - started


def _prefix(namespace: str) -> str:
    return f"/{namespace.strip('/')}" if namespace.strip("/") else ""


def drone_serving(node: Node, namespace: str = "") -> Callable[[], bool]:
    """Whether the drone's perception node reads its camera and a base station takes its offloads.

    Both subscriptions exist from activation on; `node` sees them once discovery has reached it.
    """
    prefix = _prefix(namespace)
    return lambda: (
        node.count_subscribers(f"{prefix}/camera/image_raw") > 0
        and node.count_subscribers(f"{prefix}/offload/request") > 0
    )


def start_camera(node: Node, spin_for: SpinFor, namespace: str = "") -> None:
    """Set the camera source's `publishing` to true through its parameter service."""
    prefix = _prefix(namespace)
    camera = AsyncParameterClient(node, f"{prefix}/camera_source")
    if not camera.wait_for_services(timeout_sec=30.0):
        raise RuntimeError(f"{prefix}/camera_source has no parameter service; see its log")
    done = camera.set_parameters([Parameter("publishing", value=True)])
    while not done.done():
        spin_for(0.02)
    [result] = done.result().results
    if not result.successful:
        raise RuntimeError(f"{prefix}/camera_source refused publishing: {result.reason}")
