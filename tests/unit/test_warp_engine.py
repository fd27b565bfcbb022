"""core.engines.warp: the weight-free drag engine (exact frame 0, requested motion, anchors, fill, preview)."""

import cv2
import numpy as np
import pytest

from core.config import Settings
from core.engines.warp import CAMERA_PRESETS, animate, preview_flow, preview_video
from core.errors import InputError
from core.eval.fixtures import load_photo
from core.flow import backward_warp, flow_to_color
from core.trajectory import CameraMotion, Trajectories, Trajectory, tracks_to_px

SIZE = 256


def _norm(points_px, height=SIZE, width=SIZE):
    """Pixel-centre coordinates -> normalised (inverse of tracks_to_px)."""
    return (np.asarray(points_px, float) + 0.5) / [width, height]


def _track(*points_px) -> Trajectory:
    return Trajectory(_norm(points_px))


def _disc(x, y, radius, size=SIZE):
    ys, xs = np.mgrid[0:size, 0:size]
    return (xs - x) ** 2 + (ys - y) ** 2 <= radius**2


@pytest.fixture(scope="module")
def photo():
    image = load_photo("astronaut", SIZE)
    assert image.shape == (SIZE, SIZE, 3)
    return image


DRAG = _track([100, 120], [150, 120])


def test_frame_zero_is_the_input_and_shapes_and_ranges_hold(photo):
    trajectories = Trajectories((DRAG, _track([200, 60], [190, 90], [170, 100]), _track([40, 220])))
    calls = []
    result = animate(photo, trajectories, 9, progress=lambda done, total: calls.append((done, total)))
    assert result.frames_uint8.shape == (9, SIZE, SIZE, 3) and result.frames_uint8.dtype == np.uint8
    np.testing.assert_array_equal(result.frames_uint8[0], photo)
    assert result.flow_px.shape == (8, SIZE, SIZE, 2) and result.flow_px.dtype == np.float32
    assert result.filled.shape == (9, SIZE, SIZE) and result.filled.dtype == np.float32
    assert result.filled.min() >= 0 and result.filled.max() <= 1 and not result.filled[0].any()
    expected = tracks_to_px(trajectories.tracks_norm(9, (SIZE, SIZE)), SIZE, SIZE)
    np.testing.assert_array_equal(result.tracks_px, expected)
    np.testing.assert_allclose(result.tracks_px[0, [0, -1]], [[100, 120], [150, 120]], atol=1e-9)
    assert calls == [(t, 9) for t in range(1, 10)]
    assert not np.array_equal(result.frames_uint8[-1], photo)


def test_content_arrives_at_the_requested_positions(photo):
    """A 9x9 patch around each track's start is found at its requested position in every frame."""
    trajectories = Trajectories((DRAG, _track([190, 60], [170, 100])))
    result = animate(photo, trajectories, 7)

    def patch(image, x, y, r=4):
        xs, ys = np.meshgrid(np.arange(-r, r + 1) + x, np.arange(-r, r + 1) + y)
        return cv2.remap(image, xs.astype(np.float32), ys.astype(np.float32), cv2.INTER_LINEAR).astype(float)

    for m in range(2):
        start = patch(photo, *result.tracks_px[m, 0])
        for t in range(1, 7):
            moved = patch(result.frames_uint8[t], *result.tracks_px[m, t])
            stayed = patch(result.frames_uint8[t], *result.tracks_px[m, 0])
            # Levels; what remains is the blur of resampling twice at sub-pixel positions.
            assert np.abs(moved - start).mean() < 3.0
            if t == 6:  # the control: the start position shows other content by then
                assert np.abs(stayed - start).mean() > 15.0


def test_flow_steps_along_the_tracks(photo):
    """The frame-to-frame flow at a track's position is its requested step."""
    result = animate(photo, Trajectories((DRAG, _track([190, 60], [170, 100]))), 7)
    for t in range(6):
        for m in range(2):
            x, y = result.tracks_px[m, t]
            sampled = cv2.remap(
                result.flow_px[t], np.float32([[x]]), np.float32([[y]]), cv2.INTER_LINEAR
            ).reshape(2)
            np.testing.assert_allclose(sampled, result.tracks_px[m, t + 1] - result.tracks_px[m, t], atol=0.1)


