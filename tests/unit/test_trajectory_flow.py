"""core.trajectory.flow: sparse DragNUWA-style maps, dense forward fields and backward warp maps (camera included)."""

import cv2
import numpy as np
import pytest
from skimage.data import astronaut

from core.errors import InputError
from core.flow import backward_warp
from core.trajectory import (
    CameraMotion,
    Trajectories,
    Trajectory,
    backward_flow,
    dense_displacement,
    sparse_flow,
    sparse_flow_mask,
    tracks_to_px,
)


def _norm(points_px, height, width):
    """Pixel-centre coordinates -> normalised (inverse of tracks_to_px)."""
    return (np.asarray(points_px, float) + 0.5) / [width, height]


def _line_track(start_px, end_px, frames, height, width):
    """(1,N,2) normalised track moving uniformly from start to end (pixel-centre coordinates)."""
    return _norm(np.linspace(start_px, end_px, frames), height, width)[None]


# --------------------------------------------------------------------------------------- sparse maps


def test_sparse_flow_writes_each_step_at_the_source_position():
    h, w = 40, 60
    # Pixel-exact track: (10, 20) -> (13, 24) -> (19, 24).
    track = _norm([[10, 20], [13, 24], [19, 24]], h, w)[None]
    flow = sparse_flow(track, h, w, sigma_px=2.0)
    assert flow.shape == (3, h, w, 2) and flow.dtype == np.float32
    np.testing.assert_array_equal(flow[0], 0)
    np.testing.assert_allclose(flow[1, 20, 10], [3, 4], atol=1e-5)  # at p0
    np.testing.assert_allclose(flow[2, 24, 13], [6, 0], atol=1e-5)  # at p1
    # Gaussian falloff: two pixels right of the centre, exp(-4 / (2 * 4)).
    np.testing.assert_allclose(flow[1, 20, 12], np.array([3, 4]) * np.exp(-0.5), rtol=1e-5)
    cumulative = sparse_flow(track, h, w, sigma_px=2.0, cumulative=True)
    np.testing.assert_allclose(cumulative[2, 20, 10], [9, 4], atol=1e-5)  # p2 - p0 at p0
    np.testing.assert_allclose(cumulative[1], flow[1], atol=1e-6)


def test_sparse_flow_adds_overlapping_tracks_and_ignores_anchors():
    h, w = 32, 32
    a = _norm([[10, 10], [12, 10]], h, w)
    b = _norm([[11, 10], [11, 13]], h, w)
    anchor = _norm([[20, 20], [20, 20]], h, w)
    both = sparse_flow(np.stack([a, b, anchor]), h, w, sigma_px=3.0)
    np.testing.assert_allclose(
        both, sparse_flow(a[None], h, w, sigma_px=3.0) + sparse_flow(b[None], h, w, sigma_px=3.0), atol=1e-5
    )
    mask = sparse_flow_mask(np.stack([a, b, anchor]), h, w, sigma_px=3.0)
    assert mask.shape == (2, h, w, 1)
    np.testing.assert_array_equal(mask[0], 0)
    assert mask[1, 20, 20, 0] == pytest.approx(1.0)  # the anchor shows in the mask, not in the flow
    assert mask.max() <= 1.0 and mask[1, 10, 10, 0] == 1.0  # two overlapping tracks clip at 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"tracks_norm": np.zeros((2, 3))},
        {"tracks_norm": np.full((1, 3, 2), np.nan)},
        {"height": 0},
        {"width": 2.5},
        {"sigma_px": 0},
        {"sigma_px": float("inf")},
    ],
)
def test_sparse_maps_reject_bad_input(kwargs):
    args = {"tracks_norm": np.full((1, 3, 2), 0.5), "height": 8, "width": 8, **kwargs}
    sigma = {"sigma_px": args.pop("sigma_px")} if "sigma_px" in args else {}
    for fn in (sparse_flow, sparse_flow_mask):
        with pytest.raises(InputError):
            fn(args["tracks_norm"], args["height"], args["width"], **sigma)


