import tracemalloc
import zlib

import numpy as np
import pytest
import zstandard

from edgeml_ros.core.codec import (
    COMPRESSIONS,
    CodecError,
    EncodedTensor,
    decode_tensor,
    encode_tensor,
    max_wire_bytes,
)

RNG = np.random.default_rng(0)
FEATURES = np.maximum(RNG.normal(size=(1, 16, 14, 14)), 0).astype(np.float32)


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_fp32_round_trip_is_exact(compression):
    enc = encode_tensor(FEATURES, "fp32", compression)
    np.testing.assert_array_equal(decode_tensor(enc), FEATURES)


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_fp16_round_trip(compression):
    enc = encode_tensor(FEATURES, "fp16", compression)
    assert len(enc.data) <= FEATURES.nbytes // 2 + 64
    np.testing.assert_allclose(decode_tensor(enc), FEATURES, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_int8_round_trip_within_half_a_step(compression):
    enc = encode_tensor(FEATURES, "int8", compression)
    out = decode_tensor(enc)
    assert np.max(np.abs(out - FEATURES)) <= enc.quant_scale / 2 + 1e-6


def test_compression_shrinks_sparse_features():
    raw = encode_tensor(FEATURES, "fp32", "none")
    assert len(encode_tensor(FEATURES, "fp32", "zstd").data) < len(raw.data)


def _good():
    return encode_tensor(FEATURES, "fp32", "none")


@pytest.mark.parametrize(
    "change,match",
    [
        ({"data": b"\x00" * 12}, "payload has 12 bytes"),
        ({"shape": (1, 16, 14, 15)}, "needs"),
        ({"shape": (0, 3)}, "no elements"),
        ({"shape": (1 << 20, 1 << 10)}, "limit"),
        ({"encoding": "bf16"}, "unknown encoding"),
        ({"compression": "lz4"}, "unknown compression"),
        ({"dtype": "float64"}, "dtype"),
        ({"compression": "zlib", "data": b"not zlib at all"}, "bad zlib payload"),
        ({"compression": "zstd", "data": b"not zstd at all"}, "bad zstd payload"),
        ({"shape": (1,) * 9}, "shape has 9 dimensions; 1 to 8 allowed"),
        ({"shape": ()}, "shape has 0 dimensions"),
        ({"encoding": "x" * 100_000}, r"unknown encoding 'x{64}'\.\.\. \(100000 characters\)"),
        ({"dtype": "y" * 100_000}, r"dtype 'y{64}'\.\.\. \(100000 characters\)"),
    ],
)
def test_malformed_payloads_are_refused(change, match):
    enc = _good()
    for k, v in change.items():
        setattr(enc, k, v)
    with pytest.raises(CodecError, match=match):
        decode_tensor(enc)


def _zstd_stream(data: bytes) -> bytes:
    """zstd without the content size in the frame header (as a streaming compressor writes)."""
    compressor = zstandard.ZstdCompressor().compressobj()
    return compressor.compress(data) + compressor.flush()


@pytest.mark.parametrize(
    "compression,bomb,match",
    [
        ("zlib", zlib.compress(bytes(1_000_000), 9), "inflates past the 4000 bytes"),
        ("zstd", zstandard.ZstdCompressor().compress(bytes(100_000_000)), "declares 100000000"),
        ("zstd", _zstd_stream(bytes(100_000_000)), "bad zstd payload"),
    ],
)
def test_compression_bomb_is_refused_without_inflating_it(compression, bomb, match):
    enc = EncodedTensor((1, 1000), "float32", "fp32", compression, bomb)
    assert len(bomb) < max_wire_bytes(1000, "fp32", compression)  # past the length check
    tracemalloc.start()
    try:
        with pytest.raises(CodecError, match=match):
            decode_tensor(enc)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 100_000  # never more than the 4000 bytes the shape needs, and some change


@pytest.mark.parametrize("compression", ["zlib", "zstd"])
def test_compressed_payload_longer_than_any_compression_of_the_shape(compression):
    enc = EncodedTensor((1, 10), "float32", "fp32", compression, bytes(200))
    with pytest.raises(CodecError, match="payload has 200 bytes, more than 109, the most that"):
        decode_tensor(enc)


@pytest.mark.parametrize("compression", ["zlib", "zstd"])
def test_data_after_the_compressed_stream_is_refused(compression):
    enc = encode_tensor(FEATURES, "fp32", compression)
    enc.data += b"\x00junk"
    with pytest.raises(CodecError, match=f"5 bytes follow the {compression}"):
        decode_tensor(enc)


def test_truncated_zlib_stream_is_refused():
    enc = encode_tensor(FEATURES, "fp32", "zlib")
    enc.data = enc.data[:-20]
    with pytest.raises(CodecError, match="truncated"):
        decode_tensor(enc)


@pytest.mark.parametrize("size", [0, 1, 100, 4096, 100_000])
def test_max_wire_bytes_bounds_incompressible_data(size):
    data = RNG.integers(0, 256, size, dtype=np.uint8).tobytes()
    compressed = [zlib.compress(data, level) for level in (0, 1, 9)]
    compressed += [zstandard.ZstdCompressor(level=level).compress(data) for level in (1, 19)]
    assert max(map(len, compressed)) <= max_wire_bytes(size, "int8", "zlib")
    assert max_wire_bytes(size, "int8", "none") == size


def test_int8_needs_a_positive_scale():
    enc = encode_tensor(FEATURES, "int8")
    enc.quant_scale = 0.0
    with pytest.raises(CodecError, match="quant_scale"):
        decode_tensor(enc)


@pytest.mark.parametrize("zero_point", [-1, 256, 2**31 - 1])
def test_int8_zero_point_outside_a_byte_is_refused(zero_point):
    enc = encode_tensor(FEATURES, "int8")
    enc.quant_zero_point = zero_point
    with pytest.raises(CodecError, match=f"quant_zero_point must be in 0..255, got {zero_point}"):
        decode_tensor(enc)


def test_int8_scale_that_overflows_float32_is_refused():
    enc = encode_tensor(FEATURES, "int8")
    enc.quant_scale = 3e38  # finite, but 255 steps of it are not
    with pytest.raises(CodecError, match="NaN or infinite"):
        decode_tensor(enc)


@pytest.mark.parametrize("encoding", ["fp32", "fp16"])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_nan_and_infinite_payloads_are_refused(encoding, value):
    enc = encode_tensor(np.array([1.0, value], np.float32), encoding)
    with pytest.raises(CodecError, match="NaN or infinite"):
        decode_tensor(enc)


def test_unknown_encoding_on_encode():
    with pytest.raises(CodecError, match="unknown encoding"):
        encode_tensor(FEATURES, "fp8")
