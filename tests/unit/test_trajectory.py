"""core.trajectory.model: validation, clicks, PCHIP resampling by arc length, JSON round trip."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import InputError
from core.trajectory import (
    JSON_VERSION,
    Trajectories,
    Trajectory,
    from_clicks,
    resample_polyline,
    tracks_to_px,
)

coordinate = st.floats(0.0, 1.0, allow_nan=False)
polylines = st.lists(st.tuples(coordinate, coordinate), min_size=1, max_size=12)


def _progress_along(points: np.ndarray, metric: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Arc-length progress of each position, measured on the polyline segment its arc length falls in.

    The projection onto the segment is monotone along the segment exactly when the curve neither
    overshoots nor backtracks there, which is what PCHIP promises and a plain cubic spline breaks.
    """
    steps = np.linalg.norm(np.diff(points, axis=0) * metric, axis=1)
    keep = np.concatenate([[True], steps > 1e-9])
    last = points[-1]
    points, steps = points[keep], steps[keep[1:]]
    points[-1] = last
    arc = np.concatenate([[0.0], np.cumsum(steps)])
    wanted = np.linspace(0.0, arc[-1], len(positions))
    segment = np.clip(np.searchsorted(arc, wanted, side="right") - 1, 0, len(steps) - 1)
    direction = (points[segment + 1] - points[segment]) * metric
    offset = (positions - points[segment]) * metric
    return arc[segment] + np.einsum("ij,ij->i", offset, direction) / steps[segment]


def test_points_are_clipped_to_the_image_and_read_only():
    t = Trajectory([[-0.2, 0.5], [0.5, 1.7], [0.25, 0.75]])
    np.testing.assert_array_equal(t.points_norm, [[0.0, 0.5], [0.5, 1.0], [0.25, 0.75]])
    with pytest.raises(ValueError):
        t.points_norm[0, 0] = 0.3


@pytest.mark.parametrize(
    "points",
    [[[0.1, float("nan")]], [[0.1, 0.2], [float("inf"), 0.3]], [], [[0.1, 0.2, 0.3]], "abc", [[0.1], [0.2]]],
)
def test_bad_points_raise_input_error(points):
    with pytest.raises(InputError):
        Trajectory(points)


def test_anchor_and_length():
    assert Trajectory([[0.3, 0.4]]).is_anchor
    assert Trajectory([[0.3, 0.4], [0.3, 0.4]]).is_anchor
    line = Trajectory([[0.0, 0.0], [0.5, 0.5]])
    assert not line.is_anchor
    assert line.length() == pytest.approx(np.sqrt(0.5))
    # In pixels of a 200x100 image the same segment is 100 px right and 50 px down.
    assert line.length((200, 100)) == pytest.approx(np.hypot(100, 50))
    tracks = Trajectories((line, Trajectory([[0.3, 0.4]])))
    assert len(tracks.moving) == 1 and len(tracks.anchors) == 1


def test_clicks_map_pixel_centres_to_normalised_coordinates():
    t = from_clicks([[0, 0], [99, 49], [150, -3]], image_size=(100, 50))
    np.testing.assert_allclose(t.points_norm, [[0.005, 0.01], [0.995, 0.99], [1.0, 0.0]])
    # ... and tracks_to_px brings a click back to its pixel index.
    np.testing.assert_allclose(tracks_to_px(t.points_norm[:2], 50, 100), [[0, 0], [99, 49]])
    assert from_clicks([[10, 20]], (100, 50)).is_anchor


@pytest.mark.parametrize(
    "clicks, size",
    [
        ([], (100, 50)),
        (None, (100, 50)),
        ([[1, float("nan")]], (100, 50)),
        ([[1, 2]], (0, 50)),
        ([[1, 2]], "big"),
    ],
)
def test_bad_clicks_raise_input_error(clicks, size):
    with pytest.raises(InputError):
        from_clicks(clicks, size)


def test_resample_straight_line_is_uniform_and_exact():
    out = Trajectory([[0.1, 0.2], [0.7, 0.5]]).resample(7)
    expected = np.linspace([0.1, 0.2], [0.7, 0.5], 7)
    np.testing.assert_allclose(out, expected, atol=1e-12)


def test_resample_is_uniform_in_screen_arc_length():
    # An L-shaped path: 0.5 of the width (500 px) right, then 0.5 of the height (100 px) down. Measured
    # on screen, 5/6 of the frames belong to the first leg; in normalised units it would be half.
    points = [[0.0, 0.0], [0.5, 0.0], [0.5, 0.5]]
    out = Trajectory(points).resample(13, image_size=(1000, 200))
    on_first_leg = np.sum(out[:, 1] < 1e-9)
    assert on_first_leg == 11  # frames 0..10 at 0, 50, ..., 500 px; frame 10 is the corner
    np.testing.assert_allclose(out[10], [0.5, 0.0], atol=1e-12)


