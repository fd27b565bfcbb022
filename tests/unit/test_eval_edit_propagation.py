"""The edit-propagation benchmark's exact camera motion and a small run of it."""

import numpy as np
import pytest

from core.eval.edit_propagation import FILTERS, evaluate_clip, exact_motion, exact_motion_db
from core.eval.fixtures import camera_clip, load_photo
from core.flow import warp_field


@pytest.mark.parametrize("motion", ["pan", "zoom"])
def test_the_exact_motion_carries_one_frame_onto_another(motion):
    frames = camera_clip(load_photo("astronaut"), motion, 64, 6)
    flow, inside = exact_motion(motion, 5, 2, 64)
    assert inside.mean() > 0.7
    right = np.abs(warp_field(frames[2].astype(np.float32), flow) - frames[5])[inside].mean()
    wrong, _ = exact_motion(motion, 5, 5, 64)  # no motion at all
    off = np.abs(warp_field(frames[2].astype(np.float32), wrong) - frames[5])[inside].mean()
    assert right < off / 2  # what is left is resampling (both frames are bilinear samples of the photo)


def test_exact_motion_of_an_unedited_pan_is_exact_and_a_small_run_scores_every_filter():
    frames = camera_clip(load_photo("coffee"), "pan", 64, 9)
    assert exact_motion_db("pan", frames, [0, 8]) == float("inf")
    scores = evaluate_clip(frames, "coffee/pan", 8)
    assert set(scores) == set(FILTERS)
    for edit, cells in scores.items():
        assert cells["flow"] > cells["crossfade"], edit
        assert 10 < cells["exact motion"] < 60, edit
