"""Keyframe selection: uniform spacing, adaptive on motion / appearance, manual lists, validation."""

import numpy as np
import pytest

from core.engines.keyframes import (
    Keyframe,
    adaptive_keyframes,
    manual_keyframes,
    select_keyframes,
    uniform_keyframes,
)
from core.errors import InputError
from core.eval.fixtures import camera_clip, load_photo

STILL_FRAMES = 9  # frames 0..8 identical, then a pan of 16 steps


@pytest.fixture(scope="module")
def still_then_pan() -> np.ndarray:
    """25 frames of 128x128: a still part (frames 0-8), then a camera pan of ~2.8 px per frame."""
    pan = camera_clip(load_photo("astronaut"), "pan", size=128, n_frames=17)
    return np.concatenate([np.repeat(pan[:1], STILL_FRAMES - 1, axis=0), pan])


def indices(keys: list[Keyframe]) -> list[int]:
    return [k.index for k in keys]


def test_uniform_every_k_with_first_and_last():
    keys = uniform_keyframes(17, 4)
    assert indices(keys) == [0, 4, 8, 12, 16]
    assert keys[0] == Keyframe(0, "first frame")
    assert keys[1].reason == "every 4 frames"
    keys = uniform_keyframes(18, 4)
    assert indices(keys) == [0, 4, 8, 12, 16, 17]
    assert keys[-1] == Keyframe(17, "last frame")
    assert indices(uniform_keyframes(5, 100)) == [0, 4]
    assert indices(uniform_keyframes(1, 3)) == [0]


@pytest.mark.parametrize("every", [0, -2, 2.5, True, "4"])
def test_uniform_rejects_bad_spacing(every):
    with pytest.raises(InputError, match="spacing"):
        uniform_keyframes(10, every)


def test_adaptive_flow_exact_on_known_motion():
    # 16 frames, still for the first 5 steps, then 3 px per step: with a 9 px threshold a keyframe
    # lands after every third moving step (frames 8, 11, 14), then the last frame.
    flows = np.zeros((15, 20, 20, 2), np.float32)
    flows[5:, ..., 0] = 3.0
    frames = np.zeros((16, 20, 20, 3), np.uint8)
    keys = adaptive_keyframes(frames, "flow", threshold=9.0, flows_px=flows)
    assert indices(keys) == [0, 8, 11, 14, 15]
    assert keys[1].reason == "motion since frame 0 reached 9 px (threshold 9 px)"
    assert keys[2].reason == "motion since frame 8 reached 9 px (threshold 9 px)"
    assert keys[-1] == Keyframe(15, "last frame")


@pytest.mark.parametrize("signal", ["flow", "appearance"])
def test_adaptive_puts_keyframes_in_the_moving_part(still_then_pan, signal):
    keys = indices(adaptive_keyframes(still_then_pan, signal))
    n = still_then_pan.shape[0]
    assert keys[0] == 0 and keys[-1] == n - 1
    inner = keys[1:-1]
    in_still = [i for i in inner if i < STILL_FRAMES]
    in_moving = [i for i in inner if i >= STILL_FRAMES]
    assert in_still == []
    assert len(in_moving) >= 2
    # Flow: a keyframe after each ~16 px of the ~2.8 px/frame pan, so 5-7 frames apart.
    if signal == "flow":
        assert all(5 <= b - a <= 7 for a, b in zip(inner, inner[1:]))


def test_adaptive_reuses_given_flow_and_checks_its_shape(still_then_pan):
    n, h, w = still_then_pan.shape[:3]
    still = np.zeros((n - 1, h, w, 2), np.float32)
    # Given flow says "no motion": only the first and last frame, whatever the pixels show.
    assert indices(adaptive_keyframes(still_then_pan, flows_px=still)) == [0, n - 1]
    with pytest.raises(InputError, match="flows must have shape"):
        adaptive_keyframes(still_then_pan, flows_px=still[1:])


def test_adaptive_single_frame_and_bad_arguments():
    frame = np.zeros((1, 32, 32, 3), np.uint8)
    assert adaptive_keyframes(frame) == [Keyframe(0, "first frame")]
    frames = np.zeros((4, 32, 32, 3), np.uint8)
    with pytest.raises(InputError, match="signal"):
        adaptive_keyframes(frames, "colour")
    for threshold in (0.0, -1.0, float("nan"), float("inf"), "5"):
        with pytest.raises(InputError, match="threshold"):
            adaptive_keyframes(frames, "appearance", threshold=threshold)
    with pytest.raises(InputError, match="uint8"):
        adaptive_keyframes(frames.astype(np.float32))


def test_manual_sorts_and_validates():
    keys = manual_keyframes(10, [7, 2, np.int64(5)])
    assert keys == [
        Keyframe(2, "chosen by hand"),
        Keyframe(5, "chosen by hand"),
        Keyframe(7, "chosen by hand"),
    ]
    with pytest.raises(InputError, match="twice"):
        manual_keyframes(10, [1, 4, 1])
    with pytest.raises(InputError, match="outside the video"):
        manual_keyframes(10, [0, 10])
    with pytest.raises(InputError, match="outside the video"):
        manual_keyframes(10, [-1])
    with pytest.raises(InputError, match="whole numbers"):
        manual_keyframes(10, [1.5])
    with pytest.raises(InputError, match="at least one"):
        manual_keyframes(10, [])
    with pytest.raises(InputError, match="at least one"):
        manual_keyframes(10, "0,4")


def test_select_keyframes_dispatches_by_mode():
    frames = np.zeros((10, 32, 32, 3), np.uint8)
    assert indices(select_keyframes(frames, "uniform", every=3)) == [0, 3, 6, 9]
    assert indices(select_keyframes(frames, "manual", indices=[4])) == [4]
    assert indices(select_keyframes(frames, "adaptive", signal="appearance")) == [0, 9]
    with pytest.raises(InputError, match="mode"):
        select_keyframes(frames, "random")
    with pytest.raises(InputError, match="at least one"):
        select_keyframes(frames, "manual")
