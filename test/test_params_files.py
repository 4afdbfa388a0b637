"""The shipped params files and rviz config fit the nodes as they are.

Every key in config/*.yaml must be a parameter its node declares, with a value its range and
checks accept, and the node must configure with the file, so a typo or a stale key fails here.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import rclpy
import yaml
from rclpy.lifecycle import TransitionCallbackReturn

from edgeml_ros.nodes.battery_sim import BatterySimNode
from edgeml_ros.nodes.camera_source import CameraSourceNode
from edgeml_ros.nodes.controller import ControllerNode
from edgeml_ros.nodes.link_monitor import LinkMonitorNode
from edgeml_ros.nodes.offload import OffloadNode
from edgeml_ros.nodes.perception import PerceptionNode

CONFIG = Path(__file__).parent.parent / "config"
NODES = {
    "perception": PerceptionNode,
    "offload": OffloadNode,
    "controller": ControllerNode,
    "link_monitor": LinkMonitorNode,
    "camera_source": CameraSourceNode,
    "battery_sim": BatterySimNode,
}
ENTRIES = [
    (path, key[len("/**/") :], body["ros__parameters"])
    for path in sorted(CONFIG.glob("*.yaml"))
    for key, body in yaml.safe_load(path.read_text()).items()
]


@pytest.mark.parametrize(
    ("path", "node_name", "params"), ENTRIES, ids=[f"{p.name}:{n}" for p, n, _ in ENTRIES]
)
def test_every_key_is_a_declared_parameter_that_configures(path, node_name, params, ros_domain):
    assert node_name in NODES, f"{path.name}: no node named {node_name}"
    rclpy.init(args=["--ros-args", "--params-file", str(path)], domain_id=ros_domain)
    try:
        node = NODES[node_name]()  # a value outside a declared range fails here
        undeclared = [k for k in params if not node.has_parameter(k)]
        assert not undeclared, f"{path.name}: {node_name} declares no {undeclared}"
        for key, value in params.items():
            assert node.get_parameter(key).value == value, key
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS, node._failure
        node.destroy_node()
    finally:
        rclpy.shutdown()


def test_rviz_config_shows_the_annotated_frames():
    config = yaml.safe_load((CONFIG / "edgeml.rviz").read_text())
    displays = config["Visualization Manager"]["Displays"]
    topics = {d["Topic"]["Value"] for d in displays if d["Class"].endswith("/Image")}
    assert "/perception/annotated" in topics


def test_the_launch_files_offer_every_live_policy_and_no_other():
    from edgeml_ros.bringup.launch_support import POLICIES
    from edgeml_ros.policy.registry import policy_names

    assert set(POLICIES) == set(policy_names(live_only=True))
