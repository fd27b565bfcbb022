"""core.eval.metrics: every metric against an answer known in closed form or by construction.

ObjMC (LK point tracking against known motion, its arithmetic, the warp engine's ObjMC on the drag
requests), scale-and-shift-invariant AbsRel / delta1, flow end-point error, and the keyframe warp error.
"""

import math

import numpy as np
import pytest

from core.engines.warp import animate
from core.errors import InputError
from core.eval.fixtures import DRAG_REQUESTS, WARP_TARGET_PX, drag_photo, drag_requests, load_photo
from core.eval.metrics import (
    KeyframeFlows,
    endpoint_error,
    keyframe_flows,
    measure_objmc,
    objmc,
    ssi_absrel_delta1,
    track_points,
    warp_errors,
)
from core.flow import backward_warp

# -- ObjMC -----------------------------------------------------------------------------------------


def _shifted_video(image, step_px, frames):
    """Frames of `image` translated by t * step_px (exact sub-pixel shifts by bilinear gather)."""
    h, w = image.shape[:2]
    out = []
    for t in range(frames):
        flow = np.broadcast_to(-np.float32(step_px) * t, (h, w, 2)).copy()
        out.append(backward_warp(image, flow))
    return np.stack(out)


def test_lk_follows_a_known_subpixel_translation():
    image = load_photo("astronaut", 256)
    step = np.array([1.3, -0.7])
    video = _shifted_video(image, step, 8)
    points = np.array([[90.0, 60.0], [128.0, 200.0], [180.0, 150.0], [60.0, 130.0]])
    tracks = track_points(video, points)
    truth = points[:, None, :] + np.arange(8)[None, :, None] * step
    assert tracks.tracks_px.shape == (4, 8, 2) and tracks.reliable.all()
    np.testing.assert_array_equal(tracks.tracks_px[:, 0], points)
    errors = np.linalg.norm(tracks.tracks_px - truth, axis=2)
    assert (
        errors.mean() < 0.08 and errors.max() < 0.2
    )  # px, after 7 frame-to-frame steps (measured 0.05, 0.10)


def test_lk_flags_a_point_that_loses_its_texture():
    image = load_photo("coffee", 200)
    video = np.stack([image, image, np.full_like(image, 128), np.full_like(image, 128)])
    tracks = track_points(video, np.array([[70.0, 40.0]]))
    assert tracks.reliable[0, :2].all() and not tracks.reliable[0, 2:].any()


def test_objmc_arithmetic():
    requested = np.zeros((2, 3, 2))
    tracked = np.zeros((2, 3, 2))
    tracked[0, 1] = [3.0, 4.0]  # 5 px off
    tracked[1, 2] = [0.0, 2.0]  # 2 px off
    score = objmc(tracked, requested)
    np.testing.assert_allclose(score.distances_px, [[0, 5, 0], [0, 0, 2]])
    np.testing.assert_allclose(score.per_frame_px, [0, 2.5, 1.0])
    np.testing.assert_allclose(score.per_track_px, [2.5, 1.0])
    assert score.mean_px == pytest.approx(7.0 / 4)  # frames 1..T-1 only


def test_objmc_rejects_mismatched_or_degenerate_input():
    with pytest.raises(InputError, match=r"\(M,T,2\)"):
        objmc(np.zeros((2, 3, 2)), np.zeros((2, 4, 2)))
    with pytest.raises(InputError, match="two frames"):
        objmc(np.zeros((2, 1, 2)), np.zeros((2, 1, 2)))
    video = np.zeros((3, 32, 32, 3), np.uint8)
    with pytest.raises(InputError, match="frames"):
        measure_objmc(video, np.zeros((1, 4, 2)))
    with pytest.raises(InputError, match="inside"):
        track_points(video, np.array([[40.0, 5.0]]))
    with pytest.raises(InputError, match="odd"):
        track_points(video, np.array([[4.0, 5.0]]), window_px=10)


