"""core.flow.tracks: sparse tracks sampled from dense flow, against the exact motion of synthetic scenes.

Ground truth: a synthetic scene's sprites move rigidly (translation + spin) over a background that moves by
minus the camera pan, so the exact track of any frame-0 pixel follows from the scene's spec and the layer
seen at that pixel (`_exact_tracks`).
"""

import math

import numpy as np
import pytest

from core.data.synthetic import Sprite, VideoSceneSpec, make_video_scene, random_texture, render_video_scene
from core.errors import InputError
from core.flow.tracks import motion_boundaries, sample_tracks, video_flow_and_occlusion


def _rotation(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s], [s, c]])


def _exact_tracks(scene, starts_px: np.ndarray) -> np.ndarray:
    """(M,T,2) exact pixel positions of the surface points seen at integer pixels `starts_px` (M,2) in frame 0."""
    spec = scene.spec
    cam = np.asarray(spec.camera_velocity_px)
    steps = np.arange(spec.n_frames)[:, None]
    columns, rows = np.rint(starts_px).astype(int).T
    out = np.empty((len(starts_px), spec.n_frames, 2))
    for m, (start, layer) in enumerate(zip(starts_px, scene.layer_ids[0][rows, columns])):
        if layer < 0:
            out[m] = start - cam * steps
            continue
        sprite = spec.sprites[layer]
        centre0 = np.asarray(sprite.center_px)
        local = (start - centre0) @ _rotation(sprite.angle_rad)
        for t in range(spec.n_frames):
            turned = local @ _rotation(sprite.angle_rad + sprite.spin_rad * t).T
            out[m, t] = turned + centre0 + (np.asarray(sprite.velocity_px) - cam) * t
    return out


def _to_px(tracks_norm: np.ndarray, height: int, width: int) -> np.ndarray:
    return tracks_norm * [width, height] - 0.5


def _one_sprite_scene(velocity_px=(3.0, 0.0), camera_px=(0.0, 0.0), size=(64, 64), n_frames=8):
    """A textured disc of radius 10 px starting at the left, moving by `velocity_px`, over a still background."""
    rng = np.random.default_rng(0)
    sprite = Sprite("disc", 10.0, (16.0, 32.0), velocity_px, "red", random_texture(rng, (0.85, 0.15, 0.12)))
    background = random_texture(rng, (0.55, 0.5, 0.45))
    spec = VideoSceneSpec(size, n_frames, background, (sprite,), camera_px)
    return render_video_scene(spec)


@pytest.mark.parametrize("seed", range(6))
def test_tracks_from_exact_flow_follow_the_exact_motion(seed):
    scene = make_video_scene((64, 64), 8, seed)
    tracks = sample_tracks(scene.flow_px, 200, np.random.default_rng(seed), occluded=scene.occluded)
    assert tracks.shape == (200, 8, 2) and tracks.dtype == np.float64
    tracks_px = _to_px(tracks, 64, 64)
    assert np.array_equal(tracks_px[:, 0], np.rint(tracks_px[:, 0]))  # starts on pixel centres
    error_px = np.linalg.norm(tracks_px - _exact_tracks(scene, tracks_px[:, 0]), axis=2)
    # Measured over seeds 0-11 at 64x64: at most 0.0024 px (cv2.remap's 1/32 px interpolation grid).
    assert error_px.max() < 0.05
    # Every kept track stays inside the frame and on the surface it started on.
    assert tracks_px.min() >= 0 and tracks_px.max() <= 63
    columns, rows = np.rint(tracks_px).astype(int).transpose(2, 0, 1)
    layers = scene.layer_ids[np.arange(8), rows, columns]
    assert np.all(layers == layers[:, :1])


def test_tracks_from_dis_flow_follow_the_exact_motion_within_the_measured_bound():
    per_track_max, displacement = [], []
    for seed in range(6):
        scene = make_video_scene((128, 128), 8, seed)
        flows_px, occluded = video_flow_and_occlusion(scene.frames_uint8)
        tracks_px = _to_px(
            sample_tracks(flows_px, 100, np.random.default_rng(seed), occluded=occluded), 128, 128
        )
        exact = _exact_tracks(scene, tracks_px[:, 0])
        per_track_max.append(np.linalg.norm(tracks_px - exact, axis=2).max(axis=1))
        displacement.append(np.linalg.norm(exact[:, -1] - exact[:, 0], axis=1))
    errors, moved = np.concatenate(per_track_max), np.concatenate(displacement)
    median, p95 = np.median(errors), np.percentile(errors, 95)
    print(
        f"DIS tracks vs exact, 600 tracks of 8 frames at 128x128: worst frame per track median {median:.2f} px, "
        f"p95 {p95:.2f} px, max {errors.max():.2f} px; mean displacement {moved.mean():.1f} px"
    )
    # Measured: median 0.49, p95 2.70, max 8.5 px (errors concentrate within a few px of moving objects'
    # edges, where DIS smooths across the motion boundary); mean displacement 7.0 px.
    assert median < 0.6 and p95 < 3.5
    assert moved.mean() > 5 * median