# --------------------------------------------------------------------------------------- dense fields


def test_dense_displacement_is_exact_on_the_track_and_still_far_away():
    h, w, frames = 96, 256, 5
    track = _line_track([40, 50], [60, 35], frames, h, w)  # a 25 px drag
    d = dense_displacement(track, h, w, radius_px=10.0, grid_step=1)
    assert d.shape == (frames, h, w, 2) and d.dtype == np.float32
    np.testing.assert_array_equal(d[0], 0)
    starts = tracks_to_px(track[0], h, w)
    for t in range(1, frames):
        np.testing.assert_allclose(d[t, 50, 40], starts[t] - starts[0], atol=1e-4)
    # Reach = max(radius, 2 x 25 px) = 50 px: ~1% of the motion at two reaches, nothing at four.
    assert np.linalg.norm(d[-1, 50, 40 + 100]) < 0.015 * 25
    assert np.abs(d[-1, 50, 40 + 200 :]).max() < 1e-4 * 25
    # Near the track it moves almost rigidly: 10 px (0.2 reach) away, within 1% of the track's motion.
    np.testing.assert_allclose(d[-1, 60, 40], [20, -15], rtol=0.01)


def test_a_lone_drag_does_not_fold_the_picture():
    # The map p -> p + d(p) stays monotone along the drag (Jacobian > 0), however long the drag.
    h, w, frames = 64, 400, 3
    track = _line_track([100, 32], [250, 32], frames, h, w)
    d = dense_displacement(track, h, w, grid_step=1)
    moved_x = np.arange(w) + d[-1, 32, :, 0]
    assert np.all(np.diff(moved_x) > 0.25)


@pytest.mark.parametrize("field", [dense_displacement, backward_flow])
def test_coarse_grid_matches_the_per_pixel_field(field):
    h, w, frames = 120, 160, 6
    tracks = np.concatenate(
        [_line_track([30, 40], [70, 60], frames, h, w), _line_track([135, 95], [120, 60], frames, h, w)]
    )
    fine = field(tracks, h, w, grid_step=1)
    coarse = field(tracks, h, w, grid_step=8)
    error = np.linalg.norm(fine - coarse, axis=-1)
    # Motion up to ~45 px: bilinear upsampling of the smooth field costs ~0.1 px on average and under
    # half a pixel at 95% of the pixels. The worst spots are where the two tracks' opposing motions meet
    # and the field itself shears.
    assert error.mean() < 0.15
    assert np.percentile(error, 95) < 0.5


def test_anchor_pins_its_neighbourhood():
    h, w, frames = 100, 100, 4
    track = _line_track([30, 50], [45, 50], frames, h, w)
    anchor = np.repeat(_norm([[55, 50]], h, w)[None], frames, axis=1)
    free = dense_displacement(track, h, w, radius_px=20.0, grid_step=1)
    pinned = dense_displacement(np.concatenate([track, anchor]), h, w, radius_px=20.0, grid_step=1)
    np.testing.assert_allclose(pinned[-1, 50, 55], 0, atol=1e-4)
    assert np.linalg.norm(free[-1, 50, 55]) > 3.0  # without the anchor the spot moves
    np.testing.assert_allclose(pinned[-1, 50, 30], [15, 0], atol=1e-4)  # the track still moves exactly