@pytest.mark.parametrize("photo", list(DRAG_REQUESTS))
def test_warp_engine_follows_the_requested_trajectories(photo):
    """ObjMC of the warp engine on real photos is under the 1.5 px target; a still video is far off."""
    image = drag_photo(photo, 512)
    result = animate(image, drag_requests(photo), 14)
    score, tracks = measure_objmc(result.frames_uint8, result.tracks_px)
    assert tracks.reliable.all()
    assert score.mean_px < WARP_TARGET_PX
    assert score.per_frame_px.max() < WARP_TARGET_PX
    # The metric is not blind: the unanimated picture misses the requests by about their travel.
    still = np.broadcast_to(image, result.frames_uint8.shape)
    still_score, _ = measure_objmc(still, result.tracks_px)
    travel = np.linalg.norm(result.tracks_px - result.tracks_px[:, :1], axis=2)[:, 1:].mean()
    assert still_score.mean_px == pytest.approx(travel, rel=0.05)
    assert still_score.mean_px > 10 * WARP_TARGET_PX


# -- depth: scale-and-shift-invariant AbsRel and delta1 ----------------------------------------------


@pytest.fixture
def target():
    """Disparity uniform on [0.5, 1] (depth 1..2), on a 128x128 grid."""
    return np.random.default_rng(0).uniform(0.5, 1.0, (128, 128))


def test_identical_maps_are_perfect(target):
    absrel, delta1 = ssi_absrel_delta1(target, target)
    assert absrel < 1e-12 and delta1 == 1.0


@pytest.mark.parametrize("scale, shift", [(3.0, -2.0), (0.01, 5.0), (250.0, 0.0)])
def test_scale_and_shift_are_aligned_away(target, scale, shift):
    absrel, delta1 = ssi_absrel_delta1(scale * target + shift, target)
    assert absrel < 1e-9 and delta1 == 1.0
    # The alignment is in disparity space: a map of depth (1 / disparity) is not an affine image of it.
    absrel_depth, _ = ssi_absrel_delta1(1.0 / target, target)
    assert absrel_depth > 0.01


def test_small_noise_gives_the_first_order_absrel(target):
    # aligned ~ target + n, n ~ N(0, sigma): AbsRel = E|t / a - 1| ~ E|n| E[1/t] = sigma sqrt(2/pi) 2 ln 2.
    sigma = 0.02
    noisy = target + np.random.default_rng(1).normal(0.0, sigma, target.shape)
    absrel, delta1 = ssi_absrel_delta1(noisy, target)
    expected = sigma * math.sqrt(2 / math.pi) * 2 * math.log(2)  # 0.0221
    assert absrel == pytest.approx(expected, rel=0.05)
    assert delta1 == 1.0  # a 25 % ratio error needs |n| > 0.1 = 5 sigma
    # More noise: worse on both counts.
    noisier = target + np.random.default_rng(1).normal(0.0, 0.1, target.shape)
    absrel_2, delta1_2 = ssi_absrel_delta1(noisier, target)
    assert absrel_2 > 3 * absrel and delta1_2 < delta1


def test_a_flat_map_scores_the_closed_form(target):
    # A constant carries no depth: the best fit is the target's mean 0.75, so AbsRel = E|t - 0.75| / 0.75 =
    # 1/6 and delta1 = P(0.6 < t < 0.9375) = 0.675 for t uniform on [0.5, 1].
    absrel, delta1 = ssi_absrel_delta1(np.full(target.shape, 7.0), target)
    assert absrel == pytest.approx(1 / 6, rel=0.02)
    assert delta1 == pytest.approx(0.675, abs=0.01)


def test_mask_and_invalid_pixels_are_left_out(target):
    broken = target.copy()
    broken[:10] = 100.0  # a band the mask removes
    mask = np.ones(target.shape, bool)
    mask[:10] = False
    assert ssi_absrel_delta1(broken, target, mask) == pytest.approx(ssi_absrel_delta1(target, target))
    assert ssi_absrel_delta1(broken, target)[1] < 1.0
    # Non-finite values and non-positive target disparities (e.g. the sky: 1/inf = 0) are never used.
    holes = target.copy()
    holes[0, :5] = [np.nan, np.inf, 0.0, -1.0, np.nan]
    pred = target.copy()
    pred[1, 0] = np.nan
    absrel, delta1 = ssi_absrel_delta1(pred, holes)
    assert absrel < 1e-12 and delta1 == 1.0


