"""Static checks of the launch files (`launch` itself is not installable here; they are run
with the real tools on a ROS 2 install)."""

import ast
from pathlib import Path

import pytest

LAUNCH = sorted((Path(__file__).parent.parent / "launch").glob("*.launch.py"))
CONFIG = Path(__file__).parent.parent / "config"
EXECUTABLES = {
    "camera_source",
    "perception",
    "offload",
    "controller",
    "link_monitor",
    "battery_sim",
}


def calls(tree, name):
    return [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and getattr(n.func, "id", getattr(n.func, "attr", "")) == name
    ]


@pytest.mark.parametrize("path", LAUNCH, ids=lambda p: p.name)
def test_launch_file_declares_described_standard_arguments(path):
    tree = ast.parse(path.read_text())
    assert "generate_launch_description" in {
        n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)
    }
    args = {}
    for call in calls(tree, "DeclareLaunchArgument"):
        kw = {k.arg: k.value for k in call.keywords}
        assert "description" in kw and ast.literal_eval(kw["description"]).strip()
        args[ast.literal_eval(call.args[0])] = kw
    assert {"namespace", "params_file", "use_sim_time", "log_level"} <= set(args)
    assert not calls(tree, "eval")
    executables = {
        ast.literal_eval(k.value)
        for c in calls(tree, "Node")
        for k in c.keywords
        if k.arg == "executable" and isinstance(k.value, ast.Constant)
    }
    literal_nodes = {
        ast.literal_eval(c.args[0])
        for c in calls(tree, "node")
        if c.args and isinstance(c.args[0], ast.Constant)
    }
    assert (executables | literal_nodes) and (executables | literal_nodes) <= EXECUTABLES


def test_params_files_name_only_known_nodes():
    import yaml

    for path in CONFIG.glob("*.yaml"):
        for key, body in yaml.safe_load(path.read_text()).items():
            assert key.startswith("/**/") and key[4:] in EXECUTABLES, (path, key)
            assert "ros__parameters" in body


def test_rviz_config_shows_the_annotated_frames():
    import yaml

    config = yaml.safe_load((CONFIG / "edgeml.rviz").read_text())
    displays = config["Visualization Manager"]["Displays"]
    topics = {d["Topic"]["Value"] for d in displays if d["Class"].endswith("/Image")}
    assert "/perception/annotated" in topics


@pytest.mark.parametrize("name", ["drone", "base_station"])
def test_drone_and_base_station_use_the_link_dds_profile(name):
    tree = ast.parse((CONFIG.parent / "launch" / f"{name}.launch.py").read_text())
    variables = {ast.literal_eval(c.args[0]) for c in calls(tree, "SetEnvironmentVariable")}
    assert {"FASTDDS_DEFAULT_PROFILES_FILE", "RMW_FASTRTPS_USE_QOS_FROM_XML"} <= variables
    defaults = [ast.unparse(k.value) for c in calls(tree, "DeclareLaunchArgument")
                for k in c.keywords if k.arg == "default_value"]  # fmt: skip
    assert any("fastdds_link.xml" in d for d in defaults)
    assert (CONFIG / "fastdds_link.xml").is_file()


def test_drone_launch_starts_the_background_nodes_niced():
    tree = ast.parse((CONFIG.parent / "launch" / "drone.launch.py").read_text())
    niced = {ast.literal_eval(c.args[0]) for c in calls(tree, "node")
             if any(k.arg == "prefix" for k in c.keywords)}  # fmt: skip
    assert niced == {"controller", "link_monitor"}
    [nice] = [c for c in calls(tree, "DeclareLaunchArgument")
              if ast.literal_eval(c.args[0]) == "background_nice"]  # fmt: skip
    assert {k.arg: ast.literal_eval(k.value) for k in nice.keywords}["default_value"] == "10"


def test_drone_launch_keeps_the_drone_only_nodes_discovery_on_the_drone():
    from edgeml_ros.bringup.processes import DRONE_LOCAL_ENV, DRONE_LOCAL_NODES

    tree = ast.parse((CONFIG.parent / "launch" / "drone.launch.py").read_text())
    local = {ast.literal_eval(c.args[0]) for c in calls(tree, "node")
             if any(k.arg == "drone_only" and ast.literal_eval(k.value)
                    for k in c.keywords)}  # fmt: skip
    assert local == {"controller", "camera_source"} and local <= set(DRONE_LOCAL_NODES)
    [arg] = [c for c in calls(tree, "DeclareLaunchArgument")
             if ast.literal_eval(c.args[0]) == "local_discovery_range"]  # fmt: skip
    default = {k.arg: ast.literal_eval(k.value) for k in arg.keywords}["default_value"]
    assert {"ROS_AUTOMATIC_DISCOVERY_RANGE": default} == DRONE_LOCAL_ENV
