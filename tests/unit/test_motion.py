"""core.motion: the documented flow-magnitude -> SVD motion_bucket_id mapping."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from skimage.data import astronaut

from core.engines.objects import ObjectLayer
from core.errors import InputError
from core.motion import (
    MODERATE_PX,
    bucket_from_svd_speed,
    motion_bucket_from_flow,
    motion_bucket_from_video,
    suggest_motion_bucket,
    svd_speed,
)
from core.trajectory import CameraMotion, Trajectories, Trajectory, dense_displacement


def _uniform_flow(frames, h, w, dx, dy=0.0):
    flow = np.zeros((frames, h, w, 2), np.float32)
    flow[..., 0], flow[..., 1] = dx, dy
    return flow


def test_calibration_points():
    assert bucket_from_svd_speed(0.0) == 1  # clamped up from 0
    assert bucket_from_svd_speed(0.3) == 10
    assert bucket_from_svd_speed(MODERATE_PX) == 127
    assert bucket_from_svd_speed(40.0) == 227
    assert bucket_from_svd_speed(1e6) == 255


def test_speed_is_normalised_to_svd_width_and_fps():
    # 4.5 px/frame on a 512-wide clip at 14 fps is 9 px/frame at 1024 wide, and 18 at 7 fps.
    assert svd_speed(4.5, 512, 14) == pytest.approx(18.0)
    # The same relative motion at two resolutions gives the same bucket.
    small = motion_bucket_from_flow(_uniform_flow(3, 36, 64, 2.0), fps=7)
    large = motion_bucket_from_flow(_uniform_flow(3, 72, 128, 4.0), fps=7)
    assert small == large == bucket_from_svd_speed(2.0 * 1024 / 64)


def test_flow_bucket_uses_the_mean_magnitude():
    # Half the pixels move (3, 4) = 5 px, half stay: mean 2.5 px at 1024 px wide, 7 fps.
    flow = np.zeros((2, 8, 1024, 2), np.float32)
    flow[:, :4] = [3.0, 4.0]
    assert motion_bucket_from_flow(flow, fps=7) == round(127 / math.log1p(4.5) * math.log1p(1.25))
    assert motion_bucket_from_flow(flow[0], fps=7) == motion_bucket_from_flow(
        flow, fps=7
    )  # one (H,W,2) field


@settings(max_examples=200, deadline=None)
@given(st.floats(0, 500), st.floats(0, 500), st.floats(1, 60), st.floats(1, 60))
def test_bucket_is_monotone_in_speed_and_fps_and_clamped(m1, m2, fps1, fps2):
    (m1, m2), (fps1, fps2) = sorted([m1, m2]), sorted([fps1, fps2])
    low = motion_bucket_from_flow(_uniform_flow(1, 2, 256, m1), fps1)
    assert 1 <= low <= 255
    assert low <= motion_bucket_from_flow(_uniform_flow(1, 2, 256, m2), fps1)
    assert low <= motion_bucket_from_flow(_uniform_flow(1, 2, 256, m1), fps2)


@pytest.mark.parametrize(
    "flow, fps",
    [
        (np.zeros((2, 8, 8, 2), np.float32), 0),
        (np.zeros((2, 8, 8, 2), np.float32), float("nan")),
        (np.full((2, 8, 8, 2), np.nan, np.float32), 7),
        (np.zeros((2, 8, 8, 3), np.float32), 7),
        (np.zeros((0, 8, 8, 2), np.float32), 7),
    ],
)
def test_bad_flow_or_fps_raises_input_error(flow, fps):
    with pytest.raises(InputError):
        motion_bucket_from_flow(flow, fps)


def _clip(shift_px_per_frame: int, frames: int = 8, width: int = 256, height: int = 144) -> np.ndarray:
    """A pan over skimage's astronaut: crop windows sliding right by `shift_px_per_frame`."""
    image = astronaut()
    return np.stack([image[100 : 100 + height, t * shift_px_per_frame :][:, :width] for t in range(frames)])


