"""Camera image decoding (numpy only) and model-input preprocessing.

`decode_image` takes the fields of a sensor_msgs/Image and returns a float image in [0, 1] with
the channels the model takes, refusing anything inconsistent with a clear `ImageDecodeError`.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Sequence
from typing import TypeVar

import numpy as np
import torch
from PIL import Image as PILImage

from edgeml_ros.core.untrusted import shown

# encoding -> (numpy dtype, channels, scale that maps the value range to [0, 1])
_ENCODINGS: dict[str, tuple[np.dtype, int, float]] = {
    "mono8": (np.dtype(np.uint8), 1, 1 / 255.0),
    "8UC1": (np.dtype(np.uint8), 1, 1 / 255.0),
    "mono16": (np.dtype(np.uint16), 1, 1 / 65535.0),
    "16UC1": (np.dtype(np.uint16), 1, 1 / 65535.0),
    "32FC1": (np.dtype(np.float32), 1, 1.0),
    "rgb8": (np.dtype(np.uint8), 3, 1 / 255.0),
    "bgr8": (np.dtype(np.uint8), 3, 1 / 255.0),
    "rgba8": (np.dtype(np.uint8), 4, 1 / 255.0),
    "bgra8": (np.dtype(np.uint8), 4, 1 / 255.0),
    "rgb16": (np.dtype(np.uint16), 3, 1 / 65535.0),
    "bgr16": (np.dtype(np.uint16), 3, 1 / 65535.0),
}
SUPPORTED_ENCODINGS = tuple(_ENCODINGS)
MAX_IMAGE_PIXELS = 4096 * 4096
# The most data an Image may carry: the largest image of the largest pixels (rgb16), padded.
MAX_IMAGE_BYTES = MAX_IMAGE_PIXELS * 8
# ITU-R BT.601 luma weights, in R, G, B order.
_LUMA_RGB = np.array([0.299, 0.587, 0.114], dtype=np.float32)


ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


class ImageDecodeError(ValueError):
    """An image message whose fields are unsupported or inconsistent."""


def _check_size(width: int, height: int) -> None:
    if height <= 0 or width <= 0:
        raise ImageDecodeError(f"zero-size image ({width}x{height})")
    if height * width > MAX_IMAGE_PIXELS:
        raise ImageDecodeError(f"image too large ({width}x{height} > {MAX_IMAGE_PIXELS} pixels)")


def decode_image(
    encoding: str, height: int, width: int, step: int, is_bigendian: bool, data, channels: int = 1
) -> np.ndarray:
    """Decode sensor_msgs/Image fields to a (height, width, channels) float32 image in [0, 1].

    The fields are checked against each other and the limits before anything is copied.
    `channels` is what the model takes: 1 (colour is converted to luma) or 3 (RGB order; a
    single-channel image is repeated).
    """
    if encoding not in _ENCODINGS:
        raise ImageDecodeError(
            f"unsupported encoding {shown(encoding)}; supported: {', '.join(SUPPORTED_ENCODINGS)}"
        )
    if channels not in (1, 3):
        raise ValueError(f"models take 1 or 3 channels, not {channels}")
    _check_size(width, height)
    if len(data) > MAX_IMAGE_BYTES:
        raise ImageDecodeError(f"data has {len(data)} bytes, more than {MAX_IMAGE_BYTES}")
    dtype, in_channels, scale = _ENCODINGS[encoding]
    row_bytes = width * in_channels * dtype.itemsize
    if step < row_bytes:
        raise ImageDecodeError(
            f"step {step} is less than width*channels*bytes = {row_bytes} for {encoding}"
        )
    buf = np.frombuffer(data, dtype=np.uint8)
    if buf.size != step * height:
        raise ImageDecodeError(
            f"data has {buf.size} bytes, but step*height = {step}*{height} = {step * height}"
        )
    rows = buf.reshape(height, step)[:, :row_bytes]
    dtype = dtype.newbyteorder(">" if is_bigendian else "<") if dtype.itemsize > 1 else dtype
    pixels = np.ascontiguousarray(rows).view(dtype).reshape(height, width, in_channels)
    pixels = pixels.astype(np.float32) * np.float32(scale)
    if in_channels > 1:
        pixels = pixels[:, :, :3] if encoding.startswith("rgb") else pixels[:, :, 2::-1]
    out = match_channels(pixels, channels)
    if dtype.kind != "f":  # integers scaled to [0, 1] already
        return out
    if not np.all(np.isfinite(out)):
        raise ImageDecodeError("image contains NaN or infinite values")
    return np.clip(out, 0.0, 1.0)


def match_channels(pixels: np.ndarray, channels: int) -> np.ndarray:
    """(..., C) grey (C = 1) or RGB (C = 3) images with `channels` channels.

    Grey is repeated into RGB; RGB becomes ITU-R BT.601 luma.
    """
    if pixels.shape[-1] == channels:
        return pixels
    if channels == 3:
        return np.repeat(pixels, 3, axis=-1)
    return (pixels @ _LUMA_RGB)[..., None]


MAX_COMPRESSED_BYTES = 32 * 1024 * 1024
# Words of a CompressedImage's `format` (image_transport writes e.g. "bgr8; jpeg compressed
# bgr8") and the one decoder each allows: data in any other format is refused, not sniffed.
_COMPRESSED_FORMATS = {"jpeg": "JPEG", "jpg": "JPEG", "png": "PNG"}


def decode_compressed(image_format: str, data, channels: int = 1) -> np.ndarray:
    """Decode a sensor_msgs/CompressedImage (JPEG or PNG) to (height, width, channels) in [0, 1].

    `image_format` is the message's `format` field ("jpeg", "png", or image_transport's
    "bgr8; jpeg compressed bgr8"); the data must be in that format. The size is checked from
    the header before decoding, so the decoder allocates only for an image within the limits.
    """
    fmt = image_format.lower()
    formats = sorted({pil for word, pil in _COMPRESSED_FORMATS.items() if word in fmt})
    if not formats:
        raise ImageDecodeError(
            f"unsupported compressed format {shown(image_format)}; use jpeg or png"
        )
    if not len(data):
        raise ImageDecodeError("compressed image has no data")
    if len(data) > MAX_COMPRESSED_BYTES:
        raise ImageDecodeError(f"compressed image of {len(data)} bytes > {MAX_COMPRESSED_BYTES}")
    try:
        with PILImage.open(io.BytesIO(bytes(data)), formats=formats) as img:
            _check_size(*img.size)
            pixels = np.asarray(img.convert("L" if channels == 1 else "RGB"), dtype=np.float32)
    except ImageDecodeError:
        raise
    except PILImage.UnidentifiedImageError:  # its message names the BytesIO object
        raise ImageDecodeError(
            f"{shown(image_format)} data is not a {'/'.join(formats)} image"
        ) from None
    except Exception as exc:  # the decoder's every complaint about these bytes: bad input
        raise ImageDecodeError(
            f"cannot decode {shown(image_format)} data as {'/'.join(formats)}: "
            f"{type(exc).__name__}: {exc}"
        ) from None
    pixels = pixels[:, :, None] if pixels.ndim == 2 else pixels
    return pixels / np.float32(255.0)


@functools.lru_cache(maxsize=32)
def _resize_matrix(size_in: int, size_out: int) -> np.ndarray:
    """(size_out, size_in) weights of 1-D bilinear resampling, as torch's align_corners=False."""
    src = np.maximum((np.arange(size_out) + 0.5) * (size_in / size_out) - 0.5, 0.0)
    low = np.minimum(src.astype(np.int64), size_in - 1)
    high = np.minimum(low + 1, size_in - 1)
    frac = (src - low).astype(np.float32)
    weights = np.zeros((size_out, size_in), np.float32)
    np.add.at(weights, (np.arange(size_out), low), 1.0 - frac)
    np.add.at(weights, (np.arange(size_out), high), frac)
    return weights