def test_camera_presets_are_global_analytic_fields():
    h, w, frames = 60, 80, 5
    none = np.zeros((0, frames, 2))
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    centre = np.array([(w - 1) / 2, (h - 1) / 2])
    pan = dense_displacement(none, h, w, camera=CameraMotion(pan_x=0.25, pan_y=-0.1))
    np.testing.assert_allclose(pan[-1, ..., 0], 20.0, atol=1e-4)
    np.testing.assert_allclose(pan[-1, ..., 1], -6.0, atol=1e-4)
    np.testing.assert_allclose(pan[2], pan[-1] / 2, atol=1e-4)  # linear ramp
    zoom = dense_displacement(none, h, w, camera=CameraMotion(zoom=1.5), grid_step=1)
    np.testing.assert_allclose(zoom[-1, ..., 0], 0.5 * (xs - centre[0]), atol=1e-3)
    np.testing.assert_allclose(zoom[2, ..., 1], (1.5**0.5 - 1) * (ys - centre[1]), atol=1e-3)
    rotate = dense_displacement(none, h, w, camera=CameraMotion(rotate_deg=90), grid_step=1)
    # Clockwise on screen (y down): (x, y) - c -> (-(y - cy), x - cx).
    np.testing.assert_allclose(rotate[-1, ..., 0], -(ys - centre[1]) - (xs - centre[0]), atol=1e-3)
    np.testing.assert_allclose(rotate[-1, ..., 1], (xs - centre[0]) - (ys - centre[1]), atol=1e-3)


@pytest.mark.parametrize(
    "camera", [CameraMotion(pan_x=0.2, pan_y=0.1), CameraMotion(zoom=1.3, rotate_deg=-15)]
)
def test_backward_camera_map_inverts_the_forward_one(camera):
    h, w, frames = 48, 64, 4
    none = np.zeros((0, frames, 2))
    forward = dense_displacement(none, h, w, camera=camera, grid_step=1)
    backward = backward_flow(none, h, w, camera=camera, grid_step=1)
    # Sampling frame 0 at q + b(q) and moving that point forward lands on q again.
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    for t in range(1, frames):
        src_x, src_y = xs + backward[t, ..., 0], ys + backward[t, ..., 1]
        inside = (src_x > 1) & (src_x < w - 2) & (src_y > 1) & (src_y < h - 2)
        moved = cv2.remap(forward[t], src_x, src_y, cv2.INTER_LINEAR)
        np.testing.assert_allclose((src_x + moved[..., 0])[inside], xs[inside], atol=1e-2)
        np.testing.assert_allclose((src_y + moved[..., 1])[inside], ys[inside], atol=1e-2)


def test_tracks_stay_absolute_under_a_camera_move():
    h, w, frames = 120, 200, 5
    track = _line_track([30, 40], [50, 30], frames, h, w)
    anchor = np.repeat(_norm([[75, 60]], h, w)[None], frames, axis=1)
    camera = CameraMotion(pan_x=0.1, zoom=1.2)
    tracks = np.concatenate([track, anchor])
    forward = dense_displacement(tracks, h, w, camera=camera, grid_step=1)
    np.testing.assert_allclose(forward[-1, 40, 30], [20, -10], atol=1e-3)
    np.testing.assert_allclose(forward[-1, 60, 75], 0, atol=1e-3)  # the anchor stays put on screen
    # Far from both, only the camera acts.
    far = camera.forward(np.array([190.0, 110.0]), 1.0, h, w)
    np.testing.assert_allclose(forward[-1, 110, 190], far, atol=1e-3)
    backward = backward_flow(tracks, h, w, camera=camera, grid_step=1)
    np.testing.assert_allclose(backward[-1, 30, 50], [-20, 10], atol=1e-3)  # the target samples the start
    np.testing.assert_allclose(backward[-1, 60, 75], 0, atol=1e-3)
    np.testing.assert_allclose(
        backward[-1, 110, 190], camera.backward(np.array([190.0, 110.0]), 1.0, h, w), atol=1e-3
    )


def test_region_mask_confines_track_motion():
    h, w, frames = 96, 96, 4
    region = np.zeros((h, w), bool)
    region[20:60, 20:60] = True
    inside = _line_track([40, 40], [52, 40], frames, h, w)
    outside = _line_track([80, 80], [80, 70], frames, h, w)
    tracks = np.concatenate([inside, outside])
    d = dense_displacement(tracks, h, w, radius_px=12.0, region_mask=region, grid_step=1)
    np.testing.assert_allclose(d[-1, 40, 40], [12, 0], atol=0.05)  # well inside: follows its track
    np.testing.assert_allclose(d[-1, 80, 80], 0, atol=1e-3)  # started outside: moves nothing
    assert np.abs(d[-1, 40, 70:]).max() < 0.05  # right of the region, within the track's reach: still
    b = backward_flow(tracks, h, w, radius_px=12.0, region_mask=region, grid_step=1)
    np.testing.assert_allclose(b[-1, 40, 52], [-12, 0], atol=0.05)
    np.testing.assert_allclose(b[-1, 70, 80], 0, atol=1e-3)  # the outside track's target: still


