"""Warping images and fields with a flow: backward (gather, cv2.remap) and forward (splat, z-test).

Two directions, two tools:

- `backward_warp(image, flow)` gathers: output(p) = image(p + flow(p)). Every output pixel gets a value,
  no holes, but the flow must be defined on the *output* grid. To move the pixels of `image` by a
  forward displacement d (pixel q goes to q + d(q)), pass the inverse map: `invert_flow(d)[0]`, or
  `-d` when d is smooth and small (the error is about |d| * |grad d|).
- `forward_splat(image, flow)` scatters: the pixel at q lands at q + flow(q). Flow lives on the
  *source* grid, which is what a trajectory or an estimated flow gives; where several source pixels land
  on one target the front-most wins (see `forward_splat`), and targets nobody lands on are holes.
"""

from __future__ import annotations

import cv2
import numpy as np

from core.checks import check_flow, check_image_uint8, check_same_hw
from core.errors import InputError

_BORDERS = {
    "replicate": cv2.BORDER_REPLICATE,
    "constant": cv2.BORDER_CONSTANT,
    "reflect": cv2.BORDER_REFLECT_101,
}
# A target pixel whose splatted bilinear weights sum to no more than this is a hole.
_MIN_SPLAT_WEIGHT = 1e-3


def _remap(array: np.ndarray, flow_px: np.ndarray, border: str) -> np.ndarray:
    """cv2.remap of (H,W,C) `array` at p + flow(p), bilinear; keeps the channel axis."""
    if border not in _BORDERS:
        raise InputError(f"border must be one of {sorted(_BORDERS)}, got {border!r}.")
    h, w = flow_px.shape[:2]
    map_x = flow_px[..., 0] + np.arange(w, dtype=np.float32)[None, :]
    map_y = flow_px[..., 1] + np.arange(h, dtype=np.float32)[:, None]
    out = cv2.remap(array, map_x, map_y, cv2.INTER_LINEAR, borderMode=_BORDERS[border], borderValue=0)
    # cv2 drops a single channel axis.
    return out.reshape(h, w, array.shape[2])


def backward_warp(image_uint8: np.ndarray, flow_px: np.ndarray, border: str = "replicate") -> np.ndarray:
    """Gather `image_uint8` along `flow_px`: output(p) = image(p + flow(p)), bilinear (cv2.remap).

    Args:
        image_uint8: (H,W,C) uint8 in [0,255], any number of channels.
        flow_px: (H,W,2) float (dx, dy) in pixels, defined on the output grid.
        border: where p + flow(p) leaves the image: "replicate" (nearest edge pixel), "constant" (0) or
            "reflect".

    Returns:
        (H,W,C) uint8. To animate with a forward displacement d, pass `invert_flow(d)[0]` (or `-d` for
        a small smooth d); see the module docstring.
    """
    check_image_uint8(image_uint8)
    flow_px = check_flow(flow_px)
    check_same_hw(image_uint8, flow_px, "image", "flow")
    return _remap(image_uint8, flow_px, border)


def warp_field(field: np.ndarray, flow_px: np.ndarray, border: str = "replicate") -> np.ndarray:
    """Gather a float field (another flow, depth, a soft mask) like `backward_warp`, without rounding.

    Args:
        field: (H,W) or (H,W,C) float array.
        flow_px: (H,W,2) float (dx, dy) in pixels.
        border: as in `backward_warp`.

    Returns:
        float32 array of the shape of `field`, output(p) = field(p + flow(p)) bilinear.
    """
    if not isinstance(field, np.ndarray) or field.ndim not in (2, 3) or field.size == 0:
        raise InputError(
            f"field must be a non-empty (H,W) or (H,W,C) array, got {getattr(field, 'shape', field)}."
        )
    if not np.issubdtype(field.dtype, np.floating):
        raise InputError(
            f"field must be a float array, got dtype {field.dtype}; use backward_warp for pixels."
        )
    flow_px = check_flow(flow_px)
    check_same_hw(field, flow_px, "field", "flow")
    field3 = field.astype(np.float32, copy=False).reshape(field.shape[0], field.shape[1], -1)
    return _remap(field3, flow_px, border).reshape(field.shape)


