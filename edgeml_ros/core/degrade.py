"""Synthetic input degradations, used to shift how hard the inputs are.

Drones see blurred, noisy and dark frames. These are synthetic stand-ins, applied to [0, 1]
images before normalization, at a severity (1 = the strengths below, used by the profiles; 2
and 3 are stronger). Profiles store exit confidences under each condition, so the simulator can
replay harder inputs exactly, and the camera source can publish them live, following a
schedule (`parse_condition_schedule`). Torch is imported on first use: the camera source reads
the schedule and stays torch-free while its frames are clean.
"""

from __future__ import annotations

import importlib
import math
from bisect import bisect_right
from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np

from edgeml_ros.core.untrusted import non_negative

if TYPE_CHECKING:
    import torch

CONDITIONS = ("clean", "blur", "noise", "low_light")
SEVERITIES = (1, 2, 3)
BLUR_SIGMA = 0.8
NOISE_STD = 0.05
LOW_LIGHT_GAIN = 0.3
LOW_LIGHT_NOISE_STD = 0.03
SCHEDULE_FORMAT = "START_S:CONDITION[:SEVERITY],... (e.g. '0:clean,20:blur,40:noise:2')"

# (start_s, condition, severity): the condition in force from start_s on
ConditionSegment = tuple[float, str, float]


def check_severity(severity: float) -> None:
    """Raise ValueError unless `degrade` accepts `severity`."""
    if not 0 < severity <= 10:
        raise ValueError(f"severity must be in (0, 10], not {severity}")


def check_condition(condition: str, severity: float) -> None:
    """Raise ValueError naming the condition or severity that `degrade` would not accept."""
    if condition not in CONDITIONS:
        raise ValueError(f"condition {condition!r} unknown; known: {', '.join(CONDITIONS)}")
    check_severity(severity)


def degrade(
    images: torch.Tensor, condition: str, seed: int = 0, severity: float = 1.0
) -> torch.Tensor:
    """Degraded copy of (N, C, H, W) images in [0, 1]; the noise is fixed by `seed`.

    `severity` scales the blur's sigma, the noise and the darkening (gain 0.3 / severity).
    """
    check_condition(condition, severity)
    if condition == "clean":
        return images
    import torch

    if condition == "blur":
        # imported here: the controller node reads CONDITIONS, and torchvision costs a node
        # about 1.5 s of CPU at start
        from torchvision.transforms.functional import gaussian_blur

        sigma = BLUR_SIGMA * severity
        kernel = 2 * math.ceil(2.5 * sigma) + 1  # 5 at severity 1
        return gaussian_blur(images, kernel_size=kernel, sigma=sigma)
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(images.shape, generator=generator).to(images.device)
    if condition == "noise":
        return (images + NOISE_STD * severity * noise).clamp(0.0, 1.0)
    gain = LOW_LIGHT_GAIN / severity
    return (images * gain + LOW_LIGHT_NOISE_STD * severity * noise).clamp(0.0, 1.0)


def degrade_frame(
    pixels: np.ndarray, condition: str, severity: float = 1.0, seed: int = 0
) -> np.ndarray:
    """A uint8 (H, W) or (H, W, 3) camera frame degraded as `degrade` degrades [0, 1] images."""
    check_condition(condition, severity)
    if condition == "clean":
        return pixels
    import torch

    hwc = pixels[..., None] if pixels.ndim == 2 else pixels
    images = torch.from_numpy(hwc.transpose(2, 0, 1)[None].astype(np.float32) / 255.0)
    out = degrade(images, condition, seed, severity)[0].permute(1, 2, 0)
    return (out * 255.0).round().to(torch.uint8).numpy().reshape(pixels.shape)


def preload(conditions: Iterable[str]) -> None:
    """Import now what degrading frames under `conditions` needs, not at the first such frame.

    Torch, and torchvision for blur, take seconds of CPU to import on a small computer.
    """
    conditions = set(conditions)
    if conditions - {"clean"}:
        importlib.import_module("torch")
    if "blur" in conditions:
        importlib.import_module("torchvision.transforms.functional")


def parse_condition_schedule(text: str) -> tuple[ConditionSegment, ...]:
    """Input conditions over time from text like '0:clean,20:blur,40:noise:2'.

    Each entry is seconds from the start, a condition of CONDITIONS and an optional severity
    (default 1); the first starts at 0 and each later one after the one before. Empty text is
    no schedule (an empty tuple). ValueError names the entry that is wrong and why.
    """
    if not text.strip():
        return ()
    schedule: list[ConditionSegment] = []
    for number, entry in enumerate(text.split(","), 1):
        entry = entry.strip()
        fields = [f.strip() for f in entry.split(":")]
        if not entry or len(fields) not in (2, 3):
            shown = repr(entry) if entry else f"{number} (empty)"
            raise ValueError(f"entry {shown} is not of the form {SCHEDULE_FORMAT}")
        start = non_negative(fields[0], "start", f"entry {entry!r}")
        severity = (non_negative(fields[2], "severity", f"entry {entry!r}") if len(fields) == 3
                    else 1.0)  # fmt: skip
        try:
            check_condition(fields[1], severity)
        except ValueError as exc:
            raise ValueError(f"entry {entry!r}: {exc}") from None
        if not schedule and start != 0:
            raise ValueError(f"entry {entry!r}: the first entry must start at 0 s")
        if schedule and not start > schedule[-1][0]:
            raise ValueError(
                f"entry {entry!r}: starts at {start:g} s, not after the entry before it "
                f"({schedule[-1][0]:g} s)"
            )
        schedule.append((start, fields[1], severity))
    return tuple(schedule)


def condition_at(schedule: tuple[ConditionSegment, ...], t_s: float) -> ConditionSegment:
    """The segment of a non-empty `schedule` in force `t_s` seconds in (the last one holds)."""
    starts = [start for start, _, _ in schedule]
    return schedule[max(0, bisect_right(starts, t_s) - 1)]