def test_anchor_keeps_its_neighbourhood_static(photo):
    """Measured: within 5 px of an anchor 70 px from a 50 px drag the picture changes less than a 1 px
    shift would change it; without the anchor the drag carries it away."""
    x, y = 125, 190
    disc = _disc(x, y, 5)

    def worst_rms(frames):
        return max(np.sqrt(((f.astype(float) - photo.astype(float))[disc] ** 2).mean()) for f in frames)

    shifts = [np.broadcast_to(np.float32(v), (SIZE, SIZE, 2)).copy() for v in ([1, 0], [0, 1])]
    one_px = np.mean([worst_rms([backward_warp(photo, s)]) for s in shifts])
    anchored = animate(photo, Trajectories((DRAG, _track([x, y]))), 8)
    free = animate(photo, Trajectories((DRAG,)), 8)
    assert worst_rms(anchored.frames_uint8) < 0.5 * one_px
    assert worst_rms(free.frames_uint8) > 2.0 * one_px
    assert anchored.filled[:, disc].max() == 0  # the fill never replaces an anchor's surroundings


def test_camera_pan_is_an_exact_shift_and_what_it_reveals_moves_with_the_picture(photo):
    # pan_x 0.25 of 256 px over 5 frames: 0, 16, 32, 48, 64 px, all whole pixels.
    result = animate(photo, Trajectories(), 5, camera=CameraMotion(pan_x=0.25))
    np.testing.assert_array_equal(result.frames_uint8[-1][:, 64:], photo[:, :-64])
    for t in range(1, 5):
        # Consecutive frames are the same canvas shifted by 16 px, the filled margin included.
        np.testing.assert_array_equal(result.frames_uint8[t][:, 16:], result.frames_uint8[t - 1][:, :-16])
    assert result.filled[-1][:, :63].min() == 1 and result.filled[-1][:, 64:].max() == 0
    np.testing.assert_allclose(result.flow_px, np.broadcast_to([16.0, 0.0], result.flow_px.shape), atol=1e-4)


@pytest.mark.parametrize(
    "case",
    ["tracks_apart", "zoom_out", "pan_left", "rotate_cw", "zoom_far_out", "brush", "edge_drag"],
)
def test_no_black_holes(photo, case):
    """Out-of-frame and stretched areas are filled with picture colours, never black."""
    photo = np.maximum(photo, 1)  # an input without any pure-black pixel
    kwargs = {}
    trajectories = Trajectories((DRAG,))
    if case == "tracks_apart":
        trajectories = Trajectories((_track([110, 128], [70, 128]), _track([146, 128], [186, 128])))
    elif case == "zoom_far_out":
        kwargs["camera"] = CameraMotion(zoom=0.4)
    elif case == "brush":
        mask = np.zeros((SIZE, SIZE), bool)
        mask[80:170, 60:140] = True
        kwargs["region_mask"] = mask
    elif case == "edge_drag":  # pulls content in across the left border
        trajectories = Trajectories((_track([10, 128], [80, 128]),))
    elif case != "tracks_apart":
        kwargs["camera"] = CAMERA_PRESETS[case]
    result = animate(photo, trajectories, 6, **kwargs)
    assert result.filled.max() > 0.5  # the case does need a fill
    assert (result.frames_uint8.max(axis=3) > 0).all()
    # A plain gather with a constant border would have left black there.
    if case in ("zoom_out", "zoom_far_out", "pan_left", "rotate_cw"):
        assert (result.filled == 1).mean() > 0.01


def test_fill_sits_where_tracks_pull_apart_and_spares_the_tracks(photo):
    a, b = _track([110, 128], [80, 128]), _track([146, 128], [176, 128])
    result = animate(photo, Trajectories((a, b)), 8)
    last = result.filled[-1]
    assert last[128, 128] == 1.0  # midway between the tracks: stretched 5x and more
    ys, xs = np.nonzero(last > 0.5)
    assert abs(xs.mean() - 128) < 3 and abs(ys.mean() - 128) < 3
    for x, y in result.tracks_px[:, -1]:
        assert result.filled[-1][_disc(x, y, 5)].max() == 0
    # Filled pixels are smooth: their colours vary far less than the picture's.
    region = last == 1.0
    gradient = np.abs(np.diff(result.frames_uint8[-1].astype(float), axis=1)).mean(axis=2)[region[:, 1:]]
    assert gradient.mean() < 0.25 * np.abs(np.diff(photo.astype(float), axis=1)).mean()


