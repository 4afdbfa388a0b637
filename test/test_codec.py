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
    ],
)
def test_malformed_payloads_are_refused(change, match):
    enc = _good()
    for k, v in change.items():
        setattr(enc, k, v)
    with pytest.raises(CodecError, match=match):
        decode_tensor(enc)


@pytest.mark.parametrize(
    "compression,bomb",
    [
        ("zlib", zlib.compress(bytes(10_000_000))),
        ("zstd", zstandard.ZstdCompressor().compress(bytes(10_000_000))),
    ],
)
def test_compression_bomb_is_refused(compression, bomb):
    enc = EncodedTensor((1, 10), "float32", "fp32", compression, bomb)
    with pytest.raises(CodecError, match=r"more than expected|inflates past"):
        decode_tensor(enc)


def test_int8_needs_a_positive_scale():
    enc = encode_tensor(FEATURES, "int8")
    enc.quant_scale = 0.0
    with pytest.raises(CodecError, match="quant_scale"):
        decode_tensor(enc)


def test_nan_payload_is_refused():
    enc = encode_tensor(np.array([1.0, np.nan], np.float32))
    with pytest.raises(CodecError, match="NaN"):
        decode_tensor(enc)


def test_unknown_encoding_on_encode():
    with pytest.raises(CodecError, match="unknown encoding"):
        encode_tensor(FEATURES, "fp8")
