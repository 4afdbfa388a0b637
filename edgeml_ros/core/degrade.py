"""Synthetic input degradations, used to shift how hard the inputs are.

Drones see blurred, noisy and dark frames. These are synthetic stand-ins, applied to [0, 1]
images before normalization, at a severity (1 = the strengths below, used by the profiles; 2
and 3 are stronger). Profiles store exit confidences under each condition, so the simulator can
replay harder inputs exactly, and the demo camera can publish them live.
"""

from __future__ import annotations

import math

import torch

CONDITIONS = ("clean", "blur", "noise", "low_light")
SEVERITIES = (1, 2, 3)
BLUR_SIGMA = 0.8
NOISE_STD = 0.05
LOW_LIGHT_GAIN = 0.3
LOW_LIGHT_NOISE_STD = 0.03


def degrade(
    images: torch.Tensor, condition: str, seed: int = 0, severity: float = 1.0
) -> torch.Tensor:
    """Degraded copy of (N, C, H, W) images in [0, 1]; the noise is fixed by `seed`.

    `severity` scales the blur's sigma, the noise and the darkening (gain 0.3 / severity).
    """
    if condition not in CONDITIONS:
        raise ValueError(f"condition {condition!r} unknown; known: {', '.join(CONDITIONS)}")
    if not 0 < severity <= 10:
        raise ValueError(f"severity must be in (0, 10], not {severity}")
    if condition == "clean":
        return images
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
