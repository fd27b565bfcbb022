"""Sparse point tracks sampled from dense frame-to-frame flow: the training targets of trajectory control.

A user drags a few points of the first frame; a model trained for that needs, per training clip, a few
tracks that start on frame 0 and follow real content. `sample_tracks` draws them from the dense flow of
the clip (`core.flow.estimate_video_flow`, or the exact flow of a synthetic scene):

- Chaining: every pixel centre p of frame 0 is followed by composing the consecutive flows
  (`accumulate_flows`: bilinear lookup of flow t at the point's position in frame t), so the tracks of
  all pixels come from H x W-sized array operations, and starting points sit on pixel centres.
- Reliability: a point is kept only if, at every step, it is inside the frame, not occluded
  (`occluded`, e.g. from the forward-backward test of `occlusion_mask`; see `video_flow_and_occlusion`)
  and not on a motion boundary, where bilinear lookup would mix the flows of two surfaces. Both masks
  are looked up bilinearly: a point fails when any of the (up to 4) pixels it interpolates from fails.
  Unreliable tracks are dropped, never truncated: the condition built from a track has no visibility
  channel, so a track held still after it is lost would teach the model that the point stopped.
- Choice: starting points are drawn without replacement among the reliable ones, with probability
  (1 - anchor_fraction) * path_length / total + anchor_fraction / count: moving content gets most
  tracks, and about `anchor_fraction` of them fall anywhere, mostly on still areas (anchors, which pin
  content in place). A clip with no motion gets uniform anchors.

Motion boundaries follow Sundaram, Brox and Keutzer (2010): a pixel is on one when the largest squared
difference d2 between its flow and a 4-neighbour's exceeds 0.01 |flow|^2 + `boundary_px2`.

Coordinates of the result are normalised as in `core.trajectory` (pixel-centre x_px is at
(x_px + 0.5) / W), so the tracks feed `core.trajectory.sparse_flow` and the ControlNet's condition as a
user's trajectories do.
"""

from __future__ import annotations

import numpy as np

from core.checks import check_flow_stack
from core.errors import InputError
from core.flow.estimate import estimate_video_flow, occlusion_mask
from core.flow.ops import accumulate_flows
from core.flow.warp import warp_field

# Relative and absolute (px^2) tolerance of the motion-boundary test (Sundaram et al. use 0.01, 0.002 on
# the gradient; on neighbour differences 0.01 px^2 lets a rotation of 0.1 rad/frame pass).
_BOUNDARY_RELATIVE = 0.01
BOUNDARY_PX2 = 0.01


def video_flow_and_occlusion(frames_uint8: np.ndarray, method: str = "dis") -> tuple[np.ndarray, np.ndarray]:
    """Forward flow of a video and where it fails the forward-backward test: the input of `sample_tracks`.

    Args:
        frames_uint8: (T,H,W,3) uint8 RGB, T >= 2, H and W >= 16.
        method: a `core.flow.METHODS` estimator, run forward and backward (twice the cost of the flow).

    Returns:
        (flows_px (T-1,H,W,2) float32, entry t the flow t -> t+1; occluded (T-1,H,W) bool, True where
        `occlusion_mask` of flow t against the backward flow t+1 -> t fails or the target leaves the frame).
    """
    forward = estimate_video_flow(frames_uint8, method)
    backward = estimate_video_flow(frames_uint8[::-1], method)[::-1]  # entry t: t+1 -> t
    occluded = np.stack([occlusion_mask(fw, bw) for fw, bw in zip(forward, backward)])
    return forward, occluded


def motion_boundaries(flow_px: np.ndarray, boundary_px2: float = BOUNDARY_PX2) -> np.ndarray:
    """(H,W) bool: pixels whose flow differs from a 4-neighbour's by more than the module's tolerance.

    Args:
        flow_px: (H,W,2) float32 flow in pixels.
        boundary_px2: absolute tolerance on the squared flow difference, px^2.
    """
    d2 = np.zeros(flow_px.shape[:2], np.float32)
    for axis in (0, 1):
        step = np.diff(flow_px, axis=axis)
        step2 = step[..., 0] ** 2 + step[..., 1] ** 2
        # A difference belongs to both pixels it separates.
        lower = [slice(None), slice(None)]
        upper = [slice(None), slice(None)]
        lower[axis], upper[axis] = slice(None, -1), slice(1, None)
        d2[tuple(lower)] = np.maximum(d2[tuple(lower)], step2)
        d2[tuple(upper)] = np.maximum(d2[tuple(upper)], step2)
    speed2 = flow_px[..., 0] ** 2 + flow_px[..., 1] ** 2
    return d2 > _BOUNDARY_RELATIVE * speed2 + boundary_px2


