import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812

from edgeml_ros.core.images import (
    ImageDecodeError,
    decode_image,
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
