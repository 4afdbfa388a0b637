"""How a frame ended: where its answer was computed and its status (ROS-free, torch-free).

The values match `InferenceResult.WHERE_*` and `InferenceResult.STATUS_*`.
"""

from __future__ import annotations

from enum import IntEnum


class Where(IntEnum):
    """Where a frame's answer was computed."""

    NONE = 0
    DRONE = 1
    BASE = 2
    FALLBACK = 3


class Status(IntEnum):
    """Outcome of a frame."""

    OK = 0
    BAD_INPUT = 1
    OFFLOAD_REJECTED = 2
    INTERNAL_ERROR = 3
    STALE = 4


def drone_compute_ms(where: int, head_ms: float, tail_ms: float) -> float:
    """A frame's compute on the drone: its head, and its tail where the drone finished it."""
    return head_ms + (tail_ms if where == Where.FALLBACK else 0.0)
