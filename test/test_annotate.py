import numpy as np

from edgeml_ros.core.annotate import MAX_ASPECT, annotate, result_lines
from edgeml_ros.core.pipeline import FrameResult, Status, Where


def test_annotated_frame_has_the_image_and_a_banner():
    pixels = np.zeros((28, 28, 1), np.float32)
    pixels[:14] = 1.0
    result = FrameResult(7, None, Status.OK, Where.BASE, class_name="Sneaker", confidence=0.93,
                         exit_index=3, cut_point=2, total_ms=21.5)  # fmt: skip
    assert result_lines(result) == ["Sneaker 0.93", "exit 3 on base", "21.5 ms, cut 2"]
    out = annotate(pixels, result, width_px=112)
    assert out.dtype == np.uint8 and out.shape[1] == 112 and out.shape[2] == 3
    assert out.shape[0] > 112  # the banner below the image
    assert out[0, 0].tolist() == [255, 255, 255] and out[100, 0].tolist() == [0, 0, 0]
    assert out[112:].max() > 0  # text was drawn
    bad = FrameResult(8, None, Status.BAD_INPUT, Where.NONE, reason="unsupported encoding 'x'")
    assert result_lines(bad)[0] == "bad_input"


def test_a_tall_thin_frame_is_squeezed_not_blown_up():
    result = FrameResult(9, None, Status.OK, Where.DRONE, class_name="Bag", confidence=0.5)
    out = annotate(np.ones((1_000_000, 1, 1), np.float32), result, width_px=64)
    assert out.shape[:2] == (MAX_ASPECT * 64 + 3 * 14 + 4, 64)
