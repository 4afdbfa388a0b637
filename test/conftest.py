"""Shared fixtures: the committed model, real images, and private ROS domains."""

from __future__ import annotations

import signal
import time

import pytest

from edgeml_ros.core.checkpoint import TINY_CHECKPOINT, load_checkpoint
from edgeml_ros.core.data import load_fashion_mnist

# A run started as a background job (`make test &`) inherits SIGINT ignored, and so would every
# node process the tests start and then stop with SIGINT, as a user's Ctrl-C does: handled here,
# it is back to its default in them (a handled signal resets on exec, an ignored one does not).
signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def bundle():
    return load_checkpoint(TINY_CHECKPOINT)


@pytest.fixture(scope="session")
def fmnist_test():
    return load_fashion_mnist("test")


@pytest.fixture
def ros_domain():
    """A ROS_DOMAIN_ID no other test holds, so tests can run in parallel."""
    from edgeml_ros.bringup.processes import private_domain_id

    with private_domain_id() as domain_id:
        yield domain_id


@pytest.fixture
def ros_node(ros_domain):
    """An rclpy node on the test's private domain, with a `spin_until` helper."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=ros_domain)
    node = rclpy.create_node("test_peer", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)

    def spin_until(predicate, timeout_s: float = 30.0) -> bool:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if predicate():
                return True
            executor.spin_once(timeout_sec=0.05)
        return predicate()

    node.spin_until = spin_until
    node.domain_id = ros_domain
    yield node
    executor.shutdown()
    node.destroy_node()
    rclpy.shutdown(context=context)
