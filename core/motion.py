"""Estimate Stable Video Diffusion's `motion_bucket_id` from optical flow.

SVD is conditioned on a motion bucket id in [1, 255] (training used 127 for most clips); Stability
published no formula linking it to measurable motion. We define one, monotonic and documented:

1. Speed m: the mean optical-flow magnitude over all pixels and frame pairs, in px per frame.
2. Normalise to SVD's frame: m * 1024 / W (SVD works at 1024 px wide) and to SVD's fps=7 convention,
   i.e. px per frame at 7 fps = px/s / 7 = m * fps / 7. So a clip of W px at `fps` has
   m_svd = m * (1024 / W) * (fps / 7).
3. bucket = clamp(round(GAIN * ln(1 + m_svd / KNEE_PX)), 1, 255).

Why a log curve: perceived motion grows roughly with the log of speed (Weber), and a log keeps the
whole range useful (a linear map calibrated at 127 would saturate at twice "moderate"). Calibration:
127 is SVD's default, so it is put on *moderate* motion, MODERATE_PX = 9 px per frame at 1024 px and
7 fps (about 1/8 of the frame width over SVD's 14-frame, 2-second clip). KNEE_PX = 2 px sets where
the curve bends from linear to logarithmic. Then
    m_svd = 0.3 px/frame (a still clip's estimator noise) -> 10,
    m_svd = 9 -> 127,  m_svd = 40 (a pan across ~half the frame in 2 s) -> 227,
    m_svd >= 59 (the frame width in ~2.5 s) -> 255.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from core.checks import check_flow_stack
from core.engines.objects import ObjectLayer, layer_motion
from core.errors import InputError
from core.flow import estimate_video_flow
from core.trajectory import CameraMotion, Trajectories, dense_displacement, tracks_to_px

SVD_WIDTH_PX = 1024
SVD_FPS = 7.0
MODERATE_PX = 9.0
KNEE_PX = 2.0
GAIN = 127.0 / math.log1p(MODERATE_PX / KNEE_PX)
MIN_BUCKET, MAX_BUCKET = 1, 255
# suggest_motion_bucket evaluates the implied flow on a frame this many px wide (it only needs a mean).
_SUGGEST_WIDTH_PX = 96


def _check_fps(fps: Any) -> float:
    if isinstance(fps, bool) or not isinstance(fps, int | float) or not 0 < fps < math.inf:
        raise InputError(f"fps must be a positive number, got {fps!r}.")
    return float(fps)


def svd_speed(mean_px_per_frame: float, width_px: float, fps: float) -> float:
    """Mean speed in px per frame of a clip W px wide at `fps`, expressed at 1024 px and 7 fps."""
    if not width_px > 0:
        raise InputError(f"The clip width must be positive, got {width_px!r}.")
    return float(mean_px_per_frame) * (SVD_WIDTH_PX / float(width_px)) * (_check_fps(fps) / SVD_FPS)


def bucket_from_svd_speed(speed_px: float) -> int:
    """The bucket of a mean speed already in SVD units (px per frame at 1024 px wide, 7 fps)."""
    if not math.isfinite(speed_px) or speed_px < 0:
        raise InputError(f"The motion speed must be a finite non-negative number, got {speed_px!r}.")
    return int(min(max(round(GAIN * math.log1p(speed_px / KNEE_PX)), MIN_BUCKET), MAX_BUCKET))


def motion_bucket_from_flow(flow_px: np.ndarray, fps: float) -> int:
    """SVD motion bucket of a clip from its frame-to-frame flow (see the module docstring).

    Args:
        flow_px: (T-1,H,W,2) float flows in px, entry t the motion from frame t to t+1 (`core.flow`'s
            convention; a flow video's zero frame 0 would dilute the mean: `core.flow.video_to_flows`),
            or one (H,W,2) field.
        fps: the clip's frame rate.

    Returns:
        int in [1, 255]; monotone non-decreasing in the flow magnitude and in fps.
    """
    flow_px = np.asarray(flow_px)
    if flow_px.ndim == 3:
        flow_px = flow_px[None]
    flow_px = check_flow_stack(flow_px)
    mean_px = float(np.mean(np.hypot(flow_px[..., 0], flow_px[..., 1]), dtype=np.float64))
    return bucket_from_svd_speed(svd_speed(mean_px, flow_px.shape[2], fps))


def motion_bucket_from_video(frames_uint8: np.ndarray, fps: float, estimator: str = "dis") -> int:
    """SVD motion bucket of a video: `motion_bucket_from_flow` of `core.flow.estimate_video_flow`.

    Args:
        frames_uint8: (T,H,W,3) uint8 RGB in [0,255], T >= 2.
        fps: the clip's frame rate.
        estimator: a `core.flow.METHODS` name ("dis", "farneback", "raft").

    Returns:
        int in [1, 255].
    """
    _check_fps(fps)
    return motion_bucket_from_flow(estimate_video_flow(frames_uint8, method=estimator), fps)


def suggest_motion_bucket(
    trajectories: Trajectories,
    num_frames: int,
    fps: float,
    image_size: tuple[int, int],
    *,
    camera: CameraMotion | None = None,
    region_mask: np.ndarray | None = None,
    radius_px: float | None = None,
    layers: Sequence[ObjectLayer] | None = None,
) -> int:
    """The motion bucket of a drag request, from the dense motion the drag backends receive.

    One function for the drag app's suggestion and the backends' automatic bucket (CLI and app alike), so
    both give the same number for the same request. The bucket is a whole-frame statistic, so a drag that
    moves one object does not count as if the whole picture moved: the motion is the warp engine's forward
    displacement (`core.trajectory.dense_displacement`: the tracks with their reach `radius_px`, the motion
    brush `region_mask`, the `camera` move) or, for object-aware drags (`layers` from
    `core.engines.objects.object_layers`), each object's rigid motion over its pixels and the camera's
    elsewhere. Its mean frame-to-frame magnitude goes through `motion_bucket_from_flow`'s mapping. Nothing
    that moves (no drag, only anchors, a still camera) gives the minimum bucket.

    Args:
        trajectories: the drawn tracks and anchors.
        num_frames: frames of the clip to generate (N >= 2 for any motion).
        fps: the frame rate the clip will be played (and conditioned) at.
        image_size: (width, height) in px of the image the clip starts from.
        camera, region_mask, radius_px: as the warp engine takes them (`region_mask` at `image_size`).
        layers: the objects of an object-aware request (the sheet's reach and brush do not apply then).

    Returns:
        int in [1, 255].
    """
    if not isinstance(trajectories, Trajectories):
        raise InputError("trajectories must be a Trajectories set.")
    _check_fps(fps)
    valid = (
        isinstance(image_size, tuple | list)
        and len(image_size) == 2
        and all(isinstance(v, int | np.integer) and not isinstance(v, bool) and v >= 1 for v in image_size)
    )
    if not valid:
        raise InputError(f"image_size must be (width, height) in whole pixels, got {image_size!r}.")
    width, height = int(image_size[0]), int(image_size[1])
    tracks = trajectories.tracks_norm(num_frames, (width, height))
    camera = None if camera is None or camera == CameraMotion() else camera
    if (len(trajectories.moving) == 0 and camera is None) or num_frames < 2:
        return MIN_BUCKET
    # Normalised tracks make the field resolution-independent up to scale, and the bucket normalises by
    # width anyway, so a small copy of the frame gives the same mean far cheaper.
    small_w = min(width, _SUGGEST_WIDTH_PX)
    small_h = max(1, round(height * small_w / width))
    scale = small_w / width

    def small(mask: np.ndarray) -> np.ndarray:
        return (
            cv2.resize(np.asarray(mask, np.float32), (small_w, small_h), interpolation=cv2.INTER_AREA) >= 0.5
        )

    if layers is None:
        displacement = dense_displacement(
            tracks,
            small_h,
            small_w,
            radius_px=None if radius_px is None else radius_px * scale,
            region_mask=None if region_mask is None else small(region_mask),
            camera=camera,
            grid_step=1,
        )
    else:
        displacement = dense_displacement(tracks[:0], small_h, small_w, camera=camera, grid_step=1)
        tracks_px = tracks_to_px(tracks, small_h, small_w)
        grid = np.stack(np.meshgrid(np.arange(small_w), np.arange(small_h)), axis=-1).astype(np.float64)
        for layer in layers:
            inside = small(layer.mask)
            points = grid[inside]
            for t, transform in enumerate(layer_motion(layer, tracks_px)):
                displacement[t][inside] = points @ transform[:, :2].T + transform[:, 2] - points
    frame_to_frame = np.diff(displacement, axis=0)  # entry t: frame t -> t+1 (on frame 0's grid)
    mean_px = float(np.mean(np.hypot(frame_to_frame[..., 0], frame_to_frame[..., 1]), dtype=np.float64))
    return bucket_from_svd_speed(svd_speed(mean_px, small_w, fps))
