"""Building blocks of the package's launch files: standard arguments, managed nodes, radio link.

Only `launch` and `launch_ros` are imported here (no torch, no rclpy node), so the launch files
load quickly on a drone. Every node of the package is a lifecycle node: with `autostart` (the
default) it configures and activates itself as soon as it has started (no round trip through
the launch process, which on a small CPU took seconds); a node whose configuration fails stays
unconfigured with the reason in its log and on /diagnostics.
"""

from __future__ import annotations

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, GroupAction, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

from edgeml_ros.core.workloads import DEFAULT_WORKLOAD, workload

PACKAGE = "edgeml_ros"
BOOLEAN = ["true", "false"]


def share_path(*parts: str) -> str:
    """A file installed under share/edgeml_ros."""
    return os.path.join(get_package_share_directory(PACKAGE), *parts)


def standard_arguments(namespace_help: str, params_file: str, params_help: str) -> list:
    """namespace, params_file, use_sim_time, log_level and autostart, as nav2_bringup has them."""
    return [
        DeclareLaunchArgument("namespace", default_value="", description=namespace_help),
        DeclareLaunchArgument(
            "params_file", default_value=share_path("config", params_file), description=params_help
        ),
        DeclareLaunchArgument(
            "use_sim_time",
            default_value="false",
            choices=BOOLEAN,
            description="Use the /clock topic (simulation) instead of the system clock.",
        ),
        DeclareLaunchArgument(
            "log_level",
            default_value="info",
            choices=["debug", "info", "warn", "error", "fatal"],
            description="Logging level of every node.",
        ),
        DeclareLaunchArgument(
            "autostart",
            default_value="true",
            choices=BOOLEAN,
            description="Configure and activate the (lifecycle) nodes at start; false leaves "
            "them unconfigured for `ros2 lifecycle set`.",
        ),
    ]


# The live policies (policy.registry; not imported here: it loads torch).
POLICIES = ("rl", "rl_loop", "dqn", "planner", "edge_only", "cloud_only", "cloud_png",
            "cloud_jpeg", "neurosurgeon", "branchynet", "tuned_static", "spinn", "ucb",
            "apparate")  # fmt: skip


def policy_argument() -> DeclareLaunchArgument:
    """The controller's policy, which `ros2 param set /controller policy ...` changes live."""
    return DeclareLaunchArgument(
        "policy",
        default_value="rl",
        choices=list(POLICIES),
        description="Controller policy: rl (PPO), rl_loop (PPO with a threshold loop on "
        "audits), dqn, planner (a utility table from the simulator, the drone's speed and the "
        "inputs read from telemetry), or a baseline (edge_only, cloud_only, cloud_png, "
        "cloud_jpeg, neurosurgeon, branchynet, tuned_static, spinn, ucb, apparate); "
        "`ros2 param set /controller policy ...` switches it live.",
    )


def condition_schedule_argument() -> DeclareLaunchArgument:
    """The camera source's input conditions over time (empty: clean frames throughout)."""
    return DeclareLaunchArgument(
        "condition_schedule",
        default_value="",
        description="Input drift of the camera source's frames: START_S:CONDITION[:SEVERITY],... "
        "with conditions clean, blur, noise, low_light, e.g. '0:clean,20:blur,40:noise:2' "
        "(seconds from its activation; the last holds); empty: clean frames throughout. `ros2 "
        "param set /camera_source condition_schedule ...` changes it live.",
    )


def emulated_slowdown() -> str:
    """The default workload's emulated drone compute slowdown against this machine, as text.

    Read from the committed profile (core.workloads), so that sim.launch.py emulates the drone
    computer the controller's policies were trained for.
    """
    return f"{workload(DEFAULT_WORKLOAD).compute_slowdown():.2f}"


def radio_link_arguments() -> list:
    """The opt-in DDS tuning for a slow radio link between drone and base station."""
    return [
        DeclareLaunchArgument(
            "radio_link",
            default_value="false",
            choices=BOOLEAN,
            description="Tune DDS for a slow radio link (set it on both sides): the nodes use "
            "the Fast DDS profile dds_profile (UDP only, 64 KB datagrams, non-blocking sends, "
            "participant announcements every 30 s); the nodes that talk across the link "
            "discover on the subnet (ROS_AUTOMATIC_DISCOVERY_RANGE=SUBNET), the drone-only "
            "nodes on the drone alone (LOCALHOST). Costs visibility: a ROS 2 "
            "shell with the default middleware settings does not see these nodes reliably (see "
            "the README, 'The radio link').",
        ),
        DeclareLaunchArgument(
            "dds_profile",
            default_value=share_path("config", "fastdds_link.xml"),
            description="Fast DDS profile used with radio_link:=true.",
        ),
        SetEnvironmentVariable(
            "FASTDDS_DEFAULT_PROFILES_FILE",
            LaunchConfiguration("dds_profile"),
            condition=IfCondition(LaunchConfiguration("radio_link")),
        ),
        SetEnvironmentVariable(
            "RMW_FASTRTPS_USE_QOS_FROM_XML",
            "1",
            condition=IfCondition(LaunchConfiguration("radio_link")),
        ),
        # the nodes that talk across the link reach the other host (drone_local narrows it)
        SetEnvironmentVariable(
            "ROS_AUTOMATIC_DISCOVERY_RANGE",
            "SUBNET",
            condition=IfCondition(LaunchConfiguration("radio_link")),
        ),
    ]


def drone_local(actions: list) -> GroupAction:
    """Nodes that talk only to nodes on the drone.

    With radio_link they discover on the drone alone, so their announcements and discovery never
    cross the radio.
    """
    return GroupAction(
        scoped=True,
        actions=[
            SetEnvironmentVariable(
                "ROS_AUTOMATIC_DISCOVERY_RANGE",
                "LOCALHOST",
                condition=IfCondition(LaunchConfiguration("radio_link")),
            ),
            *actions,
        ],
    )


def managed_node(
    executable: str,
    parameters: list | None = None,
    remappings: list | None = None,
    condition=None,
    prefix=None,
) -> Node:
    """A lifecycle node of the package, which brings itself to active when `autostart`."""

    def boolean(name: str) -> ParameterValue:
        return ParameterValue(LaunchConfiguration(name), value_type=bool)

    return Node(
        package=PACKAGE,
        executable=executable,
        exec_name=executable,
        name=executable,
        namespace=LaunchConfiguration("namespace"),
        parameters=[
            LaunchConfiguration("params_file"),
            {"use_sim_time": boolean("use_sim_time"), "autostart": boolean("autostart")},
            *(parameters or []),
        ],
        remappings=remappings or [],
        arguments=["--ros-args", "--log-level", LaunchConfiguration("log_level")],
        output="screen",
        condition=condition,
        prefix=prefix,
    )
