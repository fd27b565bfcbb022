"""core.checks: the argument checks shared across core, their returns and their one-sentence errors."""

import numpy as np
import pytest

from core.checks import (
    check_flow,
    check_flow_stack,
    check_frames,
    check_image_uint8,
    check_rgb_uint8,
    check_same_hw,
    check_size,
)
from core.errors import InputError


def test_valid_input_comes_back_unchanged_or_as_float32():
    image = np.zeros((4, 6, 1), np.uint8)
    frames = np.zeros((2, 4, 6, 3), np.uint8)
    assert check_image_uint8(image) is image
    rgb = frames[0]
    assert check_rgb_uint8(rgb) is rgb
    assert check_frames(frames) is frames
    flow = np.ones((4, 6, 2), np.float32)
    assert check_flow(flow) is flow  # already float32: no copy
    converted = check_flow(flow.astype(np.float64))
    assert converted.dtype == np.float32 and np.array_equal(converted, flow)
    assert check_flow_stack(np.ones((3, 4, 6, 2), np.float16)).dtype == np.float32
    check_same_hw(image, flow, "image", "flow")
    assert check_size((640, 480.5), "image_size") == (640.0, 480.5)


@pytest.mark.parametrize(
    ("check", "value", "message"),
    [
        (check_image_uint8, [[0]], "image must be a numpy array, got list."),
        (
            check_image_uint8,
            np.zeros((4, 4, 3), np.float32),
            "image must be uint8 pixels in [0,255], got dtype float32.",
        ),
        (check_image_uint8, np.zeros((4, 4), np.uint8), "image must have shape (H,W,C), got shape (4, 4)."),
        (check_image_uint8, np.zeros((0, 4, 3), np.uint8), "image is empty (shape (0, 4, 3))."),
        (
            check_rgb_uint8,
            np.zeros((4, 4, 4), np.uint8),
            "frame must have 3 colour channels (H,W,3), got shape (4, 4, 4).",
        ),
        (
            check_frames,
            [np.zeros((4, 4, 3), np.uint8)],
            "frames must be a numpy array of shape (T,H,W,3), got list.",
        ),
        (
            check_frames,
            np.zeros((4, 4, 3), np.uint8),
            "frames must have shape (T,H,W,3) with RGB channels, got (4, 4, 3).",
        ),
        (
            check_frames,
            np.zeros((1, 4, 4, 3), np.int16),
            "frames must be uint8 pixels in [0,255], got dtype int16.",
        ),
        (
            check_frames,
            np.zeros((0, 4, 4, 3), np.uint8),
            "frames must hold at least one frame with pixels, got shape (0, 4, 4, 3).",
        ),
        (
            check_flow,
            np.zeros((4, 4, 3), np.float32),
            "flow must have shape (H,W,2) holding (dx, dy), got shape (4, 4, 3).",
        ),
        (check_flow, np.zeros((0, 4, 2), np.float32), "flow is empty (shape (0, 4, 2))."),
        (check_flow, np.zeros((4, 4, 2), np.int32), "flow must be a float array in pixels, got dtype int32."),
        (
            check_flow,
            np.full((4, 4, 2), np.nan, np.float32),
            "flow contains NaN or infinite values; mask them out before this call.",
        ),
        (
            check_flow_stack,
            np.zeros((4, 4, 2), np.float32),
            "flows must be an array of shape (N,H,W,2), got (4, 4, 2).",
        ),
        (
            check_flow_stack,
            np.zeros((0, 4, 4, 2), np.float32),
            "flows holds no flow fields (shape (0, 4, 4, 2)).",
        ),
        (check_size, (640,), "image_size must be (width, height), got (640,)."),
        (check_size, (640, 0), "image_size must be positive (width, height), got (640, 0)."),
        (check_size, (float("inf"), 480), "image_size must be positive (width, height), got (inf, 480)."),
    ],
)
def test_each_bad_argument_gets_its_sentence(check, value, message):
    args = (value, "image_size") if check is check_size else (value,)
    with pytest.raises(InputError) as caught:
        check(*args)
    assert str(caught.value) == message


def test_a_non_finite_field_deep_in_a_stack_is_found():
    flows = np.zeros((3, 4, 4, 2), np.float32)
    flows[2, 3, 3, 1] = np.inf
    with pytest.raises(InputError, match="flows contains NaN or infinite values"):
        check_flow_stack(flows)


def test_names_appear_in_the_sentences():
    with pytest.raises(InputError, match=r"^edited keyframes must be uint8"):
        check_frames(np.zeros((1, 2, 2, 3), np.float32), "edited keyframes")
    with pytest.raises(
        InputError, match=r"^flow_01 is 3x2 but flow_12 is 4x2 \(width x height\); they must match\.$"
    ):
        check_same_hw(np.zeros((2, 3, 2)), np.zeros((2, 4, 2)), "flow_01", "flow_12")
