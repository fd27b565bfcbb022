"""The drawing canvas's data: streamlit-drawable-canvas / Fabric.js objects <-> trajectories.

Where canvas code lives, and why
    Everything that knows the Fabric object format lives here: reading `json_data` into trajectories
    (`from_canvas_json`, and `parse_objects` object by object with clipping detection), writing
    trajectories back as Fabric objects (`objects_from_trajectories`), the Fabric version those objects
    carry, how drawn objects look, and rasterising motion-brush strokes (`mask_from_strokes`). It is
    pure data handling (json in, numpy out), so it belongs in core, is tested without Streamlit, and
    the reader and the writer, which must agree to the last detail of Fabric's placement rules, sit
    side by side. `apps/drag/ui_canvas.py` keeps only the widget: mounting the Streamlit component
    (core imports no UI library), the tool names and help text, and the on-screen canvas size.

Objects on the canvas map one to one, in order, to trajectories: `parse_objects` reads each object on
its own, so one unreadable object is reported and skipped without shifting the others, and deleting
trajectory i means dropping object i. `objects_from_trajectories` goes the other way (a loaded
trajectory file, or the canvas rebuilt at another size).

Degenerate input (the contract)
    - Malformed canvas JSON, or a canvas object that is not a trajectory (rect, text, group, ...):
      `InputError`; `parse_objects` reports such an object and keeps the others.
    - A zero-length path (a freedraw click, a line dragged nowhere) is an anchor.
    - An empty canvas (`json_data` None or without objects) gives an empty `Trajectories`; the caller
      decides whether that is an error.

Reading streamlit-drawable-canvas `json_data`
    The installed component (0.13.0) inlines Fabric.js 7.4.0 and returns `canvas.toObject()`:
    `{"version": "7.4.0", "objects": [...]}` with capitalised types ("Line", "Circle", "Path",
    "Polygon"); 0.9.x used Fabric 4.4 and lower-case types. Both are read, type names case-insensitively.
    What follows was checked against the Fabric 7.4 code in the component's bundle and Fabric 4's
    Polyline/Path source, and the fixtures in tests/fixtures/canvas/ were written by that bundle run in
    node (tests/fixtures/canvas/generate_fixtures.mjs) with Fabric's own rendered points beside them:
    - Placement is the same in both versions. An object's centre c is (left, top) moved from its origin
      (originX/originY: left/top -0.5, center 0, right/bottom +0.5) to the centre of its box, rotated by
      `angle` about (left, top): c = (left, top) + R(angle) ((0 - ox) W', (0 - oy) H'), where the box
      includes the stroke: W' = (width + strokeWidth) scaleX (strokeUniform: width scaleX + strokeWidth;
      with skew, the bounding box of the skewed box). A point q of the object's own frame is drawn at
      c + R(angle) diag(scaleX, scaleY) (flips negate) skewX skewY q. (The simpler reading "circle
      centre = left + radius" misses the stroke: the component's point tool itself shifts `left` by
      radius + strokeWidth / 2 so that the centre lands on the click.)
    - Own-frame points: `line` serialises x1, y1, x2, y2 already relative to its centre (sign gives the
      drawing direction); a `circle` is its centre; `path` command coordinates are absolute canvas
      coordinates *as drawn*, and the object draws them at q = p - pathOffset, where pathOffset (not
      serialised) is the centre of the path's bounding box. A freshly drawn path has its centre at
      pathOffset (Fabric 4 writes left = bbox.left - strokeWidth/2 with origin left/top, Fabric 7
      writes the bbox centre with origin center), so untouched paths map to themselves and moved,
      scaled, rotated or flipped ones follow their transform. Fabric 7.4 bounds a Q segment by the
      cubic with both control points at the Q control point; we do the same, so pathOffset matches
      exactly (checked for 7.4 only; for a scaled sharp stroke the exact quadratic bounds would put it
      0.6 px off, see tests/fixtures/canvas/transformed.json).
      `polygon`/`polyline` points work the same way (pathOffset = centre of the points' bbox); a polygon
      is closed, so its trajectory returns to the first vertex.
    - Path commands are absolute M, L, Q, C, Z (Fabric simplifies everything else before saving). Q and
      C segments are sampled at `_CURVE_SAMPLES` points each; every command's end point is kept exactly.
      A path with several M commands is read as one polyline in drawing order.
    - Canvas coordinates are normalised by the canvas size, or by `image_rect` (left, top, width,
      height in canvas px) when the background image does not fill the canvas
      (`background_image_fit="contain"`: take them from `CanvasResult.background_fit`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from core.checks import check_size
from core.errors import InputError
from core.trajectory.model import Trajectories, Trajectory

FABRIC_VERSION = "7.4.0"  # what streamlit-drawable-canvas 0.13 inlines and writes into its JSON
# How trajectories are drawn, and written back by `objects_from_trajectories`.
TRACK_COLOUR = "#ff2d55"
ANCHOR_COLOUR = "#00b7ff"
STROKE_WIDTH_PX = 4
ANCHOR_RADIUS_PX = 4

# Points per Q / C segment of a canvas path (the end point included). Freedraw writes one short Q per
# mouse event, so a few samples already follow the curve to well under a pixel.
_CURVE_SAMPLES = 8
_ORIGINS = {"left": -0.5, "top": -0.5, "center": 0.0, "right": 0.5, "bottom": 0.5}
_POINT_TYPES = {"circle", "ellipse"}
_TRAJECTORY_TYPES = {"line", "path", "polyline", "polygon", *_POINT_TYPES}


def from_canvas_json(
    json_data: dict | None,
    canvas_size: tuple[int, int],
    image_rect: tuple[float, float, float, float] | None = None,
) -> Trajectories:
    """Trajectories from streamlit-drawable-canvas `json_data` (see the module docstring).

    Args:
        json_data: `CanvasResult.json_data`: {"version": ..., "objects": [...]}, or None.
        canvas_size: (width, height) of the canvas in px (the `st_canvas` width and height).
        image_rect: (left, top, width, height) of the image inside the canvas in canvas px; None means
            the image fills the canvas.

    Returns:
        One trajectory per line, path, polyline or polygon object and one anchor per circle, in drawing
        order; empty when nothing is drawn.
    """
    canvas_w, canvas_h = check_size(canvas_size, "canvas_size")
    if image_rect is None:
        rect_left, rect_top, rect_w, rect_h = 0.0, 0.0, canvas_w, canvas_h
    else:
        if not isinstance(image_rect, Sequence) or len(image_rect) != 4:
            raise InputError(f"image_rect must be (left, top, width, height), got {image_rect!r}.")
        rect_left, rect_top = _check_offset(image_rect[:2])
        rect_w, rect_h = check_size(image_rect[2:], "image_rect's width and height")
    if json_data is None:
        return Trajectories()
    if not isinstance(json_data, dict):
        raise InputError("The canvas data is not a drawing (expected a dict with 'objects').")
    objects = json_data.get("objects", [])
    if not isinstance(objects, list):
        raise InputError("The canvas data's 'objects' is not a list.")
    default_origin = _default_origin(json_data.get("version"))
    items = []
    for index, obj in enumerate(objects):
        canvas_px = _object_canvas_points(obj, index, default_origin)
        points_norm = (canvas_px - [rect_left, rect_top]) / [rect_w, rect_h]
        items.append(Trajectory(points_norm))
    return Trajectories(tuple(items))


def _check_offset(offset: Sequence[Any]) -> tuple[float, float]:
    try:
        left, top = float(offset[0]), float(offset[1])
    except (TypeError, ValueError) as err:
        raise InputError(f"image_rect's left and top must be numbers, got {offset!r}.") from err
    if not (math.isfinite(left) and math.isfinite(top)):
        raise InputError(f"image_rect's left and top must be finite, got {offset!r}.")
    return left, top


def _default_origin(version: Any) -> str:
    """Fabric's default origin, used only when an object omits it: "center" since Fabric 6, else "left"."""
    try:
        major = int(str(version).split(".")[0])
    except ValueError:
        return "left"
    return "center" if major >= 6 else "left"


