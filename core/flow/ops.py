"""Flow arithmetic: composition over frames, resizing with correctly scaled vectors, the flow-video layout."""

from __future__ import annotations

import cv2
import numpy as np

from core.checks import check_flow, check_flow_stack, check_same_hw
from core.errors import InputError
from core.flow.warp import warp_field


def compose_flow(flow_01_px: np.ndarray, flow_12_px: np.ndarray) -> np.ndarray:
    """Compose two flows: f02(p) = f01(p) + f12(p + f01(p)), f12 sampled bilinearly.

    Where p + f01(p) leaves the frame, f12 is taken from the nearest edge pixel (an extrapolation;
    such pixels have no true answer).

    Args:
        flow_01_px: (H,W,2) flow frame 0 -> 1 in pixels.
        flow_12_px: (H,W,2) flow frame 1 -> 2 in pixels.

    Returns:
        (H,W,2) float32 flow frame 0 -> 2 in pixels.
    """
    flow_01_px = check_flow(flow_01_px, "flow_01")
    flow_12_px = check_flow(flow_12_px, "flow_12")
    check_same_hw(flow_01_px, flow_12_px, "flow_01", "flow_12")
    return flow_01_px + warp_field(flow_12_px, flow_01_px)


def accumulate_flows(flows_px: np.ndarray) -> np.ndarray:
    """Flows from frame 0 to every later frame, by composing consecutive flows.

    Args:
        flows_px: (N,H,W,2) float, entry t the flow from frame t to t+1 in pixels (as returned by
            `estimate_video_flow`).

    Returns:
        (N,H,W,2) float32, entry t the flow from frame 0 to frame t+1.
    """
    flows_px = check_flow_stack(flows_px)
    out = np.empty_like(flows_px)
    out[0] = flows_px[0]
    for t in range(1, flows_px.shape[0]):
        out[t] = out[t - 1] + warp_field(flows_px[t], out[t - 1])
    return out


def chain_flows(flows_px: np.ndarray) -> np.ndarray:
    """Compose a chain of consecutive flows (N,H,W,2) into the flow from frame 0 to frame N (H,W,2)."""
    return accumulate_flows(flows_px)[-1]


def flows_to_video(flows_px: np.ndarray) -> np.ndarray:
    """(T-1,H,W,2) flows, entry t the motion t -> t+1 (core.flow's convention) -> the (T,H,W,2) flow
    video of the clip: frame 0 zero, frame t+1 = flows_px[t]. float32 px."""
    shape = tuple(getattr(flows_px, "shape", ()))
    if len(shape) != 4 or shape[3] != 2:
        raise InputError(f"flows_px must have shape (T-1,H,W,2), got {shape or type(flows_px).__name__}.")
    flows = np.asarray(flows_px, dtype=np.float32)
    return np.concatenate([np.zeros_like(flows[:1]), flows])


def video_to_flows(flow_video_px: np.ndarray) -> np.ndarray:
    """(T,H,W,2) flow video (frame 0 zero, frame t+1 the motion t -> t+1) -> (T-1,H,W,2) flows, entry t
    the motion t -> t+1 (core.flow's convention). float32 px."""
    shape = tuple(getattr(flow_video_px, "shape", ()))
    if len(shape) != 4 or shape[3] != 2 or shape[0] < 2:
        raise InputError(
            f"flow_video_px must have shape (T,H,W,2) with T >= 2, got {shape or type(flow_video_px).__name__}."
        )
    return np.asarray(flow_video_px[1:], dtype=np.float32)


def resize_flow(flow_px: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Resample a flow field to (H', W') and rescale its vectors: dx by W'/W, dy by H'/H.

    Uses pixel-centre alignment (as cv2.resize), so a flow that is linear in the coordinates stays
    exactly that linear flow on the new grid. Area averaging when shrinking, bilinear otherwise.

    Args:
        flow_px: (H,W,2) float flow in pixels of the input grid.
        size_hw: (H', W') target size, both >= 1.

    Returns:
        (H',W',2) float32 flow in pixels of the new grid.
    """
    flow_px = check_flow(flow_px)
    valid = (
        isinstance(size_hw, tuple | list)
        and len(size_hw) == 2
        and all(isinstance(s, int | np.integer) and s >= 1 for s in size_hw)
    )
    if not valid:
        raise InputError(f"size must be (height, width) with positive integers, got {size_hw!r}.")
    new_h, new_w = int(size_hw[0]), int(size_hw[1])
    h, w = flow_px.shape[:2]
    shrinking = new_h <= h and new_w <= w
    out = cv2.resize(flow_px, (new_w, new_h), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    out = out.reshape(new_h, new_w, 2)
    return out * np.array([new_w / w, new_h / h], np.float32)
