"""Keyframe selection: uniform spacing, adaptive (motion or appearance change), or a manual list.

Every selector returns `Keyframe`s sorted by index, each with the reason it was chosen, so an app can
show why a frame is a keyframe. Uniform and adaptive selection always keep the first and the last
frame: the inbetweening engines then have a keyframe on both sides of every other frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from core.checks import check_flow_stack, check_frames
from core.errors import InputError
from core.flow import estimate_video_flow

Signal = Literal["flow", "appearance"]
MODES = ("uniform", "adaptive", "manual")
SIGNALS = ("flow", "appearance")
# Defaults: a keyframe after ~16 px of mean motion, or a mean grey-level change of 8% of full range.
DEFAULT_THRESHOLDS: dict[str, float] = {"flow": 16.0, "appearance": 0.08}


@dataclass(frozen=True)
class Keyframe:
    """A selected frame: its index in the video (0-based) and why it was selected."""

    index: int
    reason: str


def _check_count(n_frames: int) -> int:
    if isinstance(n_frames, bool) or not isinstance(n_frames, int | np.integer) or n_frames < 1:
        raise InputError(f"The video must have at least 1 frame, got {n_frames!r}.")
    return int(n_frames)


def _with_last(keys: list[Keyframe], n_frames: int) -> list[Keyframe]:
    """Append the last frame unless it is already the last keyframe."""
    if keys[-1].index != n_frames - 1:
        keys.append(Keyframe(n_frames - 1, "last frame"))
    return keys


def uniform_keyframes(n_frames: int, every: int) -> list[Keyframe]:
    """Every `every`-th frame from frame 0, plus the last frame.

    Args:
        n_frames: video length T >= 1.
        every: spacing K >= 1 in frames.

    Returns:
        Keyframes 0, K, 2K, ... and T-1.
    """
    n_frames = _check_count(n_frames)
    if isinstance(every, bool) or not isinstance(every, int | np.integer) or every < 1:
        raise InputError(f"The keyframe spacing must be a whole number of frames >= 1, got {every!r}.")
    keys = [Keyframe(0, "first frame")]
    keys += [Keyframe(i, f"every {every} frames") for i in range(every, n_frames, every)]
    return _with_last(keys, n_frames)


def _appearance_signal(frames_uint8: np.ndarray, start: int, t: int) -> float:
    """Mean absolute grey-level difference between frames `start` and `t`, in [0,1]."""
    a = cv2.cvtColor(frames_uint8[start], cv2.COLOR_RGB2GRAY).astype(np.float32)
    b = cv2.cvtColor(frames_uint8[t], cv2.COLOR_RGB2GRAY).astype(np.float32)
    return float(np.mean(np.abs(a - b))) / 255.0


def adaptive_keyframes(
    frames_uint8: np.ndarray,
    signal: Signal = "flow",
    threshold: float | None = None,
    flows_px: np.ndarray | None = None,
    method: str = "dis",
    progress: bool = False,
) -> list[Keyframe]:
    """A new keyframe wherever the change since the previous keyframe crosses `threshold`.

    Signals:
    - "flow": motion accumulated since the previous keyframe, the sum over steps of the mean flow
      magnitude (px), so a keyframe comes after every `threshold` px of motion; still parts get none.
    - "appearance": mean absolute grey-level difference to the previous keyframe, in [0,1] (no flow
      needed; cheap, but a pan over a uniform wall shows no change).

    Args:
        frames_uint8: (T,H,W,3) uint8 RGB, T >= 1.
        signal: "flow" or "appearance".
        threshold: px for "flow", fraction of full range for "appearance"; default `DEFAULT_THRESHOLDS`.
        flows_px: optional (T-1,H,W,2) float32 forward flows t -> t+1 already computed for this video
            (e.g. `VideoMotion.forward_px`), so flow is estimated once per video.
        method: flow estimator (see `core.flow.METHODS`) when `flows_px` is not given.
        progress: tqdm bar while estimating flow.

    Returns:
        Keyframes sorted by index, first and last frame always included.
    """
    check_frames(frames_uint8)
    if signal not in SIGNALS:
        raise InputError(f"Unknown keyframe signal {signal!r}; choose one of {', '.join(SIGNALS)}.")
    threshold = DEFAULT_THRESHOLDS[signal] if threshold is None else threshold
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0 < threshold < np.inf:
        raise InputError(f"The keyframe threshold must be a positive number, got {threshold!r}.")
    n_frames = frames_uint8.shape[0]
    keys = [Keyframe(0, "first frame")]
    if n_frames == 1:
        return keys

    step_motion_px = None
    if signal == "flow":
        if flows_px is None:
            flows_px = estimate_video_flow(frames_uint8, method, progress)
        flows_px = check_flow_stack(flows_px)
        if flows_px.shape[:3] != (n_frames - 1, *frames_uint8.shape[1:3]):
            raise InputError(
                f"flows must have shape ({n_frames - 1},H,W,2) for {n_frames} frames of "
                f"{frames_uint8.shape[2]}x{frames_uint8.shape[1]}, got {flows_px.shape}."
            )
        step_motion_px = np.linalg.norm(flows_px, axis=3).mean(axis=(1, 2))

    accumulated = 0.0
    for t in range(1, n_frames):
        start = keys[-1].index
        if step_motion_px is not None:
            accumulated += float(step_motion_px[t - 1])
            change, unit = accumulated, " px"
        else:
            change, unit = _appearance_signal(frames_uint8, start, t), ""
        if change >= threshold and t < n_frames - 1:
            what = "motion" if signal == "flow" else "appearance change"
            keys.append(
                Keyframe(
                    t,
                    f"{what} since frame {start} reached {change:.3g}{unit} (threshold {threshold:g}{unit})",
                )
            )
            accumulated = 0.0
    return _with_last(keys, n_frames)


def manual_keyframes(n_frames: int, indices: Sequence[int]) -> list[Keyframe]:
    """Keyframes the user listed, in any order; each must be a frame of the video, none twice.

    Args:
        n_frames: video length T >= 1.
        indices: frame indices in [0, T-1], at least one.

    Returns:
        Keyframes sorted by index. The first and last frame are not added (frames outside the listed
        range are propagated from the nearest keyframe alone).
    """
    n_frames = _check_count(n_frames)
    if (
        isinstance(indices, str | bytes)
        or not isinstance(indices, Sequence | np.ndarray)
        or len(indices) == 0
    ):
        raise InputError(f"List at least one keyframe index, got {indices!r}.")
    seen: set[int] = set()
    for i in indices:
        if isinstance(i, bool) or not isinstance(i, int | np.integer):
            raise InputError(f"Keyframe indices must be whole numbers, got {i!r}.")
        if not 0 <= i < n_frames:
            raise InputError(f"Keyframe {i} is outside the video, which has frames 0 to {n_frames - 1}.")
        if int(i) in seen:
            raise InputError(f"Keyframe {i} is listed twice.")
        seen.add(int(i))
    return [Keyframe(i, "chosen by hand") for i in sorted(seen)]


def select_keyframes(
    frames_uint8: np.ndarray,
    mode: str = "uniform",
    *,
    every: int = 8,
    signal: Signal = "flow",
    threshold: float | None = None,
    indices: Sequence[int] | None = None,
    flows_px: np.ndarray | None = None,
    method: str = "dis",
    progress: bool = False,
) -> list[Keyframe]:
    """One entry point for the apps: `mode` picks `uniform_keyframes`, `adaptive_keyframes` or
    `manual_keyframes`, which read the keyword arguments of the same names.

    Args:
        frames_uint8: (T,H,W,3) uint8 RGB video.
        mode: one of `MODES`.

    Returns:
        Keyframes sorted by index, each with its reason.
    """
    check_frames(frames_uint8)
    if mode == "uniform":
        return uniform_keyframes(frames_uint8.shape[0], every)
    if mode == "adaptive":
        return adaptive_keyframes(frames_uint8, signal, threshold, flows_px, method, progress)
    if mode == "manual":
        return manual_keyframes(frames_uint8.shape[0], [] if indices is None else indices)
    raise InputError(f"Unknown keyframe mode {mode!r}; choose one of {', '.join(MODES)}.")