def _number(obj: dict, key: str, default: float, index: int) -> float:
    value = obj.get(key, default)
    if value is None:
        value = default
    if isinstance(value, bool):
        value = float(value)
    if not isinstance(value, int | float) or not math.isfinite(value):
        raise InputError(f"Canvas object {index} has an invalid {key!r}: {value!r}.")
    return float(value)


def _origin(value: Any, index: int) -> float:
    if isinstance(value, str) and value in _ORIGINS:
        return _ORIGINS[value]
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value) - 0.5  # Fabric 7 also takes a fraction of the box, 0 = left/top
    raise InputError(f"Canvas object {index} has an unknown origin {value!r}.")


def _object_canvas_points(obj: Any, index: int, default_origin: str) -> np.ndarray:
    """(K,2) canvas-pixel points of one Fabric object, as Fabric renders them."""
    if not isinstance(obj, dict):
        raise InputError(f"Canvas object {index} is not an object.")
    kind = str(obj.get("type", "")).lower()
    if kind not in _TRAJECTORY_TYPES:
        raise InputError(
            f"Canvas object {index} is a {obj.get('type')!r}, which is not a trajectory: draw with the "
            "line, freedraw, polygon, point or circle tool."
        )
    if kind == "line":
        local = np.array(
            [[_number(obj, k, 0.0, index) for k in pair] for pair in (("x1", "y1"), ("x2", "y2"))]
        )
    elif kind in _POINT_TYPES:
        local = np.zeros((1, 2))
    elif kind == "path":
        drawn, bounds = _path_points(obj.get("path"), index)
        local = drawn - (bounds.min(axis=0) + bounds.max(axis=0)) / 2
    else:  # polyline, polygon
        try:
            drawn = np.array([[float(p["x"]), float(p["y"])] for p in obj.get("points") or []])
        except (TypeError, KeyError, ValueError) as err:
            raise InputError(f"Canvas object {index} has malformed polygon points.") from err
        if len(drawn) == 0 or not np.all(np.isfinite(drawn)):
            raise InputError(f"Canvas object {index} has no valid polygon points.")
        local = drawn - (drawn.min(axis=0) + drawn.max(axis=0)) / 2
        if kind == "polygon":
            local = np.concatenate([local, local[:1]])
    linear, centre = _object_transform(obj, index, default_origin)
    return local @ linear.T + centre