def _check_occluded(occluded: np.ndarray | None, flows_px: np.ndarray) -> np.ndarray:
    if occluded is None:
        return np.zeros(flows_px.shape[:3], bool)
    if not isinstance(occluded, np.ndarray) or occluded.shape != flows_px.shape[:3] or occluded.dtype != bool:
        raise InputError(
            f"occluded must be a bool array of shape {flows_px.shape[:3]} (one mask per flow), "
            f"got {getattr(occluded, 'dtype', type(occluded).__name__)} {getattr(occluded, 'shape', '')}."
        )
    return occluded


def _check_options(num_tracks: object, rng: object, anchor_fraction: object, boundary_px2: object) -> None:
    if isinstance(num_tracks, bool) or not isinstance(num_tracks, int | np.integer) or num_tracks < 0:
        raise InputError(f"num_tracks must be a whole number >= 0, got {num_tracks!r}.")
    if not isinstance(rng, np.random.Generator):
        raise InputError(
            f"rng must be a numpy Generator (np.random.default_rng(seed)), got {type(rng).__name__}."
        )
    if not isinstance(anchor_fraction, int | float) or not 0.0 <= anchor_fraction <= 1.0:
        raise InputError(f"anchor_fraction must be a number in [0, 1], got {anchor_fraction!r}.")
    if boundary_px2 is not None and (not isinstance(boundary_px2, int | float) or not boundary_px2 >= 0):
        raise InputError(f"boundary_px2 must be a number >= 0 or None, got {boundary_px2!r}.")


def sample_tracks(
    flows_px: np.ndarray,
    num_tracks: int,
    rng: np.random.Generator,
    *,
    occluded: np.ndarray | None = None,
    motion_weighted: bool = True,
    anchor_fraction: float = 0.1,
    boundary_px2: float | None = BOUNDARY_PX2,
) -> np.ndarray:
    """Draw up to `num_tracks` reliable point tracks from frame 0 through a clip (module docstring).

    Args:
        flows_px: (T-1,H,W,2) float flow in pixels, entry t from frame t to t+1 (`estimate_video_flow`).
        num_tracks: how many tracks to draw (>= 0); fewer come back when fewer points are reliable.
        rng: the only source of randomness (seed it for reproducible draws).
        occluded: optional (T-1,H,W) bool, True where flow t cannot be trusted (occlusion, failed
            forward-backward test); `video_flow_and_occlusion` gives it. None trusts the flow everywhere.
        motion_weighted: draw starting points by path length (module docstring); False draws uniformly.
        anchor_fraction: in [0,1], the share of the probability spread uniformly (anchors on still areas).
        boundary_px2: motion-boundary tolerance in px^2 (`motion_boundaries`); None skips that test.

    Returns:
        (M,T,2) float64 positions (x, y) in [0,1] normalised image coordinates, M <= num_tracks, in the
        order drawn. (0,T,2) when num_tracks is 0 or no point stays reliable through the clip.
    """
    flows_px = check_flow_stack(flows_px)
    occluded = _check_occluded(occluded, flows_px)
    _check_options(num_tracks, rng, anchor_fraction, boundary_px2)
    steps, height, width = flows_px.shape[:3]
    grid = np.stack(np.meshgrid(np.arange(width), np.arange(height)), axis=-1).astype(np.float32)
    # from_start[t - 1]: flow 0 -> t on frame 0's grid; positions[t]: where the pixel centre p is in frame t.
    from_start = accumulate_flows(flows_px)
    positions = np.concatenate([grid[None], grid + from_start])

    inside = (
        (positions[..., 0] >= 0)
        & (positions[..., 0] <= width - 1)
        & (positions[..., 1] >= 0)
        & (positions[..., 1] <= height - 1)
    )
    reliable = inside.all(axis=0)
    for t in range(steps):
        unreliable = occluded[t].copy()
        if boundary_px2 is not None:
            unreliable |= motion_boundaries(flows_px[t], boundary_px2)
        # Looked up where each frame-0 point is in frame t; any weight on an unreliable pixel fails it.
        at_point = unreliable if t == 0 else warp_field(unreliable.astype(np.float32), from_start[t - 1]) > 0
        reliable &= ~at_point

    candidates = np.flatnonzero(reliable)
    count = min(int(num_tracks), candidates.size)
    if count == 0:
        return np.zeros((0, steps + 1, 2))
    weights = np.full(candidates.size, 1.0 / candidates.size)
    if motion_weighted:
        moves = np.diff(positions.reshape(steps + 1, -1, 2)[:, candidates], axis=0)
        path_px = np.sqrt(moves[..., 0] ** 2 + moves[..., 1] ** 2).sum(axis=0, dtype=np.float64)
        if path_px.sum() > 0:
            weights = (1 - anchor_fraction) * path_px / path_px.sum() + anchor_fraction * weights
    # Zero-weight points (still, with anchor_fraction 0) are never drawn.
    count = min(count, int(np.count_nonzero(weights)))
    chosen = rng.choice(candidates, size=count, replace=False, p=weights / weights.sum())
    tracks_px = positions.reshape(steps + 1, -1, 2)[:, chosen].transpose(1, 0, 2).astype(np.float64)
    return (tracks_px + 0.5) / np.array([width, height], np.float64)
