"""Synthetic input degradations, used to shift how hard the inputs are.

Drones see blurred, noisy and dark frames. These are synthetic stand-ins, applied to [0, 1]
images before normalization, with fixed strengths (`edgeml profile` prints what each costs a
model in accuracy). Profiles store exit confidences under each condition, so the simulator can
replay harder inputs exactly, and the demo camera can publish them live.
"""

from __future__ import annotations

import torch

CONDITIONS = ("clean", "blur", "noise", "low_light")
BLUR_SIGMA = 0.8
NOISE_STD = 0.05
LOW_LIGHT_GAIN = 0.3
LOW_LIGHT_NOISE_STD = 0.03


def degrade(images: torch.Tensor, condition: str, seed: int = 0) -> torch.Tensor:
    """Degraded copy of (N, C, H, W) images in [0, 1]; the noise is fixed by `seed`."""
    if condition not in CONDITIONS:
        raise ValueError(f"condition {condition!r} unknown; known: {', '.join(CONDITIONS)}")
    if condition == "clean":
        return images
    if condition == "blur":
        # imported here: the controller node reads CONDITIONS, and torchvision costs a node
        # about 1.5 s of CPU at start
        from torchvision.transforms.functional import gaussian_blur

        return gaussian_blur(images, kernel_size=5, sigma=BLUR_SIGMA)
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(images.shape, generator=generator)
    if condition == "noise":
        return (images + NOISE_STD * noise).clamp(0.0, 1.0)
    return (images * LOW_LIGHT_GAIN + LOW_LIGHT_NOISE_STD * noise).clamp(0.0, 1.0)
