"""Params files for one run: a config file of the package with some nodes' parameters set.

What a run varies that no user passes as a launch argument (frame counts, deadlines, a test's
model) goes into its own copy of config/<file>, handed to the launch file as `params_file` (or
sim.launch.py's `base_params_file`), as nav2's bringup rewrites its YAML.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from edgeml_ros.bringup.processes import share_file


def write_params(path: Path, config: str, nodes: dict[str, dict[str, Any]]) -> Path:
    """Write config/`config` to `path` with `nodes` (node name -> parameters) set over it.

    The entries are the wildcard ones the package's files use (`/**/<node>`), so the file works
    under any namespace.
    """
    data = yaml.safe_load(share_file("config", config).read_text()) or {}
    for node, values in nodes.items():
        data.setdefault(f"/**/{node}", {}).setdefault("ros__parameters", {}).update(values)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path
