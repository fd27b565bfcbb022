"""Warp-animate an image along drawn trajectories, without weights: the drag app's instant engine.

Frame t is frame 0 gathered along the backward map b_t of `core.trajectory.backward_flow`: frame_t(q) =
frame_0(q + b_t(q)). b_t is exact on every track (the pixel at a requested position shows the content
that started at the track's start) and nearly rigid around it, so requested motion is followed to
well under a pixel; anchors pin their neighbourhood; a region mask and a camera move work as in
`core.trajectory`. Frame 0 is the input, unchanged.

What the warp cannot know is filled, never left black (the fill is documented here, in one place).
The fill is push-pull (`fill_holes`): a pyramid of known-weighted averages, read back from coarse to fine,
gives a smooth blend of the surrounding colours that grows softer with the distance to known pixels.
We chose it over OpenCV's Telea inpainting and over a replicated border because those smear wide holes
into streaks (compared on the scikit-image photos), and it costs two image pyramids whatever the hole.

- Out of frame. Where q + b_t(q) falls outside the image (a camera pan or zoom-out, or a drag that
  pulls content in across the border), the content would come from beyond the picture. Frame 0 is
  put once on a larger canvas, just big enough for every frame's samples (at most one image size
  more on each side; beyond that the canvas edge is replicated), and the margin is filled. Every
  frame samples that one canvas, so what a pan reveals moves with the picture instead of being
  made up anew (flickering) in every frame.
- Stretch and disocclusion. Where the warp magnifies, one source pixel is spread over many output
  pixels: behind a dragged object, where a motion-brush region leaves its place, where tracks pull
  apart or against the camera (there the map may even fold: area ratio <= 0). A forward splat would
  leave holes there; we detect them from the same quantity without splatting: the local area ratio
  of the map, det(I + grad b_t) (1 / the forward field's area growth), from the smooth backward map.
  Below `_AREA_KEEP` = 0.4 (one source pixel over more than 2.5 output pixels) the frame is blended
  towards a fill from its faithfully warped surroundings, fully replaced below `_AREA_FILL` = 0.2
  (more than 5 output pixels); the weight is feathered outwards so no seam shows. A single drag of
  core.trajectory's default reach stretches its wake by at most ~3x (area ratio >= 0.32), so it
  gets at most a 40% blend that softens the smear; tracks pulling apart get the full fill. The
  fill never replaces the content within 0.2 x the smallest reach of a requested position (a track's
  current position or an anchor), which is what the user asked for, even where the map folds next to
  it (an anchor close to a long drag).

The maps are computed on a coarse grid (see core.trajectory) whose step shrinks with the smallest
reach (`_grid_step`: 8 px at SVD's 576 px, 3 px at 256 px), so an anchor's pinned core survives the
bilinear upsampling on small images.

`WarpResult.filled` says how much of each pixel is invented (1 = all fill): a diffusion refiner can
regenerate those pixels more freely.

`preview_video` is the same warp on a copy at most 384 px long, enlarged back: a live look at the
clip (~85 ms for 14 frames at 576x1024 on 2 cores, against ~550 ms for `animate`), never the result.

Nothing to animate (no trajectory that moves and no camera move, or an empty motion region) is an
`InputError`, not a still video: the apps show its sentence, which says what to draw.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from core.checks import check_rgb_uint8
from core.config import Settings
from core.errors import InputError
from core.flow import flow_to_color, warp_field
from core.trajectory import CameraMotion, Trajectories, backward_flow, dense_displacement, tracks_to_px

ProgressCallback = Callable[[int, int], None]

DEFAULT_FRAMES = 14  # SVD's clip length
MIN_IMAGE_SIDE_PX = 8
# Area ratio of the backward map below which the fill starts to blend in, and where it takes over.
_AREA_KEEP = 0.4
_AREA_FILL = 0.2
# Gaussian feather (px) of the fill weight: the coarse-grid maps have piecewise-constant gradients.
_FILL_FEATHER_PX = 3.0
# The fill never replaces content within this share of the smallest reach of a requested position
# (a track's current position, an anchor): that content is what the user asked for.
_SPARE_PER_REACH = 0.2
# Coarse-grid step of the maps per px of the smallest reach (see _grid_step).
_GRID_PER_REACH = 0.15
# Push-pull fill: a coarse pixel whose known share times this reaches 1 counts as fully known.
_FILL_CONFIDENCE = 4.0
# The live preview computes the field on a copy whose longest side is at most this.
_PREVIEW_SIDE_PX = 192

PREVIEW_VIDEO_SIDE_PX = 384
"""Longest side of the copy `preview_video` warps (its frames are enlarged back to the image size)."""

CAMERA_PRESETS: dict[str, CameraMotion] = {
    "pan_left": CameraMotion(pan_x=-0.15),
    "pan_right": CameraMotion(pan_x=0.15),
    "pan_up": CameraMotion(pan_y=-0.15),
    "pan_down": CameraMotion(pan_y=0.15),
    "zoom_in": CameraMotion(zoom=1.25),
    "zoom_out": CameraMotion(zoom=0.8),
    "rotate_cw": CameraMotion(rotate_deg=8.0),
    "rotate_ccw": CameraMotion(rotate_deg=-8.0),
}
"""Named camera moves for the apps and the CLI (content motion by the last frame; see CameraMotion)."""


@dataclass(frozen=True)
class WarpResult:
    """A warp-animated clip.

    Attributes:
        frames_uint8: (T,H,W,3) uint8; frames_uint8[0] is the input image exactly.
        flow_px: (T-1,H,W,2) float32, entry t the forward flow frame t -> t+1 in px on frame t's grid
            (for the flow-video preview: `core.flow.render_flow_video(result.flow_px)`).
        tracks_px: (M,T,2) float64, the requested position of every trajectory (anchors included) at
            every frame, in pixel-centre coordinates (x right, y down; pixel (0,0) is at (0,0)).
        filled: (T,H,W) float32 in [0,1], the share of each pixel that is fill (out of frame or
            stretched) rather than warped picture; 0 everywhere in frame 0.
    """

    frames_uint8: np.ndarray
    flow_px: np.ndarray
    tracks_px: np.ndarray
    filled: np.ndarray


# -- validation --------------------------------------------------------------------------------------


def _check_image(image_uint8: np.ndarray, settings: Settings) -> tuple[int, int]:
    check_rgb_uint8(image_uint8, "The image")
    height, width = image_uint8.shape[:2]
    if max(height, width) > settings.max_image_side:
        raise InputError(
            f"The image is {width}x{height} px; the largest side allowed is {settings.max_image_side} px "
            "(shrink the image or raise max_image_side)."
        )
    if min(height, width) < MIN_IMAGE_SIDE_PX:
        raise InputError(
            f"The image is {width}x{height} px; each side needs at least {MIN_IMAGE_SIDE_PX} px."
        )
    return height, width


def _check_num_frames(num_frames: object, settings: Settings) -> int:
    if isinstance(num_frames, bool) or not isinstance(num_frames, int | np.integer):
        raise InputError(f"The number of frames must be a whole number, got {num_frames!r}.")
    if not 2 <= num_frames <= settings.max_frames:
        raise InputError(
            f"The number of frames must be between 2 and {settings.max_frames} (max_frames), got {num_frames}."
        )
    return int(num_frames)


def _is_still(camera: CameraMotion | None) -> bool:
    return camera is None or camera == CameraMotion()


def _check_motion(
    trajectories: object, camera: CameraMotion | None, region_mask: np.ndarray | None
) -> Trajectories:
    if not isinstance(trajectories, Trajectories):
        raise InputError("trajectories must be a Trajectories set (core.trajectory).")
    if camera is not None and not isinstance(camera, CameraMotion):
        raise InputError("camera must be a CameraMotion (or None).")
    if not _is_still(camera):
        return trajectories
    if len(trajectories.moving) == 0:
        raise InputError(
            "Nothing moves: draw at least one trajectory that goes somewhere (points only pin the image), "
            "or choose a camera motion."
        )
    if region_mask is not None and not np.asarray(region_mask).any():
        raise InputError("The motion region is empty: paint the part of the image that should move.")
    return trajectories


def check_animation(
    image_uint8: np.ndarray,
    trajectories: object,
    num_frames: object,
    camera: CameraMotion | None,
    region_mask: np.ndarray | None,
    settings: Settings,
) -> tuple[int, int, int, Trajectories, CameraMotion | None]:
    """The checks every engine's animate runs: (height, width, num_frames, trajectories, camera or None for
    a still one); InputError with one sentence for a bad image, frame count, mask or camera, or nothing
    that moves."""
    height, width = _check_image(image_uint8, settings)
    num_frames = _check_num_frames(num_frames, settings)
    trajectories = _check_motion(trajectories, camera, region_mask)
    return height, width, num_frames, trajectories, None if _is_still(camera) else camera


# -- fill ----------------------------------------------------------------------------------------------


def fill_holes(image_uint8: np.ndarray, known: np.ndarray) -> np.ndarray:
    """A smooth fill of the pixels where `known` (H,W bool) is False, from the known ones (push-pull).

    Pull: halve the image repeatedly (cv2.pyrDown) as known-weighted averages, so every coarse pixel
    holds the mean colour of the known pixels under it. Push: from the coarsest level up, each level
    keeps its own colour where it is known and takes the upsampled coarser fill where it is not. The
    result is a membrane-like blend of the surrounding colours that grows smoother with the distance
    to the known pixels: no streaks (unlike Telea inpainting or a replicated border on wide holes) and
    a cost of two image pyramids whatever the hole size.

    Returns:
        (H,W,3) float32 fill in [0,255]; meaningful where `known` is False (smooth, not equal to the
        image, where it is True).
    """
    height, width = known.shape
    weight = known.astype(np.float32)
    levels = [(image_uint8.astype(np.float32) * weight[..., None], weight)]  # premultiplied colour
    while min(levels[-1][1].shape) > 2 and levels[-1][1].min() * _FILL_CONFIDENCE < 1.0:
        premultiplied, weight = levels[-1]
        levels.append((cv2.pyrDown(premultiplied), cv2.pyrDown(weight)))
    premultiplied, weight = levels[-1]
    filled = premultiplied / np.maximum(weight, 1e-6)[..., None]
    for premultiplied, weight in reversed(levels[1:-1]):
        coarse = cv2.pyrUp(filled, dstsize=(weight.shape[1], weight.shape[0]))
        # A coarse pixel with a fair share of known pixels under it counts as known.
        confidence = np.minimum(weight * _FILL_CONFIDENCE, 1.0)[..., None]
        own = premultiplied / np.maximum(weight, 1e-6)[..., None]
        filled = own * confidence + coarse * (1.0 - confidence)
    if len(levels) == 1:
        return filled
    return cv2.pyrUp(filled, dstsize=(width, height))


def _crop_around(mask: np.ndarray) -> tuple[slice, slice]:
    """The bounding box of `mask` grown by half its size (at least 16 px) on each side, in the image."""
    rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    grow_y, grow_x = max(16, (bottom - top) // 2), max(16, (right - left) // 2)
    return (
        slice(max(0, top - grow_y), min(mask.shape[0], bottom + grow_y)),
        slice(max(0, left - grow_x), min(mask.shape[1], right + grow_x)),
    )


@dataclass(frozen=True)
class _Canvas:
    """Frame 0 on a larger canvas with an inpainted margin: image pixel (x, y) is canvas (x + left, y + top)."""

    pixels_uint8: np.ndarray
    left: int
    top: int

    @classmethod
    def around(cls, image_uint8: np.ndarray, sample_min: np.ndarray, sample_max: np.ndarray) -> _Canvas:
        """A canvas reaching every sample position in [sample_min, sample_max] (x, y), capped at one
        image size per side (beyond it the canvas edge is replicated)."""
        height, width = image_uint8.shape[:2]
        # Bilinear sampling reads one pixel beyond a sample, and within half a pixel of the image edge
        # replicating the edge pixel is exactly right.
        left = min(width, max(0, math.ceil(-0.5 - sample_min[0]) + 1))
        top = min(height, max(0, math.ceil(-0.5 - sample_min[1]) + 1))
        right = min(width, max(0, math.ceil(sample_max[0] - (width - 0.5)) + 1))
        bottom = min(height, max(0, math.ceil(sample_max[1] - (height - 0.5)) + 1))
        if left == top == right == bottom == 0:
            return cls(image_uint8, 0, 0)
        padded = cv2.copyMakeBorder(image_uint8, top, bottom, left, right, cv2.BORDER_REPLICATE)
        margin = np.ones(padded.shape[:2], bool)
        margin[top : top + height, left : left + width] = False
        padded[margin] = np.clip(np.rint(fill_holes(padded, ~margin)[margin]), 0, 255).astype(np.uint8)
        return cls(padded, left, top)

    def sample(self, sample_x: np.ndarray, sample_y: np.ndarray) -> np.ndarray:
        """Bilinear samples (H,W,3) uint8 at image coordinates (sample_x, sample_y), each (H,W) float32."""
        return cv2.remap(
            self.pixels_uint8,
            sample_x + np.float32(self.left),
            sample_y + np.float32(self.top),
            cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REPLICATE,
        )


def _area_ratio(backward_px: np.ndarray) -> np.ndarray:
    """det(I + grad b): source area per output pixel of the map q -> q + b(q), (H,W) float32."""
    dbx_dy, dbx_dx = np.gradient(backward_px[..., 0])
    dby_dy, dby_dx = np.gradient(backward_px[..., 1])
    return (1.0 + dbx_dx) * (1.0 + dby_dy) - dbx_dy * dby_dx


def _stretch_weight(backward_px: np.ndarray) -> np.ndarray:
    """(H,W) float32 in [0,1]: 0 where the map keeps area above _AREA_KEEP, 1 below _AREA_FILL."""
    ratio = _area_ratio(backward_px)
    weight = np.clip((_AREA_KEEP - ratio) / (_AREA_KEEP - _AREA_FILL), 0.0, 1.0).astype(np.float32)
    if not weight.any():
        return weight
    box = _crop_around(weight > 0)  # its margin (>= 16 px) holds the feather (3 sigma = 9 px)
    weight[box] = np.maximum(weight[box], cv2.GaussianBlur(weight[box], (0, 0), _FILL_FEATHER_PX))
    return weight


def _spare_requested(weight: np.ndarray, points_px: np.ndarray, radius_px: float) -> None:
    """Scale `weight` (H,W) in place to 0 within `radius_px` of each point (x, y), ramping back to
    full at twice that distance."""
    height, width = weight.shape
    reach = 2.0 * radius_px
    for x, y in points_px:
        rows = slice(max(0, math.floor(y - reach)), min(height, math.ceil(y + reach) + 1))
        cols = slice(max(0, math.floor(x - reach)), min(width, math.ceil(x + reach) + 1))
        if rows.start >= rows.stop or cols.start >= cols.stop:
            continue
        ys, xs = np.ogrid[rows, cols]
        distance = np.sqrt((xs - x) ** 2 + (ys - y) ** 2)
        weight[rows, cols] *= np.clip(distance / radius_px - 1.0, 0.0, 1.0).astype(np.float32)


def _render(
    canvas: _Canvas,
    backward_px: np.ndarray,
    grid_x: np.ndarray,
    grid_y: np.ndarray,
    requested_px: np.ndarray,
    spare_px: float,
):
    """One frame: gather along the map, then fill stretched pixels away from the requested positions
    (M,2). Returns (frame uint8, filled)."""
    height, width = backward_px.shape[:2]
    sample_x = grid_x + backward_px[..., 0]
    sample_y = grid_y + backward_px[..., 1]
    frame = canvas.sample(sample_x, sample_y)
    # Within a pixel of the edge pixels' centres, replicating the edge is as good as any fill.
    outside = (sample_x < -1) | (sample_x > width) | (sample_y < -1) | (sample_y > height)
    stretch = _stretch_weight(backward_px)
    _spare_requested(stretch, requested_px, spare_px)
    if stretch.any():
        # Fill from the pixels that are warped faithfully, around the stretched ones only; blend by
        # the stretch weight.
        box = _crop_around(stretch > 0)
        fill = fill_holes(frame[box], stretch[box] == 0)
        weight = stretch[box][..., None]
        blended = frame[box] + weight * (fill - frame[box])
        frame[box] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    return frame, np.maximum(stretch, outside.astype(np.float32))


def _is_reach(radius_px: object) -> bool:
    """Whether `radius_px` is a usable reach: a positive finite number (core.trajectory rejects the rest
    with an InputError)."""
    return isinstance(radius_px, int | float) and not isinstance(radius_px, bool) and 0 < radius_px < math.inf


def _smallest_reach(radius_px: object, height: int, width: int) -> float:
    """The smallest reach of a track in px: `radius_px`, or core.trajectory's default 0.1 * min side.

    An invalid `radius_px` gives the default here; core.trajectory rejects it with an InputError.
    """
    return float(radius_px) if _is_reach(radius_px) else 0.1 * min(height, width)


def _grid_step(reach_px: float) -> int:
    """Coarse-grid step of the maps: at most half of a track's rigid core (~0.3 reach), at most 8 px.

    With a coarser grid, bilinear upsampling blurs the pinned zone of an anchor on a small image.
    """
    return int(min(8, max(1, math.floor(_GRID_PER_REACH * reach_px))))


# -- public API ----------------------------------------------------------------------------------------


def animate(
    image_uint8: np.ndarray,
    trajectories: Trajectories,
    num_frames: int = DEFAULT_FRAMES,
    *,
    region_mask: np.ndarray | None = None,
    camera: CameraMotion | None = None,
    radius_px: float | None = None,
    progress: ProgressCallback | None = None,
    settings: Settings | None = None,
) -> WarpResult:
    """Animate an image by warping it along trajectories (see the module docstring for the fill).

    Args:
        image_uint8: (H,W,3) uint8 RGB; each side at least 8 px and at most `settings.max_image_side`.
        trajectories: tracks and anchors in normalised coordinates (`core.trajectory.Trajectories`).
            At least one must move unless `camera` moves.
        num_frames: T, 2 <= T <= `settings.max_frames`.
        region_mask: optional (H,W) bool motion brush, True where the tracks may move the picture.
        camera: optional global camera move (see `CAMERA_PRESETS`).
        radius_px: smallest reach of a track in px (default 0.1 * min(H, W); see
            `core.trajectory.dense_displacement`).
        progress: called as progress(frames_done, num_frames) after each frame.
        settings: limits (default `Settings.from_env()`).

    Returns:
        WarpResult with frames (T,H,W,3) uint8 (frame 0 the input exactly), frame-to-frame forward
        flow (T-1,H,W,2) px, requested positions (M,T,2) px and the fill share (T,H,W).

    Raises:
        InputError: a bad image, frame count, mask or camera, or nothing that moves.
    """
    settings = settings or Settings.from_env()
    height, width, num_frames, trajectories, camera = check_animation(
        image_uint8, trajectories, num_frames, camera, region_mask, settings
    )
    tracks_norm = trajectories.tracks_norm(num_frames, (width, height))
    frames, flow, filled = _warp(
        image_uint8, tracks_norm, region_mask, camera, radius_px, progress, with_flow=True
    )
    return WarpResult(frames, flow, tracks_to_px(tracks_norm, height, width), filled)


def _warp(
    image_uint8: np.ndarray,
    tracks_norm: np.ndarray,
    region_mask: np.ndarray | None,
    camera: CameraMotion | None,
    radius_px: float | None,
    progress: ProgressCallback | None,
    *,
    with_flow: bool,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """`animate` on checked arguments: (frames, flow or None without `with_flow`, filled)."""
    height, width = image_uint8.shape[:2]
    num_frames = tracks_norm.shape[1]
    tracks_px = tracks_to_px(tracks_norm, height, width)
    reach_px = _smallest_reach(radius_px, height, width)
    options = {
        "radius_px": radius_px,
        "region_mask": region_mask,
        "camera": camera,
        "grid_step": _grid_step(reach_px),
    }
    backward = backward_flow(tracks_norm, height, width, **options)
    forward = dense_displacement(tracks_norm, height, width, **options) if with_flow else None

    grid_x, grid_y = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    sample_min, sample_max = np.zeros(2), np.array([width - 1.0, height - 1.0])
    for backward_t in backward:
        for axis, grid in enumerate((grid_x, grid_y)):
            sample = backward_t[..., axis] + grid
            sample_min[axis] = min(sample_min[axis], sample.min())
            sample_max[axis] = max(sample_max[axis], sample.max())
    canvas = _Canvas.around(image_uint8, sample_min, sample_max)

    frames = np.empty((num_frames, height, width, 3), np.uint8)
    filled = np.zeros((num_frames, height, width), np.float32)
    flow = np.empty((num_frames - 1, height, width, 2), np.float32) if with_flow else None
    frames[0] = image_uint8
    if progress is not None:
        progress(1, num_frames)
    for t in range(1, num_frames):
        frames[t], filled[t] = _render(
            canvas, backward[t], grid_x, grid_y, tracks_px[:, t], _SPARE_PER_REACH * reach_px
        )
        if with_flow:
            # Frame-to-frame flow on frame t-1's grid: the content at q came from s = q + b_{t-1}(q)
            # in frame 0 and moves on by d_t(s) - d_{t-1}(s).
            flow[t - 1] = warp_field(forward[t] - forward[t - 1], backward[t - 1])
        if progress is not None:
            progress(t + 1, num_frames)
    return frames, flow, filled


def preview_video(
    image_uint8: np.ndarray,
    trajectories: Trajectories,
    num_frames: int = DEFAULT_FRAMES,
    *,
    region_mask: np.ndarray | None = None,
    camera: CameraMotion | None = None,
    radius_px: float | None = None,
    max_side_px: int = PREVIEW_VIDEO_SIDE_PX,
    settings: Settings | None = None,
) -> np.ndarray:
    """A quick look at the clip `animate` makes, cheap enough to show while the user draws.

    The same warp (maps, fill, camera, region) runs on a copy whose longest side is at most
    `max_side_px` (the image shrunk with area averaging, the mask with nearest neighbours, `radius_px`
    scaled), without the flow output, and the frames are enlarged back to the image size (bilinear).
    At SVD's 576x1024 and the default 384 px that is ~7x fewer pixels: a preview, softer than
    `animate`'s frames, which stay the result to keep.

    Args:
        image_uint8, trajectories, num_frames, region_mask, camera, radius_px, settings: as in `animate`
            (region_mask and radius_px at the image's size).
        max_side_px: longest side of the copy the warp runs on (>= 8; an image no larger runs as is).

    Returns:
        (T,H,W,3) uint8; frame 0 is the input exactly.

    Raises:
        InputError: as `animate`, and for a bad `max_side_px`.
    """
    settings = settings or Settings.from_env()
    height, width, num_frames, trajectories, camera = check_animation(
        image_uint8, trajectories, num_frames, camera, region_mask, settings
    )
    if isinstance(max_side_px, bool) or not isinstance(max_side_px, int | np.integer):
        raise InputError(f"max_side_px must be a whole number of pixels, got {max_side_px!r}.")
    if max_side_px < MIN_IMAGE_SIDE_PX:
        raise InputError(f"max_side_px must be at least {MIN_IMAGE_SIDE_PX}, got {max_side_px}.")
    if region_mask is not None and np.shape(region_mask) != (height, width):
        raise InputError(f"The motion region mask must be {height}x{width}, got {np.shape(region_mask)}.")

    scale = min(1.0, max_side_px / max(height, width))
    small_h = max(MIN_IMAGE_SIDE_PX, round(height * scale))
    small_w = max(MIN_IMAGE_SIDE_PX, round(width * scale))
    small = image_uint8
    if (small_h, small_w) != (height, width):
        small = cv2.resize(image_uint8, (small_w, small_h), interpolation=cv2.INTER_AREA)
    if region_mask is not None:
        small_mask = cv2.resize(
            np.asarray(region_mask).astype(np.uint8), (small_w, small_h), interpolation=cv2.INTER_NEAREST
        )
        region_mask = small_mask.astype(bool)
    if _is_reach(radius_px):  # an invalid one is left for core.trajectory's error
        radius_px = radius_px * small_w / width
    tracks_norm = trajectories.tracks_norm(num_frames, (width, height))
    frames_small, _, _ = _warp(small, tracks_norm, region_mask, camera, radius_px, None, with_flow=False)

    frames = np.empty((num_frames, height, width, 3), np.uint8)
    frames[0] = image_uint8
    for t in range(1, num_frames):
        frames[t] = cv2.resize(frames_small[t], (width, height), interpolation=cv2.INTER_LINEAR)
    return frames


def preview_flow(
    image_size: tuple[int, int],
    trajectories: Trajectories,
    num_frames: int = DEFAULT_FRAMES,
    *,
    region_mask: np.ndarray | None = None,
    camera: CameraMotion | None = None,
    radius_px: float | None = None,
    max_magnitude: float | None = None,
) -> np.ndarray:
    """Colour-wheel picture of the total displacement (frame 0 -> last frame) `animate` would apply.

    Cheap enough to call after every canvas edit: the field is computed on a copy at most 192 px wide
    (it is smooth) and upsampled. Nothing drawn (or nothing that moves) gives a white image; no error.

    Args:
        image_size: (width, height) in px of the image the trajectories are drawn on.
        trajectories, num_frames, region_mask, camera, radius_px: as in `animate` (region_mask at
            image_size).
        max_magnitude: displacement in px (at image_size) shown fully saturated; default the largest.

    Returns:
        (height, width, 3) uint8 RGB, Middlebury colours (`core.flow.flow_to_color`): white = still.
    """
    if not isinstance(image_size, tuple | list) or len(image_size) != 2:
        raise InputError(f"image_size must be (width, height) in px, got {image_size!r}.")
    width, height = image_size
    if not all(isinstance(v, int | np.integer) and not isinstance(v, bool) and v >= 1 for v in image_size):
        raise InputError(f"image_size must be (width, height) in whole pixels, got {image_size!r}.")
    if not isinstance(trajectories, Trajectories):
        raise InputError("trajectories must be a Trajectories set (core.trajectory).")
    if len(trajectories.moving) == 0 and _is_still(camera):
        return np.full((height, width, 3), 255, np.uint8)
    if region_mask is not None:
        region_mask = np.asarray(region_mask)
        if region_mask.shape != (height, width):
            raise InputError(f"The motion region mask must be {height}x{width}, got {region_mask.shape}.")

    scale = min(1.0, _PREVIEW_SIDE_PX / max(height, width))
    small_h, small_w = max(1, round(height * scale)), max(1, round(width * scale))
    small_mask = None
    if region_mask is not None:
        small_mask = cv2.resize(
            region_mask.astype(np.uint8), (small_w, small_h), interpolation=cv2.INTER_NEAREST
        )
        small_mask = small_mask.astype(bool)
    tracks_norm = trajectories.tracks_norm(num_frames, (width, height))
    small_radius = None if radius_px is None else radius_px * small_w / width
    total = dense_displacement(
        tracks_norm,
        small_h,
        small_w,
        radius_px=small_radius,
        region_mask=small_mask,
        camera=None if _is_still(camera) else camera,
        grid_step=4,
    )[-1]
    # Colour the small field (vectors in px of the full image) and enlarge the picture: the colours
    # vary as smoothly as the field, and colouring is the costly step at full size.
    total_px = total * np.array([width / small_w, height / small_h], np.float32)
    colours = flow_to_color(total_px, max_magnitude)
    return cv2.resize(colours, (int(width), int(height)), interpolation=cv2.INTER_LINEAR)
