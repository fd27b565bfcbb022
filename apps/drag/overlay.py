"""Pictures of the trajectories as numbered arrows over the image (beside the drag app's canvas, and the
first panel of the job's side-by-side video), and of the objects the drags move, tinted in their colours."""

from __future__ import annotations

import cv2
import numpy as np

from core.engines.objects import ObjectLayer
from core.trajectory import Trajectories

# Distinct, bright colours (RGB) so neighbouring arrows and their numbers in the list match up.
PALETTE = (
    (255, 45, 85),
    (255, 204, 0),
    (52, 199, 89),
    (175, 82, 222),
    (255, 149, 0),
    (90, 200, 250),
    (255, 255, 255),
    (0, 122, 255),
)
ANCHOR_RGB = (0, 183, 255)
OBJECT_TINT = 0.45  # share of the track colour in an object's pixels


def colour_of(index: int) -> tuple[int, int, int]:
    """RGB colour of trajectory `index` in the overlay (and in the app's list)."""
    return PALETTE[index % len(PALETTE)]


def with_border(image_uint8: np.ndarray, width_px: int = 1, grey: int = 190) -> np.ndarray:
    """The image (H,W,3) uint8 framed by a grey border (a white flow preview would vanish on the page)."""
    pad = ((width_px, width_px), (width_px, width_px), (0, 0))
    return np.pad(image_uint8, pad, mode="constant", constant_values=grey)


def draw_trajectory_overlay(image_uint8: np.ndarray, trajectories: Trajectories) -> np.ndarray:
    """The image (H,W,3) uint8 with each trajectory drawn as a numbered arrow along its path.

    Moving trajectories are polylines ending in an arrow head at their last point, numbered at their
    start (1-based, the app's list order); anchors are rings with a cross. Lines scale with the image.
    Returns a new (H,W,3) uint8 array.
    """
    out = np.ascontiguousarray(image_uint8.copy())
    height, width = out.shape[:2]
    thickness = max(1, round(min(height, width) / 170))
    scale = np.array([width, height], dtype=np.float64)
    font_scale = max(0.4, min(height, width) / 500)
    for i, trajectory in enumerate(trajectories):
        points = np.round(trajectory.points_norm * scale - 0.5).astype(np.int32)
        start = tuple(int(v) for v in points[0])
        if trajectory.is_anchor:
            radius = 3 * thickness + 2
            cv2.circle(out, start, radius, ANCHOR_RGB, thickness, cv2.LINE_AA)
            cv2.drawMarker(out, start, ANCHOR_RGB, cv2.MARKER_CROSS, 2 * radius, thickness, cv2.LINE_AA)
            colour = ANCHOR_RGB
        else:
            colour = colour_of(i)
            cv2.polylines(out, [points], False, colour, thickness, cv2.LINE_AA)
            _arrow_head(out, trajectory.points_norm * scale - 0.5, colour, thickness)
        label_at = (start[0] + 2 * thickness + 2, start[1] - 2 * thickness - 2)
        cv2.putText(out, str(i + 1), label_at, cv2.FONT_HERSHEY_SIMPLEX, font_scale, (0, 0, 0), thickness + 2)
        cv2.putText(out, str(i + 1), label_at, cv2.FONT_HERSHEY_SIMPLEX, font_scale, colour, thickness)
    return out


def _arrow_head(
    image: np.ndarray, points_px: np.ndarray, colour: tuple[int, int, int], thickness: int
) -> None:
    """An arrow head at the last point, pointing along the path's last stretch (not its last tiny step)."""
    tip = points_px[-1]
    head_px = 6.0 * thickness + 6.0
    # Walk back along the path until the direction is measured over about one head length.
    base = points_px[0]
    for point in points_px[-2::-1]:
        if np.linalg.norm(tip - point) >= head_px:
            base = point
            break
    direction = tip - base
    length = float(np.linalg.norm(direction))
    if length == 0.0:
        return
    direction /= length
    normal = np.array([-direction[1], direction[0]])
    back = tip - direction * head_px
    corners = np.array([tip, back + normal * head_px * 0.5, back - normal * head_px * 0.5])
    cv2.fillPoly(image, [np.round(corners).astype(np.int32)], colour, cv2.LINE_AA)


def draw_object_overlay(image_uint8: np.ndarray, layers: list[ObjectLayer]) -> np.ndarray:
    """The image (H,W,3) uint8 with each object tinted in the colour of its first drag (the list's and the
    arrows' colour) and outlined in it. Returns a new (H,W,3) uint8 array."""
    out = image_uint8.astype(np.float32)
    outlines = []
    for layer in layers:
        colour = np.array(colour_of(layer.tracks[0]), np.float32)
        out[layer.mask] += OBJECT_TINT * (colour - out[layer.mask])
        contours, _ = cv2.findContours(
            layer.mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
        )
        outlines.append((contours, tuple(int(c) for c in colour)))
    out = np.ascontiguousarray(np.clip(np.rint(out), 0, 255).astype(np.uint8))
    thickness = max(1, round(min(out.shape[:2]) / 256))
    for contours, colour in outlines:
        cv2.drawContours(out, contours, -1, colour, thickness, cv2.LINE_AA)
    return out
