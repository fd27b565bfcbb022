"""Object-aware drags: each drag moves the object under its start point, rigidly; the background holds.

The warp engine (`core.engines.warp`) spreads every drag as a smooth field, so the picture moves like a
rubber sheet. Here a drag selects an object instead:

1. Segmentation, without weights (`segment_object`): OpenCV's GrabCut, seeded with a sure-foreground disc at
   the drag's start, a probable-foreground disc around it and a sure-background image border, run on a copy
   at most `SEGMENT_SIDE_PX` long and enlarged back; the connected part under the start point is the object.
   Chosen by measurement on 30 synthetic sprite scenes of the validation seeds (`python -m
   core.eval.drag_objects --segmentation`): mean IoU 0.92 / 0.98 at 128 / 256 px, against 0.83 / 0.84 for
   mean-shift smoothing + flood fill. With SAM configured (`Settings.sam_model`, `core.models.load_sam`)
   SAM's mask for a point prompt at the drag start (`core.engines.sam_segment`) takes GrabCut's place; the
   rules after it are the same for both. `grow_px` grows (or, negative, shrinks) the mask; an app may pass
   its own mask per drag instead (painted).
   The grip, a disc of `GRIP_PER_SIDE` x the shorter side around the start point, always moves with the
   object: the drag's contract is that the grabbed point follows it, and a start on an object's edge (where
   the segmentation cuts right at the point) would otherwise move a sliver of it while its surroundings
   stay. Its size was chosen on validation scenes grabbed 1-10 px inside a sprite's edge at 512 px
   (`python -m core.eval.drag_objects --grip 12`): without a grip a quarter of the grabbed points miss the
   ObjMC target of 1.5 px (mean 1.00 px); 16 px (1/32) is the smallest radius at which a tracker follows
   all of them as closely as larger ones (0.05 px), for a background EPE of 0.0067 px instead of 0.0042.
   A part smaller than a disc of 0.06 x the shorter side (a speck of texture, not an object) is replaced by
   that disc around the point: the patch under the drag moves.
2. Grouping (`object_layers`): a drag that starts inside an earlier drag's object moves that same object;
   an anchor (a point that does not move) inside an object pins it there. An object with one drag
   translates; with several drags and anchors it follows the least-squares similarity (translation,
   rotation, uniform scale) that carries their start points to their positions in each frame.
3. Rendering (`animate_objects`): the background plate is the image with every moving object cut out and
   the hole filled (the warp engine's push-pull fill, `fill_holes`); each frame is the plate (still, or
   moved by the camera move through the warp engine) with the objects composited over it back to front (the
   later drawn in front, or the nearer by a depth map given to `object_layers`), each with a one-pixel
   feathered edge. What an object uncovers shows the filled plate, never a stretched picture;
   `WarpResult.filled` marks it.

The result is the warp engine's `WarpResult`, so every backend takes either engine's output.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from core.config import Settings
from core.engines.warp import (
    DEFAULT_FRAMES,
    ProgressCallback,
    WarpResult,
    animate,
    check_animation,
    fill_holes,
)
from core.errors import InputError
from core.flow import flow_to_color
from core.trajectory import CameraMotion, Trajectories, tracks_to_px

if TYPE_CHECKING:
    from core.engines.sam_segment import SamSegmenter

SEGMENT_SIDE_PX = 320
"""Longest side of the copy GrabCut runs on (its cost grows with the pixels; the mask is enlarged back)."""

_SURE_PER_SIDE = 1 / 64  # radius of the sure-foreground disc at the drag start, per shorter image side
_LIKELY_PER_SURE = 3  # the probable-foreground disc around it, in sure radii
_BORDER_PER_SIDE = 1 / 40  # the sure-background band along the image border
_GRABCUT_ITERATIONS = 5
# Masks kept per process (`segment_object`): a drawing that gains a drag segments only the new one.
_SEGMENT_CACHE_SIZE = 32
_segment_cache: OrderedDict[tuple, np.ndarray] = OrderedDict()
_segment_lock = threading.Lock()
GRIP_PER_SIDE = 1 / 32
"""Radius, per shorter image side, of the disc around a drag's start that always moves with its object."""
_SMALLEST_PER_SIDE = 0.06  # radius, per shorter image side, of the disc a too small segment is replaced by
_HOLE_MARGIN_PX = 2  # the plate's hole is the objects grown by this: their edge colours stay off the plate
_PREVIEW_SIDE_PX = 256  # longest side of the copy `preview_object_flow` works on
_FEATHER_PX = 1.0  # Gaussian sigma of an object's edge when composited