def test_occlusion_mask_drops_points_that_get_covered():
    scene = _one_sprite_scene(velocity_px=(3.0, 0.0))
    columns_rows = lambda px: np.rint(px).astype(int).transpose(2, 0, 1)  # noqa: E731
    frames = np.arange(8)

    def layer_changes(tracks: np.ndarray) -> int:
        columns, rows = columns_rows(_to_px(tracks, 64, 64))
        layers = scene.layer_ids[frames, rows, columns]
        return int((layers != layers[:, :1]).any(axis=1).sum())

    # Background points the disc runs over: without the mask some tracks jump onto the disc (measured: 126 of
    # 3680; with it 0 of 3554).
    trusting = sample_tracks(scene.flow_px, 4096, np.random.default_rng(0), motion_weighted=False)
    checked = sample_tracks(
        scene.flow_px, 4096, np.random.default_rng(0), motion_weighted=False, occluded=scene.occluded
    )
    assert layer_changes(trusting) > 10
    assert layer_changes(checked) == 0
    assert len(checked) < len(trusting)


def test_points_that_leave_the_frame_are_dropped():
    scene = _one_sprite_scene(velocity_px=(0.0, 0.0), camera_px=(3.0, 0.0))  # content moves 3 px/frame left
    tracks = sample_tracks(scene.flow_px, 10_000, np.random.default_rng(0))
    tracks_px = _to_px(tracks, 64, 64)
    assert tracks_px.min() >= 0 and tracks_px[..., 0].max() <= 63
    # Points starting in the 21 px that leave on the left are all gone; the rest of the frame is kept.
    starts = tracks_px[:, 0]
    assert starts[:, 0].min() == 21
    assert len(tracks) == np.count_nonzero(~motion_boundaries(scene.flow_px[0])[:, 21:])


def test_motion_weighting_puts_tracks_on_the_moving_object():
    scene = _one_sprite_scene(velocity_px=(2.0, 0.5))
    area_share = np.mean(scene.layer_ids[0] == 0)

    def share_on_sprite(**options) -> float:
        tracks = sample_tracks(
            scene.flow_px, 100, np.random.default_rng(1), occluded=scene.occluded, **options
        )
        columns, rows = np.rint(_to_px(tracks[:, 0], 64, 64)).astype(int).T
        return float(np.mean(scene.layer_ids[0][rows, columns] == 0))

    weighted, uniform = share_on_sprite(), share_on_sprite(motion_weighted=False)
    all_moving = share_on_sprite(anchor_fraction=0.0)
    print(
        f"tracks on the disc ({area_share:.0%} of the frame): weighted {weighted:.0%}, uniform {uniform:.0%}"
    )
    assert all_moving == 1.0  # the background is still: without anchors every track is on the disc
    assert weighted >= 0.8 and uniform < 2 * area_share
    assert weighted < 1.0  # a few anchors on the still background


def test_the_draw_is_a_function_of_the_rng():
    scene = make_video_scene((64, 64), 6, 3)
    draw = lambda seed: sample_tracks(scene.flow_px, 8, np.random.default_rng(seed), occluded=scene.occluded)  # noqa: E731
    assert np.array_equal(draw(5), draw(5))
    assert not np.array_equal(draw(5), draw(6))


def test_still_and_empty_clips():
    still = np.zeros((5, 32, 48, 2), np.float32)
    anchors = sample_tracks(still, 6, np.random.default_rng(0))
    assert anchors.shape == (6, 6, 2)
    assert np.all(anchors == anchors[:, :1])  # anchors: pinned points
    assert np.all((anchors > 0) & (anchors < 1))
    assert sample_tracks(still, 6, np.random.default_rng(0), anchor_fraction=0.0).shape == (6, 6, 2)
    assert sample_tracks(still, 0, np.random.default_rng(0)).shape == (0, 6, 2)
    everywhere = np.ones((5, 32, 48), bool)
    assert sample_tracks(still, 6, np.random.default_rng(0), occluded=everywhere).shape == (0, 6, 2)
    # More tracks asked than reliable points: all of them, once each.
    tiny = np.zeros((1, 2, 3, 2), np.float32)
    got = sample_tracks(tiny, 50, np.random.default_rng(0))
    assert got.shape == (6, 2, 2) and len(np.unique(got[:, 0], axis=0)) == 6


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda f, r: sample_tracks(f, -1, r), "num_tracks must be a whole number"),
        (lambda f, r: sample_tracks(f, 2, 0), "rng must be a numpy Generator"),
        (
            lambda f, r: sample_tracks(f, 2, r, occluded=np.zeros((3, 8, 8), bool)),
            "occluded must be a bool array",
        ),
        (
            lambda f, r: sample_tracks(f, 2, r, anchor_fraction=1.5),
            "anchor_fraction must be a number in [0, 1]",
        ),
        (lambda f, r: sample_tracks(f[0], 2, r), "flows must be an array of shape (N,H,W,2)"),
    ],
)
def test_bad_input_raises_input_error(call, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        call(np.zeros((2, 8, 8, 2), np.float32), np.random.default_rng(0))


def test_video_flow_and_occlusion_matches_the_ground_truth_mostly():
    scene = make_video_scene((64, 64), 5, 2)
    flows_px, occluded = video_flow_and_occlusion(scene.frames_uint8)
    assert flows_px.shape == (4, 64, 64, 2) and occluded.shape == (4, 64, 64) and occluded.dtype == bool
    truly_occluded = scene.occluded
    # The forward-backward test flags truly occluded pixels far more often than others (measured: half of
    # them, against 1.5% of the rest; DIS on 64x64 frames misses thin occluded slivers).
    recall = occluded[truly_occluded].mean()
    false_alarms = occluded[~truly_occluded].mean()
    print(f"forward-backward test vs true occlusion: recall {recall:.2f}, false alarms {false_alarms:.3f}")
    assert recall > 0.4 and false_alarms < 0.04