def test_motion_brush_holds_everything_outside_the_region(photo):
    mask = np.zeros((SIZE, SIZE), bool)
    mask[:, :128] = True
    trajectories = Trajectories((_track([60, 120], [90, 140]),))
    brushed = animate(photo, trajectories, 6, region_mask=mask)
    free = animate(photo, trajectories, 6)
    right = np.s_[:, :, 170:]
    np.testing.assert_array_equal(
        brushed.frames_uint8[right], np.broadcast_to(photo[:, 170:], (6, SIZE, 86, 3))
    )
    assert not np.array_equal(free.frames_uint8[right], np.broadcast_to(photo[:, 170:], (6, SIZE, 86, 3)))


def test_nothing_to_animate_is_an_input_error(photo):
    with pytest.raises(InputError, match="Nothing moves"):
        animate(photo, Trajectories())
    with pytest.raises(InputError, match="Nothing moves"):
        animate(photo, Trajectories((_track([50, 50]), _track([90, 90]))))  # anchors only
    with pytest.raises(InputError, match="Nothing moves"):
        animate(photo, Trajectories(), camera=CameraMotion())  # a camera that does not move
    with pytest.raises(InputError, match="region is empty"):
        animate(photo, Trajectories((DRAG,)), region_mask=np.zeros((SIZE, SIZE), bool))
    # A camera move alone animates.
    assert animate(photo, Trajectories(), 3, camera=CAMERA_PRESETS["zoom_in"]).frames_uint8.shape[0] == 3


def test_bad_inputs_raise_input_error(photo):
    trajectories = Trajectories((DRAG,))
    small = Settings(max_frames=10, max_image_side=200)
    with pytest.raises(InputError, match="between 2 and 10"):
        animate(photo[:100, :100], trajectories, 11, settings=small)
    with pytest.raises(InputError, match="between 2 and"):
        animate(photo, trajectories, 1)
    with pytest.raises(InputError, match="largest side allowed is 200"):
        animate(photo, trajectories, 5, settings=small)
    with pytest.raises(InputError, match="at least 8 px"):
        animate(photo[:4, :40], trajectories, 5)
    with pytest.raises(InputError, match="uint8"):
        animate(photo.astype(np.float32), trajectories, 5)
    with pytest.raises(InputError, match="3 colour channels"):
        animate(photo[..., :1], trajectories, 5)
    with pytest.raises(InputError, match="Trajectories"):
        animate(photo, [DRAG], 5)
    with pytest.raises(InputError, match="CameraMotion"):
        animate(photo, trajectories, 5, camera="zoom_in")
    with pytest.raises(InputError, match="region mask"):
        animate(photo, trajectories, 5, region_mask=np.ones((10, 10), bool))
    with pytest.raises(InputError, match="radius_px"):
        animate(photo, trajectories, 5, radius_px=-3.0)
    with pytest.raises(InputError, match="whole number"):
        animate(photo, trajectories, 5.0)


def test_preview_shows_the_total_displacement_in_flow_colours():
    right = preview_flow((320, 200), Trajectories((Trajectory([[0.3, 0.5], [0.5, 0.5]]),)))
    left = preview_flow((320, 200), Trajectories((Trajectory([[0.5, 0.5], [0.3, 0.5]]),)))
    assert right.shape == (200, 320, 3) and right.dtype == np.uint8
    # At the drag's start the displacement is the largest, so the colour is the saturated wheel colour
    # of its direction; far away almost nothing moves (the kernel's tail): nearly white.
    full_right = flow_to_color(np.float32([[[1.0, 0.0]]]), 1.0)[0, 0]
    full_left = flow_to_color(np.float32([[[-1.0, 0.0]]]), 1.0)[0, 0]
    np.testing.assert_allclose(right[100, 96], full_right, atol=12)
    np.testing.assert_allclose(left[100, 160], full_left, atol=12)
    assert right[5, 315].min() >= 245
    # A fixed max_magnitude (px at the image size) halves the saturation of a 64 px drag shown at 128.
    half = preview_flow(
        (320, 200), Trajectories((Trajectory([[0.3, 0.5], [0.5, 0.5]]),)), max_magnitude=128.0
    )
    np.testing.assert_allclose(half[100, 96], flow_to_color(np.float32([[[0.5, 0.0]]]), 1.0)[0, 0], atol=12)