Norm = float | Sequence[float]


def resize(x: ArrayT, input_size: tuple[int, int]) -> ArrayT:
    """(..., H, W) images at `input_size`, resampled bilinearly (numpy or torch).

    Bilinear resampling as two small matrix products: on one camera frame, a handful of numpy
    operations instead of torch's interpolate (docs/system.md, "Policies over a shaped link").
    """
    height, width = x.shape[-2:]
    if (height, width) == tuple(input_size):
        return x
    rows, cols = _resize_matrix(height, input_size[0]), _resize_matrix(width, input_size[1])
    if isinstance(x, torch.Tensor):
        rows, cols = torch.from_numpy(rows), torch.from_numpy(cols)
    return rows @ x @ cols.T


def normalize(x: ArrayT, mean: Norm, std: Norm) -> ArrayT:
    """(..., C, H, W) images normalised per channel: one mean and std, or one per channel."""
    mean, std = (np.asarray(v, np.float32).reshape(-1, 1, 1) for v in (mean, std))
    if isinstance(x, torch.Tensor):
        mean, std = torch.from_numpy(mean).to(x.device), torch.from_numpy(std).to(x.device)
    return (x - mean) / std


def resize_and_normalize(x: ArrayT, input_size: tuple[int, int], mean: Norm, std: Norm) -> ArrayT:
    """(..., C, H, W) images in [0, 1] at the model's input size, normalised per channel."""
    return normalize(resize(x, input_size), mean, std)


def to_model_input(
    image: np.ndarray, input_size: tuple[int, int], mean: Norm, std: Norm
) -> torch.Tensor:
    """Turn a [0, 1] (H, W, C) image into a normalised (1, C, H, W) model input.

    `mean` and `std` are the checkpoint's: one value, or one per channel.
    """
    x = np.ascontiguousarray(image.transpose(2, 0, 1)[None], dtype=np.float32)
    return torch.from_numpy(np.ascontiguousarray(resize_and_normalize(x, input_size, mean, std)))