def _object_transform(obj: dict, index: int, default_origin: str) -> tuple[np.ndarray, np.ndarray]:
    """(2x2 linear part, centre) of Fabric's calcOwnMatrix for a serialised object."""
    scale_x = _number(obj, "scaleX", 1.0, index) * (-1.0 if obj.get("flipX") else 1.0)
    scale_y = _number(obj, "scaleY", 1.0, index) * (-1.0 if obj.get("flipY") else 1.0)
    skew_x = math.tan(math.radians(_number(obj, "skewX", 0.0, index)))
    skew_y = math.tan(math.radians(_number(obj, "skewY", 0.0, index)))
    angle = math.radians(_number(obj, "angle", 0.0, index))
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    shape = (
        np.diag([scale_x, scale_y])
        @ np.array([[1.0, skew_x], [0.0, 1.0]])
        @ np.array([[1.0, 0.0], [skew_y, 1.0]])
    )

    # The box Fabric positions by its origin includes the stroke (see the module docstring).
    stroke = _number(obj, "strokeWidth", 1.0, index)
    uniform = bool(obj.get("strokeUniform"))
    box_w = _number(obj, "width", 0.0, index) + (0.0 if uniform else stroke)
    box_h = _number(obj, "height", 0.0, index) + (0.0 if uniform else stroke)
    if skew_x == 0.0 and skew_y == 0.0:
        # Fabric multiplies by the signed scale here (flips are not part of it).
        dims = np.array(
            [box_w * _number(obj, "scaleX", 1.0, index), box_h * _number(obj, "scaleY", 1.0, index)]
        )
    else:
        corners = np.array([[-1, -1], [1, -1], [-1, 1], [1, 1]]) * [box_w / 2, box_h / 2] @ shape.T
        dims = corners.max(axis=0) - corners.min(axis=0)
    if uniform:
        dims = dims + stroke
    default_y = "top" if default_origin == "left" else default_origin
    origin = np.array(
        [_origin(obj.get("originX", default_origin), index), _origin(obj.get("originY", default_y), index)]
    )
    position = np.array([_number(obj, "left", 0.0, index), _number(obj, "top", 0.0, index)])
    centre = position + rotation @ (-origin * dims)
    return rotation @ shape, centre