def test_preview_of_nothing_is_white_and_follows_the_camera_and_brush():
    np.testing.assert_array_equal(preview_flow((64, 48), Trajectories()), np.full((48, 64, 3), 255, np.uint8))
    zoom = preview_flow((64, 48), Trajectories(), camera=CAMERA_PRESETS["zoom_in"])
    assert (zoom[24, 32] > 240).all() and zoom[0, 0].min() < 200  # still centre, moving corners
    mask = np.zeros((48, 64), bool)
    mask[:, :32] = True
    brushed = preview_flow((64, 48), Trajectories((Trajectory([[0.2, 0.5], [0.4, 0.5]]),)), region_mask=mask)
    assert brushed[24, 10].min() < 200 and (brushed[:, 50:] == 255).all()
    with pytest.raises(InputError, match="region mask"):
        preview_flow((64, 48), Trajectories((DRAG,)), region_mask=np.ones((10, 10), bool))
    with pytest.raises(InputError, match="width, height"):
        preview_flow((64.5, 48), Trajectories((DRAG,)))


def test_video_preview_is_animate_itself_when_the_image_is_small_enough(photo):
    trajectories = Trajectories((DRAG, _track([200, 60], [190, 90]), _track([40, 220])))
    mask = _disc(128, 120, 90)
    expected = animate(photo, trajectories, 6, region_mask=mask, radius_px=30.0).frames_uint8
    preview = preview_video(photo, trajectories, 6, region_mask=mask, radius_px=30.0, max_side_px=SIZE)
    np.testing.assert_array_equal(preview, expected)


def test_video_preview_warps_a_smaller_copy_close_to_animate(photo):
    image = cv2.resize(photo, (SIZE * 2, SIZE), interpolation=cv2.INTER_LINEAR)  # 512x256
    trajectories = Trajectories((Trajectory([[0.3, 0.45], [0.5, 0.5]]), Trajectory([[0.8, 0.2]])))
    full = animate(image, trajectories, 5, camera=CAMERA_PRESETS["pan_left"]).frames_uint8
    preview = preview_video(image, trajectories, 5, camera=CAMERA_PRESETS["pan_left"], max_side_px=128)
    assert preview.shape == full.shape and preview.dtype == np.uint8
    np.testing.assert_array_equal(preview[0], image)

    # A quarter of the resolution: about as far from animate's frames as those frames shrunk and
    # enlarged again, and far closer than the still image (a wrong motion costs tens of grey levels).
    def error(frames):
        return np.abs(frames[1:].astype(float) - full[1:]).mean()

    resampled = [
        cv2.resize(cv2.resize(f, (128, 64), interpolation=cv2.INTER_AREA), (SIZE * 2, SIZE)) for f in full
    ]
    assert error(preview) < 1.5 * error(np.stack(resampled))
    assert error(preview) < 0.25 * error(np.repeat(image[None], 5, axis=0))
    # The region and the reach are scaled with the copy: outside a brush nothing moves.
    mask = np.zeros((SIZE, SIZE * 2), bool)
    mask[:, : SIZE // 2] = True
    brushed = preview_video(image, trajectories, 3, region_mask=mask, radius_px=40.0, max_side_px=128)
    still = cv2.resize(cv2.resize(image, (128, 64), interpolation=cv2.INTER_AREA), (SIZE * 2, SIZE))
    np.testing.assert_array_equal(brushed[-1][:, SIZE + 40 :], still[:, SIZE + 40 :])


def test_video_preview_rejects_what_animate_rejects_and_a_bad_side(photo):
    with pytest.raises(InputError, match="Nothing moves"):
        preview_video(photo, Trajectories())
    with pytest.raises(InputError, match="region mask"):
        preview_video(photo, Trajectories((DRAG,)), region_mask=np.ones((10, 10), bool))
    with pytest.raises(InputError, match="radius_px"):
        preview_video(photo, Trajectories((DRAG,)), 3, radius_px=-3.0, max_side_px=64)
    for bad in (4, 64.0, True):
        with pytest.raises(InputError, match="max_side_px"):
            preview_video(photo, Trajectories((DRAG,)), max_side_px=bad)
