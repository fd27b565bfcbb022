"""core.eval.fixtures: the photos, the camera clips' exact motion, and the drag requests."""

import cv2
import numpy as np
import pytest

from core.errors import InputError
from core.eval.fixtures import (
    DRAG_REQUESTS,
    PAN_PX_PER_FRAME,
    camera_clip,
    drag_photo,
    drag_requests,
    load_photo,
    pan_keyframes,
)


def test_photos_load_and_shrink():
    full = load_photo("astronaut")
    assert full.shape == (512, 512, 3) and full.dtype == np.uint8
    assert load_photo("coffee", 200).shape == (133, 200, 3)  # 400x600 shrunk to a long side of 200
    with pytest.raises(InputError, match="Unknown photo 'lena'"):
        load_photo("lena")


def test_pan_moves_by_its_step_exactly():
    photo = load_photo("astronaut")
    clip = camera_clip(photo, "pan", size=64, n_frames=9)
    assert clip.shape == (9, 64, 64, 3) and clip.dtype == np.uint8
    # Four steps of (2.5, 1.25) px are a whole (10, 5) px with the same sub-pixel phase: an exact shift.
    dx, dy = (round(4 * step) for step in PAN_PX_PER_FRAME)
    np.testing.assert_array_equal(clip[4][:-dy, :-dx], clip[0][dy:, dx:])
    assert not np.array_equal(clip[1][:-dy, :-dx], clip[0][dy:, dx:])


def test_zoom_starts_on_the_centre_of_the_photo_and_closes_in():
    photo = load_photo("astronaut")
    clip = camera_clip(photo, "zoom", size=256, n_frames=5)
    np.testing.assert_array_equal(clip[0], photo[128:384, 128:384])  # scale 1 about the centre
    # Zooming in: the centre pixel stays, the content spreads out (frame-to-frame changes grow outwards).
    change = np.abs(clip[4].astype(int) - clip[0]).mean(axis=2)
    assert change[120:136, 120:136].mean() < change[:32].mean()
    with pytest.raises(InputError, match="Unknown camera motion"):
        camera_clip(photo, "tilt")


def test_pan_keyframes_are_every_spacing_frame_of_the_pan():
    keys = pan_keyframes(size=32, count=3, spacing=4)
    clip = camera_clip(load_photo("astronaut"), "pan", size=32, n_frames=9)
    np.testing.assert_array_equal(keys, clip[[0, 4, 8]])


def test_drag_photos_and_requests():
    assert drag_photo("coffee", 256).shape == (192, 256, 3)  # sides multiples of 64, long side <= 256
    assert drag_photo("astronaut", 1000).shape == (512, 512, 3)  # never enlarged without a size
    for photo in DRAG_REQUESTS:
        requests = drag_requests(photo)
        assert len(requests) == 5
        assert [t.is_anchor for t in requests] == [False] * 4 + [True]  # four drags, then a pinned point
    with pytest.raises(InputError, match="Unknown photo"):
        drag_requests("chelsea")


def test_drag_photos_of_a_given_size_keep_the_photo_undistorted():
    coffee = load_photo("coffee")  # 400x600
    wide = drag_photo("coffee", 512, (1024, 576))
    assert wide.shape == (576, 1024, 3)
    # The 16:9 centre crop (600x338 of the 600x400 photo), enlarged.
    reference = cv2.resize(coffee[31:369], (1024, 576), interpolation=cv2.INTER_CUBIC)
    assert np.abs(wide.astype(float) - reference).mean() < 1.0
    assert drag_photo("coffee", 512).shape == (320, 512, 3)  # default: multiples of 64
