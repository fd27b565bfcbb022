"""core.flow.visualize and core.flow.ops: Middlebury colours, composition, accumulation, resizing."""

import numpy as np
import pytest

from core.errors import InputError
from core.eval.fixtures import load_photo
from core.flow import (
    accumulate_flows,
    chain_flows,
    color_wheel,
    compose_flow,
    estimate_flow,
    flow_legend,
    flow_to_color,
    render_flow_video,
    resize_flow,
)


def _constant_flow(h, w, dx, dy):
    flow = np.empty((h, w, 2), np.float32)
    flow[..., 0], flow[..., 1] = dx, dy
    return flow


def _grid(h, w):
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    return xs, ys


# --- colours ---------------------------------------------------------------------------------------


def test_color_wheel_has_the_55_middlebury_colours():
    wheel = np.rint(color_wheel() * 255).astype(int)
    assert wheel.shape == (55, 3)
    # ramp starts: red, yellow, green, cyan, blue, magenta after 15, 6, 4, 11, 13 steps
    for index, rgb in [(0, (255, 0, 0)), (15, (255, 255, 0)), (21, (0, 255, 0)), (25, (0, 255, 255))]:
        assert tuple(wheel[index]) == rgb
    assert tuple(wheel[36]) == (0, 0, 255) and tuple(wheel[49]) == (255, 0, 255)
    # rising ramps floor(255 i / n); falling ramps 255 - floor(255 i / n)
    assert tuple(wheel[1]) == (255, 17, 0)
    assert tuple(wheel[16]) == (213, 255, 0)
    assert tuple(wheel[54]) == (255, 0, 43)


def _one(dx, dy, max_magnitude):
    return flow_to_color(_constant_flow(1, 1, dx, dy), max_magnitude)[0, 0].astype(int)


def test_flow_to_color_directions_and_saturation():
    assert tuple(_one(0, 0, 1.0)) == (255, 255, 255)  # still: white
    assert tuple(_one(4, 0, 4.0)) == (255, 0, 0)  # right at full speed: red
    assert tuple(_one(-4, 0, 4.0)) == (0, 209, 255)  # left: wheel colour 27 (cyan-blue)
    np.testing.assert_allclose(_one(0, 4, 4.0), (255, 229, 0), atol=1)  # down: between colours 13 and 14
    assert tuple(_one(0, -4, 4.0)) == (88, 0, 255)  # up: between colours 40 and 41 (blue-magenta)
    assert tuple(_one(2, 0, 4.0)) == (255, 127, 127)  # half speed: half saturated
    assert tuple(_one(8, 0, 4.0)) == (191, 0, 0)  # beyond max_magnitude: darkened to 75%


def test_flow_to_color_default_scale_is_the_largest_speed():
    flow = np.zeros((1, 2, 2), np.float32)
    flow[0, 0] = (3, 0)
    flow[0, 1] = (1.5, 0)
    colours = flow_to_color(flow)
    assert tuple(colours[0, 0]) == (255, 0, 0) and tuple(colours[0, 1]) == (255, 127, 127)
    assert np.array_equal(flow_to_color(np.zeros((4, 4, 2), np.float32)), np.full((4, 4, 3), 255, np.uint8))


def test_render_flow_video_uses_one_scale_for_all_frames():
    flows = np.stack([_constant_flow(4, 4, 4, 0), _constant_flow(4, 4, 1, 0)])
    frames = render_flow_video(flows)
    assert frames.shape == (2, 4, 4, 3) and frames.dtype == np.uint8
    assert np.array_equal(frames[1], flow_to_color(flows[1], max_magnitude=4.0))
    assert not np.array_equal(frames[1], flow_to_color(flows[1]))  # alone it would be fully saturated
    assert np.array_equal(render_flow_video(flows, max_magnitude=8.0)[0], flow_to_color(flows[0], 8.0))


def test_flow_legend_is_white_at_the_centre_and_red_at_the_right_edge():
    legend = flow_legend(65)
    assert legend.shape == (65, 65, 3)
    assert tuple(legend[32, 32]) == (255, 255, 255)
    assert tuple(legend[32, 64]) == (255, 0, 0)


