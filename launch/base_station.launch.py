"""Base-station side of edgeml_ros: the offload node that finishes the DNN for the drones.

    ros2 launch edgeml_ros base_station.launch.py
    ros2 launch edgeml_ros base_station.launch.py radio_link:=true

List the drones' namespaces in the params file (offload.drone_namespaces). The offload node is
a lifecycle node, brought to active unless autostart:=false.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration

from edgeml_ros.bringup.launch_support import (
    managed_node,
    radio_link_arguments,
    standard_arguments,
)


def generate_launch_description():
    return LaunchDescription(
        [
            *standard_arguments(
                "Namespace of the base station.",
                "base_station.yaml",
                "Parameters for the offload node (drone_namespaces, limits).",
            ),
            DeclareLaunchArgument(
                "prefix",
                default_value="",
                description="Command prefix of the offload node, e.g. 'ip netns exec NAME' to "
                "run it in another network namespace (the demo's shaped link) or a debugger.",
            ),
            *radio_link_arguments(),
            managed_node("offload", prefix=LaunchConfiguration("prefix")),
        ]
    )
