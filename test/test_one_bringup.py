"""One bring-up: bringup/ starts nodes only through the package's launch files.

Which nodes run, with which niceness, discovery range, environment and parameters, is decided
once, in launch/ and config/. The demo and the benchmarks in bringup/ may name a node only
where that decides nothing: as the target of a launch-file call's arguments, as a key of a
params file they write over config/ (a node's parameters), or as a running node addressed over
ROS (a parameter client).
"""

from __future__ import annotations

import ast
from pathlib import Path

import edgeml_ros.bringup

NODE_EXECUTABLES = {"perception", "offload", "controller", "link_monitor", "camera_source",
                    "battery_sim"}  # fmt: skip
# Calls that may name a node: a launch file started with its arguments, a running node addressed.
ALLOWED_CALLS = {"LaunchProcess", "AsyncParameterClient"}
BRINGUP = Path(edgeml_ros.bringup.__file__).parent


def _call_name(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


def node_names_outside_launch(source: str, filename: str) -> list[str]:
    """`file:line: 'name'` for each node executable named outside the allowed places."""
    tree = ast.parse(source, filename)
    allowed: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _call_name(node) in ALLOWED_CALLS:
            allowed.update(id(n) for n in ast.walk(node))
        elif isinstance(node, ast.Dict):  # a params file's entries: node name -> parameters
            allowed.update(id(k) for k in node.keys if k is not None)
    named = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and node.value in NODE_EXECUTABLES
        and id(node) not in allowed
    ]
    named.sort(key=lambda node: (node.lineno, node.col_offset))
    return [f"{filename}:{node.lineno}: {node.value!r}" for node in named]


def test_bringup_starts_nodes_only_through_the_launch_files():
    found = [
        hit
        for path in sorted(BRINGUP.glob("*.py"))
        for hit in node_names_outside_launch(path.read_text(), path.name)
    ]
    assert not found, "nodes named outside a launch-file call:\n" + "\n".join(found)


def test_the_check_finds_nodes_started_or_configured_by_hand():
    # how bringup/ started nodes before: its own process per node, and copies of the launch
    # files' decisions (niceness, discovery range)
    by_hand = """
BACKGROUND_NODES = ("controller", "link_monitor", "battery_sim")
procs = [NodeProcess("offload", domain_id, base_yaml), start("perception", drone_yaml)]
if name in ("camera_source",):
    env = DRONE_LOCAL_ENV
"""
    found = node_names_outside_launch(by_hand, "old.py")
    assert [hit.split(": ", 1)[1] for hit in found] == [
        "'controller'", "'link_monitor'", "'battery_sim'", "'offload'", "'perception'",
        "'camera_source'",
    ]  # fmt: skip
    allowed = """
LaunchProcess("sim.launch.py", domain_id, {"params_file": drone})
write_params(path, "drone.yaml", {"camera_source": {"publishing": False}})
AsyncParameterClient(node, "offload")
"""
    assert node_names_outside_launch(allowed, "new.py") == []
