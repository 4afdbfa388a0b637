"""Drone side of edgeml_ros: perception, controller and link monitor (camera source optional).

ros2 launch edgeml_ros drone.launch.py namespace:=drone1 image_topic:=/camera/image_raw
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PythonExpression
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue


def generate_launch_description():
    share = get_package_share_directory("edgeml_ros")
    use_dds_profile = PythonExpression(["'", LaunchConfiguration("dds_profile"), "' != ''"])
    namespace = LaunchConfiguration("namespace")
    params_file = LaunchConfiguration("params_file")
    use_sim_time = ParameterValue(LaunchConfiguration("use_sim_time"), value_type=bool)
    log_level = LaunchConfiguration("log_level")
    local_range = LaunchConfiguration("local_discovery_range")

    def node(executable, remappings=(), condition=None, prefix=None, drone_only=False):
        return Node(
            package="edgeml_ros",
            executable=executable,
            name=executable,
            namespace=namespace,
            parameters=[params_file, {"use_sim_time": use_sim_time}],
            remappings=list(remappings),
            arguments=["--ros-args", "--log-level", log_level],
            output="screen",
            condition=condition,
            prefix=prefix,
            additional_env={"ROS_AUTOMATIC_DISCOVERY_RANGE": local_range} if drone_only else None,
        )

    image_remap = [("camera/image_raw", LaunchConfiguration("image_topic"))]
    # the controller and the link monitor yield the CPU to the perception path (docs/system.md)
    background = ["nice -n ", LaunchConfiguration("background_nice")]
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "namespace", default_value="", description="Namespace of this drone's nodes."
            ),
            DeclareLaunchArgument(
                "params_file",
                default_value=os.path.join(share, "config", "drone.yaml"),
                description="Parameters for the drone-side nodes.",
            ),
            DeclareLaunchArgument(
                "use_sim_time",
                default_value="false",
                choices=["true", "false"],
                description="Use the /clock topic (simulation) instead of the system clock.",
            ),
            DeclareLaunchArgument(
                "log_level",
                default_value="info",
                choices=["debug", "info", "warn", "error", "fatal"],
                description="Logging level of every node.",
            ),
            DeclareLaunchArgument(
                "image_topic",
                default_value="camera/image_raw",
                description="Camera image topic the perception node subscribes to.",
            ),
            DeclareLaunchArgument(
                "use_camera_source",
                default_value="false",
                choices=["true", "false"],
                description="Also start the Fashion-MNIST camera source (no real camera).",
            ),
            DeclareLaunchArgument(
                "background_nice",
                default_value="10",
                description="Niceness of the controller and link monitor (0-19): they give way "
                "to the perception node and the consumers of its results on a small CPU.",
            ),
            DeclareLaunchArgument(
                "local_discovery_range",
                default_value="LOCALHOST",
                choices=["LOCALHOST", "SUBNET", "SYSTEM_DEFAULT"],
                description="ROS_AUTOMATIC_DISCOVERY_RANGE of the nodes that talk only to nodes "
                "on the drone (controller, camera source): LOCALHOST keeps their participant "
                "announcements and discovery off the radio link (the ground station does not see "
                "them); SUBNET makes them visible from the ground.",
            ),
            DeclareLaunchArgument(
                "dds_profile",
                default_value=os.path.join(share, "config", "fastdds_link.xml"),
                description="Fast DDS profile for the radio link (UDP, non-blocking sends); '' "
                "keeps the middleware's defaults.",
            ),
            SetEnvironmentVariable(
                "FASTDDS_DEFAULT_PROFILES_FILE",
                LaunchConfiguration("dds_profile"),
                condition=IfCondition(use_dds_profile),
            ),
            SetEnvironmentVariable(
                "RMW_FASTRTPS_USE_QOS_FROM_XML", "1", condition=IfCondition(use_dds_profile)
            ),
            node("perception", image_remap),
            node("controller", prefix=background, drone_only=True),
            node("link_monitor", prefix=background),
            node(
                "camera_source",
                image_remap,
                condition=IfCondition(LaunchConfiguration("use_camera_source")),
                drone_only=True,
            ),
        ]
    )
