"""core.flow's flow-index convention (index t: the motion frame t -> t+1) and the flow-video layout.

Every producer of frame-to-frame flow is checked against one motion whose steps differ from frame to
frame, so an index off by one fails; the flow-video converters are checked for exact round trips.
"""

import numpy as np
import pytest
import torch
from skimage.data import astronaut

from core.engines.warp import animate
from core.errors import InputError
from core.flow import estimate_video_flow, flows_to_video, video_to_flows
from core.trajectory import Trajectories, Trajectory, sparse_flow, sparse_flow_mask, tracks_to_px

SIZE = 128


@pytest.fixture(scope="module")
def accelerating():
    """A warp clip of the astronaut along an L-shaped track: right, round the corner, then down."""
    image = np.ascontiguousarray(astronaut()[::4, ::4])
    track = Trajectory((np.array([[40.0, 50.0], [64.0, 50.0], [64.0, 80.0]]) + 0.5) / SIZE)
    return animate(image, Trajectories((track,)), 5)


def _at(field_px: np.ndarray, point_px: np.ndarray) -> np.ndarray:
    x, y = np.round(point_px).astype(int)
    return field_px[y, x]


def test_every_producer_holds_the_motion_t_to_t_plus_1_at_index_t(accelerating):
    positions_px = accelerating.tracks_px[0]
    steps_px = np.diff(positions_px, axis=0)
    assert np.all(np.linalg.norm(np.diff(steps_px, axis=0), axis=1) > 4)  # an index off by one fails
    tracks_norm = (positions_px[None] + 0.5) / SIZE
    sparse = video_to_flows(sparse_flow(tracks_norm, SIZE, SIZE, sigma_px=2.0))
    estimated = estimate_video_flow(accelerating.frames_uint8, "dis")
    assert accelerating.flow_px.shape == sparse.shape == estimated.shape == (4, SIZE, SIZE, 2)
    for t, step in enumerate(steps_px):
        np.testing.assert_allclose(_at(sparse[t], positions_px[t]), step, atol=0.5)
        np.testing.assert_allclose(_at(accelerating.flow_px[t], positions_px[t]), step, atol=0.5)
        np.testing.assert_allclose(_at(estimated[t], positions_px[t]), step, atol=1.5)


def test_sparse_flow_and_its_mask_are_flow_videos_of_the_same_steps():
    positions_px = np.array([[10.0, 8.0], [12.0, 9.0], [15.0, 9.0], [15.0, 13.0], [11.0, 14.0]])
    tracks_norm = ((positions_px + 0.5) / [32, 24])[None]
    video = sparse_flow(tracks_norm, 24, 32, sigma_px=2.0)
    mask = sparse_flow_mask(tracks_norm, 24, 32, sigma_px=2.0)
    assert video.shape == (5, 24, 32, 2) and mask.shape == (5, 24, 32, 1)
    assert not video[0].any() and not mask[0].any()
    for t, step in enumerate(np.diff(positions_px, axis=0)):
        x, y = positions_px[t].astype(int)  # frame t+1 lives on frame t's grid
        np.testing.assert_array_equal(video[t + 1, y, x], step)
        assert mask[t + 1, y, x, 0] == 1.0


def test_flows_to_video_and_back_are_exact():
    flows = np.random.default_rng(0).normal(size=(3, 6, 8, 2)).astype(np.float32)
    video = flows_to_video(flows)
    assert video.shape == (4, 6, 8, 2) and video.dtype == np.float32
    assert not video[0].any()
    np.testing.assert_array_equal(video[1:], flows)
    np.testing.assert_array_equal(video_to_flows(video), flows)
    np.testing.assert_array_equal(video_to_flows(torch.from_numpy(video)), flows)
    assert video_to_flows(video.astype(np.float64)).dtype == np.float32


@pytest.mark.parametrize(
    ("convert", "value", "match"),
    [
        (flows_to_video, np.zeros((4, 4, 2), np.float32), r"\(T-1,H,W,2\), got \(4, 4, 2\)"),
        (flows_to_video, np.zeros((2, 4, 4, 3), np.float32), r"\(T-1,H,W,2\)"),
        (flows_to_video, [[0.0, 0.0]], r"\(T-1,H,W,2\), got list"),
        (video_to_flows, np.zeros((1, 4, 4, 2), np.float32), "T >= 2"),
        (video_to_flows, np.zeros((3, 4, 4), np.float32), r"\(T,H,W,2\)"),
    ],
)
def test_flow_video_converters_reject_other_shapes(convert, value, match):
    with pytest.raises(InputError, match=match):
        convert(value)


def test_tracks_to_px_puts_normalised_points_on_pixel_centres():
    np.testing.assert_array_equal(tracks_to_px(np.array([[0.5 / 8, 7.5 / 4]]), 4, 8), [[0.0, 7.0]])