def test_still_clip_maps_low_and_fast_pan_maps_high():
    still = _clip(0)
    assert motion_bucket_from_video(still, fps=7) == 1
    # Mild sensor noise (std 1.5 of 255) makes the estimator report ~0.05 px of flow: still low.
    noisy = np.clip(still + np.random.default_rng(0).normal(0, 1.5, still.shape), 0, 255).astype(np.uint8)
    assert motion_bucket_from_video(noisy, fps=7) <= 10
    # 10 px/frame at 256 px wide and 7 fps is 40 px/frame at SVD's scale: the content pans ~half the
    # frame width in a 14-frame clip.
    fast = motion_bucket_from_video(_clip(10), fps=7)
    assert fast >= 200
    moderate = motion_bucket_from_video(_clip(2), fps=7)
    assert 10 < moderate < fast
    assert motion_bucket_from_video(_clip(2), fps=14) > moderate  # same px/frame, twice the speed


def test_video_bucket_rejects_bad_input():
    with pytest.raises(InputError):
        motion_bucket_from_video(_clip(2), fps=-1)
    with pytest.raises(InputError):
        motion_bucket_from_video(_clip(2)[:1], fps=7)


def test_suggestion_is_the_bucket_of_the_implied_dense_motion():
    size = (512, 288)
    drag = Trajectories((Trajectory([[0.3, 0.5], [0.5, 0.4]]), Trajectory([[0.8, 0.2]])))
    suggested = suggest_motion_bucket(drag, num_frames=14, fps=7, image_size=size)
    # Same statistic on the full-resolution field (frame differences of the forward displacement).
    field = dense_displacement(drag.tracks_norm(14, size), size[1], size[0])
    full = motion_bucket_from_flow(np.diff(field, axis=0), fps=7)
    assert abs(suggested - full) <= 2
    assert 1 < suggested < 255


def test_suggestion_grows_with_the_drag_and_is_minimal_without_motion():
    size = (1024, 576)
    buckets = [
        suggest_motion_bucket(Trajectories((Trajectory([[0.2, 0.5], [0.2 + length, 0.5]]),)), 14, 7, size)
        for length in (0.05, 0.1, 0.2, 0.4)
    ]
    assert buckets == sorted(buckets) and buckets[0] < buckets[-1]
    assert suggest_motion_bucket(Trajectories(), 14, 7, size) == 1
    assert suggest_motion_bucket(Trajectories((Trajectory([[0.4, 0.4]]),)), 14, 7, size) == 1
    with pytest.raises(InputError):
        suggest_motion_bucket(Trajectories(), 14, 7, (0, 576))
    with pytest.raises(InputError):
        suggest_motion_bucket([[0.1, 0.2]], 14, 7, size)


def test_a_camera_move_alone_has_motion_and_the_bucket_of_its_field():
    size = (512, 288)
    pan = CameraMotion(pan_x=0.15)
    bucket = suggest_motion_bucket(Trajectories(), 14, 7, size, camera=pan)
    field = dense_displacement(np.zeros((0, 14, 2)), size[1], size[0], camera=pan)
    assert abs(bucket - motion_bucket_from_flow(np.diff(field, axis=0), fps=7)) <= 2
    assert bucket > 100
    assert suggest_motion_bucket(Trajectories(), 14, 7, size, camera=CameraMotion()) == 1


def test_the_motion_brush_and_the_reach_change_the_bucket_as_the_warp_would():
    size = (512, 288)
    drag = Trajectories((Trajectory([[0.3, 0.5], [0.6, 0.5]]),))
    free = suggest_motion_bucket(drag, 14, 7, size)
    brush = np.zeros((288, 512), bool)
    brush[100:180, 120:220] = True
    assert suggest_motion_bucket(drag, 14, 7, size, region_mask=brush) < free
    assert suggest_motion_bucket(drag, 14, 7, size, radius_px=2000.0) > free


def test_object_drags_count_the_object_s_pixels_only():
    size = (96, 96)  # the suggestion's own working width: no resampling of the mask
    mask = np.zeros((96, 96), bool)
    mask[24:72, 24:72] = True  # a quarter of the picture
    drag = Trajectories(
        (Trajectory([[0.5, 0.5], [0.5 + 13 * 2 / 96, 0.5]]),)
    )  # 2 px per frame over 14 frames
    bucket = suggest_motion_bucket(drag, 14, 7, size, layers=[ObjectLayer(mask, (0,))])
    assert bucket == motion_bucket_from_flow(
        np.where(mask[None, ..., None], [2.0, 0.0], 0.0)[[0] * 13], fps=7
    )
    assert bucket < suggest_motion_bucket(drag, 14, 7, size, radius_px=1e4)  # the whole sheet moving
