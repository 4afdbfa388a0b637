import contextlib
import tracemalloc

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from image_helpers import encoded, jpeg_claiming, png_claiming

from edgeml_ros.core.codec import IMAGE_ENCODINGS, EncodedTensor
from edgeml_ros.core.images import (
    MAX_COMPRESSED_BYTES,
    MAX_IMAGE_BYTES,
    ImageDecodeError,
    decode_compressed,
    decode_frame,
    decode_image,
    encode_frame,
    input_frame,
    resize_and_normalize,
    to_model_input,
)


def test_mono8_round_trip():
    img = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    out = decode_image("mono8", 3, 4, 4, False, img.tobytes())
    np.testing.assert_allclose(out[:, :, 0], img / 255.0, atol=1e-5)


def test_row_padding_is_skipped():
    img = np.full((2, 3), 255, np.uint8)
    padded = np.zeros((2, 8), np.uint8)
    padded[:, :3] = img
    out = decode_image("mono8", 2, 3, 8, False, padded.tobytes())
    np.testing.assert_allclose(out, 1.0)


@pytest.mark.parametrize("encoding,order", [("rgb8", [0, 1, 2]), ("bgr8", [2, 1, 0])])
def test_color_to_luma(encoding, order):
    rgb = np.zeros((1, 1, 3), np.uint8)
    rgb[0, 0, order[0]] = 255  # pure red in either channel order
    out = decode_image(encoding, 1, 1, 3, False, rgb.tobytes())
    assert out[0, 0, 0] == pytest.approx(0.299, abs=1e-3)
    np.testing.assert_allclose(
        decode_image(encoding, 1, 1, 3, False, rgb.tobytes(), 3), [[[1, 0, 0]]]
    )


def test_gray_to_three_channels():
    out = decode_image("mono8", 1, 2, 2, False, bytes([0, 255]), channels=3)
    assert out.shape == (1, 2, 3) and np.all(out[0, 1] == 1.0)


def test_mono16_big_endian():
    img = np.array([[65535, 0]], dtype=">u2")
    out = decode_image("mono16", 1, 2, 4, True, img.tobytes())
    np.testing.assert_allclose(out[:, :, 0], [[1.0, 0.0]])


def test_float_image():
    img = np.array([[0.25, 0.75]], dtype="<f4")
    out = decode_image("32FC1", 1, 2, 8, False, img.tobytes())
    np.testing.assert_allclose(out[:, :, 0], [[0.25, 0.75]])


@pytest.mark.parametrize(
    "args,match",
    [
        (("yuv422", 2, 2, 4, False, bytes(8)), "unsupported encoding 'yuv422'"),
        (("mono8", 0, 2, 2, False, b""), "zero-size"),
        (("rgb8", 2, 2, 4, False, bytes(8)), "step 4 is less than"),
        (("mono8", 2, 2, 2, False, bytes(3)), "data has 3 bytes, but step"),
        (("32FC1", 1, 1, 4, False, np.array([np.nan], "<f4").tobytes()), "NaN"),
    ],
)
def test_bad_images_are_refused(args, match):
    with pytest.raises(ImageDecodeError, match=match):
        decode_image(*args)


def test_model_input_resizes_and_normalizes():
    x = to_model_input(np.ones((56, 40, 1), np.float32), (28, 28), 0.5, 0.25)
    assert tuple(x.shape) == (1, 1, 28, 28)
    assert float(x.mean()) == pytest.approx(2.0)


def test_model_input_normalizes_each_channel():
    image = np.stack([np.full((4, 6), v, np.float32) for v in (0.2, 0.5, 0.8)], axis=-1)
    x = to_model_input(image, (2, 3), [0.2, 0.4, 0.6], [0.1, 0.5, 0.2])
    assert tuple(x.shape) == (1, 3, 2, 3)
    assert torch.allclose(x[0, :, 0, 0], torch.tensor([0.0, 0.2, 1.0]))
    one_for_all = to_model_input(image, (2, 3), [0.5], [0.5])  # a format-1 checkpoint's
    assert torch.allclose(one_for_all[0, :, 1, 2], torch.tensor([-0.6, 0.0, 0.6]))


@pytest.mark.parametrize("size_in, size_out", [((28, 28), (32, 32)), ((56, 40), (28, 28)),
                                               ((7, 9), (20, 5))])  # fmt: skip
