"""Wire encodings for offloaded tensors, validated on decoding.

fp32, fp16 or int8 (affine, per tensor), each optionally compressed losslessly with zlib or
zstd. Decoding checks everything the sender claims, cheapest first, and allocates nothing the
shape does not need.

At cut 0 the drone may instead ship the camera frame itself, at the model's input size, in an
image encoding (`IMAGE_ENCODINGS`: raw uint8 pixels, PNG, or JPEG at a quality); core.images
encodes and decodes those.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import numpy as np
import zstandard

from edgeml_ros.core.untrusted import shown

ENCODINGS = ("fp32", "fp16", "int8")
# The camera frame instead of the input tensor (cut 0 only): raw pixels, lossless PNG, or JPEG
# at the quality its name gives. Frames travel as they are (compression "none").
JPEG_QUALITIES = {"jpeg90": 90, "jpeg75": 75, "jpeg50": 50}
IMAGE_ENCODINGS = ("uint8", "png", *JPEG_QUALITIES)
COMPRESSIONS = ("none", "zlib", "zstd")
_WIRE_DTYPES = {"fp32": np.dtype("<f4"), "fp16": np.dtype("<f2"), "int8": np.dtype(np.uint8)}
DEFAULT_MAX_ELEMENTS = 16 * 1024 * 1024
MAX_DIMS = 8


class CodecError(ValueError):
    """A tensor payload that cannot be decoded as described."""


@dataclass
class EncodedTensor:
    """A tensor as it travels: its decoded shape and dtype, encoding and payload bytes."""

    shape: tuple[int, ...]
    dtype: str
    encoding: str
    compression: str
    data: bytes
    quant_scale: float = 1.0
    quant_zero_point: int = 0


def encode_tensor(
    array: np.ndarray, encoding: str = "fp32", compression: str = "none"
) -> EncodedTensor:
    """Encode a float32 array for the wire."""
    if encoding not in ENCODINGS:
        raise CodecError(f"unknown encoding {encoding!r}; known: {', '.join(ENCODINGS)}")
    if compression not in COMPRESSIONS:
        raise CodecError(f"unknown compression {compression!r}; known: {', '.join(COMPRESSIONS)}")
    array = np.asarray(array, dtype=np.float32)
    scale, zero_point = 1.0, 0
    if encoding == "int8":
        lo, hi = float(array.min(initial=0.0)), float(array.max(initial=0.0))
        scale = (hi - lo) / 255.0 or 1.0
        zero_point = round(-lo / scale)
        wire = np.clip(np.round(array / scale) + zero_point, 0, 255).astype(np.uint8)
    else:
        wire = array.astype(_WIRE_DTYPES[encoding])
    payload = wire.tobytes()
    if compression == "zlib":
        payload = zlib.compress(payload, 1)
    elif compression == "zstd":
        payload = zstandard.ZstdCompressor(level=1).compress(payload)
    return EncodedTensor(
        tuple(int(d) for d in array.shape),
        "float32",
        encoding,
        compression,
        payload,
        float(scale),
        zero_point,
    )


def max_wire_bytes(elements: int, encoding: str, compression: str) -> int:
    """The most bytes a tensor of `elements` can take on the wire as `encoding`/`compression`.

    Uncompressed, exactly its raw size. Compressed, a bound above zlib's deflateBound for any
    settings and above ZSTD_compressBound: incompressible data grows a little, never more.
    """
    raw = elements * _WIRE_DTYPES[encoding].itemsize
    return raw if compression == "none" else raw + (raw >> 3) + (raw >> 6) + 64


def decompress(data, compression: str, size: int) -> bytes:
    """Inflate `data`, which must hold exactly one stream of `size` bytes at most.

    CodecError when it would inflate past `size`, is truncated or has bytes after the stream;
    nothing beyond `size` (and one byte) is ever inflated.
    """
    try:
        if compression == "zlib":
            inflater = zlib.decompressobj()
            out = inflater.decompress(data, size + 1)
            if len(out) > size or inflater.unconsumed_tail:
                raise CodecError(f"zlib payload inflates past the {size} bytes the shape needs")
            if not inflater.eof:
                raise CodecError("zlib payload is truncated (its stream does not end)")
            if inflater.unused_data:
                raise CodecError(f"{len(inflater.unused_data)} bytes follow the zlib stream")
            return out
        declared = zstandard.frame_content_size(data)
        if declared > size:
            raise CodecError(
                f"zstd payload declares {declared} bytes, more than the {size} the shape needs"
            )
        # A frame without a declared size decodes into `size` bytes at most.
        out = zstandard.ZstdDecompressor().decompress(data, max_output_size=size)
        # decompress() reads the first frame only: the same frame again, to see what follows
        # it (its output is known to fit).
        rest = zstandard.ZstdDecompressor().decompressobj()
        rest.decompress(data)
        if rest.unused_data:
            raise CodecError(f"{len(rest.unused_data)} bytes follow the zstd frame")
        return out
    except (zlib.error, zstandard.ZstdError) as exc:
        raise CodecError(f"bad {compression} payload: {exc}") from exc


def _check_quantization(tensor: EncodedTensor) -> None:
    if not (math.isfinite(tensor.quant_scale) and tensor.quant_scale > 0):
        raise CodecError(f"int8 quant_scale must be finite and > 0, got {tensor.quant_scale}")
    if not 0 <= tensor.quant_zero_point <= 255:
        raise CodecError(f"int8 quant_zero_point must be in 0..255, got {tensor.quant_zero_point}")


def decode_tensor(tensor: EncodedTensor, max_elements: int = DEFAULT_MAX_ELEMENTS) -> np.ndarray:
    """Decode to float32, refusing whatever does not add up, before allocating for it.

    The cheap checks come first (names, shape, quantization, the payload's length against what
    the shape needs); only a payload that can hold the shape is copied or inflated, and never
    into more than the shape needs.
    """
    if tensor.encoding not in ENCODINGS:
        raise CodecError(
            f"unknown encoding {shown(tensor.encoding)}; known: {', '.join(ENCODINGS)}"
        )
    if tensor.compression not in COMPRESSIONS:
        raise CodecError(
            f"unknown compression {shown(tensor.compression)}; known: {', '.join(COMPRESSIONS)}"
        )
    if tensor.dtype != "float32":
        raise CodecError(f"dtype {shown(tensor.dtype)} unsupported (only float32)")
    if not 0 < len(tensor.shape) <= MAX_DIMS:
        raise CodecError(f"shape has {len(tensor.shape)} dimensions; 1 to {MAX_DIMS} allowed")
    shape = tuple(int(d) for d in tensor.shape)
    if any(d <= 0 for d in shape):
        raise CodecError(f"shape {list(shape)} has no elements")
    elements = math.prod(shape)
    if elements > max_elements:
        raise CodecError(f"shape {list(shape)} has {elements} elements, limit {max_elements}")
    if tensor.encoding == "int8":
        _check_quantization(tensor)
    wire_dtype = _WIRE_DTYPES[tensor.encoding]
    expected = elements * wire_dtype.itemsize
    size, bound = len(tensor.data), max_wire_bytes(elements, tensor.encoding, tensor.compression)
    if tensor.compression == "none" and size != expected:
        raise CodecError(
            f"payload has {size} bytes; shape {list(shape)} as {tensor.encoding} needs {expected}"
        )
    if size > bound:
        raise CodecError(
            f"{tensor.compression} payload has {size} bytes, more than {bound}, the most that "
            f"{expected} bytes (shape {list(shape)} as {tensor.encoding}) compress to"
        )
    raw = tensor.data
    if tensor.compression != "none":
        raw = decompress(raw, tensor.compression, expected)
        if len(raw) != expected:
            raise CodecError(
                f"payload has {len(raw)} bytes after decompression; shape {list(shape)} "
                f"as {tensor.encoding} needs {expected}"
            )
    wire = np.frombuffer(raw, dtype=wire_dtype).reshape(shape)
    out = wire.astype(np.float32)
    if tensor.encoding == "int8":
        with np.errstate(over="ignore"):  # an overflow is refused just below
            out = (out - np.float32(tensor.quant_zero_point)) * np.float32(tensor.quant_scale)
    if not np.all(np.isfinite(out)):
        raise CodecError("payload contains NaN or infinite values")
    return out
