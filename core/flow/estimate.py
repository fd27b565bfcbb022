"""Flow estimators behind one interface, and the forward-backward occlusion test.

Methods (`METHODS`):
- "dis": OpenCV DIS, MEDIUM preset (coarse-to-fine patch search, mean-normalised patches, spatial
  propagation and 5 iterations of variational refinement). No weights; the default.
- "dis_ultrafast": OpenCV DIS, ULTRAFAST preset (no variational refinement); for previews.
- "farneback": OpenCV Farneback polynomial expansion, 5 pyramid levels.
- "raft": RAFT-large through torchvision (optional): needs torchvision and its weights in the torch hub
  cache; otherwise ModelNotAvailable. Runs on CUDA when available.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

import cv2
import numpy as np
from tqdm.auto import tqdm

from core.checks import check_flow, check_rgb_uint8, check_same_hw
from core.errors import InputError, ModelNotAvailable
from core.flow.warp import warp_field

METHODS = ("dis", "dis_ultrafast", "farneback", "raft")
# DIS needs at least one 8x8 patch per pyramid level it keeps; below this every method is unreliable.
MIN_SIDE_PX = 16

Estimator = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _gray(frame_uint8: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(frame_uint8, cv2.COLOR_RGB2GRAY)


def _dis_estimator(preset: int) -> Estimator:
    dis = cv2.DISOpticalFlow_create(preset)

    def run(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return dis.calc(_gray(a), _gray(b), None)

    return run


def _farneback(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    # OpenCV's documented defaults, with 5 levels so motions of ~30 px stay within reach.
    return cv2.calcOpticalFlowFarneback(
        _gray(a),
        _gray(b),
        None,
        pyr_scale=0.5,
        levels=5,
        winsize=15,
        iterations=3,
        poly_n=5,
        poly_sigma=1.2,
        flags=0,
    )


@functools.cache
def _load_raft(device: str):
    """RAFT-large with torchvision's default weights, from the torch hub cache only (never downloads)."""
    try:
        import torch
        from torchvision.models.optical_flow import Raft_Large_Weights, raft_large
    except ImportError as err:
        raise ModelNotAvailable(
            "RAFT needs torchvision, which is not installed; install the torchvision build matching your "
            "torch, or use method='dis'."
        ) from err
    weights = Raft_Large_Weights.DEFAULT
    name = Path(urlparse(weights.url).path).name
    path = Path(torch.hub.get_dir()) / "checkpoints" / name
    if not path.is_file():
        raise ModelNotAvailable(
            f"RAFT weights {name} are not in the torch hub cache ({path.parent}); fetch them once online "
            "with torchvision's raft_large(weights='DEFAULT') or point TORCH_HOME at a folder holding "
            f"checkpoints/{name}, or use method='dis'."
        )
    model = raft_large(weights=None)
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval().to(device)