@pytest.mark.parametrize("max_magnitude", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_max_magnitude_is_an_input_error(max_magnitude):
    with pytest.raises(InputError, match="max_magnitude"):
        flow_to_color(np.zeros((4, 4, 2), np.float32), max_magnitude)


def test_colouring_rejects_bad_flows():
    with pytest.raises(InputError):
        flow_to_color(np.full((4, 4, 2), np.inf, np.float32))
    with pytest.raises(InputError):
        render_flow_video(np.zeros((0, 4, 4, 2), np.float32))
    with pytest.raises(InputError):
        render_flow_video(np.zeros((4, 4, 2), np.float32))


# --- composition -----------------------------------------------------------------------------------


def test_compose_shift_then_linear_field_is_exact():
    h, w = 40, 50
    xs, ys = _grid(h, w)
    flow_01 = _constant_flow(h, w, 2.5, -1.5)
    flow_12 = np.stack([0.05 * (xs - 20), -0.03 * (ys - 10)], axis=-1)  # linear, sampled off-grid
    expected = np.stack([2.5 + 0.05 * (xs + 2.5 - 20), -1.5 - 0.03 * (ys - 1.5 - 10)], axis=-1)
    composed = compose_flow(flow_01, flow_12)
    inner = (slice(2, -2), slice(0, -3))  # where p + f01(p) stays inside the frame
    np.testing.assert_allclose(composed[inner], expected[inner], atol=1e-5)


def test_accumulate_and_chain_sum_shifts_and_match_pairwise_composition():
    rng = np.random.default_rng(0)
    flows = rng.normal(0, 1.5, (4, 24, 24, 2)).astype(np.float32)
    accumulated = accumulate_flows(flows)
    assert accumulated.shape == flows.shape
    assert np.array_equal(accumulated[0], flows[0])
    np.testing.assert_allclose(accumulated[1], compose_flow(flows[0], flows[1]), atol=1e-6)
    np.testing.assert_allclose(accumulated[3], compose_flow(accumulated[2], flows[3]), atol=1e-6)
    assert np.array_equal(chain_flows(flows), accumulated[-1])
    shifts = np.stack([_constant_flow(8, 8, t, -t) for t in range(1, 4)])
    np.testing.assert_allclose(accumulate_flows(shifts)[-1], _constant_flow(8, 8, 6, -6))


def test_composed_estimates_match_the_direct_estimate_on_a_photo():
    image = load_photo("chelsea", 256)
    frames = [np.roll(image, (t, 2 * t), axis=(0, 1)) for t in range(3)]
    composed = compose_flow(estimate_flow(frames[0], frames[1]), estimate_flow(frames[1], frames[2]))
    direct = estimate_flow(frames[0], frames[2])
    inner = (slice(16, -16), slice(16, -16))
    assert np.abs(composed[inner] - direct[inner]).mean() < 0.1
    np.testing.assert_allclose(np.median(composed[inner].reshape(-1, 2), axis=0), (4, 2), atol=0.05)


def test_composition_rejects_mismatched_flows():
    with pytest.raises(InputError, match="match"):
        compose_flow(np.zeros((8, 8, 2), np.float32), np.zeros((8, 9, 2), np.float32))
    with pytest.raises(InputError):
        accumulate_flows(np.zeros((0, 8, 8, 2), np.float32))


# --- resizing --------------------------------------------------------------------------------------


def test_resize_flow_scales_vectors_per_axis():
    out = resize_flow(_constant_flow(100, 200, 3, 4), (50, 400))
    assert out.shape == (50, 400, 2) and out.dtype == np.float32
    np.testing.assert_allclose(out, _constant_flow(50, 400, 6, 2), atol=1e-5)


@pytest.mark.parametrize("size_hw", [(30, 40), (90, 120), (45, 160)])
def test_resize_flow_keeps_a_zoom_a_zoom_about_the_new_centre(size_hw):
    def zoom(h, w):
        xs, ys = _grid(h, w)
        return np.stack([0.1 * (xs - (w - 1) / 2), 0.1 * (ys - (h - 1) / 2)], axis=-1)

    out = resize_flow(zoom(60, 80), size_hw)
    inner = (slice(1, -1), slice(1, -1))  # bilinear upscaling clamps at the outermost half pixel
    np.testing.assert_allclose(out[inner], zoom(*size_hw)[inner], atol=1e-4)


@pytest.mark.parametrize("size_hw", [(0, 10), (10,), (10.5, 10), "10x10", (10, -1)])
def test_resize_flow_rejects_bad_sizes(size_hw):
    with pytest.raises(InputError, match="size"):
        resize_flow(np.zeros((8, 8, 2), np.float32), size_hw)
