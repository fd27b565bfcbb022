"""Evaluation metrics: pure functions of arrays, no fixtures, no argparse (production code may import them).

- Drag control fidelity, ObjMC (object motion control, as DragAnything reports it): follow each
  trajectory's start point through the generated video with a point tracker and measure how far the
  tracked point is from the position the user asked for, frame by frame. We track with OpenCV's pyramidal
  Lucas-Kanade (`cv2.calcOpticalFlowPyrLK`) from frame to frame (DragAnything uses Co-Tracker; LK needs no
  weights and is accurate to a fraction of a pixel on textured points that move smoothly). Errors are
  Euclidean distances in pixels of the video as given; frame 0, where tracked and requested positions
  coincide by construction, is left out of the means. Coordinates are pixel centres, x right and y down,
  as `core.engines.warp.WarpResult.tracks_px` and OpenCV use them: pixel (0, 0) is at (0, 0).
- Depth: scale-and-shift-invariant AbsRel and delta1 of two disparity maps (`ssi_absrel_delta1`).
- Flow: end-point error against a known flow (`endpoint_error`).
- Frames: PSNR, SSIM and their means over held-out frames (`held_out_scores`); scikit-image (a dev
  dependency) is imported only inside these functions.
- Keyframe edit consistency (`warp_errors`): the flow between consecutive *original* keyframes carries
  edited keyframe i onto keyframe i+1, and the mean absolute difference (0..255 levels, all channels) to
  edited keyframe i+1 is taken over the pixels the forward-backward check trusts (`keyframe_flows`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from core.checks import check_flow, check_frames, check_same_hw
from core.errors import InputError
from core.flow import estimate_flow, occlusion_mask, warp_field

# Lucas-Kanade window (px) and pyramid levels: a 21 px window on 4 levels follows up to ~80 px per frame.
LK_WINDOW_PX = 21
LK_LEVELS = 3
# A point whose forward-backward LK round trip misses its start by more than this is marked unreliable.
_FB_TOLERANCE_PX = 1.0
_LK_CRITERIA = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 50, 0.001)


@dataclass(frozen=True)
class PointTracks:
    """Points followed through a video.

    Attributes:
        tracks_px: (M,T,2) float64 positions (x, y) in pixel-centre coordinates; where LK found no
            solution the point keeps its previous position.
        reliable: (M,T) bool, False from the first frame where the point failed LK's own status or the
            forward-backward check (the rest of its track is a best effort).
    """

    tracks_px: np.ndarray
    reliable: np.ndarray


@dataclass(frozen=True)
class ObjMC:
    """Distances between tracked and requested positions, in px.

    Attributes:
        distances_px: (M,T) float64, per trajectory and frame (column 0 is 0 for a tracker that starts
            on the requested start).
        per_frame_px: (T,) mean over trajectories.
        per_track_px: (M,) mean over frames 1..T-1.
        mean_px: the ObjMC: mean over trajectories and frames 1..T-1.
    """

    distances_px: np.ndarray
    per_frame_px: np.ndarray
    per_track_px: np.ndarray
    mean_px: float


def _gray(frame_uint8: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(frame_uint8, cv2.COLOR_RGB2GRAY)


def _check_points(points_px: np.ndarray, height: int, width: int) -> np.ndarray:
    points = np.asarray(points_px, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2 or len(points) == 0:
        raise InputError(
            f"points must be a non-empty (M,2) array of (x, y) pixels, got shape {points.shape}."
        )
    if not np.all(np.isfinite(points)):
        raise InputError("points contain NaN or infinite coordinates.")
    inside = (points >= -0.5).all(axis=1) & (points[:, 0] <= width - 0.5) & (points[:, 1] <= height - 0.5)
    if not inside.all():
        raise InputError(f"Every point to track must lie inside the {width}x{height} video.")
    return points


def track_points(
    frames_uint8: np.ndarray,
    points_px: np.ndarray,
    *,
    window_px: int = LK_WINDOW_PX,
    levels: int = LK_LEVELS,
) -> PointTracks:
    """Follow points from frame 0 through a video with pyramidal Lucas-Kanade, frame to frame.

    Each step tracks from frame t-1 to t, starting from the position in t-1 (no motion prior), on the
    grey frames; a forward-backward check (t -> t-1 must come back within 1 px) flags drift.

    Args:
        frames_uint8: (T,H,W,3) uint8 RGB, T >= 1.
        points_px: (M,2) start positions in frame 0, pixel-centre coordinates.
        window_px: LK window side in px (odd, >= 5).
        levels: pyramid levels above the full-resolution one (0 = no pyramid).

    Returns:
        PointTracks with (M,T,2) positions and (M,T) reliability.
    """
    frames = check_frames(frames_uint8)
    num_frames, height, width = frames.shape[:3]
    points = _check_points(points_px, height, width)
    if isinstance(window_px, bool) or not isinstance(window_px, int) or window_px < 5 or window_px % 2 == 0:
        raise InputError(f"window_px must be an odd whole number >= 5, got {window_px!r}.")
    if isinstance(levels, bool) or not isinstance(levels, int) or not 0 <= levels <= 8:
        raise InputError(f"levels must be a whole number in [0, 8], got {levels!r}.")
    options = {"winSize": (window_px, window_px), "maxLevel": levels, "criteria": _LK_CRITERIA}

    tracks = np.empty((len(points), num_frames, 2))
    reliable = np.ones((len(points), num_frames), bool)
    tracks[:, 0] = points
    previous = _gray(frames[0])
    for t in range(1, num_frames):
        current = _gray(frames[t])
        start = tracks[:, t - 1].astype(np.float32).reshape(-1, 1, 2)
        moved, status, _ = cv2.calcOpticalFlowPyrLK(previous, current, start, None, **options)
        back, back_status, _ = cv2.calcOpticalFlowPyrLK(current, previous, moved, None, **options)
        found = status.ravel() == 1
        round_trip = np.linalg.norm(back.reshape(-1, 2) - start.reshape(-1, 2), axis=1)
        ok = found & (back_status.ravel() == 1) & (round_trip <= _FB_TOLERANCE_PX)
        tracks[:, t] = np.where(found[:, None], moved.reshape(-1, 2), tracks[:, t - 1])
        reliable[:, t] = reliable[:, t - 1] & ok
        previous = current
    return PointTracks(tracks, reliable)


def objmc(tracked_px: np.ndarray, requested_px: np.ndarray) -> ObjMC:
    """ObjMC of tracked against requested positions, both (M,T,2) px (see the module docstring).

    Needs T >= 2 (frame 0 is left out of the means).
    """
    tracked = np.asarray(tracked_px, dtype=np.float64)
    requested = np.asarray(requested_px, dtype=np.float64)
    if tracked.shape != requested.shape or tracked.ndim != 3 or tracked.shape[2] != 2:
        raise InputError(
            f"Tracked and requested positions must both be (M,T,2), got {tracked.shape} and {requested.shape}."
        )
    if tracked.shape[0] == 0 or tracked.shape[1] < 2:
        raise InputError(f"ObjMC needs at least one trajectory and two frames, got shape {tracked.shape}.")
    distances = np.linalg.norm(tracked - requested, axis=2)
    return ObjMC(
        distances_px=distances,
        per_frame_px=distances.mean(axis=0),
        per_track_px=distances[:, 1:].mean(axis=1),
        mean_px=float(distances[:, 1:].mean()),
    )


def measure_objmc(
    frames_uint8: np.ndarray, requested_px: np.ndarray, **tracker_options: int
) -> tuple[ObjMC, PointTracks]:
    """Track every requested trajectory's start (frame-0 position) through the video and score it.

    Args:
        frames_uint8: (T,H,W,3) uint8, the generated video.
        requested_px: (M,T,2) requested positions in px (e.g. `WarpResult.tracks_px`); the video and
            the requests must have the same T.
        tracker_options: `window_px`, `levels` of `track_points`.

    Returns:
        (ObjMC, PointTracks).
    """
    requested = np.asarray(requested_px, dtype=np.float64)
    frames = check_frames(frames_uint8)
    if requested.ndim != 3 or requested.shape[1] != frames.shape[0]:
        raise InputError(
            f"The requests cover {requested.shape[1] if requested.ndim == 3 else '?'} frames but the video "
            f"has {frames.shape[0]}."
        )
    tracks = track_points(frames, requested[:, 0], **tracker_options)
    return objmc(tracks.tracks_px, requested), tracks


# -- depth: scale-and-shift-invariant agreement of two disparity maps --------------------------------

# delta1 counts pixels whose depth ratio (either way round) is under this threshold.
DELTA1_THRESHOLD = 1.25


def ssi_absrel_delta1(
    pred_disparity: np.ndarray,
    target_disparity: np.ndarray,
    mask: np.ndarray | None = None,
) -> tuple[float, float]:
    """AbsRel and delta1 of a relative disparity map against a target, after the best scale and shift.

    The protocol of relative (affine-invariant) depth estimators such as MiDaS: the scale s and shift b
    minimising sum((s * pred + b - target)^2) over the valid pixels are found by least squares in
    disparity space; the aligned disparity is capped below at the target's smallest valid disparity (the
    farthest ground-truth point, so an aligned value <= 0 becomes a finite depth); both maps become depth
    (1 / disparity) and

    - AbsRel = mean(|depth_aligned - depth_target| / depth_target), 0 for a perfect map;
    - delta1 = fraction of pixels with max(depth_aligned / depth_target, its inverse) < 1.25, 1 for a
      perfect map (the same in disparity space: the ratio only flips).

    Args:
        pred_disparity: any shape, float, larger = nearer, any scale and offset (e.g. a generated depth
            map in [0,1]).
        target_disparity: the same shape, float, larger = nearer, positive where valid (e.g. 1 / z of a
            synthetic scene, or a depth estimator's output).
        mask: optional bool of the same shape; pixels where it is False are left out. Pixels where either
            map is not finite or the target is <= 0 are always left out.

    Returns:
        (absrel, delta1) as floats. Raises InputError for mismatching shapes or fewer than 2 valid pixels.
    """
    pred = np.asarray(pred_disparity, dtype=np.float64)
    target = np.asarray(target_disparity, dtype=np.float64)
    if pred.shape != target.shape:
        raise InputError(f"The two disparity maps must have one shape, got {pred.shape} and {target.shape}.")
    valid = np.isfinite(pred) & np.isfinite(target) & (target > 0)
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != pred.shape:
            raise InputError(f"The mask is {mask.shape} but the disparity maps are {pred.shape}.")
        valid &= mask.astype(bool)
    if valid.sum() < 2:
        raise InputError("The disparity maps share fewer than 2 valid pixels: nothing to compare.")
    p, t = pred[valid], target[valid]
    # Least squares for (s, b); lstsq's minimum-norm solution handles a constant prediction (s = 0).
    (scale, shift), *_ = np.linalg.lstsq(np.stack([p, np.ones_like(p)], axis=1), t, rcond=None)
    aligned = np.maximum(scale * p + shift, t.min())
    # depth_aligned / depth_target = t / aligned.
    ratio = t / aligned
    absrel = float(np.mean(np.abs(ratio - 1.0)))
    delta1 = float(np.mean(np.maximum(ratio, 1.0 / ratio) < DELTA1_THRESHOLD))
    return absrel, delta1


# -- flow: end-point error ---------------------------------------------------------------------------


def endpoint_error(
    flow_est_px: np.ndarray, flow_true_px: np.ndarray, valid: np.ndarray | None = None
) -> float:
    """Mean end-point error in px: mean over `valid` pixels of |flow_est - flow_true|."""
    flow_est_px = check_flow(flow_est_px, "estimated flow")
    flow_true_px = check_flow(flow_true_px, "true flow")
    check_same_hw(flow_est_px, flow_true_px, "estimated flow", "true flow")
    errors = np.linalg.norm(flow_est_px - flow_true_px, axis=2)
    if valid is None:
        return float(errors.mean())
    if valid.shape != errors.shape or not valid.any():
        raise InputError(f"valid must be a non-empty (H,W) bool mask of shape {errors.shape}.")
    return float(errors[valid].mean())


# -- frames: PSNR and SSIM of held-out frames --------------------------------------------------------


def psnr_db(a_uint8: np.ndarray, b_uint8: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of two uint8 images of the same shape (inf when equal)."""
    from skimage.metrics import peak_signal_noise_ratio

    return float(peak_signal_noise_ratio(a_uint8, b_uint8, data_range=255))


def ssim(a_uint8: np.ndarray, b_uint8: np.ndarray) -> float:
    """Structural similarity in [-1, 1] of two uint8 RGB images (H,W,3) (1 when equal).

    Wang et al. 2004, scikit-image's `structural_similarity`: 7x7 window, per colour channel.
    """
    from skimage.metrics import structural_similarity

    return float(structural_similarity(a_uint8, b_uint8, data_range=255, channel_axis=2))


def held_out_scores(
    video_uint8: np.ndarray, original_uint8: np.ndarray, keyframe_indices: list[int]
) -> tuple[float, float]:
    """Mean PSNR (dB) and mean SSIM over the frames that are not keyframes."""
    held_out = [t for t in range(original_uint8.shape[0]) if t not in set(keyframe_indices)]
    if not held_out:
        raise InputError("Every frame is a keyframe; nothing is held out to score.")
    psnrs = [psnr_db(video_uint8[t], original_uint8[t]) for t in held_out]
    ssims = [ssim(video_uint8[t], original_uint8[t]) for t in held_out]
    return float(np.mean(psnrs)), float(np.mean(ssims))


# -- keyframe edit consistency: warp error along the original flow -----------------------------------


@dataclass(frozen=True)
class KeyframeFlows:
    """How consecutive original keyframes map onto each other.

    ``flows_back_px``: float32 (K-1,H,W,2), entry i the flow from keyframe i+1 to keyframe i in pixels:
    keyframe i+1 at p shows what keyframe i shows at p + flow(p). ``valid``: bool (K-1,H,W), True where that
    match passes the forward-backward check (not occluded, inside the frame).
    """

    flows_back_px: np.ndarray
    valid: np.ndarray


def keyframe_flows(keyframes_uint8: np.ndarray, method: str = "dis") -> KeyframeFlows:
    """Flows between consecutive keyframes (K,H,W,3) uint8, K >= 2, with core.flow's ``method``."""
    keyframes_uint8 = check_frames(keyframes_uint8, "keyframes")
    if keyframes_uint8.shape[0] < 2:
        raise InputError("The consistency figure needs at least 2 keyframes.")
    backs, valids = [], []
    for before, after in zip(keyframes_uint8[:-1], keyframes_uint8[1:]):
        back = estimate_flow(after, before, method)
        forward = estimate_flow(before, after, method)
        backs.append(back)
        valids.append(~occlusion_mask(back, forward))
    return KeyframeFlows(np.stack(backs), np.stack(valids))


def warp_errors(edited_uint8: np.ndarray, flows: KeyframeFlows) -> np.ndarray:
    """Per consecutive pair, the mean |edited[i+1] - edited[i] warped along the flow| over valid pixels.

    ``edited_uint8``: (K,H,W,3) uint8, the edited keyframes (or the originals, for the floor). Returns
    float64 (K-1,) in grey levels 0..255 (mean over valid pixels and the 3 channels); the consistency
    figure is its mean. A pair without valid pixels gives NaN.
    """
    edited_uint8 = check_frames(edited_uint8, "edited keyframes")
    expected = (flows.flows_back_px.shape[0] + 1, *flows.flows_back_px.shape[1:3])
    if edited_uint8.shape[:3] != expected:
        raise InputError(
            f"The edited keyframes are {edited_uint8.shape[:3]} (K,H,W) but the flows are for {expected}."
        )
    errors = np.empty(len(flows.flows_back_px))
    for i, (flow, valid) in enumerate(zip(flows.flows_back_px, flows.valid)):
        # Bilinear in float (no rounding back to uint8), as backward_warp would sample the pixels.
        carried = warp_field(edited_uint8[i].astype(np.float32), flow).astype(np.float64)
        difference = np.abs(edited_uint8[i + 1].astype(np.float64) - carried)
        errors[i] = difference[valid].mean() if valid.any() else math.nan
    return errors
