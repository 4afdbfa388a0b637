"""The nodes log through rclpy in a way rclpy's throttling accepts."""

import ast
from pathlib import Path

NODES = Path(__file__).resolve().parent.parent / "edgeml_ros" / "nodes"


def test_nodes_call_warning_not_the_deprecated_warn():
    # rclpy tells call sites apart by the calling frame. Its deprecated `warn` is wrapped by
    # typing_extensions, so every `warn` call shares the wrapper's frame: one throttled and one
    # unthrottled `warn` then raise "Requested logging filters cannot be changed between calls"
    # and end the node.
    calls = [
        f"{path.name}:{node.lineno}"
        for path in sorted(NODES.glob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "warn"
    ]
    assert not calls, f"use get_logger().warning(...): {calls}"
