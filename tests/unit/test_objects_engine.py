"""The object-aware drag engine: segmentation, rigid motion per object, a still background, filled holes."""

import dataclasses

import numpy as np
import pytest

from core.data.synthetic.video import random_video_spec, render_video_scene
from core.engines.objects import (
    GRIP_PER_SIDE,
    ObjectLayer,
    animate_objects,
    object_layers,
    preview_object_flow,
    segment_object,
    similarity,
)
from core.errors import InputError
from core.eval.drag_objects import score_scene, still_scene
from core.flow import flow_to_color
from core.trajectory import CameraMotion, Trajectories, Trajectory

SIDE = 128


@pytest.fixture(scope="module")
def scene():
    """A still-camera sprite scene with one big non-spinning disc moving right by a whole pixel per frame."""
    spec = random_video_spec((SIDE, SIDE), 6, seed=3, n_sprites=1, max_pan_px=0.0)
    sprite = dataclasses.replace(
        spec.sprites[0],
        shape="disc",
        radius_px=20.0,
        center_px=(50.0, 60.0),
        velocity_px=(2.0, 0.0),
        spin_rad=0.0,
    )
    return render_video_scene(dataclasses.replace(spec, sprites=(sprite,)))


def _drag(start, end):
    return Trajectory(np.array([start, end], float))


def _to_norm(point_px):
    return (np.asarray(point_px, float) + 0.5) / SIDE


def test_similarity_is_exact_for_translation_rotation_and_scale():
    source = np.array([[10.0, 20.0], [30.0, 25.0], [12.0, 40.0]])
    angle, scale, shift = 0.3, 1.2, np.array([5.0, -7.0])
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    target = source @ rotation.T + shift
    assert np.allclose(similarity(source, target), np.hstack([rotation, shift[:, None]]))
    assert np.allclose(similarity(source[:1], source[:1] + shift), [[1, 0, shift[0]], [0, 1, shift[1]]])


def test_segment_object_finds_the_sprite(scene):
    truth = scene.layer_ids[0] == 0
    mask = segment_object(scene.frames_uint8[0], (50.0, 60.0))
    assert (mask & truth).sum() / (mask | truth).sum() > 0.9
    grown = segment_object(scene.frames_uint8[0], (50.0, 60.0), grow_px=3)
    shrunk = segment_object(scene.frames_uint8[0], (50.0, 60.0), grow_px=-3)
    assert shrunk.sum() < mask.sum() < grown.sum() and (shrunk <= mask).all() and (mask <= grown).all()


def test_a_speck_of_texture_becomes_a_disc_around_the_point():
    image = np.random.default_rng(0).integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)  # no object anywhere
    mask = segment_object(image, (64.0, 64.0))
    radius = 0.06 * SIDE
    assert mask[64, 64] and mask[64, 64 + int(radius) - 1] and not mask[64, 64 + int(radius) + 2]


def test_a_drag_started_on_an_edge_grips_a_disc_around_its_point(scene):
    """Started 2 px inside the disc's right edge (x = 70), the object takes in the grip around the point,
    outside the sprite too: the grabbed point and its surroundings move with the drag."""
    image, truth = scene.frames_uint8[0], scene.layer_ids[0] == 0
    bare = segment_object(image, (68.0, 60.0), grip_px=0)
    gripped = segment_object(image, (68.0, 60.0), grip_px=10)
    ys, xs = np.mgrid[0:SIDE, 0:SIDE]
    disc = (xs - 68) ** 2 + (ys - 60) ** 2 <= 10**2
    assert np.array_equal(bare, truth)  # the segmentation alone cuts at the edge, 2 px from the point
    assert np.array_equal(gripped, truth | disc) and not gripped[60, 79]
    default = segment_object(image, (68.0, 60.0))
    assert np.array_equal(default, segment_object(image, (68.0, 60.0), grip_px=round(GRIP_PER_SIDE * SIDE)))
    assert (default & ~truth).any()


@pytest.mark.parametrize("point", [(-3.0, 5.0), (5.0, SIDE + 1.0), (float("nan"), 5.0)])
def test_a_drag_outside_the_image_is_one_sentence(scene, point):
    with pytest.raises(InputError, match="outside the 128x128 image"):
        segment_object(scene.frames_uint8[0], point)