def test_resample_anchor_and_single_frame():
    np.testing.assert_array_equal(Trajectory([[0.3, 0.6]]).resample(5), np.tile([0.3, 0.6], (5, 1)))
    np.testing.assert_array_equal(
        Trajectory([[0.3, 0.6], [0.3, 0.6]]).resample(3), np.tile([0.3, 0.6], (3, 1))
    )
    np.testing.assert_array_equal(Trajectory([[0.1, 0.2], [0.9, 0.9]]).resample(1), [[0.1, 0.2]])


@pytest.mark.parametrize("frames", [0, -3, 2.5, True, "14"])
def test_resample_rejects_bad_frame_counts(frames):
    with pytest.raises(InputError):
        Trajectory([[0.1, 0.2], [0.3, 0.4]]).resample(frames)


@settings(max_examples=150, deadline=None)
@given(polylines, st.integers(2, 40), st.sampled_from([None, (1024, 576), (300, 900)]))
def test_resample_endpoints_exact_and_monotone_in_arc_length(points, num_frames, image_size):
    points = np.array(points)
    out = resample_polyline(points, num_frames, image_size)
    assert out.shape == (num_frames, 2)
    assert np.all((out >= 0) & (out <= 1))
    np.testing.assert_array_equal(out[0], points[0])
    metric = np.ones(2) if image_size is None else np.array(image_size, float)
    steps = np.linalg.norm(np.diff(points, axis=0) * metric, axis=1)
    if not np.any(steps > 1e-9):
        np.testing.assert_array_equal(out, np.tile(points[0], (num_frames, 1)))
        return
    np.testing.assert_array_equal(out[-1], points[-1])
    progress = _progress_along(points, metric, out)
    total = steps[steps > 1e-9].sum()
    assert np.all(np.diff(progress) >= -1e-9 * max(1.0, total))
    assert progress[0] == pytest.approx(0.0, abs=1e-9 * max(1.0, total))
    assert progress[-1] == pytest.approx(total, rel=1e-9, abs=1e-12)


def test_pchip_passes_through_vertices_without_overshoot():
    # A zig-zag: a cubic spline would overshoot the extreme vertices; PCHIP stays within them.
    points = np.array([[0.1, 0.5], [0.3, 0.9], [0.5, 0.1], [0.7, 0.9], [0.9, 0.5]])
    out = resample_polyline(points, 200)
    assert out[:, 1].max() <= 0.9 + 1e-12 and out[:, 1].min() >= 0.1 - 1e-12
    # Each vertex is (numerically) on the resampled curve.
    for vertex in points:
        assert np.min(np.linalg.norm(out - vertex, axis=1)) < 0.01


def test_tracks_norm_stacks_every_trajectory():
    tracks = Trajectories((Trajectory([[0.1, 0.1], [0.5, 0.1]]), Trajectory([[0.8, 0.8]])))
    out = tracks.tracks_norm(5)
    assert out.shape == (2, 5, 2)
    np.testing.assert_allclose(out[0, :, 0], [0.1, 0.2, 0.3, 0.4, 0.5])
    np.testing.assert_array_equal(out[1], np.tile([0.8, 0.8], (5, 1)))
    assert Trajectories().tracks_norm(4).shape == (0, 4, 2)


@settings(max_examples=50, deadline=None)
@given(st.lists(polylines, max_size=5))
def test_json_round_trip_is_exact(many):
    original = Trajectories(tuple(Trajectory(p) for p in many))
    text = original.to_json()
    payload = json.loads(text)
    assert payload["format"] == "kinema.trajectories" and payload["version"] == JSON_VERSION
    restored = Trajectories.from_json(text)
    assert restored == original
    for a, b in zip(restored, original):
        np.testing.assert_array_equal(a.points_norm, b.points_norm)


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        json.dumps([1, 2]),
        json.dumps({"format": "something else", "version": 1, "trajectories": []}),
        json.dumps({"format": "kinema.trajectories", "version": JSON_VERSION + 1, "trajectories": []}),
        json.dumps({"format": "kinema.trajectories", "version": "1", "trajectories": []}),
        json.dumps({"format": "kinema.trajectories", "version": 1, "trajectories": [{"points": [[0, 0]]}]}),
        json.dumps(
            {"format": "kinema.trajectories", "version": 1, "trajectories": [{"points_norm": [[0, None]]}]}
        ),
    ],
)
def test_from_json_rejects_foreign_or_newer_files(text):
    with pytest.raises(InputError):
        Trajectories.from_json(text)
