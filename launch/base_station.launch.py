"""Base-station side of edgeml_ros: the offload node that finishes the DNN for the drones.

    ros2 launch edgeml_ros base_station.launch.py
List the drones' namespaces in the params file (offload.drone_namespaces).
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
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "namespace", default_value="", description="Namespace of the base station."
            ),
            DeclareLaunchArgument(
                "params_file",
                default_value=os.path.join(share, "config", "base_station.yaml"),
                description="Parameters for the offload node (drone_namespaces, limits).",
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
                description="Logging level.",
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
            Node(
                package="edgeml_ros",
                executable="offload",
                name="offload",
                namespace=LaunchConfiguration("namespace"),
                parameters=[
                    LaunchConfiguration("params_file"),
                    {
                        "use_sim_time": ParameterValue(
                            LaunchConfiguration("use_sim_time"), value_type=bool
                        )
                    },
                ],
                arguments=["--ros-args", "--log-level", LaunchConfiguration("log_level")],
                output="screen",
            ),
        ]
    )
