"""Camera image decoding (numpy only) and model-input preprocessing.

`decode_image` takes the fields of a sensor_msgs/Image and returns a float image in [0, 1] with
the channels the model takes, refusing anything inconsistent with a clear `ImageDecodeError`.
`encode_frame` and `decode_frame` carry the camera frame itself to the base station at cut 0,
in an image encoding (core.codec.IMAGE_ENCODINGS).
"""

from __future__ import annotations

import functools
import io
import struct
from collections.abc import Sequence
from typing import TypeVar

import numpy as np
import torch
from PIL import Image as PILImage

from edgeml_ros.core.codec import (
    IMAGE_ENCODINGS,
    JPEG_QUALITIES,
    CodecError,
    EncodedTensor,
    decompress,
)
from edgeml_ros.core.untrusted import shown, shown_shape

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
# A frame of the model's channels: as Pillow's colour modes and as raw Image encodings.
_PIL_MODES = {1: "L", 3: "RGB"}
_RAW_ENCODINGS = {1: "mono8", 3: "rgb8"}


def decode_compressed(image_format: str, data, channels: int = 1) -> np.ndarray:
    """Decode a sensor_msgs/CompressedImage (JPEG or PNG) to (height, width, channels) in [0, 1].

    `image_format` is the message's `format` field ("jpeg", "png", or image_transport's
    "bgr8; jpeg compressed bgr8"); the data must be in that format. The size is checked from
    the header before decoding, so the decoder allocates only for an image within the limits.
    """
    return _decompressed(image_format, data, channels).astype(np.float32) / np.float32(255.0)


def _decompressed(
    image_format: str, data, channels: int, frame_size: tuple[int, int] | None = None
) -> np.ndarray:
    """(height, width, channels) uint8 pixels of JPEG or PNG data in `image_format`.

    The header is checked before decoding: the size within the limits and, with `frame_size`
    (width, height), exactly that size and already in the model's colour mode, so that the
    decoder allocates no more than that frame.
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
    mode, data = _PIL_MODES[channels], bytes(data)
    try:
        with PILImage.open(io.BytesIO(data), formats=formats) as img:
            _check_size(*img.size)
            if frame_size is not None:
                _check_frame_header(img, frame_size, mode, data)
            pixels = np.asarray(img.convert(mode))
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
    return pixels[:, :, None] if pixels.ndim == 2 else pixels


def _check_frame_header(
    img: PILImage.Image, size: tuple[int, int], mode: str, data: bytes
) -> None:
    """Refuse a frame's PNG or JPEG unless its header declares `size` (width, height) in `mode`.

    A PNG's pixel stream must also inflate to exactly the rows of that frame (Pillow would
    stop at them and ignore the rest, or leave a short image black).
    """
    if (img.size, img.mode) != (size, mode):
        raise ImageDecodeError(
            f"{img.format.lower()} frame is {img.size[0]}x{img.size[1]} {img.mode}, not the "
            f"{size[0]}x{size[1]} {mode} its shape declares"
        )
    if img.format != "PNG":
        return
    if img.info.get("interlace"):
        raise ImageDecodeError("png frame is interlaced; frames are sent row by row")
    rows = size[1] * (1 + size[0] * len(mode))  # a filter byte, then the row's pixels
    try:
        if len(decompress(_png_pixel_stream(data), "zlib", rows)) != rows:
            raise CodecError(f"zlib payload is shorter than the {rows} bytes of the frame's rows")
    except CodecError as exc:
        raise ImageDecodeError(f"png frame's pixel data: {exc}") from None


def _png_pixel_stream(data: bytes) -> bytes:
    """The zlib stream of a PNG's pixels: its IDAT chunks' data, joined."""
    parts, at = [], 8  # after the signature
    while at + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[at : at + 8])
        if kind == b"IDAT":
            parts.append(data[at + 8 : at + 8 + length])
        elif kind == b"IEND":
            break
        at += 12 + length  # length, type, data, CRC
    return b"".join(parts)


def input_frame(image: np.ndarray, input_size: tuple[int, int]) -> np.ndarray:
    """A [0, 1] (H, W, C) image at the model's input size, as (h, w, C) uint8 pixels.

    The frame an image encoding ships at cut 0; the base station reads it back (`decode_frame`)
    and preprocesses it as the drone preprocesses a camera image (`to_model_input`).
    """
    chw = np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32)
    pixels = np.round(np.clip(resize(chw, input_size), 0.0, 1.0) * np.float32(255.0))
    return np.ascontiguousarray(pixels.astype(np.uint8).transpose(1, 2, 0))


def encode_frame(frame: np.ndarray, encoding: str) -> EncodedTensor:
    """An (H, W, C) uint8 frame (C = 1 or 3) in an image encoding, for the wire."""
    if encoding not in IMAGE_ENCODINGS:
        raise ValueError(
            f"unknown image encoding {encoding!r}; known: {', '.join(IMAGE_ENCODINGS)}"
        )
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] not in _PIL_MODES:
        raise ValueError(f"a frame is (H, W, 1 or 3) uint8, not {frame.shape} {frame.dtype}")
    if encoding == "uint8":
        data = frame.tobytes()
    else:
        out = io.BytesIO()
        image = PILImage.fromarray(frame[:, :, 0] if frame.shape[2] == 1 else frame)
        if encoding == "png":
            image.save(out, format="PNG")
        else:
            # optimized Huffman tables: on a small frame the default tables cost a third
            image.save(out, format="JPEG", quality=JPEG_QUALITIES[encoding], optimize=True)
        data = out.getvalue()
    return EncodedTensor(frame.shape, "uint8", encoding, "none", data)


def decode_frame(tensor: EncodedTensor, channels: int) -> np.ndarray:
    """A frame shipped in an image encoding, as the [0, 1] (H, W, channels) image it carries.

    The declared encoding, dtype, compression and shape are checked first; a PNG or JPEG must
    then be that size and colour mode by its header before it is decoded. Its pixels are read
    as the raw uint8 frame's are (`decode_image`), so every encoding gives the same floats for
    the same pixels.
    """
    if tensor.encoding not in IMAGE_ENCODINGS:
        raise ImageDecodeError(
            f"unknown image encoding {shown(tensor.encoding)}; known: {', '.join(IMAGE_ENCODINGS)}"
        )
    if tensor.dtype != "uint8":
        raise ImageDecodeError(
            f"dtype {shown(tensor.dtype)} unsupported for {tensor.encoding} frames (only uint8)"
        )
    if tensor.compression != "none":
        raise ImageDecodeError(
            f"{tensor.encoding} frames travel uncompressed, not {shown(tensor.compression)}"
        )
    shape = tuple(int(d) for d in tensor.shape)
    if len(shape) != 3 or shape[2] != channels:
        raise ImageDecodeError(
            f"shape {shown_shape(shape)} is not a (height, width, {channels}) frame"
        )
    height, width = shape[:2]
    _check_size(width, height)
    data = tensor.data
    if tensor.encoding != "uint8":
        fmt = "png" if tensor.encoding == "png" else "jpeg"
        data = _decompressed(fmt, data, channels, (width, height)).tobytes()
    return decode_image(_RAW_ENCODINGS[channels], height, width, width * channels, False, data,
                        channels)  # fmt: skip


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