@dataclass(frozen=True)
class ObjectLayer:
    """One object a drag moves.

    Attributes:
        mask: (H,W) bool, the object in the input image.
        tracks: indices into the trajectories that carry it (its drags, then the anchors inside it).
    """

    mask: np.ndarray
    tracks: tuple[int, ...]


def _resize_mask(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    if mask.shape == (height, width):
        return mask
    soft = cv2.resize(mask.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    return soft >= 0.5


def _grow(mask: np.ndarray, grow_px: int) -> np.ndarray:
    if grow_px == 0:
        return mask
    size = 2 * abs(grow_px) + 1
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    operation = cv2.dilate if grow_px > 0 else cv2.erode
    return operation(mask.astype(np.uint8), kernel).astype(bool)


def segment_object(
    image_uint8: np.ndarray,
    point_px: Sequence[float],
    *,
    grow_px: int = 0,
    segmenter: SamSegmenter | None = None,
    grip_px: int | None = None,
) -> np.ndarray:
    """The object under `point_px` (x, y in pixel-centre coordinates), as an (H,W) bool mask.

    Without `segmenter`: GrabCut on a copy at most `SEGMENT_SIDE_PX` long (see the module docstring). With one
    (`core.models.load_sam`): SAM's best mask for a point prompt there. Either way the connected part under
    the point, grown by `grow_px` (negative: shrunk), with the grip (a disc of `grip_px` around the point;
    None: `GRIP_PER_SIDE` x the shorter side) added, a speck replaced by a disc. The last 32 segmentations
    are kept (keyed by the picture's content, the point and the segmenter), so adding drags or moving the
    grow/shrink slider does not segment an object again.
    """
    height, width = image_uint8.shape[:2]
    x, y = float(point_px[0]), float(point_px[1])
    if not (np.isfinite(x) and np.isfinite(y) and -0.5 <= x < width - 0.5 and -0.5 <= y < height - 0.5):
        raise InputError(f"The drag starts at ({x:.1f}, {y:.1f}), outside the {width}x{height} image.")
    if isinstance(grow_px, bool) or not isinstance(grow_px, int | np.integer):
        raise InputError(f"The object's grow/shrink must be a whole number of pixels, got {grow_px!r}.")
    grip_px = round(GRIP_PER_SIDE * min(height, width)) if grip_px is None else grip_px
    picture = hashlib.sha1(np.ascontiguousarray(image_uint8).tobytes()).hexdigest()
    key = (picture, image_uint8.shape, x, y, segmenter)
    with _segment_lock:
        found = _segment_cache.get(key)
        if found is not None:
            _segment_cache.move_to_end(key)
    if found is None:
        if segmenter is None:
            found = _grabcut(image_uint8, x, y)
        else:
            pixel = min(width - 1, max(0, round(x))), min(height - 1, max(0, round(y)))
            found = _part_under(segmenter.mask(image_uint8, (x, y)), pixel)
        with _segment_lock:
            _segment_cache[key] = found
            while len(_segment_cache) > _SEGMENT_CACHE_SIZE:
                _segment_cache.popitem(last=False)
    return _object_rules(found, x, y, int(grow_px), int(grip_px))


def _grabcut(image_uint8: np.ndarray, x: float, y: float) -> np.ndarray:
    """(H,W) bool: the connected part of GrabCut's foreground under (x, y), on the copy of at most
    `SEGMENT_SIDE_PX` and enlarged back."""
    height, width = image_uint8.shape[:2]
    scale = min(1.0, SEGMENT_SIDE_PX / max(height, width))
    small_w, small_h = max(1, round(width * scale)), max(1, round(height * scale))
    small = (
        image_uint8
        if scale == 1.0
        else cv2.resize(image_uint8, (small_w, small_h), interpolation=cv2.INTER_AREA)
    )
    seed = (
        min(small_w - 1, round((x + 0.5) * scale - 0.5)),
        min(small_h - 1, round((y + 0.5) * scale - 0.5)),
    )
    sure = max(1, round(_SURE_PER_SIDE * min(small_h, small_w)))
    labels = np.full((small_h, small_w), cv2.GC_PR_BGD, np.uint8)
    border = max(1, round(_BORDER_PER_SIDE * min(small_h, small_w)))
    labels[:border], labels[-border:], labels[:, :border], labels[:, -border:] = (cv2.GC_BGD,) * 4
    cv2.circle(labels, seed, _LIKELY_PER_SURE * sure, cv2.GC_PR_FGD, -1)
    cv2.circle(labels, seed, sure, cv2.GC_FGD, -1)
    models = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(0)  # GrabCut seeds its colour models from OpenCV's global generator: same image, same mask
    cv2.grabCut(
        np.ascontiguousarray(small[..., ::-1]),
        labels,
        None,
        *models,
        _GRABCUT_ITERATIONS,
        cv2.GC_INIT_WITH_MASK,
    )
    foreground = (labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)
    return _resize_mask(_part_under(foreground, seed), height, width)


def _part_under(mask: np.ndarray, pixel: tuple[int, int]) -> np.ndarray:
    """The connected part of the (H,W) bool `mask` holding `pixel` (column, row); empty if it is off the mask."""
    column, row = pixel
    if not mask[row, column]:
        return np.zeros(mask.shape, bool)
    _, parts = cv2.connectedComponents(mask.astype(np.uint8))
    return parts == parts[row, column]


def _disc(shape: tuple[int, int], x: float, y: float, radius_px: float) -> np.ndarray:
    """(H,W) bool: the disc of `radius_px` around the pixel nearest (x, y); at least that pixel."""
    disc = np.zeros(shape, np.uint8)
    cv2.circle(disc, (round(x), round(y)), round(radius_px), 1, -1)
    disc[min(shape[0] - 1, max(0, round(y))), min(shape[1] - 1, max(0, round(x)))] = 1
    return disc.astype(bool)


def _object_rules(found: np.ndarray, x: float, y: float, grow_px: int, grip_px: int) -> np.ndarray:
    """The rules every segmenter's (H,W) bool part under (x, y) goes through: grown by `grow_px`; the grip
    (a disc of `grip_px` around the point, the point's own pixel at least) added; smaller than a disc of
    `_SMALLEST_PER_SIDE` x the shorter side (a speck of texture, not an object), replaced by that disc
    around the point (the patch under the drag moves)."""
    height, width = found.shape
    mask = _grow(found, grow_px) | _disc(found.shape, x, y, grip_px)  # never the caller's (or cache's) array
    radius = _SMALLEST_PER_SIDE * min(height, width)
    if mask.sum() < np.pi * radius**2:
        mask = _disc(found.shape, x, y, radius)
    return mask


def object_layers(
    image_uint8: np.ndarray,
    trajectories: Trajectories,
    *,
    masks: dict[int, np.ndarray] | None = None,
    grow_px: int = 0,
    segmenter: SamSegmenter | None = None,
    disparity: np.ndarray | None = None,
) -> list[ObjectLayer]:
    """The objects the drags move, back to front (see the module docstring for the grouping).

    Args:
        image_uint8: (H,W,3) uint8.
        trajectories: the drags and anchors.
        masks: optional {trajectory index: (H,W) bool mask} for drags whose object the user gave (painted,
            or from a learned segmenter); the other drags are segmented with `segment_object`.
        grow_px, segmenter: passed to `segment_object` (a segmenter: SAM, `core.models.load_sam`).
        disparity: optional (H,W) depth map as disparity (larger = nearer, e.g. the joint app's): objects
            are ordered by their mean disparity, the nearest in front. Without it the later drawn is in front.
    """
    height, width = image_uint8.shape[:2]
    masks = masks or {}
    starts_px = np.array([(t.points_norm[0] * (width, height)) - 0.5 for t in trajectories]).reshape(-1, 2)
    layers: list[tuple[np.ndarray, list[int]]] = []

    def layer_at(index: int) -> int | None:
        column, row = (
            min(n - 1, max(0, round(v))) for v, n in zip(starts_px[index], (width, height), strict=True)
        )
        for k in reversed(range(len(layers))):  # the front-most object under the point
            if layers[k][0][row, column]:
                return k
        return None

    for index, trajectory in enumerate(trajectories):
        if trajectory.is_anchor:
            continue
        if index in masks:
            mask = np.asarray(masks[index], bool)
            if mask.shape != (height, width) or not mask.any():
                raise InputError(
                    f"The object mask of drag {index + 1} must be a non-empty {height}x{width} mask."
                )
            layers.append((mask, [index]))
            continue
        joined = layer_at(index)
        if joined is None:
            layers.append(
                (segment_object(image_uint8, starts_px[index], grow_px=grow_px, segmenter=segmenter), [index])
            )
        else:
            layers[joined][1].append(index)
    for index, trajectory in enumerate(trajectories):
        joined = layer_at(index) if trajectory.is_anchor else None
        if joined is not None:
            layers[joined][1].append(index)
    ordered = [ObjectLayer(mask, tuple(tracks)) for mask, tracks in layers]
    if disparity is None:
        return ordered
    disparity = np.asarray(disparity, np.float64)
    if disparity.shape != (height, width) or not np.isfinite(disparity).all():
        raise InputError(
            f"The depth map must be a {height}x{width} map of finite values, got {disparity.shape}."
        )
    return sorted(
        ordered, key=lambda layer: float(disparity[layer.mask].mean())
    )  # stable: ties keep drawing order


def similarity(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The (2,3) affine map of the least-squares similarity taking points `source` (K,2) to `target` (K,2):
    a translation for one point; rotation, uniform scale and translation for more (no reflection)."""
    source_mean, target_mean = source.mean(axis=0), target.mean(axis=0)
    a = (source - source_mean) @ (1, 1j)
    b = (target - target_mean) @ (1, 1j)
    power = float(np.vdot(a, a).real)
    factor = complex(np.vdot(a, b)) / power if power > 1e-12 else 1.0 + 0j
    linear = np.array([[factor.real, -factor.imag], [factor.imag, factor.real]])
    return np.hstack([linear, (target_mean - linear @ source_mean)[:, None]])


def layer_motion(layer: ObjectLayer, tracks_px: np.ndarray) -> list[np.ndarray]:
    """The (2,3) map from frame 0 to each frame t of an object: the `similarity` carrying its tracks' start
    points to their positions at t (tracks_px: (M,T,2), every trajectory's positions in px)."""
    chosen = tracks_px[list(layer.tracks)]
    return [similarity(chosen[:, 0], chosen[:, t]) for t in range(chosen.shape[1])]


def preview_object_flow(
    image_size: tuple[int, int],
    trajectories: Trajectories,
    layers: list[ObjectLayer],
    num_frames: int = DEFAULT_FRAMES,
    *,
    camera: CameraMotion | None = None,
    max_magnitude: float | None = None,
) -> np.ndarray:
    """Colour-wheel picture of the total displacement (frame 0 -> last frame) `animate_objects` applies, at
    each pixel of frame 0: an object's own (the front one where objects overlap), the background's none
    (white) or the camera move's. The objects engine's `core.engines.warp.preview_flow`.

    Args:
        image_size: (width, height) in px of the image the trajectories and `layers` are on.
        trajectories, num_frames, camera: as in `animate_objects`; layers: its objects (`object_layers`).
        max_magnitude: displacement in px shown fully saturated; default the largest.

    Returns:
        (height, width, 3) uint8 RGB, Middlebury colours (`core.flow.flow_to_color`): white = still.
    """
    width, height = image_size
    # The displacement is found and coloured on a copy at most `_PREVIEW_SIDE_PX` long (colouring is the
    # costly step at full size) and the picture enlarged: a preview, redrawn after every canvas edit.
    scale = min(1.0, _PREVIEW_SIDE_PX / max(height, width))
    small_w, small_h = max(1, round(width * scale)), max(1, round(height * scale))
    small = np.stack(np.meshgrid(np.arange(small_w), np.arange(small_h)), axis=-1).astype(np.float64)
    grid = (small + 0.5) * (width / small_w, height / small_h) - 0.5  # their pixel centres in the image
    total = np.zeros((small_h, small_w, 2)) if camera is None else camera.forward(grid, 1.0, height, width)
    tracks_px = tracks_to_px(trajectories.tracks_norm(num_frames, (width, height)), height, width)
    for layer in layers:  # back to front: the front one's displacement is the one left
        inside = _resize_mask(layer.mask, small_h, small_w)
        last = layer_motion(layer, tracks_px)[-1]
        start = grid[inside]
        total[inside] = start @ last[:, :2].T + last[:, 2] - start
    colours = flow_to_color(total.astype(np.float32), max_magnitude)
    return cv2.resize(colours, (int(width), int(height)), interpolation=cv2.INTER_LINEAR)


def _feathered(mask: np.ndarray) -> np.ndarray:
    """(H,W) float32 alpha: 1 inside the mask, a Gaussian edge of `_FEATHER_PX` around it."""
    return np.maximum(mask.astype(np.float32), cv2.GaussianBlur(mask.astype(np.float32), (0, 0), _FEATHER_PX))


def _corners(mask: np.ndarray) -> np.ndarray:
    """(4,3) homogeneous corners of the box around `mask` and its feather."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    margin = 3 * _FEATHER_PX + 1
    return np.array(
        [
            [x, y, 1.0]
            for x in (cols[0] - margin, cols[-1] + margin)
            for y in (rows[0] - margin, rows[-1] + margin)
        ]
    )


def _region(
    corners: np.ndarray, transform: np.ndarray, height: int, width: int
) -> tuple[slice, slice] | None:
    """The rows and columns of the frame that an object's box (`_corners`) covers once mapped by `transform`
    ((2,3) from frame 0), or None when it is out of the frame."""
    mapped = corners @ transform.T
    left, top = np.floor(mapped.min(axis=0)).astype(int)
    right, bottom = np.ceil(mapped.max(axis=0)).astype(int) + 1
    left, top, right, bottom = max(0, left), max(0, top), min(width, right), min(height, bottom)
    return (slice(top, bottom), slice(left, right)) if left < right and top < bottom else None


def _in_region(transform: np.ndarray, region: tuple[slice, slice]) -> np.ndarray:
    """`transform` for output coordinates relative to the region's top-left corner."""
    shifted = transform.copy()
    shifted[:, 2] -= (region[1].start, region[0].start)
    return shifted


def _relative_flow(before: np.ndarray, after: np.ndarray, region: tuple[slice, slice]) -> np.ndarray:
    """(h,w,2) float32 over `region`: where a pixel q of frame t goes in frame t+1 for an object mapped by
    `before` at t and `after` at t+1 (each (2,3) from frame 0): after(before^-1(q)) - q."""
    step = np.vstack([after, (0, 0, 1)]) @ np.linalg.inv(np.vstack([before, (0, 0, 1)]))
    grid_y, grid_x = np.mgrid[region].astype(np.float32)
    flow = np.empty((*grid_x.shape, 2), np.float32)
    flow[..., 0] = (step[0, 0] - 1) * grid_x + step[0, 1] * grid_y + step[0, 2]
    flow[..., 1] = step[1, 0] * grid_x + (step[1, 1] - 1) * grid_y + step[1, 2]
    return flow


def animate_objects(
    image_uint8: np.ndarray,
    trajectories: Trajectories,
    num_frames: int = DEFAULT_FRAMES,
    *,
    layers: list[ObjectLayer] | None = None,
    camera: CameraMotion | None = None,
    progress: ProgressCallback | None = None,
    settings: Settings | None = None,
    with_flow: bool = True,
) -> WarpResult:
    """Animate an image by moving the objects under the drags (see the module docstring).

    Each object is mapped and composited only over the part of the frame it covers, so the cost follows
    the objects' size, not the image's: a live preview needs no smaller copy.

    Args:
        image_uint8, trajectories, num_frames, camera, progress, settings: as in `core.engines.warp.animate`.
        layers: the objects (`object_layers`; computed here when None: apps cache them per image).
        with_flow: False skips the flow (`flow_px` None): what a preview needs.

    Returns:
        WarpResult: frames (frame 0 the input exactly), frame-to-frame forward flow, requested positions,
        and the share of each pixel that is filled background.
    """
    settings = settings or Settings.from_env()
    height, width, num_frames, trajectories, camera = check_animation(
        image_uint8, trajectories, num_frames, camera, None, settings
    )
    layers = object_layers(image_uint8, trajectories) if layers is None else layers
    tracks_norm = trajectories.tracks_norm(num_frames, (width, height))
    tracks_px = tracks_to_px(tracks_norm, height, width)

    hole = _grow(
        np.logical_or.reduce([layer.mask for layer in layers] or [np.zeros((height, width), bool)]),
        _HOLE_MARGIN_PX,
    )
    plate = image_uint8.copy()
    if hole.any():
        plate[hole] = np.clip(np.rint(fill_holes(image_uint8, ~hole)[hole]), 0, 255).astype(np.uint8)
    if camera is None:
        background = np.broadcast_to(plate, (num_frames, height, width, 3))
        background_flow = np.zeros((num_frames - 1, height, width, 2), np.float32)
        background_filled = np.zeros((num_frames, height, width), np.float32)
    else:
        moved = animate(plate, Trajectories(), num_frames, camera=camera, settings=settings)
        background, background_flow, background_filled = moved.frames_uint8, moved.flow_px, moved.filled

    alphas = [_feathered(layer.mask) for layer in layers]
    transforms = [layer_motion(layer, tracks_px) for layer in layers]
    frames = np.empty((num_frames, height, width, 3), np.uint8)
    filled = np.zeros((num_frames, height, width), np.float32)
    flow = background_flow.copy() if with_flow else None
    frames[0] = image_uint8
    if progress is not None:
        progress(1, num_frames)
    boxes = [_corners(layer.mask) for layer in layers]
    hole_share = hole.astype(np.float32)
    for t in range(1, num_frames):
        frames[t] = background[t]
        filled[t] = np.maximum(hole_share, background_filled[t]) if camera is None else background_filled[t]
        for box, alpha_0, layer_transforms in zip(boxes, alphas, transforms, strict=True):
            region = _region(box, layer_transforms[t], height, width)
            if region is None:
                continue
            shifted = _in_region(layer_transforms[t], region)
            size = (region[1].stop - region[1].start, region[0].stop - region[0].start)
            alpha = cv2.warpAffine(alpha_0, shifted, size, flags=cv2.INTER_LINEAR)
            content = cv2.warpAffine(
                image_uint8, shifted, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
            )
            below = frames[t][region].astype(np.float32)
            frames[t][region] = np.clip(np.rint(below + alpha[..., None] * (content - below)), 0, 255)
            filled[t][region] *= 1.0 - alpha
        if progress is not None:
            progress(t + 1, num_frames)
    if flow is None:
        return WarpResult(frames, None, tracks_px, filled)
    for t in range(num_frames - 1):
        for box, alpha_0, layer_transforms in zip(boxes, alphas, transforms, strict=True):
            region = _region(box, layer_transforms[t], height, width)
            if region is None:
                continue
            size = (region[1].stop - region[1].start, region[0].stop - region[0].start)
            visible = (
                cv2.warpAffine(alpha_0, _in_region(layer_transforms[t], region), size, flags=cv2.INTER_LINEAR)
                >= 0.5
            )
            step = _relative_flow(layer_transforms[t], layer_transforms[t + 1], region)
            flow[t][region][visible] = step[visible]
    return WarpResult(frames, flow, tracks_px, filled)
