"""Input checks shared by the engines: every failure raises InputError with one sentence."""

from __future__ import annotations

import numpy as np

from core.errors import InputError


def check_frames(frames_uint8: np.ndarray, name: str = "frames") -> np.ndarray:
    """Require a non-empty uint8 RGB stack (T,H,W,3), T >= 1; return it unchanged."""
    if not isinstance(frames_uint8, np.ndarray):
        raise InputError(
            f"{name} must be a numpy array of shape (T,H,W,3), got {type(frames_uint8).__name__}."
        )
    if frames_uint8.ndim != 4 or frames_uint8.shape[3] != 3:
        raise InputError(f"{name} must have shape (T,H,W,3) with RGB channels, got {frames_uint8.shape}.")
    if frames_uint8.dtype != np.uint8:
        raise InputError(f"{name} must be uint8 pixels in [0,255], got dtype {frames_uint8.dtype}.")
    if frames_uint8.size == 0:
        raise InputError(f"{name} holds no pixels (shape {frames_uint8.shape}).")
    return frames_uint8