def test_bad_inputs_raise_input_error(target):
    with pytest.raises(InputError, match="one shape"):
        ssi_absrel_delta1(target, target[:5])
    with pytest.raises(InputError, match="mask"):
        ssi_absrel_delta1(target, target, np.ones((3, 3), bool))
    with pytest.raises(InputError, match="fewer than 2"):
        ssi_absrel_delta1(target, np.zeros_like(target))


# -- flow: end-point error ---------------------------------------------------------------------------


def test_endpoint_error_values_and_mask():
    truth = np.zeros((2, 2, 2), np.float32)
    estimate = truth.copy()
    estimate[0, 0] = (3, 4)
    assert endpoint_error(estimate, truth) == pytest.approx(1.25)
    valid = np.array([[True, True], [False, False]])
    assert endpoint_error(estimate, truth, valid) == pytest.approx(2.5)
    with pytest.raises(InputError):
        endpoint_error(estimate, truth, np.zeros((2, 2), bool))


# -- keyframe edit consistency: warp error -----------------------------------------------------------


def shifted_texture(count: int, shift_px: int, size: int = 48, seed: int = 0) -> np.ndarray:
    """Frames of a camera moving right by shift_px per frame over a texture with values in [30, 200]."""
    rng = np.random.default_rng(seed)
    texture = rng.integers(30, 201, (size, size + count * shift_px, 3)).astype(np.uint8)
    return np.stack([texture[:, k * shift_px : k * shift_px + size] for k in range(count)])


def test_warp_error_is_exact_on_a_known_motion():
    frames = shifted_texture(4, shift_px=3)
    # Keyframe k+1 at p shows keyframe k at p + (3, 0); the last 3 columns come from outside keyframe k.
    flows = np.zeros((3, 48, 48, 2), np.float32)
    flows[..., 0] = 3.0
    valid = np.ones((3, 48, 48), bool)
    valid[:, :, -3:] = False
    known = KeyframeFlows(flows, valid)
    np.testing.assert_array_equal(warp_errors(frames, known), [0.0, 0.0, 0.0])  # the identity edit

    edited = frames.copy()
    edited[[1, 3]] += 20  # brighter every other keyframe: off by 20 levels everywhere
    np.testing.assert_array_equal(warp_errors(edited, known), [20.0, 20.0, 20.0])
    edited[2, :, :, 0] += 10  # one channel of keyframe 2 moves 10 levels closer to its neighbours
    np.testing.assert_allclose(warp_errors(edited, known), [20.0, 20.0 - 10 / 3, 20.0 - 10 / 3])
    with pytest.raises(InputError, match="flows are for"):
        warp_errors(edited[:3], known)


def test_estimated_flows_recover_a_known_pan_of_a_photo():
    photo = load_photo("astronaut", 256)
    frames = np.stack([photo[40:104, 60 + 3 * k : 124 + 3 * k] for k in range(3)])  # 3 px to the right
    flows = keyframe_flows(frames)
    assert flows.flows_back_px.shape == (2, 64, 64, 2) and flows.valid.shape == (2, 64, 64)
    inner = flows.flows_back_px[:, 8:-8, 8:-12].mean(axis=(1, 2))
    np.testing.assert_allclose(inner, [[3, 0]] * 2, atol=0.05)
    assert (
        not flows.valid[:, :, -3:].any() and flows.valid.mean() > 0.85
    )  # the columns that enter are occluded
    assert warp_errors(frames, flows).max() < 1.0  # identity edit: only flow and interpolation error remain
    assert warp_errors(frames[[1, 0, 2]], flows).min() > 20.0  # keyframes that do not follow the motion
