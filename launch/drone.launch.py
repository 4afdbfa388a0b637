"""Drone side of edgeml_ros: perception, controller and link monitor (camera source optional).

    ros2 launch edgeml_ros drone.launch.py image_topic:=/camera/image_raw
    ros2 launch edgeml_ros drone.launch.py namespace:=drone1 radio_link:=true

Every node is a lifecycle node, brought to active unless autostart:=false.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.parameter_descriptions import ParameterValue

from edgeml_ros.bringup.launch_support import (
    BOOLEAN,
    condition_schedule_argument,
    drone_local,
    managed_node,
    policy_argument,
    radio_link_arguments,
    standard_arguments,
)


def generate_launch_description():
    image_remap = [("camera/image_raw", LaunchConfiguration("image_topic"))]
    # the controller and the link monitor yield the CPU to the perception path (docs/system.md)
    background = ["nice -n ", LaunchConfiguration("background_nice")]
    perception = {
        "image_transport": LaunchConfiguration("image_transport"),
        "compute_slowdown": ParameterValue(
            LaunchConfiguration("compute_slowdown"), value_type=float
        ),
    }
    camera = {
        "condition_schedule": ParameterValue(
            LaunchConfiguration("condition_schedule"), value_type=str
        ),
    }
    return LaunchDescription(
        [
            *standard_arguments(
                "Namespace of this drone's nodes.",
                "drone.yaml",
                "Parameters for the drone-side nodes.",
            ),
            DeclareLaunchArgument(
                "image_topic",
                default_value="camera/image_raw",
                description="Camera image topic the perception node subscribes to (with "
                "image_transport:=compressed, it reads <image_topic>/compressed).",
            ),
            DeclareLaunchArgument(
                "image_transport",
                default_value="raw",
                choices=["raw", "compressed"],
                description="raw: sensor_msgs/Image; compressed: sensor_msgs/CompressedImage.",
            ),
            DeclareLaunchArgument(
                "use_camera_source",
                default_value="false",
                choices=BOOLEAN,
                description="Also start the camera source (the model's data set as camera "
                "frames, for a drone without a camera).",
            ),
            condition_schedule_argument(),
            policy_argument(),
            DeclareLaunchArgument(
                "compute_slowdown",
                default_value="1.0",
                description="Emulation only, 1 on a real drone: pad the perception node's "
                "compute to this multiple to stand in for a slower computer.",
            ),
            DeclareLaunchArgument(
                "background_nice",
                default_value="10",
                description="Niceness of the controller and link monitor (0-19): they give way "
                "to the perception node and the consumers of its results on a small CPU.",
            ),
            *radio_link_arguments(),
            managed_node("perception", [perception], image_remap),
            managed_node("link_monitor", prefix=background),
            drone_local(
                [
                    managed_node(
                        "controller",
                        [{"policy": LaunchConfiguration("policy")}],
                        prefix=background,
                    ),
                    managed_node(
                        "camera_source",
                        [camera],
                        remappings=image_remap,
                        condition=IfCondition(LaunchConfiguration("use_camera_source")),
                    ),
                ]
            ),
        ]
    )