def test_resizing_matches_torch_bilinear_interpolation(size_in, size_out):
    """The trained checkpoints saw torch's bilinear interpolate: frames must resize the same."""
    images = torch.rand(3, 2, *size_in, generator=torch.Generator().manual_seed(0))
    expected = F.interpolate(images, size=size_out, mode="bilinear", align_corners=False) - 0.5
    batch = resize_and_normalize(images, size_out, 0.5, 1.0)
    assert torch.allclose(batch, expected, atol=1e-5)
    frame = to_model_input(images[0].permute(1, 2, 0).numpy(), size_out, 0.5, 1.0)
    assert torch.allclose(frame, expected[:1], atol=1e-5)


def _encoded(fmt: str) -> bytes:
    return encoded(np.arange(64, dtype=np.uint8).reshape(8, 8), fmt)


@contextlib.contextmanager
def _allocations_below(limit: int):
    tracemalloc.start()
    try:
        yield
        assert tracemalloc.get_traced_memory()[1] < limit
    finally:
        tracemalloc.stop()


def test_huge_claimed_size_with_little_data_is_refused_first():
    with pytest.raises(ImageDecodeError, match=r"image too large \(100000x100000 > 16777216"):
        decode_image("mono8", 100_000, 100_000, 100_000, False, bytes(10))


def test_more_data_than_any_image_is_refused_before_copying():
    data = np.zeros(MAX_IMAGE_BYTES + 1, np.uint8)  # zero pages: not touched
    with _allocations_below(100_000), pytest.raises(ImageDecodeError, match="more than 134217728"):
        decode_image("mono8", 4096, 4096, 8193, False, data)


def test_an_unknown_encoding_is_quoted_short():
    with pytest.raises(ImageDecodeError, match=r"'y{64}'\.\.\. \(1000000 characters\)") as exc:
        decode_image("y" * 1_000_000, 1, 1, 1, False, bytes(1))
    assert len(str(exc.value)) < 300


@pytest.mark.parametrize("fmt", ["png", "jpeg", "bgr8; jpeg compressed bgr8"])
def test_compressed_formats_decode(fmt):
    data = _encoded("PNG" if "png" in fmt else "JPEG")
    out = decode_compressed(fmt, data)
    assert out.shape == (8, 8, 1) and 0.0 <= out.min() <= out.max() <= 1.0


@pytest.mark.parametrize(
    "fmt,data,match",
    [
        ("png", png_claiming(5000, 5000), r"image too large \(5000x5000 > 16777216 pixels\)"),
        ("jpeg", jpeg_claiming(5000, 5000), r"image too large \(5000x5000 > 16777216 pixels\)"),
        # past Pillow's own decompression-bomb limit: refused as it opens the header
        ("png", png_claiming(100_000, 100_000), "DecompressionBombError: Image size"),
        ("jpeg", jpeg_claiming(60_000, 60_000), "DecompressionBombError: Image size"),
        ("png", png_claiming(64, 64), "cannot decode 'png' data as PNG: OSError"),  # truncated
        ("png", _encoded("JPEG"), "^'png' data is not a PNG image$"),
        ("jpeg", _encoded("PNG"), "^'jpeg' data is not a JPEG image$"),
        ("jpeg", _encoded("GIF"), "'jpeg' data is not a JPEG image"),  # Pillow reads GIF
        ("png", _encoded("BMP"), "'png' data is not a PNG image"),
        ("png", bytes(range(256)) * 4, "'png' data is not a PNG image"),
        ("png", b"", "no data"),
        ("tiff", _encoded("TIFF"), "unsupported compressed format 'tiff'"),
        ("z" * 100_000, b"x", r"unsupported compressed format 'z{64}'\.\.\. \(100000 characters"),
    ],
)
def test_bad_compressed_images_are_refused_before_decoding(fmt, data, match):
    with _allocations_below(1_000_000), pytest.raises(ImageDecodeError, match=match):
        decode_compressed(fmt, data)


def test_oversized_compressed_image_is_refused_before_copying():
    data = np.zeros(MAX_COMPRESSED_BYTES + 1, np.uint8)
    with _allocations_below(100_000), pytest.raises(ImageDecodeError, match="> 33554432"):
        decode_compressed("png", data)


