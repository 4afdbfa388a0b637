"""Everything on one host: the drone side with the Fashion-MNIST camera source, the base
station, and the battery simulator. The drone emulates a slower computer (compute_slowdown,
reported as emulated in its diagnostics).

    ros2 launch edgeml_ros sim.launch.py
    ros2 launch edgeml_ros sim.launch.py compute_slowdown:=4.0 policy:=spinn

Link shaping needs root and network namespaces; `make demo` sets it up around the same nodes
(see the README). Without it the link is the loopback.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node, SetParameter
from launch_ros.parameter_descriptions import ParameterValue


def generate_launch_description():
    share = get_package_share_directory("edgeml_ros")
    launch_dir = os.path.join(share, "launch")
    namespace = LaunchConfiguration("namespace")
    use_sim_time = LaunchConfiguration("use_sim_time")
    log_level = LaunchConfiguration("log_level")

    def include(name, **arguments):
        return IncludeLaunchDescription(
            PythonLaunchDescriptionSource(os.path.join(launch_dir, name)),
            launch_arguments={
                "namespace": namespace,
                "use_sim_time": use_sim_time,
                "log_level": log_level,
                **arguments,
            }.items(),
        )

    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "namespace", default_value="", description="Namespace of the simulated drone."
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
                "compute_slowdown",
                default_value="4.0",
                description="Emulated drone computer: pad its compute to this multiple.",
            ),
            DeclareLaunchArgument(
                "background_nice",
                default_value="10",
                description="Niceness of the controller, link monitor and battery simulator.",
            ),
            DeclareLaunchArgument(
                "policy",
                default_value="rl",
                description="Controller policy: rl, dqn, edge_only, cloud_only, neurosurgeon, "
                "branchynet or spinn.",
            ),
            SetParameter(
                "compute_slowdown",
                ParameterValue(LaunchConfiguration("compute_slowdown"), value_type=float),
            ),
            SetParameter("policy", LaunchConfiguration("policy")),
            include(
                "drone.launch.py",
                params_file=LaunchConfiguration("params_file"),
                use_camera_source="true",
                background_nice=LaunchConfiguration("background_nice"),
            ),
            include("base_station.launch.py"),
            Node(
                package="edgeml_ros",
                executable="battery_sim",
                name="battery_sim",
                namespace=namespace,
                parameters=[
                    {"use_sim_time": ParameterValue(use_sim_time, value_type=bool)},
                ],
                arguments=["--ros-args", "--log-level", log_level],
                output="screen",
                prefix=["nice -n ", LaunchConfiguration("background_nice")],
            ),
        ]
    )