def test_backward_map_sends_each_target_to_its_start():
    h, w, frames = 90, 120, 6
    tracks = np.concatenate(
        [_line_track([20, 30], [50, 45], frames, h, w), _line_track([90, 70], [80, 40], frames, h, w)]
    )
    exact = backward_flow(tracks, h, w, grid_step=1)
    coarse = backward_flow(tracks, h, w)
    px = tracks_to_px(tracks, h, w)
    for t in range(1, frames):
        for track in px:
            q = track[t]
            for field, tol in ((exact, 1e-3), (coarse, 0.1)):
                sampled = cv2.remap(field[t], np.float32([[q[0]]]), np.float32([[q[1]]]), cv2.INTER_LINEAR)
                np.testing.assert_allclose(q + sampled.reshape(2), track[0], atol=tol)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"radius_px": 0},
        {"radius_px": float("nan")},
        {"grid_step": 0},
        {"grid_step": 2.0},
        {"region_mask": np.ones((5, 5), bool)},
        {"camera": "pan"},
    ],
)
def test_dense_fields_reject_bad_input(kwargs):
    tracks = np.full((1, 3, 2), 0.5)
    for fn in (dense_displacement, backward_flow):
        with pytest.raises(InputError):
            fn(tracks, 16, 16, **kwargs)


# --------------------------------------------------------------------------------------- real photo


def test_warped_photo_follows_the_tracks_within_a_pixel_and_a_half():
    """Tracks on skimage's astronaut: warp frame 0 with the backward maps, track each start's patch.

    Lucas-Kanade (21x21 window, 2 pyramid levels) matches the frame-0 patch around each start point
    in every warped frame; its initial guess is its own result in the previous frame (as a tracker
    would), never the expected position. The found position is compared with the track's target.
    """
    image = astronaut()
    h, w = image.shape[:2]
    trajectories = Trajectories(
        (
            Trajectory([[0.39, 0.20], [0.33, 0.17], [0.30, 0.22]]),  # an eye
            Trajectory([[0.73, 0.44], [0.80, 0.40], [0.85, 0.30]]),  # the shuttle
            Trajectory([[0.33, 0.73], [0.25, 0.70], [0.20, 0.60]]),  # the mission badge
            Trajectory([[0.61, 0.86], [0.66, 0.80]]),  # the helmet's rim
            Trajectory([[0.52, 0.45]]),  # an anchor on the suit
        )
    )
    frames = 14
    tracks_px = tracks_to_px(trajectories.tracks_norm(frames, (w, h)), h, w)
    maps = backward_flow(trajectories.tracks_norm(frames, (w, h)), h, w)
    gray0 = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    starts = tracks_px[:, 0].astype(np.float32).reshape(-1, 1, 2)
    guess = starts.copy()
    errors = []
    for t in range(1, frames):
        gray = cv2.cvtColor(backward_warp(image, maps[t]), cv2.COLOR_RGB2GRAY)
        found, status, _ = cv2.calcOpticalFlowPyrLK(
            gray0,
            gray,
            starts,
            guess.copy(),
            winSize=(21, 21),
            maxLevel=1,
            criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 100, 1e-3),
            flags=cv2.OPTFLOW_USE_INITIAL_FLOW,
        )
        assert status.all()
        guess = found
        errors.append(np.linalg.norm(found.reshape(-1, 2) - tracks_px[:, t], axis=1))
    errors = np.array(errors)
    print(
        f"\nLK error vs targets over {errors.size} (frame, track) pairs: mean {errors.mean():.3f} px, "
        f"max {errors.max():.3f} px"
    )
    assert errors.mean() < 1.5
    assert errors.max() < 1.5