def _path_points(commands: Any, index: int) -> tuple[np.ndarray, np.ndarray]:
    """Polyline points of absolute path commands, and the points Fabric bounds the path with."""
    if not isinstance(commands, list) or not commands:
        raise InputError(f"Canvas object {index} is a path without commands.")
    points: list[np.ndarray] = []
    bounds: list[np.ndarray] = []
    current = start = None
    for command in commands:
        if not isinstance(command, list | tuple) or not command or not isinstance(command[0], str):
            raise InputError(f"Canvas object {index} has a malformed path command {command!r}.")
        op, args = command[0].upper(), command[1:]
        expected = {"M": 2, "L": 2, "Q": 4, "C": 6, "Z": 0}.get(op)
        if expected is None or len(args) != expected:
            raise InputError(f"Canvas object {index} has an unsupported path command {command!r}.")
        try:
            values = np.array(args, dtype=np.float64).reshape(-1, 2)
        except (TypeError, ValueError) as err:
            raise InputError(f"Canvas object {index} has a non-numeric path command {command!r}.") from err
        if not np.all(np.isfinite(values)):
            raise InputError(f"Canvas object {index} has NaN or infinite path coordinates.")
        if op == "Z":
            if start is None:
                continue
            values = start[None, :]
            op = "L"
        if op == "M" or current is None:
            current = start = values[-1]
            points.append(current[None, :])
            bounds.append(current[None, :])
            continue
        if op == "L":
            segment = values
            bounds.append(values)
        else:
            # Fabric bounds a Q as the cubic with both control points at the Q control point.
            controls = np.concatenate([values[:1], values]) if op == "Q" else values
            bounds.append(_cubic_extrema(current, *controls))
            segment = _sample_curve(current, values)
        points.append(segment)
        current = values[-1]
    return np.concatenate(points), np.concatenate(bounds)


def _sample_curve(start: np.ndarray, values: np.ndarray) -> np.ndarray:
    """`_CURVE_SAMPLES` points along a quadratic (1 control) or cubic (2 controls) Bezier, end exact."""
    t = np.linspace(0.0, 1.0, _CURVE_SAMPLES + 1)[1:, None]
    u = 1.0 - t
    if len(values) == 2:
        c, end = values
        out = u * u * start + 2 * u * t * c + t * t * end
    else:
        c1, c2, end = values
        out = u**3 * start + 3 * u * u * t * c1 + 3 * u * t * t * c2 + t**3 * end
    out[-1] = end
    return out


def _cubic_extrema(p0: np.ndarray, p1: np.ndarray, p2: np.ndarray, p3: np.ndarray) -> np.ndarray:
    """End points and interior axis extrema of a cubic Bezier (what bounds its bounding box)."""
    found = [p0, p3]
    for axis in range(2):
        a0, a1, a2, a3 = p0[axis], p1[axis], p2[axis], p3[axis]
        # Derivative / 3 = qa t^2 + qb t + qc.
        qa = -a0 + 3 * a1 - 3 * a2 + a3
        qb = 2 * (a0 - 2 * a1 + a2)
        qc = a1 - a0
        if abs(qa) < 1e-12:
            roots = [-qc / qb] if abs(qb) > 1e-12 else []
        else:
            disc = qb * qb - 4 * qa * qc
            roots = [] if disc < 0 else [(-qb + s * math.sqrt(disc)) / (2 * qa) for s in (1.0, -1.0)]
        for t in roots:
            if 0.0 < t < 1.0:
                u = 1.0 - t
                found.append(u**3 * p0 + 3 * u * u * t * p1 + 3 * u * t * t * p2 + t**3 * p3)
    return np.array(found)


@dataclass(frozen=True)
class ParsedCanvas:
    """What a canvas drawing holds.

    Attributes:
        trajectories: the readable objects' trajectories, clipped to the image.
        object_index: for each trajectory, the index of its canvas object.
        problems: one sentence per object that could not be read (it is left out).
        clipped: indices (into `trajectories`) of the ones that left the image and were clipped to it.
    """

    trajectories: Trajectories
    object_index: tuple[int, ...]
    problems: tuple[str, ...]
    clipped: tuple[int, ...]


def canvas_objects(json_data: dict | None) -> list[dict]:
    """The object list of a canvas result's `json_data` ([] for None or a drawing without objects)."""
    if not isinstance(json_data, dict) or not isinstance(json_data.get("objects"), list):
        return []
    return list(json_data["objects"])