def _splat(
    values: np.ndarray, flow_px: np.ndarray, priority: np.ndarray, tolerance: float
) -> tuple[np.ndarray, np.ndarray]:
    """Bilinear forward splat of (H,W,C) float `values` with a soft z-test on `priority`.

    Returns the normalised (H,W,C) float64 result (0 in holes) and the (H,W) bool hole mask.
    """
    h, w, channels = values.shape
    ys, xs = np.mgrid[0:h, 0:w]
    # Clipping keeps far-away targets outside the frame but within int64 range.
    tx = np.clip(xs + flow_px[..., 0].astype(np.float64), -2, w + 1)
    ty = np.clip(ys + flow_px[..., 1].astype(np.float64), -2, h + 1)
    x0, y0 = np.floor(tx), np.floor(ty)
    fx, fy = (tx - x0).ravel(), (ty - y0).ravel()
    # The 4 corners of every source pixel, as (4, H*W) arrays. Corners outside the frame go to a spare
    # bin (index H*W) that is dropped at the end: no compaction of the large arrays needed.
    cx = (x0.ravel() + np.array([0, 1, 0, 1])[:, None]).astype(np.int64)
    cy = (y0.ravel() + np.array([0, 0, 1, 1])[:, None]).astype(np.int64)
    weight = np.stack([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy])
    inside = (cx >= 0) & (cx < w) & (cy >= 0) & (cy < h)
    target = np.where(inside, cy * w + cx, h * w).ravel()
    weight = np.where(inside, weight, 0.0).ravel()
    src = np.tile(np.arange(h * w), 4)

    # Z-test: per target keep only contributions within `tolerance` of the front-most priority there;
    # zero-weight corners (exactly integer motion) take no part.
    prio = np.where(weight > 0, np.tile(priority.ravel().astype(np.float64), 4), -np.inf)
    front = np.full(h * w + 1, -np.inf)
    np.maximum.at(front, target, prio)
    weight = np.where(prio >= front[target] - tolerance, weight, 0.0)

    weight_sum = np.bincount(target, weights=weight, minlength=h * w + 1)[: h * w]
    flat = values.reshape(h * w, channels)
    out = np.zeros((h * w, channels))
    filled = weight_sum > _MIN_SPLAT_WEIGHT
    for c in range(channels):
        acc = np.bincount(target, weights=weight * flat[src, c], minlength=h * w + 1)[: h * w]
        out[filled, c] = acc[filled] / weight_sum[filled]
    return out.reshape(h, w, channels), ~filled.reshape(h, w)


def _check_priority(priority: np.ndarray | None, flow_px: np.ndarray) -> np.ndarray:
    if priority is None:
        return np.linalg.norm(flow_px, axis=2)
    if not isinstance(priority, np.ndarray) or priority.shape != flow_px.shape[:2]:
        raise InputError(
            f"priority must be an (H,W) array matching the flow {flow_px.shape[:2]}, "
            f"got {getattr(priority, 'shape', priority)}."
        )
    if not np.all(np.isfinite(priority)):
        raise InputError("priority contains NaN or infinite values.")
    return priority


def forward_splat(
    image_uint8: np.ndarray,
    flow_px: np.ndarray,
    priority: np.ndarray | None = None,
    tolerance: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """Scatter `image_uint8` along `flow_px`: the pixel at q lands at q + flow(q), bilinear splat.

    Occlusion rule (a soft z-buffer): each source pixel spreads its colour over the 4 target pixels
    around q + flow(q) with bilinear weights. At a target, only contributions whose priority is within
    `tolerance` of the highest priority landing there are kept; the output is their weighted mean. By
    default priority = |flow(q)|: what moves more is taken to be in front (a dragged object slides over
    a still background). Pass e.g. inverse depth to use real depth order instead.

    Args:
        image_uint8: (H,W,C) uint8 in [0,255].
        flow_px: (H,W,2) float (dx, dy) in pixels, defined on the source grid.
        priority: optional (H,W) float, larger = in front. Default |flow|.
        tolerance: priority units; contributions this close to the front-most are blended.

    Returns:
        (warped_uint8 (H,W,C), hole_mask (H,W) bool). Holes (no source pixel landed there: uncovered
        background, or gaps when the flow expands) are True and hold 0 in `warped_uint8`.
    """
    check_image_uint8(image_uint8)
    flow_px = check_flow(flow_px)
    check_same_hw(image_uint8, flow_px, "image", "flow")
    priority = _check_priority(priority, flow_px)
    out, holes = _splat(image_uint8.astype(np.float64), flow_px, priority, tolerance)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8), holes


def invert_flow(
    flow_px: np.ndarray, priority: np.ndarray | None = None, tolerance: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """Invert a forward displacement: returns g with g(q + flow(q)) = -flow(q), by forward splatting.

    `backward_warp(image, g)` then moves the pixels of `image` by `flow` (like `forward_splat`, but
    with the pixel values interpolated on the source side). Occlusions follow the rule of
    `forward_splat` (same `priority`, `tolerance`).

    Args:
        flow_px: (H,W,2) float (dx, dy) in pixels on the source grid.

    Returns:
        (inverse_flow_px (H,W,2) float32, hole_mask (H,W) bool); holes hold 0 (no motion).
    """
    flow_px = check_flow(flow_px)
    priority = _check_priority(priority, flow_px)
    out, holes = _splat(-flow_px.astype(np.float64), flow_px, priority, tolerance)
    return out.astype(np.float32), holes