# the camera frame itself, shipped at cut 0 ----------------------------------------------------
def _frame(channels: int) -> np.ndarray:
    rng = np.random.default_rng(channels)
    smooth = np.linspace(0, 255, 28 * 28).reshape(28, 28, 1)
    return np.clip(smooth + rng.normal(0, 8, (28, 28, channels)), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("channels", [1, 3])
def test_frames_round_trip_through_every_image_encoding(channels):
    frame = _frame(channels)
    raw = decode_frame(encode_frame(frame, "uint8"), channels)
    np.testing.assert_array_equal(raw, frame * np.float32(1 / 255))  # as a mono8/rgb8 image
    for encoding in IMAGE_ENCODINGS:
        wire = encode_frame(frame, encoding)
        assert (wire.shape, wire.dtype, wire.compression) == ((28, 28, channels), "uint8", "none")
        out = decode_frame(wire, channels)
        assert out.shape == (28, 28, channels) and out.dtype == np.float32
        if encoding in ("uint8", "png"):  # lossless: the very floats of the raw frame
            np.testing.assert_array_equal(out, raw)
        else:
            assert np.abs(out - raw).mean() < 8 / 255
    sizes = {e: len(encode_frame(frame, e).data) for e in IMAGE_ENCODINGS}
    assert sizes["uint8"] == frame.nbytes and sizes["jpeg50"] < sizes["jpeg90"] < frame.nbytes


def test_input_frame_is_the_model_input_before_normalizing():
    image = np.random.default_rng(0).random((56, 40, 1), dtype=np.float32)
    frame = input_frame(image, (28, 28))
    assert frame.shape == (28, 28, 1) and frame.dtype == np.uint8
    x = to_model_input(frame / np.float32(255), (28, 28), 0.5, 0.25)
    np.testing.assert_allclose(
        x, to_model_input(image, (28, 28), 0.5, 0.25), atol=0.5 / 255 / 0.25
    )


def _wire(encoding: str, data: bytes, **change) -> EncodedTensor:
    tensor = EncodedTensor((28, 28, 1), "uint8", encoding, "none", data)
    for k, v in change.items():
        setattr(tensor, k, v)
    return tensor


_GREY = _frame(1)[:, :, 0]
_PNG, _JPEG = encoded(_GREY, "PNG"), encoded(_GREY, "JPEG")


@pytest.mark.parametrize(
    "tensor,match",
    [
        (_wire("png", png_claiming(4000, 4000)), "^png frame is 4000x4000 L, not the 28x28 L"),
        (_wire("png", png_claiming(28, 28)), "pixel data: zlib payload is shorter than the 812"),
        (_wire("png", _PNG[: len(_PNG) // 2]), "pixel data: zlib payload is truncated"),
        (_wire("png", png_claiming(28, 28, b"\0" * 10_000_000)), "inflates past the 812 bytes"),
        (
            _wire("png", png_claiming(28, 28, b"\0" * 812, b"more")),
            "4 bytes follow the zlib stream",
        ),
        (_wire("png", encoded(np.repeat(_GREY[:, :, None], 3, 2), "PNG")), "is 28x28 RGB, not"),
        (_wire("png", encoded(_GREY[:14], "PNG")), "frame is 28x14 L, not the 28x28 L"),
        (_wire("jpeg75", jpeg_claiming(3000, 3000, _GREY)), "^jpeg frame is 3000x3000 L"),
        (_wire("jpeg90", _PNG), "'jpeg' data is not a JPEG image"),
        (_wire("jpeg50", _JPEG[: len(_JPEG) // 2]), "cannot decode 'jpeg' data as JPEG: OSError"),
        (_wire("png", png_claiming(100_000, 100_000)), "DecompressionBombError"),
        (_wire("uint8", bytes(783)), r"data has 783 bytes, but step\*height = 28\*28 = 784"),
        (_wire("png", _PNG, dtype="float32"), "dtype 'float32' unsupported for png frames"),
        (_wire("png", _PNG, compression="zlib"), "png frames travel uncompressed, not 'zlib'"),
        (_wire("png", _PNG, shape=(28, 28)), r"shape \[28, 28\] is not a \(height, width, 1\)"),
        (_wire("png", _PNG, shape=(28, 28, 3)), r"shape \[28, 28, 3\] is not a"),
        (_wire("png", _PNG, shape=(100_000, 100_000, 1)), "image too large"),
        (_wire("webp", _PNG), "unknown image encoding 'webp'"),
    ],
)
def test_lying_frames_are_refused_before_allocating_for_them(tensor, match):
    with _allocations_below(1_000_000), pytest.raises(ImageDecodeError, match=match):
        decode_frame(tensor, 1)


def test_only_frames_of_uint8_pixels_encode():
    with pytest.raises(ValueError, match="unknown image encoding 'gif'"):
        encode_frame(_frame(1), "gif")
    with pytest.raises(ValueError, match=r"not \(28, 28, 1\) float32"):
        encode_frame(_frame(1).astype(np.float32), "png")