def test_the_object_moves_rigidly_and_the_background_holds(scene):
    frames = scene.frames_uint8
    drags = Trajectories((_drag(_to_norm((50, 60)), _to_norm((60, 60))),))
    result = animate_objects(frames[0], drags, 6)
    assert np.array_equal(result.frames_uint8[0], frames[0])
    far = np.ones((SIDE, SIDE), bool)
    far[25:100, 20:100] = False  # everything well away from the disc and its path
    assert all(np.array_equal(frame[far], frames[0][far]) for frame in result.frames_uint8)
    # 2 px per frame: the disc's inside is its frame-0 pixels shifted by whole pixels.
    inside = (slice(50, 70), slice(40, 60))
    assert np.array_equal(result.frames_uint8[5][inside[0], 50:70], frames[0][inside])
    disc = scene.layer_ids[0] == 0
    assert np.allclose(result.flow_px[0][disc & (scene.layer_ids[1] == 0)], (2.0, 0.0), atol=1e-4)
    assert np.allclose(result.flow_px[:, far], 0.0)
    # What the disc uncovers is filled background, marked as such.
    uncovered = disc & (scene.layer_ids[5] == -1)
    assert result.filled[5][uncovered].mean() > 0.9 and result.filled[0].max() == 0


def test_an_anchor_inside_the_object_makes_it_turn_about_the_anchor(scene):
    pivot, rim = np.array([50.0, 60.0]), np.array([65.0, 60.0])
    turned = pivot + 15.0 * np.array([np.cos(0.4), np.sin(0.4)])
    drags = Trajectories((_drag(_to_norm(rim), _to_norm(turned)), Trajectory(_to_norm(pivot)[None])))
    layers = object_layers(scene.frames_uint8[0], drags)
    assert [layer.tracks for layer in layers] == [(0, 1)]
    result = animate_objects(scene.frames_uint8[0], drags, 6, layers=layers)
    assert np.allclose(result.flow_px[:, 60, 50], 0.0, atol=1e-3)  # the pivot stays
    last_step = result.flow_px[-1, 60, 65]
    assert last_step[1] > 0.5 and abs(last_step[0]) < last_step[1]  # the rim point turns downwards


def test_a_second_drag_on_the_same_object_joins_it_and_masks_can_be_given(scene):
    first = _drag(_to_norm((50, 60)), _to_norm((60, 60)))
    second = _drag(_to_norm((45, 55)), _to_norm((55, 55)))
    layers = object_layers(scene.frames_uint8[0], Trajectories((first, second)))
    assert [layer.tracks for layer in layers] == [(0, 1)]
    painted = np.zeros((SIDE, SIDE), bool)
    painted[10:30, 10:30] = True
    given = object_layers(scene.frames_uint8[0], Trajectories((first,)), masks={0: painted})
    assert len(given) == 1 and np.array_equal(given[0].mask, painted)
    with pytest.raises(InputError, match="non-empty 128x128 mask"):
        object_layers(scene.frames_uint8[0], Trajectories((first,)), masks={0: painted[:10]})


@pytest.fixture()
def two_squares():
    """Squares a and b in one row; a's drag carries it onto b, b's moves b 1 px down."""
    square_a, square_b = np.zeros((SIDE, SIDE), bool), np.zeros((SIDE, SIDE), bool)
    square_a[10:30, 10:30] = True
    square_b[10:30, 60:80] = True
    drags = Trajectories(
        (_drag(_to_norm((20, 20)), _to_norm((70, 20))), _drag(_to_norm((70, 20)), _to_norm((70, 21))))
    )
    return square_a, square_b, drags


def test_later_drawn_objects_are_in_front(scene, two_squares):
    image = scene.frames_uint8[0]
    square_a, square_b, drags = two_squares
    layers = [ObjectLayer(square_a, (0,)), ObjectLayer(square_b, (1,))]
    result = animate_objects(image, drags, 2, layers=layers)
    assert np.array_equal(result.frames_uint8[1][15, 65:75], image[14, 65:75])  # b (moved 1 px down) covers a