def _raft_estimator() -> Estimator:
    import torch
    import torch.nn.functional as F

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = _load_raft(device)

    def run(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        h, w = a.shape[:2]
        # RAFT works at 1/8 resolution with a 4-level correlation pyramid: pad to a multiple of 8, >= 128.
        pad_h, pad_w = max(-(-h // 8) * 8, 128) - h, max(-(-w // 8) * 8, 128) - w
        pair = torch.from_numpy(np.stack([a, b])).permute(0, 3, 1, 2).float() / 127.5 - 1.0  # [-1,1]
        pair = F.pad(pair, (0, pad_w, 0, pad_h), mode="replicate").to(device)
        with torch.inference_mode():
            flow = model(pair[:1], pair[1:])[-1]
        return flow[0, :, :h, :w].permute(1, 2, 0).float().cpu().numpy()

    return run


def _make_estimator(method: str) -> Estimator:
    if method == "dis":
        return _dis_estimator(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    if method == "dis_ultrafast":
        return _dis_estimator(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)
    if method == "farneback":
        return _farneback
    if method == "raft":
        return _raft_estimator()
    raise InputError(f"Unknown flow method {method!r}; choose one of {', '.join(METHODS)}.")


def _check_min_side(height: int, width: int) -> None:
    if min(height, width) < MIN_SIDE_PX:
        raise InputError(
            f"Frames of {width}x{height} are too small for flow; use at least {MIN_SIDE_PX} px a side."
        )


def estimate_flow(frame_a_uint8: np.ndarray, frame_b_uint8: np.ndarray, method: str = "dis") -> np.ndarray:
    """Dense optical flow from frame a to frame b: a(p) ~ b(p + flow(p)).

    Args:
        frame_a_uint8, frame_b_uint8: (H,W,3) uint8 RGB in [0,255], same size, H and W >= 16.
        method: one of `METHODS` (see the module docstring).

    Returns:
        (H,W,2) float32 flow (dx, dy) in pixels.

    Raises:
        InputError on bad frames or an unknown method; ModelNotAvailable for "raft" without
        torchvision or its weights.
    """
    check_rgb_uint8(frame_a_uint8, "frame_a")
    check_rgb_uint8(frame_b_uint8, "frame_b")
    check_same_hw(frame_a_uint8, frame_b_uint8, "frame_a", "frame_b")
    _check_min_side(*frame_a_uint8.shape[:2])
    return _make_estimator(method)(frame_a_uint8, frame_b_uint8).astype(np.float32, copy=False)


def estimate_video_flow(frames_uint8: np.ndarray, method: str = "dis", progress: bool = False) -> np.ndarray:
    """Flow between consecutive frames of a video.

    Args:
        frames_uint8: (T,H,W,3) uint8 RGB in [0,255], T >= 2, H and W >= 16.
        method: one of `METHODS`.
        progress: show a tqdm progress bar over the T-1 pairs.

    Returns:
        (T-1,H,W,2) float32; entry t is the flow from frame t to frame t+1, in pixels.
    """
    if not isinstance(frames_uint8, np.ndarray) or frames_uint8.ndim != 4:
        shape = getattr(frames_uint8, "shape", type(frames_uint8).__name__)
        raise InputError(f"frames must be an array of shape (T,H,W,3), got {shape}.")
    if frames_uint8.shape[0] < 2:
        raise InputError(f"Flow needs at least 2 frames, got {frames_uint8.shape[0]}.")
    check_rgb_uint8(frames_uint8[0], "frames")
    _check_min_side(*frames_uint8.shape[1:3])
    estimator = _make_estimator(method)
    count = frames_uint8.shape[0] - 1
    flows = np.empty((count, *frames_uint8.shape[1:3], 2), np.float32)
    for t in tqdm(range(count), desc=f"flow ({method})", disable=not progress):
        flows[t] = estimator(frames_uint8[t], frames_uint8[t + 1])
    return flows


def _squared_norm(flow_px: np.ndarray) -> np.ndarray:
    # Written out per component: numpy's reduction over a length-2 last axis is ~5x slower.
    return flow_px[..., 0] ** 2 + flow_px[..., 1] ** 2


def occlusion_mask(
    flow_fw_px: np.ndarray, flow_bw_px: np.ndarray, alpha: float = 0.01, beta: float = 0.5
) -> np.ndarray:
    """Forward-backward consistency test: where the forward flow cannot be trusted.

    With bw~(p) = flow_bw(p + flow_fw(p)) (bilinear), a pixel is consistent when
    |fw + bw~|^2 < alpha * (|fw|^2 + |bw~|^2) + beta  (Sundaram et al. 2010 use 0.01 and 0.5).

    Args:
        flow_fw_px: (H,W,2) flow a -> b in pixels.
        flow_bw_px: (H,W,2) flow b -> a in pixels.
        alpha: relative tolerance (unitless); beta: absolute tolerance (px^2).

    Returns:
        (H,W) bool, True where the test fails or p + fw(p) leaves the frame (occluded / unknown).
    """
    flow_fw_px = check_flow(flow_fw_px, "flow_fw")
    flow_bw_px = check_flow(flow_bw_px, "flow_bw")
    check_same_hw(flow_fw_px, flow_bw_px, "flow_fw", "flow_bw")
    bw_at_target = warp_field(flow_bw_px, flow_fw_px)
    mismatch = _squared_norm(flow_fw_px + bw_at_target)
    bound = alpha * (_squared_norm(flow_fw_px) + _squared_norm(bw_at_target)) + beta
    h, w = flow_fw_px.shape[:2]
    tx = flow_fw_px[..., 0] + np.arange(w)[None, :]
    ty = flow_fw_px[..., 1] + np.arange(h)[:, None]
    outside = (tx < 0) | (tx > w - 1) | (ty < 0) | (ty > h - 1)
    return (mismatch >= bound) | outside
