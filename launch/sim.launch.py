"""Everything on one host: the drone side with the camera source, the base station, and the
battery simulator. The drone emulates a slower computer (compute_slowdown, reported as emulated
in its diagnostics): by default the default workload's drone computer.

    ros2 launch edgeml_ros sim.launch.py
    ros2 launch edgeml_ros sim.launch.py compute_slowdown:=4.0 policy:=spinn
    ros2 launch edgeml_ros sim.launch.py condition_schedule:=0:clean,20:blur,40:low_light:2

`make demo` runs this file with the base station in a second network namespace behind a link
shaped with tc tbf (base_prefix, radio_link; see the README). Without it the link is the
loopback.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration

from edgeml_ros.bringup.launch_support import (
    condition_schedule_argument,
    drone_local,
    emulated_slowdown,
    managed_node,
    policy_argument,
    radio_link_arguments,
    share_path,
    standard_arguments,
)

# Passed on to both included launch files as they are.
SHARED = ("namespace", "use_sim_time", "log_level", "autostart", "radio_link", "dds_profile")


def generate_launch_description():
    def include(name, **arguments):
        return IncludeLaunchDescription(
            PythonLaunchDescriptionSource(share_path("launch", name)),
            launch_arguments={
                **{a: LaunchConfiguration(a) for a in SHARED},
                **arguments,
            }.items(),
        )

    return LaunchDescription(
        [
            *standard_arguments(
                "Namespace of the simulated drone.",
                "drone.yaml",
                "Parameters for the drone-side nodes.",
            ),
            DeclareLaunchArgument(
                "base_params_file",
                default_value=share_path("config", "base_station.yaml"),
                description="Parameters for the base station's offload node.",
            ),
            DeclareLaunchArgument(
                "compute_slowdown",
                default_value=emulated_slowdown(),
                description="Emulated drone computer: pad its compute to this multiple; the "
                "default is the drone computer of the default workload's profile against the "
                "machine that profiled it (a cited reference time, core/energy.py).",
            ),
            DeclareLaunchArgument(
                "background_nice",
                default_value="10",
                description="Niceness of the controller, link monitor and battery simulator.",
            ),
            policy_argument(),
            condition_schedule_argument(),
            DeclareLaunchArgument(
                "base_prefix",
                default_value="",
                description="Command prefix of the base station's node, e.g. 'ip netns exec "
                "NAME' to put it behind a shaped link.",
            ),
            *radio_link_arguments(),
            include(
                "drone.launch.py",
                params_file=LaunchConfiguration("params_file"),
                use_camera_source="true",
                compute_slowdown=LaunchConfiguration("compute_slowdown"),
                policy=LaunchConfiguration("policy"),
                condition_schedule=LaunchConfiguration("condition_schedule"),
                background_nice=LaunchConfiguration("background_nice"),
            ),
            include(
                "base_station.launch.py",
                params_file=LaunchConfiguration("base_params_file"),
                prefix=LaunchConfiguration("base_prefix"),
            ),
            drone_local(
                [
                    managed_node(
                        "battery_sim",
                        prefix=["nice -n ", LaunchConfiguration("background_nice")],
                    )
                ]
            ),
        ]
    )