def test_a_camera_move_moves_the_background(scene):
    drags = Trajectories((_drag(_to_norm((50, 60)), _to_norm((60, 60))),))
    result = animate_objects(scene.frames_uint8[0], drags, 4, camera=CameraMotion(pan_x=0.1))
    assert np.abs(result.flow_px[0][5:20, 100:120, 0]).mean() > 1.0


def test_nothing_that_moves_is_one_sentence(scene):
    with pytest.raises(InputError, match="Nothing moves"):
        animate_objects(scene.frames_uint8[0], Trajectories((Trajectory(_to_norm((50, 60))[None]),)), 4)


def test_on_held_out_scenes_objects_move_and_the_background_holds():
    scene = still_scene(1_000_000, 128, 8)
    objects, sheet = score_scene(scene, "objects"), score_scene(scene, "sheet")
    assert objects["object_epe"] <= 1.0 and objects["background_epe"] <= 0.25
    assert objects["psnr_db"] > sheet["psnr_db"]


def test_a_depth_map_puts_the_nearer_object_in_front(scene, two_squares):
    image = scene.frames_uint8[0]
    square_a, square_b, drags = two_squares
    masks = {0: square_a, 1: square_b}
    disparity = np.where(square_a, 0.9, 0.1)  # a is nearer, though drawn first
    layers = object_layers(image, drags, masks=masks, disparity=disparity)
    assert [layer.tracks for layer in layers] == [(1,), (0,)]
    result = animate_objects(image, drags, 2, layers=layers)
    assert np.array_equal(result.frames_uint8[1][15, 65:75], image[15, 15:25])  # a covers b
    with pytest.raises(InputError, match="depth map must be a 128x128 map"):
        object_layers(image, drags, masks=masks, disparity=disparity[:5])


def test_the_flow_picture_colours_each_object_by_its_own_motion(two_squares):
    square_a, square_b, drags = two_squares
    layers = [ObjectLayer(square_a, (0,)), ObjectLayer(square_b, (1,))]
    picture = preview_object_flow((SIDE, SIDE), drags, layers, 4)

    def colour(dx, dy, biggest=50.0):
        return flow_to_color(np.array([[[dx, dy]]], np.float32), biggest)[0, 0]

    assert picture.shape == (SIDE, SIDE, 3) and tuple(picture[100, 100]) == (255, 255, 255)  # still: white
    np.testing.assert_array_equal(picture[20, 20], colour(50, 0))  # a: 50 px right, the largest
    np.testing.assert_array_equal(picture[20, 70], colour(0, 1))  # b: 1 px down
    overlap = np.zeros((SIDE, SIDE), bool)
    overlap[15:25, 70:90] = True  # an object over b's left half: the front one's colour shows
    layers.append(ObjectLayer(overlap, (0,)))
    np.testing.assert_array_equal(preview_object_flow((SIDE, SIDE), drags, layers, 4)[20, 75], colour(50, 0))
    panned = preview_object_flow((SIDE, SIDE), drags, layers, 4, camera=CameraMotion(pan_x=0.1))
    assert tuple(panned[100, 100]) != (255, 255, 255)  # the camera moves the background


def test_segmentation_is_repeatable(scene):
    image = np.ascontiguousarray(scene.frames_uint8[0])
    masks = [segment_object(image, (50.0, 60.0)) for _ in range(3)]
    assert all(np.array_equal(masks[0], mask) for mask in masks[1:])


def test_an_object_is_segmented_once_per_picture_and_point(scene, monkeypatch):
    import core.engines.objects as objects

    calls = []
    real = objects._grabcut
    monkeypatch.setattr(objects, "_grabcut", lambda *args: calls.append(args) or real(*args))
    image = np.ascontiguousarray(scene.frames_uint8[0]).copy()
    image[0, 0] ^= 1  # a picture no other test segmented
    first = segment_object(image, (50.0, 60.0))
    first[:] = False  # the caller's copy: the cache keeps its own
    again = segment_object(image, (50.0, 60.0))
    assert len(calls) == 1 and again.any()
    grown = segment_object(image, (50.0, 60.0), grow_px=2)
    assert len(calls) == 1 and grown.sum() > again.sum()  # the grow/shrink reuses the segmentation
    segment_object(image, (51.0, 60.0))
    image[0, 1] ^= 1
    segment_object(image, (50.0, 60.0))
    assert len(calls) == 3
