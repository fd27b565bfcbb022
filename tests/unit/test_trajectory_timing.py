"""Per-trajectory timing: when each drag moves, with what easing, and the version 2 file that carries it."""

import json

import numpy as np
import pytest

from core.errors import InputError
from core.trajectory import EASINGS, Timing, Trajectories, Trajectory, resample_polyline

LINE = np.array([[0.1, 0.5], [0.9, 0.5]])


def test_the_default_timing_spreads_the_path_evenly_over_the_clip():
    assert np.array_equal(Trajectory(LINE).resample(9), resample_polyline(LINE, 9))
    np.testing.assert_allclose(Trajectory(LINE).resample(5)[:, 0], [0.1, 0.3, 0.5, 0.7, 0.9])


def test_a_late_drag_waits_then_covers_its_whole_path_in_its_window():
    late = Trajectory(LINE, Timing(start=0.5, end=1.0)).resample(9)
    assert np.array_equal(late[:5], np.tile(LINE[0], (5, 1)))  # still until the middle frame (4 of 0..8)
    np.testing.assert_allclose(late[4:, 0], np.linspace(0.1, 0.9, 5))
    assert np.array_equal(late[-1], LINE[1])


def test_two_objects_move_one_after_the_other():
    first = Trajectory(LINE, Timing(0.0, 0.5))
    second = Trajectory(LINE[:, ::-1], Timing(0.5, 1.0))
    tracks = Trajectories((first, second)).tracks_norm(11)
    steps = np.abs(np.diff(tracks, axis=1)).sum(axis=-1)  # (2, 10) how far each moves per frame
    assert steps[0, :5].min() > 0 and steps[0, 5:].max() == 0
    assert steps[1, :5].max() == 0 and steps[1, 5:].min() > 0


def test_ease_in_out_starts_and_stops_slowly_and_is_symmetric():
    eased = Trajectory(LINE, Timing(easing="ease-in-out")).resample(11)[:, 0]
    steps = np.diff(eased)
    assert steps[0] < steps[5] / 5 and steps[-1] < steps[4] / 5
    np.testing.assert_allclose(steps, steps[::-1], atol=1e-12)
    assert eased[0] == LINE[0, 0] and eased[-1] == LINE[1, 0]
    assert set(EASINGS) == {"linear", "ease-in-out"}


@pytest.mark.parametrize(
    ("timing", "message"),
    [
        ({"start": 0.6, "end": 0.4}, "start before it ends"),
        ({"start": -0.1}, "start before it ends"),
        ({"end": 1.5}, "start before it ends"),
        ({"start": True}, "must be numbers"),
        ({"end": float("nan")}, "must be numbers"),
        ({"easing": "bounce"}, "easing must be one of linear, ease-in-out"),
    ],
)
def test_bad_timing_is_one_sentence(timing, message):
    with pytest.raises(InputError, match=message):
        Timing(**timing)


def test_version_2_round_trips_timing_and_version_1_files_still_read():
    tracks = Trajectories((Trajectory(LINE, Timing(0.25, 0.75, "ease-in-out")), Trajectory(LINE[:1])))
    text = tracks.to_json()
    assert json.loads(text)["version"] == 2
    assert Trajectories.from_json(text) == tracks
    old = json.dumps(
        {"format": "kinema.trajectories", "version": 1, "trajectories": [{"points_norm": LINE.tolist()}]}
    )
    assert Trajectories.from_json(old) == Trajectories((Trajectory(LINE),))


@pytest.mark.parametrize(
    ("entry", "version", "message"),
    [
        ({"start": 0.5}, 1, "version 1 files do not have"),
        ({"start": 0.9, "end": 0.1}, 2, "Trajectory 0 in the file: A trajectory must start before it ends"),
        ({"easing": 3}, 2, "easing must be one of"),
        ({"start": "0.5"}, 2, "must be numbers"),
    ],
)
def test_bad_timing_in_a_file_names_the_trajectory(entry, version, message):
    text = json.dumps(
        {
            "format": "kinema.trajectories",
            "version": version,
            "trajectories": [{"points_norm": LINE.tolist(), **entry}],
        }
    )
    with pytest.raises(InputError, match=message):
        Trajectories.from_json(text)