def parse_objects(objects: list[dict], canvas_size: tuple[int, int]) -> ParsedCanvas:
    """Trajectories of canvas objects drawn on a canvas of `canvas_size` (width, height) px.

    Each object is read by `from_canvas_json`. Clipping is detected by reading the object
    a second time against a rectangle three times the canvas size centred on it: a point outside the
    middle third lies outside the image.
    """
    width, height = canvas_size
    wide_rect = (-width, -height, 3 * width, 3 * height)
    items: list[Trajectory] = []
    index: list[int] = []
    problems: list[str] = []
    clipped: list[int] = []
    for i, obj in enumerate(objects):
        drawing = {"version": FABRIC_VERSION, "objects": [obj]}
        try:
            (trajectory,) = from_canvas_json(drawing, canvas_size).items
            (wide,) = from_canvas_json(drawing, canvas_size, image_rect=wide_rect).items
        except InputError as err:
            problems.append(f"Shape {i + 1} was left out: {err}")
            continue
        unclipped = wide.points_norm * 3.0 - 1.0
        if np.any(unclipped < -1e-9) or np.any(unclipped > 1.0 + 1e-9):
            clipped.append(len(items))
        items.append(trajectory)
        index.append(i)
    return ParsedCanvas(Trajectories(tuple(items)), tuple(index), tuple(problems), tuple(clipped))


def objects_from_trajectories(trajectories: Trajectories, canvas_size: tuple[int, int]) -> list[dict]:
    """Fabric objects that draw `trajectories` on a canvas of `canvas_size` (width, height) px.

    A moving trajectory becomes a Polyline and an anchor a Circle, both placed by their centre (origin
    "center"), which is where `from_canvas_json` reads them back: the round trip is exact up to float
    rounding.
    """
    scale = np.array(canvas_size, dtype=np.float64)
    objects = []
    for trajectory in trajectories:
        points_px = trajectory.points_norm * scale
        if trajectory.is_anchor:
            x, y = points_px[0]
            objects.append(_circle(float(x), float(y)))
            continue
        low, high = points_px.min(axis=0), points_px.max(axis=0)
        centre = (low + high) / 2
        objects.append(
            {
                "type": "Polyline",
                "version": FABRIC_VERSION,
                "originX": "center",
                "originY": "center",
                "left": float(centre[0]),
                "top": float(centre[1]),
                "width": float(high[0] - low[0]),
                "height": float(high[1] - low[1]),
                "points": [{"x": float(x), "y": float(y)} for x, y in points_px],
                "fill": "rgba(0, 0, 0, 0)",
                "stroke": TRACK_COLOUR,
                "strokeWidth": STROKE_WIDTH_PX,
                "strokeLineCap": "round",
                "strokeLineJoin": "round",
            }
        )
    return objects


def _circle(x: float, y: float) -> dict:
    return {
        "type": "Circle",
        "version": FABRIC_VERSION,
        "originX": "center",
        "originY": "center",
        "left": x,
        "top": y,
        "radius": ANCHOR_RADIUS_PX,
        "width": 2 * ANCHOR_RADIUS_PX,
        "height": 2 * ANCHOR_RADIUS_PX,
        "fill": "rgba(0, 0, 0, 0)",
        "stroke": ANCHOR_COLOUR,
        "strokeWidth": STROKE_WIDTH_PX,
    }


def mask_from_strokes(
    objects: list[dict], canvas_size: tuple[int, int], size_hw: tuple[int, int]
) -> np.ndarray | None:
    """Motion-brush mask (H,W) bool at `size_hw`: the brush strokes drawn on a canvas of `canvas_size`.

    Each stroke is rasterised along its path with its own stroke width (scaled to the output size); a
    single click paints a disc. Returns None when nothing readable is painted.
    """
    parsed = parse_objects(objects, canvas_size)
    if not len(parsed.trajectories):
        return None
    height, width = size_hw
    scale = np.array([width, height], dtype=np.float64)
    px_per_canvas_px = width / canvas_size[0]
    mask = np.zeros((height, width), np.uint8)
    for trajectory, i in zip(parsed.trajectories, parsed.object_index):
        obj = objects[i]
        stroke_px = float(obj.get("strokeWidth") or 1) * abs(float(obj.get("scaleX") or 1)) * px_per_canvas_px
        points = np.round(trajectory.points_norm * scale - 0.5).astype(np.int32)
        # Wider than twice the picture covers all of it; OpenCV refuses lines over 32767 px.
        thickness = min(max(1, round(stroke_px)), 2 * max(height, width))
        cv2.polylines(mask, [points], isClosed=False, color=1, thickness=thickness, lineType=cv2.LINE_8)
        cv2.circle(mask, tuple(int(v) for v in points[0]), max(1, thickness // 2), 1, thickness=-1)
    return mask.astype(bool)
