"""Annotated frames for rviz: the camera image enlarged, with the answer written under it."""

from __future__ import annotations

import numpy as np
from PIL import Image as PILImage
from PIL import ImageDraw

from edgeml_ros.core.pipeline import FrameResult, Status, Where

BANNER_ROWS = 3
ROW_PX = 14
# An image taller than this many widths is squeezed to it: a 1-pixel-wide camera image would
# otherwise take a canvas of 256 x 256 times its height.
MAX_ASPECT = 4


def result_lines(result: FrameResult) -> list[str]:
    """What a frame's banner says: answer, exit and where, latency and plan."""
    if result.status != Status.OK:
        return [
            Status(result.status).name.lower(),
            result.reason[:40],
            f"frame {result.frame_seq}",
        ]
    return [
        f"{result.class_name} {result.confidence:.2f}",
        f"exit {result.exit_index} on {Where(result.where).name.lower()}",
        f"{result.total_ms:.1f} ms, cut {result.cut_point}",
    ]


def annotate(pixels: np.ndarray, result: FrameResult, width_px: int = 256) -> np.ndarray:
    """An RGB uint8 image: the (H, W, C) [0, 1] frame scaled to `width_px`, plus a text banner."""
    rgb = np.repeat(pixels, 3, axis=2) if pixels.shape[2] == 1 else pixels[:, :, :3]
    image = PILImage.fromarray((np.clip(rgb, 0, 1) * 255).astype(np.uint8))
    height_px = min(max(1, round(width_px * pixels.shape[0] / pixels.shape[1])),
                    MAX_ASPECT * width_px)  # fmt: skip
    image = image.resize((width_px, height_px), PILImage.NEAREST)
    canvas = PILImage.new("RGB", (width_px, height_px + BANNER_ROWS * ROW_PX + 4), (0, 0, 0))
    canvas.paste(image, (0, 0))
    draw = ImageDraw.Draw(canvas)
    colour = (80, 220, 80) if result.status == Status.OK else (240, 80, 80)
    for row, line in enumerate(result_lines(result)):
        draw.text((4, height_px + 2 + row * ROW_PX), line, fill=colour)
    return np.asarray(canvas)
