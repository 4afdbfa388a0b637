"""Parameters of the nodes that run the model (perception, offload): checkpoint and device."""

from __future__ import annotations

from edgeml_ros.core.checkpoint import DEFAULT_CHECKPOINT
from edgeml_ros.core.runtime import check_device
from edgeml_ros.nodes.common import Param


def checkpoint_param(description: str) -> Param:
    """The `checkpoint` parameter: the model file loaded on configure."""
    return Param("checkpoint", str(DEFAULT_CHECKPOINT), description, at_configure=True)


def device_param() -> Param:
    """The torch `device` parameter (cpu, cuda, cuda:N), checked against the machine."""
    return Param("device", "cpu", "torch device the model runs on: cpu, cuda or cuda:N.",
                 at_configure=True, check=check_device)  # fmt: skip
