"""core.flow.warp: backward warping (gather), forward splatting (scatter with occlusion), inversion."""

import numpy as np
import pytest

from core.errors import InputError
from core.flow import backward_warp, forward_splat, invert_flow, warp_field


def _image(h=48, w=64, c=3, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, c), dtype=np.uint8)


def _constant_flow(h, w, dx, dy):
    flow = np.empty((h, w, 2), np.float32)
    flow[..., 0], flow[..., 1] = dx, dy
    return flow


def test_backward_warp_zero_flow_is_identity():
    image = _image()
    assert np.array_equal(backward_warp(image, np.zeros((48, 64, 2), np.float32)), image)


def test_backward_warp_gathers_from_p_plus_flow():
    image = _image()
    out = backward_warp(image, _constant_flow(48, 64, 5, -3))
    # output(y, x) = image(y - 3, x + 5)
    assert np.array_equal(out[3:, :-5], image[:-3, 5:])


def test_backward_warp_half_pixel_is_the_mean_of_neighbours():
    ramp = np.tile((np.arange(64) * 4).astype(np.uint8), (8, 1))[..., None]
    out = backward_warp(ramp, _constant_flow(8, 64, 0.5, 0))
    assert np.array_equal(out[:, :-1, 0], ramp[:, :-1, 0] + 2)


@pytest.mark.parametrize(("border", "expected"), [("replicate", 7), ("constant", 0), ("reflect", 7)])
def test_backward_warp_border_modes(border, expected):
    image = np.full((8, 8, 1), 7, np.uint8)
    out = backward_warp(image, _constant_flow(8, 8, -20, 0), border=border)
    assert out.shape == (8, 8, 1)
    assert np.all(out == expected)


def test_backward_warp_keeps_any_channel_count():
    image = _image(c=5)
    assert backward_warp(image, _constant_flow(48, 64, 1, 1)).shape == (48, 64, 5)


def test_warp_field_is_exact_for_float_fields():
    field = np.random.default_rng(1).standard_normal((16, 16)).astype(np.float32)
    out = warp_field(field, _constant_flow(16, 16, 0.25, 0))
    np.testing.assert_allclose(out[:, :-1], 0.75 * field[:, :-1] + 0.25 * field[:, 1:], atol=1e-6)


def test_forward_splat_zero_flow_is_identity_without_holes():
    image = _image()
    out, holes = forward_splat(image, np.zeros((48, 64, 2), np.float32))
    assert np.array_equal(out, image)
    assert not holes.any()


def test_forward_splat_integer_shift_moves_pixels_and_reports_uncovered_band():
    image = _image()
    out, holes = forward_splat(image, _constant_flow(48, 64, 5, -3))
    # pixel (y, x) lands on (y - 3, x + 5)
    assert np.array_equal(out[:-3, 5:], image[3:, :-5])
    expected_holes = np.zeros((48, 64), bool)
    expected_holes[-3:, :] = True
    expected_holes[:, :5] = True
    assert np.array_equal(holes, expected_holes)
    assert np.all(out[holes] == 0)


def test_forward_splat_moving_object_occludes_static_background():
    image = np.full((40, 40, 3), 50, np.uint8)
    image[10:20, 10:20] = 200  # a bright square that moves 8 px right over the dark background
    flow = np.zeros((40, 40, 2), np.float32)
    flow[10:20, 10:20, 0] = 8
    out, holes = forward_splat(image, flow)
    assert np.all(out[10:20, 18:28] == 200)  # the square covers the background it lands on
    assert np.all(holes[10:20, 10:18])  # the place it left is uncovered
    assert not holes[:10].any() and not holes[20:].any()


def test_forward_splat_priority_argument_overrides_motion_rule():
    image = np.full((40, 40, 3), 50, np.uint8)
    image[10:20, 10:20] = 200
    flow = np.zeros((40, 40, 2), np.float32)
    flow[10:20, 10:20, 0] = 8
    behind = np.zeros((40, 40), np.float32)
    behind[10:20, 10:20] = -1  # the moving square is behind the background
    out, _ = forward_splat(image, flow, priority=behind)
    assert np.all(out[10:20, 20:28] == 50)
    assert np.all(out[10:20, 18:20] == 200)  # no background pixel lands there: it was the square itself


def test_forward_splat_subpixel_agrees_with_backward_warp_of_the_inverse():
    image = _image(seed=3)
    flow = _constant_flow(48, 64, 2.5, 1.25)
    splat, holes = forward_splat(image, flow)
    gathered = backward_warp(image, -flow)
    inner = (slice(4, -4), slice(4, -4))
    assert not holes[inner].any()
    assert np.abs(splat[inner].astype(int) - gathered[inner]).max() <= 1


def test_invert_flow_of_a_shift_and_round_trip_with_backward_warp():
    flow = _constant_flow(32, 32, 3, -2)
    inverse, holes = invert_flow(flow)
    np.testing.assert_allclose(inverse[~holes], np.tile([-3, 2], ((~holes).sum(), 1)))
    image = _image(32, 32)
    moved = backward_warp(image, inverse)
    splat, _ = forward_splat(image, flow)
    assert np.array_equal(moved[~holes], splat[~holes])


@pytest.mark.parametrize(
    ("image", "flow"),
    [
        (np.zeros((8, 8, 3), np.float32), np.zeros((8, 8, 2), np.float32)),  # not uint8
        (np.zeros((8, 8), np.uint8), np.zeros((8, 8, 2), np.float32)),  # no channel axis
        (np.zeros((0, 8, 3), np.uint8), np.zeros((0, 8, 2), np.float32)),  # empty
        (np.zeros((8, 8, 3), np.uint8), np.zeros((8, 9, 2), np.float32)),  # size mismatch
        (np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3), np.float32)),  # flow not (H,W,2)
        (np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 2), np.int32)),  # integer flow
        (np.zeros((8, 8, 3), np.uint8), np.full((8, 8, 2), np.nan, np.float32)),  # NaN flow
    ],
)
def test_warps_reject_bad_input(image, flow):
    with pytest.raises(InputError):
        backward_warp(image, flow)
    with pytest.raises(InputError):
        forward_splat(image, flow)


def test_bad_border_and_priority_are_input_errors():
    image, flow = _image(8, 8), np.zeros((8, 8, 2), np.float32)
    with pytest.raises(InputError, match="border"):
        backward_warp(image, flow, border="wrap")
    with pytest.raises(InputError, match="priority"):
        forward_splat(image, flow, priority=np.zeros((4, 4)))


def test_forward_splat_of_everything_out_of_frame_is_all_holes():
    image = _image(8, 8)
    out, holes = forward_splat(image, _constant_flow(8, 8, 100.5, -1e6))
    assert holes.all() and not out.any()
