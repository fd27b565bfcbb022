"""Argument checks shared across core: each returns its (checked) input or raises InputError with one sentence.

Images, frame stacks, flow fields and sizes are checked here once, so every module that takes them
reports a bad one with the same sentence; `name` is how the sentence calls the argument. Checks specific to one
module (a pipeline's options, a trajectory file) stay with that module.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from core.errors import InputError


def check_image_uint8(image_uint8: np.ndarray, name: str = "image") -> np.ndarray:
    """Require a non-empty uint8 image (H,W,C); return it unchanged."""
    if not isinstance(image_uint8, np.ndarray):
        raise InputError(f"{name} must be a numpy array, got {type(image_uint8).__name__}.")
    if image_uint8.dtype != np.uint8:
        raise InputError(f"{name} must be uint8 pixels in [0,255], got dtype {image_uint8.dtype}.")
    if image_uint8.ndim != 3:
        raise InputError(f"{name} must have shape (H,W,C), got shape {image_uint8.shape}.")
    if image_uint8.size == 0:
        raise InputError(f"{name} is empty (shape {image_uint8.shape}).")
    return image_uint8


def check_rgb_uint8(image_uint8: np.ndarray, name: str = "frame") -> np.ndarray:
    """Require a non-empty uint8 RGB image (H,W,3)."""
    check_image_uint8(image_uint8, name)
    if image_uint8.shape[2] != 3:
        raise InputError(f"{name} must have 3 colour channels (H,W,3), got shape {image_uint8.shape}.")
    return image_uint8


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
        raise InputError(f"{name} must hold at least one frame with pixels, got shape {frames_uint8.shape}.")
    return frames_uint8


def check_flow(flow_px: np.ndarray, name: str = "flow") -> np.ndarray:
    """Require a non-empty, finite flow field (H,W,2) in pixels; return it as float32."""
    if not isinstance(flow_px, np.ndarray):
        raise InputError(f"{name} must be a numpy array, got {type(flow_px).__name__}.")
    if flow_px.ndim != 3 or flow_px.shape[2] != 2:
        raise InputError(f"{name} must have shape (H,W,2) holding (dx, dy), got shape {flow_px.shape}.")
    if flow_px.size == 0:
        raise InputError(f"{name} is empty (shape {flow_px.shape}).")
    if not np.issubdtype(flow_px.dtype, np.floating):
        raise InputError(f"{name} must be a float array in pixels, got dtype {flow_px.dtype}.")
    if not np.all(np.isfinite(flow_px)):
        raise InputError(f"{name} contains NaN or infinite values; mask them out before this call.")
    return flow_px.astype(np.float32, copy=False)


def check_flow_stack(flows_px: np.ndarray, name: str = "flows") -> np.ndarray:
    """Require a non-empty, finite stack of flow fields (N,H,W,2); return it as float32."""
    if not isinstance(flows_px, np.ndarray) or flows_px.ndim != 4:
        shape = getattr(flows_px, "shape", type(flows_px).__name__)
        raise InputError(f"{name} must be an array of shape (N,H,W,2), got {shape}.")
    if flows_px.shape[0] == 0:
        raise InputError(f"{name} holds no flow fields (shape {flows_px.shape}).")
    # One field at a time so the message names the shape problem, not a broadcast error.
    check_flow(flows_px[0], name)
    if not np.all(np.isfinite(flows_px)):
        raise InputError(f"{name} contains NaN or infinite values; mask them out before this call.")
    return flows_px.astype(np.float32, copy=False)


def check_same_hw(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    """Require two arrays to share height and width."""
    if a.shape[:2] != b.shape[:2]:
        raise InputError(
            f"{name_a} is {a.shape[1]}x{a.shape[0]} but {name_b} is {b.shape[1]}x{b.shape[0]} "
            "(width x height); they must match."
        )


def check_size(size: Any, name: str) -> tuple[float, float]:
    """Require a (width, height) pair of finite positive numbers (px); return it as floats."""
    try:
        width, height = (float(v) for v in size)
    except (TypeError, ValueError) as err:
        raise InputError(f"{name} must be (width, height), got {size!r}.") from err
    if not (math.isfinite(width) and math.isfinite(height) and width > 0 and height > 0):
        raise InputError(f"{name} must be positive (width, height), got {size!r}.")
    return width, height
