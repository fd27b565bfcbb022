"""Trajectories -> flow maps: sparse DragNUWA-style maps, dense displacement fields and backward warp maps.

Every map here takes tracks (M,N,2) in normalised coordinates (`Trajectories.tracks_norm`) and works in
pixel-centre coordinates (`tracks_to_px`: x_px = x_norm * W - 0.5, like cv2.remap). Their frame layouts
are two of those `core.flow` defines beside its flow-index convention (index t: the motion t -> t+1):
- `sparse_flow` and `sparse_flow_mask` are flow videos, the layout the video models are conditioned on:
  frame 0 zero, frame t+1 the motion t -> t+1 on frame t's grid (`core.flow.video_to_flows` gives the
  N-1 frame-to-frame flows); with `cumulative=True` frame t holds the displacement from frame 0.
- `dense_displacement` and `backward_flow` map frame 0 to frame t at index t (frame 0 zero): the warp
  engine gathers every frame from frame 0, so it needs displacements from frame 0, not frame to frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import cv2
import numpy as np
from scipy.ndimage import map_coordinates

from core.errors import InputError
from core.trajectory.camera import CameraMotion


def _check_tracks(tracks_norm: Any) -> np.ndarray:
    """(M,N,2) float64 tracks in [0,1]; InputError otherwise."""
    tracks = np.asarray(tracks_norm, dtype=np.float64)
    if tracks.ndim != 3 or tracks.shape[2] != 2 or tracks.shape[1] < 1:
        raise InputError(f"tracks must have shape (M, N, 2) with N >= 1 frames, got {tracks.shape}.")
    if not np.all(np.isfinite(tracks)):
        raise InputError("tracks contain NaN or infinite coordinates.")
    return np.clip(tracks, 0.0, 1.0)


def _check_hw(height: Any, width: Any) -> tuple[int, int]:
    for name, value in (("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise InputError(f"{name} must be a positive integer number of pixels, got {value!r}.")
    return int(height), int(width)


def tracks_to_px(tracks_norm: np.ndarray, height: int, width: int) -> np.ndarray:
    """Normalised (...,2) positions -> pixel-centre coordinates (x * W - 0.5, y * H - 0.5), float64."""
    return np.asarray(tracks_norm, dtype=np.float64) * [width, height] - 0.5


def _check_sigma(sigma_px: Any) -> float:
    if isinstance(sigma_px, bool) or not isinstance(sigma_px, int | float) or not (0 < sigma_px < math.inf):
        raise InputError(f"sigma_px must be a positive number of pixels, got {sigma_px!r}.")
    return float(sigma_px)


def _gaussian_splat(
    centres_px: np.ndarray, values: np.ndarray, height: int, width: int, sigma_px: float
) -> np.ndarray:
    """Sum over m of values[m] * exp(-|p - centre_m|^2 / 2 sigma^2) on the (H,W) pixel grid.

    The Gaussian is separable, so the sum is one (H,M) x (M,W) product per channel, with the centres
    at their exact sub-pixel positions and a peak of exactly 1 x value on a centre that sits on a pixel.

    Returns:
        (H,W,C) float32 for (M,C) values.
    """
    out = np.zeros((height, width, values.shape[1]), np.float32)
    if len(centres_px) == 0:
        return out
    xs = np.arange(width, dtype=np.float64)
    ys = np.arange(height, dtype=np.float64)
    gx = np.exp(-((xs[None, :] - centres_px[:, :1]) ** 2) / (2 * sigma_px**2))
    gy = np.exp(-((ys[None, :] - centres_px[:, 1:]) ** 2) / (2 * sigma_px**2))
    for c in range(values.shape[1]):
        out[..., c] = gy.T @ (gx * values[:, c : c + 1])
    return out


def sparse_flow(
    tracks_norm: np.ndarray, height: int, width: int, *, sigma_px: float = 10.0, cumulative: bool = False
) -> np.ndarray:
    """DragNUWA-style sparse flow maps: each track's displacement, Gaussian-blurred at its position.

    A flow video (module docstring): frame t+1 of the frame-to-frame variant holds p_{t+1} - p_t at the
    track's position p_t (the motion t -> t+1 on frame t's grid); frame t of the cumulative variant
    holds p_t - p_0 at p_0. Each value is spread with exp(-r^2 / 2 sigma^2) (peak 1, so a lone track's
    displacement is exact at its position); overlapping tracks add. Frame 0 is zero. Anchors move by
    zero and add nothing here; `sparse_flow_mask` marks them.

    Args:
        tracks_norm: (M,N,2) positions in [0,1] (`Trajectories.tracks_norm`).
        height, width: output size in px.
        sigma_px: Gaussian standard deviation in px (> 0).
        cumulative: displacement from frame 0 instead of from the previous frame.

    Returns:
        (N,H,W,2) float32 (dx, dy) in px, a flow video.
    """
    tracks = tracks_to_px(_check_tracks(tracks_norm), *_check_hw(height, width))
    sigma_px = _check_sigma(sigma_px)
    num_frames = tracks.shape[1]
    out = np.zeros((num_frames, height, width, 2), np.float32)
    for t in range(num_frames - 1):
        source = tracks[:, 0] if cumulative else tracks[:, t]
        out[t + 1] = _gaussian_splat(source, tracks[:, t + 1] - source, height, width, sigma_px)
    return out


def sparse_flow_mask(
    tracks_norm: np.ndarray, height: int, width: int, *, sigma_px: float = 10.0, cumulative: bool = False
) -> np.ndarray:
    """Where `sparse_flow` carries information: the blurred track positions, anchors included.

    Frame t+1 marks the positions `sparse_flow` writes to in frame t+1 (p_t, or p_0 when
    `cumulative`), each spread like the flow values and the sum clipped to 1; frame 0 is zero like
    the flow. A zero-motion track shows here but not in the flow, which tells a model "pinned".

    Returns:
        (N,H,W,1) float32 in [0,1].
    """
    tracks = tracks_to_px(_check_tracks(tracks_norm), *_check_hw(height, width))
    sigma_px = _check_sigma(sigma_px)
    num_frames = tracks.shape[1]
    out = np.zeros((num_frames, height, width, 1), np.float32)
    ones = np.ones((tracks.shape[0], 1))
    for t in range(num_frames - 1):
        source = tracks[:, 0] if cumulative else tracks[:, t]
        out[t + 1] = np.minimum(_gaussian_splat(source, ones, height, width, sigma_px), 1.0)
    return out


# Dense fields: a track's neighbourhood follows it with weight exp(-rho^2/2) / rho^4 (rho = distance /
# reach) against a background weight 1 that holds still. The 1/rho^4 factor makes the weight infinite
# on the track (the pixel on it moves exactly with it) and flat around it (a patch travels nearly
# rigidly, and bilinear upsampling of the coarse field costs ~nothing there); the Gaussian factor cuts
# it off beyond ~2 reaches. _KERNEL_EPS only keeps the division finite on a centre.
_KERNEL_EPS = 1e-12
# The motion profile w / (w + 1) of one track falls by at most 1.36 per reach (at rho ~ 0.85), so a reach
# of twice the track's largest displacement keeps its warp from folding: the map's Jacobian stays
# >= 1 - 1.36 / 2 = 0.32 along the drag.
_REACH_PER_PX = 2.0


def _kernel(points_px: np.ndarray, centres_px: np.ndarray, radii_px: np.ndarray) -> np.ndarray:
    """(G,M) float32 weights of centres (M,2) with radii (M,) at points (G,2)."""
    diff = points_px[:, None, :] - centres_px[None, :, :].astype(np.float32)
    rho2 = np.einsum("gmc,gmc->gm", diff, diff) / (radii_px.astype(np.float32) ** 2)
    return np.exp(-0.5 * rho2) / (rho2 * rho2 + np.float32(_KERNEL_EPS))


def _interpolate(
    points_px: np.ndarray, centres_px: np.ndarray, values: np.ndarray, radii_px: np.ndarray
) -> np.ndarray:
    """(G,2) weighted average of (M,2) `values` with a still background: exact at every centre."""
    weights = _kernel(points_px, centres_px, radii_px)
    return (weights @ values.astype(np.float32)) / (weights.sum(axis=1, keepdims=True) + 1.0)


class _Gate:
    """A region mask feathered with a Gaussian, in [0,1], sampled bilinearly at any pixel position."""

    def __init__(self, region_mask: np.ndarray, feather_px: float) -> None:
        self.soft = cv2.GaussianBlur(region_mask.astype(np.float32), (0, 0), sigmaX=feather_px)

    def __call__(self, points_px: np.ndarray) -> np.ndarray:
        return map_coordinates(self.soft, [points_px[:, 1], points_px[:, 0]], order=1, mode="nearest").astype(
            np.float32
        )


@dataclass(frozen=True)
class _Grid:
    """Coarse nodes every `step` px at the centres of step x step cells, one extra ring outside the image.

    The ring lets bilinear upsampling interpolate up to the image edges instead of extrapolating, and
    the integer step makes cv2.resize by exactly `step` put every node back where it was evaluated.
    """

    step: int
    height: int
    width: int

    @property
    def rows(self) -> int:
        return math.ceil(self.height / self.step) + 2

    @property
    def cols(self) -> int:
        return math.ceil(self.width / self.step) + 2

    def points(self) -> np.ndarray:
        """(rows*cols, 2) float32 full-resolution pixel-centre coordinates of the nodes."""
        xs = (np.arange(self.cols) - 0.5) * self.step - 0.5
        ys = (np.arange(self.rows) - 0.5) * self.step - 0.5
        grid_x, grid_y = np.meshgrid(xs, ys)
        return np.stack([grid_x.ravel(), grid_y.ravel()], axis=1).astype(np.float32)

    def upsample(self, field: np.ndarray) -> np.ndarray:
        """(rows*cols, 2) node values -> (H, W, 2) float32, bilinear."""
        coarse = field.reshape(self.rows, self.cols, 2).astype(np.float32)
        s = self.step
        if s == 1:
            return coarse[1:-1, 1:-1]
        fine = cv2.resize(coarse, (self.cols * s, self.rows * s), interpolation=cv2.INTER_LINEAR)
        return fine[s : s + self.height, s : s + self.width]


def _dense(
    tracks_norm: np.ndarray,
    height: int,
    width: int,
    direction: Literal["forward", "backward"],
    radius_px: float | None,
    region_mask: np.ndarray | None,
    camera: CameraMotion | None,
    grid_step: int,
) -> np.ndarray:
    height, width = _check_hw(height, width)
    tracks = tracks_to_px(_check_tracks(tracks_norm), height, width)
    if radius_px is None:
        radius_px = 0.1 * min(height, width)
    if isinstance(radius_px, bool) or not isinstance(radius_px, int | float) or not 0 < radius_px < math.inf:
        raise InputError(f"radius_px must be a positive number of pixels, got {radius_px!r}.")
    if isinstance(grid_step, bool) or not isinstance(grid_step, int | np.integer) or grid_step < 1:
        raise InputError(f"grid_step must be a positive integer, got {grid_step!r}.")
    if camera is not None and not isinstance(camera, CameraMotion):
        raise InputError("camera must be a CameraMotion (or None).")
    grid = _Grid(int(grid_step), height, width)
    gate = None
    if region_mask is not None:
        region_mask = np.asarray(region_mask)
        if region_mask.shape != (height, width):
            raise InputError(f"The motion region mask must be {height}x{width}, got {region_mask.shape}.")
        gate = _Gate(region_mask.astype(bool), feather_px=radius_px / 4)

    # A track's reach grows with its longest displacement (see dense_displacement).
    radii = np.maximum(radius_px, _REACH_PER_PX * np.linalg.norm(tracks - tracks[:, :1], axis=2).max(axis=1))
    nodes = grid.points()
    num_frames = tracks.shape[1]
    out = np.zeros((num_frames, height, width, 2), np.float32)
    starts = tracks[:, 0]
    for t in range(1, num_frames):
        fraction = t / (num_frames - 1)
        targets = tracks[:, t]
        if direction == "forward":
            field = _forward_field(nodes, starts, targets, radii, gate, camera, fraction, (height, width))
        else:
            field = _backward_field(nodes, starts, targets, radii, gate, camera, fraction, (height, width))
        out[t] = grid.upsample(field)
    return out


def _forward_field(
    nodes: np.ndarray,
    starts: np.ndarray,
    targets: np.ndarray,
    radii_px: np.ndarray,
    gate: _Gate | None,
    camera: CameraMotion | None,
    fraction: float,
    hw: tuple[int, int],
) -> np.ndarray:
    """d_t at `nodes` of frame 0: content at p moves to p + d_t(p) (see `dense_displacement`)."""
    # Tracks are absolute: the camera moves everything, each track adds what it still needs.
    camera_at_starts = 0.0 if camera is None else camera.forward(starts, fraction, *hw)
    field = _interpolate(nodes, starts, targets - starts - camera_at_starts, radii_px)
    if gate is not None:
        field *= gate(nodes)[:, None]
    if camera is not None:
        field += camera.forward(nodes, fraction, *hw).astype(np.float32)
    return field


def _backward_field(
    nodes: np.ndarray,
    starts: np.ndarray,
    targets: np.ndarray,
    radii_px: np.ndarray,
    gate: _Gate | None,
    camera: CameraMotion | None,
    fraction: float,
    hw: tuple[int, int],
) -> np.ndarray:
    """b_t at `nodes` of frame t: content at q comes from q + b_t(q) in frame 0 (see `backward_flow`)."""
    # Weight centres at the tracks' current positions, so a node on a target samples the track's start.
    camera_at_targets = 0.0 if camera is None else camera.backward(targets, fraction, *hw)
    field = _interpolate(nodes, targets, starts - targets - camera_at_targets, radii_px)
    camera_at_nodes = 0.0 if camera is None else camera.backward(nodes, fraction, *hw).astype(np.float32)
    if gate is not None:
        # The region is painted on frame 0: move a node only as much as the content it samples may move.
        field *= gate(nodes + field + camera_at_nodes)[:, None]
    return field + camera_at_nodes


def dense_displacement(
    tracks_norm: np.ndarray,
    height: int,
    width: int,
    *,
    radius_px: float | None = None,
    region_mask: np.ndarray | None = None,
    camera: CameraMotion | None = None,
    grid_step: int = 8,
) -> np.ndarray:
    """Forward displacement of every frame-0 pixel at every frame, interpolated from the tracks.

    d_t(p) is where the content at frame-0 pixel p has moved by frame t: p -> p + d_t(p). Each track's
    residual motion (what the camera does not already do) is spread around its start with weight
    exp(-rho^2/2) / rho^4, rho = distance / r, against a still background of weight 1: exact on the
    track, nearly rigid within ~0.3 r (>= 99% of the motion), ~38% at r, ~1% at 2 r. The reach r of a
    track is max(radius_px, 2 x its largest displacement), so a long drag stretches the picture like a
    rubber sheet, without folding it, instead of leaving the content at its start behind (nothing here
    inpaints). Anchors are tracks
    with zero motion and reach radius_px: they pin their neighbourhood. A region mask (motion brush)
    multiplies the track-driven motion by the mask feathered with a Gaussian of radius_px / 4, so only
    the painted region moves and tracks starting outside it move nothing. The camera's motion is added
    everywhere; tracks and anchors stay absolute (a track point lands on its drawn position whatever
    the camera does, an anchor stays put on screen).

    The field is computed on a grid `grid_step` times coarser and upsampled bilinearly (it is smooth),
    in float32.

    Args:
        tracks_norm: (M,N,2) positions in [0,1] (`Trajectories.tracks_norm`), anchors included.
        height, width: image size in px.
        radius_px: smallest reach of a track in px; default 0.1 * min(height, width).
        region_mask: optional (H,W) bool, True where motion is allowed.
        camera: optional global camera move.
        grid_step: coarse-grid step in px (1 = evaluate every pixel).

    Returns:
        (N,H,W,2) float32 (dx, dy) in px on the frame-0 grid; frame 0 is zero.
    """
    return _dense(tracks_norm, height, width, "forward", radius_px, region_mask, camera, grid_step)


def backward_flow(
    tracks_norm: np.ndarray,
    height: int,
    width: int,
    *,
    radius_px: float | None = None,
    region_mask: np.ndarray | None = None,
    camera: CameraMotion | None = None,
    grid_step: int = 8,
) -> np.ndarray:
    """Backward sampling maps that warp frame 0 into every frame along the tracks.

    frame_t = core.flow.backward_warp(frame_0, b[t]), i.e. frame_t(q) = frame_0(q + b_t(q)). b_t lives
    on the frame-t grid, so it is not -d_t (which lives on the frame-0 grid). It is interpolated at the
    tracks' *current* positions: weight centres at the targets p_t, values p_0 - p_t (minus what the
    camera's exact inverse already supplies there), same kernel and reaches as `dense_displacement`.
    A pixel at a target therefore samples its track's start exactly, and the patch around it travels
    with it. The camera's exact inverse is added everywhere. A region mask, painted on frame 0, scales
    the track-driven part by the feathered mask at the point sampled, so content outside the region
    never moves while the region's content may move over it.

    Both fields are smooth interpolations of the same tracks and agree exactly on them; elsewhere b_t
    is close to, not exactly, the inverse of d_t.

    Args and the coarse-grid computation are as in `dense_displacement`.

    Returns:
        (N,H,W,2) float32 (dx, dy) in px on the frame-t grid; frame 0 is zero.
    """
    return _dense(tracks_norm, height, width, "backward", radius_px, region_mask, camera, grid_step)
