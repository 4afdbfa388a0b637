"""Wire encodings for offloaded tensors, validated on decoding.

fp32, fp16 or int8 (affine, per tensor), each optionally compressed losslessly with zlib or
zstd. Decoding checks everything the sender claims.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import numpy as np
import zstandard

ENCODINGS = ("fp32", "fp16", "int8")
COMPRESSIONS = ("none", "zlib", "zstd")
_WIRE_DTYPES = {"fp32": np.dtype("<f4"), "fp16": np.dtype("<f2"), "int8": np.dtype(np.uint8)}
DEFAULT_MAX_ELEMENTS = 16 * 1024 * 1024


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


def _decompress(data: bytes, compression: str, limit: int) -> bytes:
    try:
        if compression == "zlib":
            inflater = zlib.decompressobj()
            out = inflater.decompress(data, limit + 1)
            if inflater.unconsumed_tail or not inflater.eof:
                raise CodecError("zlib payload is truncated or inflates past its declared size")
            return out
        if compression == "zstd":
            declared = zstandard.frame_content_size(data)
            if declared > limit:
                raise CodecError(f"zstd payload declares {declared} bytes, more than expected")
            return zstandard.ZstdDecompressor().decompress(data, max_output_size=limit + 1)
    except (zlib.error, zstandard.ZstdError) as exc:
        raise CodecError(f"bad {compression} payload: {exc}") from exc
    return data


def decode_tensor(tensor: EncodedTensor, max_elements: int = DEFAULT_MAX_ELEMENTS) -> np.ndarray:
    """Decode to float32, refusing unknown encodings, bad shapes and wrong lengths."""
    if tensor.encoding not in ENCODINGS:
        raise CodecError(f"unknown encoding {tensor.encoding!r}")
    if tensor.compression not in COMPRESSIONS:
        raise CodecError(f"unknown compression {tensor.compression!r}")
    if tensor.dtype != "float32":
        raise CodecError(f"dtype {tensor.dtype!r} unsupported (only float32)")
    shape = tuple(int(d) for d in tensor.shape)
    if not shape or any(d <= 0 for d in shape):
        raise CodecError(f"shape {list(shape)} has no elements")
    elements = math.prod(shape)
    if elements > max_elements:
        raise CodecError(f"shape {list(shape)} has {elements} elements, limit {max_elements}")
    wire_dtype = _WIRE_DTYPES[tensor.encoding]
    expected = elements * wire_dtype.itemsize
    raw = _decompress(bytes(tensor.data), tensor.compression, expected)
    if len(raw) != expected:
        raise CodecError(
            f"payload has {len(raw)} bytes after decompression; shape {list(shape)} "
            f"as {tensor.encoding} needs {expected}"
        )
    wire = np.frombuffer(raw, dtype=wire_dtype).reshape(shape)
    if tensor.encoding == "int8":
        if not (math.isfinite(tensor.quant_scale) and tensor.quant_scale > 0):
            raise CodecError(f"int8 quant_scale must be finite and > 0, got {tensor.quant_scale}")
        return (wire.astype(np.float32) - np.float32(tensor.quant_zero_point)) * np.float32(
            tensor.quant_scale
        )
    out = wire.astype(np.float32)
    if not np.all(np.isfinite(out)):
        raise CodecError("payload contains NaN or infinite values")
    return out
