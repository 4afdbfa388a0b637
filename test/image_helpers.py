"""Encoded images for the tests, good ones and ones whose headers lie (ROS-free)."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image as PILImage


def encoded(pixels: np.ndarray, fmt: str) -> bytes:
    """`pixels` (uint8) in an image file format Pillow writes ("PNG", "JPEG", "GIF", ...)."""
    out = io.BytesIO()
    PILImage.fromarray(pixels).save(out, format=fmt)
    return out.getvalue()


def png_claiming(width: int, height: int, rows: bytes = b"\0" * 64, after: bytes = b"") -> bytes:
    """A grey PNG whose header claims width x height, its pixel stream inflating to `rows`
    (64 bytes by default), with `after` behind that stream."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    pixels = chunk(b"IDAT", zlib.compress(rows) + after)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + pixels + chunk(b"IEND", b"")


def jpeg_claiming(width: int, height: int, pixels: np.ndarray | None = None) -> bytes:
    """A real JPEG of `pixels` (8x8 black by default) whose frame header claims width x height."""
    data = bytearray(encoded(np.zeros((8, 8), np.uint8) if pixels is None else pixels, "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)
