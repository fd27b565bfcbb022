"""User trajectories: data model, parsing (canvas JSON, clicks), resampling to frames, flow maps.

Coordinates
    A trajectory is a polyline of points in normalised image coordinates (`points_norm`, float64 in
    [0, 1]): x to the right, y down, (0, 0) the top-left corner of the image and (1, 1) its bottom-right
    corner (outer edges of the corner pixels). In an image W px wide, pixel i covers [i, i+1) in those
    units times W, so the flow maps below, which use pixel-centre coordinates like cv2.remap, place a
    point at x_px = x_norm * W - 0.5. A trajectory of one point, or whose points all coincide, is a
    static anchor: the image is pinned there.

Degenerate input (the contract)
    - NaN or infinite coordinates, a non-positive canvas or image size, malformed canvas JSON, a canvas
      object that is not a trajectory (rect, text, group, ...): `InputError`.
    - Points outside the image are clipped to [0, 1]: a stroke that leaves the picture ends at its edge.
    - A zero-length path (a freedraw click, a line dragged nowhere, repeated clicks on one pixel) is an
      anchor.
    - An empty canvas (`json_data` None or without objects) gives an empty `Trajectories`; the caller
      decides whether that is an error. `from_clicks` with no clicks raises `InputError`.

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

import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import cv2
import numpy as np
from scipy.interpolate import PchipInterpolator
from scipy.ndimage import map_coordinates

from core.errors import InputError

JSON_FORMAT = "kinema.trajectories"
JSON_VERSION = 1

# Points per Q / C segment of a canvas path (the end point included). Freedraw writes one short Q per
# mouse event, so a few samples already follow the curve to well under a pixel.
_CURVE_SAMPLES = 8
# Segments shorter than this (in the arc-length metric) carry no arc length and are dropped.
_MIN_SEGMENT = 1e-9
_ORIGINS = {"left": -0.5, "top": -0.5, "center": 0.0, "right": 0.5, "bottom": 0.5}
_POINT_TYPES = {"circle", "ellipse"}
_TRAJECTORY_TYPES = {"line", "path", "polyline", "polygon", *_POINT_TYPES}


# ----------------------------------------------------------------------------------------------
# Data model
# ----------------------------------------------------------------------------------------------


def _as_points(points: Any, what: str) -> np.ndarray:
    """(K,2) float64 copy of `points`; InputError when not finite numbers of that shape."""
    try:
        array = np.array(points, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise InputError(f"{what} must be a list of [x, y] number pairs.") from err
    if array.ndim == 1 and array.size == 2:
        array = array[None, :]
    if array.ndim != 2 or array.shape[1] != 2 or array.shape[0] == 0:
        raise InputError(f"{what} must be a non-empty list of [x, y] pairs, got shape {array.shape}.")
    if not np.all(np.isfinite(array)):
        raise InputError(f"{what} contains NaN or infinite coordinates; draw the trajectory again.")
    return array


@dataclass(frozen=True, eq=False)
class Trajectory:
    """One polyline in normalised image coordinates; a single point (or zero length) is an anchor.

    Attributes:
        points_norm: (K,2) float64 in [0,1], (x, y), x right and y down, K >= 1. Construction clips
            points outside the image to [0,1] and raises InputError on NaN/inf; the array is read-only.
    """

    points_norm: np.ndarray

    def __post_init__(self) -> None:
        points = np.clip(_as_points(self.points_norm, "A trajectory"), 0.0, 1.0)
        points.setflags(write=False)
        object.__setattr__(self, "points_norm", points)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Trajectory) and np.array_equal(self.points_norm, other.points_norm)

    def __hash__(self) -> int:
        return hash(self.points_norm.tobytes())

    def length(self, image_size: tuple[int, int] | None = None) -> float:
        """Arc length: in pixels of an image of `image_size` (width, height), else in normalised units."""
        deltas = np.diff(self.points_norm, axis=0) * _metric(image_size)
        return float(np.linalg.norm(deltas, axis=1).sum())

    @property
    def is_anchor(self) -> bool:
        """True when the trajectory does not move (one point, or all points equal)."""
        return bool(np.all(self.points_norm == self.points_norm[0]))

    def resample(self, num_frames: int, image_size: tuple[int, int] | None = None) -> np.ndarray:
        """Positions at `num_frames` frames, evenly spaced in arc length along a PCHIP curve.

        The curve interpolates the polyline's vertices with a shape-preserving cubic (scipy
        PchipInterpolator) over cumulative arc length s, one interpolant per coordinate: between two
        vertices each coordinate stays between the vertices' values and is monotone, so the curve
        neither overshoots nor backtracks, and frame positions advance monotonically along the drawn
        path. Frame 0 is the first point and the last frame the last point, exactly. An anchor (or a
        zero-length path) stays put.

        Args:
            num_frames: N >= 1.
            image_size: (width, height) in px to measure arc length on screen, so the speed is uniform
                in pixels whatever the aspect ratio; None measures it in normalised units.

        Returns:
            (N,2) float64 in [0,1].
        """
        return resample_polyline(self.points_norm, num_frames, image_size)


@dataclass(frozen=True)
class Trajectories:
    """An ordered set of trajectories (tracks and anchors) for one image.

    Build with `from_canvas_json`, `from_clicks` (one trajectory) or `Trajectories.from_json`.
    """

    items: tuple[Trajectory, ...] = ()

    def __post_init__(self) -> None:
        items = tuple(self.items)
        if not all(isinstance(item, Trajectory) for item in items):
            raise InputError("Trajectories holds Trajectory objects only.")
        object.__setattr__(self, "items", items)

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[Trajectory]:
        return iter(self.items)

    def __getitem__(self, index: int) -> Trajectory:
        return self.items[index]

    @property
    def anchors(self) -> Trajectories:
        return Trajectories(tuple(t for t in self.items if t.is_anchor))

    @property
    def moving(self) -> Trajectories:
        return Trajectories(tuple(t for t in self.items if not t.is_anchor))

    def tracks_norm(self, num_frames: int, image_size: tuple[int, int] | None = None) -> np.ndarray:
        """Every trajectory resampled to `num_frames` (see `Trajectory.resample`).

        Returns:
            (M,N,2) float64 in [0,1]; (0,N,2) for an empty set.
        """
        _check_num_frames(num_frames)
        if not self.items:
            return np.zeros((0, num_frames, 2))
        return np.stack([t.resample(num_frames, image_size) for t in self.items])

    def to_json(self) -> str:
        """Serialise as `{"format": "kinema.trajectories", "version": 1, "trajectories": [...]}`."""
        payload = {
            "format": JSON_FORMAT,
            "version": JSON_VERSION,
            "trajectories": [{"points_norm": t.points_norm.tolist()} for t in self.items],
        }
        return json.dumps(payload)

    @classmethod
    def from_json(cls, text: str | bytes) -> Trajectories:
        """Inverse of `to_json` (exact round trip). InputError on anything else or a newer version."""
        try:
            payload = json.loads(text)
        except (TypeError, ValueError) as err:
            raise InputError("The trajectory file is not valid JSON.") from err
        if not isinstance(payload, dict) or payload.get("format") != JSON_FORMAT:
            raise InputError(f"The file is not a trajectory file (expected format {JSON_FORMAT!r}).")
        version = payload.get("version")
        if not isinstance(version, int) or version < 1:
            raise InputError(f"The trajectory file has no valid version (got {version!r}).")
        if version > JSON_VERSION:
            raise InputError(
                f"The trajectory file has version {version}; this Kinema reads up to {JSON_VERSION}. "
                "Update Kinema to open it."
            )
        entries = payload.get("trajectories")
        if not isinstance(entries, list):
            raise InputError("The trajectory file has no 'trajectories' list.")
        items = []
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict) or "points_norm" not in entry:
                raise InputError(f"Trajectory {i} in the file has no 'points_norm'.")
            items.append(Trajectory(_as_points(entry["points_norm"], f"Trajectory {i} in the file")))
        return cls(tuple(items))


def _metric(image_size: tuple[int, int] | None) -> np.ndarray:
    """Per-axis scale from normalised units to the arc-length metric."""
    if image_size is None:
        return np.ones(2)
    width, height = _check_size(image_size, "image_size")
    return np.array([width, height], dtype=np.float64)


def _check_size(size: Any, what: str) -> tuple[float, float]:
    try:
        width, height = (float(v) for v in size)
    except (TypeError, ValueError) as err:
        raise InputError(f"{what} must be (width, height), got {size!r}.") from err
    if not (math.isfinite(width) and math.isfinite(height) and width > 0 and height > 0):
        raise InputError(f"{what} must be positive (width, height), got {size!r}.")
    return width, height


def _check_num_frames(num_frames: Any) -> int:
    if isinstance(num_frames, bool) or not isinstance(num_frames, int | np.integer) or num_frames < 1:
        raise InputError(f"The number of frames must be a positive integer, got {num_frames!r}.")
    return int(num_frames)


def resample_polyline(
    points_norm: np.ndarray, num_frames: int, image_size: tuple[int, int] | None = None
) -> np.ndarray:
    """Resample a (K,2) polyline to `num_frames` positions; see `Trajectory.resample`."""
    num_frames = _check_num_frames(num_frames)
    points = _as_points(points_norm, "A trajectory")
    metric = _metric(image_size)
    steps = np.linalg.norm(np.diff(points, axis=0) * metric, axis=1)
    keep = np.concatenate([[True], steps > _MIN_SEGMENT])
    last = points[-1]
    points, steps = points[keep], steps[keep[1:]]
    if len(points) == 1:
        return np.repeat(points, num_frames, axis=0)
    points[-1] = last  # when the last point was a near-duplicate, end exactly on it anyway
    arc = np.concatenate([[0.0], np.cumsum(steps)])
    # PCHIP divides by segment slopes; a denormal-small slope overflows to a harmless zero derivative.
    with np.errstate(over="ignore", divide="ignore"):
        out = PchipInterpolator(arc, points, axis=0)(np.linspace(0.0, arc[-1], num_frames))
    out[-1] = points[-1]
    out[0] = points[0]  # last, so that a single frame is the start
    return np.clip(out, 0.0, 1.0)


# ----------------------------------------------------------------------------------------------
# Parsing: Gradio clicks and streamlit-drawable-canvas JSON
# ----------------------------------------------------------------------------------------------


def from_clicks(clicks_px: Sequence[Sequence[float]], image_size: tuple[int, int]) -> Trajectory:
    """One trajectory through clicked pixels, in order (Gradio `SelectData.index` = [x, y]).

    Args:
        clicks_px: [[x, y], ...] pixel indices (or sub-pixel positions) in an image of `image_size`,
            e.g. the displayed image; pixel (x, y) maps to its centre ((x + 0.5) / W, (y + 0.5) / H).
            One click is an anchor.
        image_size: (width, height) of the image the clicks refer to.

    Returns:
        A Trajectory; clicks outside the image are clipped to its edge.
    """
    width, height = _check_size(image_size, "image_size")
    if clicks_px is None or len(clicks_px) == 0:
        raise InputError("Click at least one point on the image to make a trajectory.")
    clicks = _as_points(clicks_px, "The clicked points")
    return Trajectory((clicks + 0.5) / np.array([width, height]))


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
    canvas_w, canvas_h = _check_size(canvas_size, "canvas_size")
    if image_rect is None:
        rect_left, rect_top, rect_w, rect_h = 0.0, 0.0, canvas_w, canvas_h
    else:
        if not isinstance(image_rect, Sequence) or len(image_rect) != 4:
            raise InputError(f"image_rect must be (left, top, width, height), got {image_rect!r}.")
        rect_left, rect_top = _check_offset(image_rect[:2])
        rect_w, rect_h = _check_size(image_rect[2:], "image_rect's width and height")
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


# ----------------------------------------------------------------------------------------------
# Trajectories -> flow
# ----------------------------------------------------------------------------------------------


def _check_tracks(tracks_norm: Any) -> np.ndarray:
    """(M,N,2) float64 tracks in [0,1]; InputError otherwise."""
    tracks = np.asarray(tracks_norm, dtype=np.float64)
    if tracks.ndim != 3 or tracks.shape[2] != 2 or tracks.shape[1] < 1:
        raise InputError(f"tracks must have shape (M, N, 2) with N >= 1 frames, got {tracks.shape}.")
    if not np.all(np.isfinite(tracks)):
        raise InputError("tracks contain NaN or infinite coordinates.")
    return np.clip(tracks, 0.0, 1.0)


def _check_hw(height: Any, width: Any) -> tuple[int, int]:
    for name, value in (("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise InputError(f"{name} must be a positive integer number of pixels, got {value!r}.")
    return int(height), int(width)


def tracks_to_px(tracks_norm: np.ndarray, height: int, width: int) -> np.ndarray:
    """Normalised (...,2) positions -> pixel-centre coordinates (x * W - 0.5, y * H - 0.5), float64."""
    return np.asarray(tracks_norm, dtype=np.float64) * [width, height] - 0.5


def _check_sigma(sigma_px: Any) -> float:
    if isinstance(sigma_px, bool) or not isinstance(sigma_px, int | float) or not (0 < sigma_px < math.inf):
        raise InputError(f"sigma_px must be a positive number of pixels, got {sigma_px!r}.")
    return float(sigma_px)


def _gaussian_splat(
    centres_px: np.ndarray, values: np.ndarray, height: int, width: int, sigma_px: float
) -> np.ndarray:
    """Sum over m of values[m] * exp(-|p - centre_m|^2 / 2 sigma^2) on the (H,W) pixel grid.

    The Gaussian is separable, so the sum is one (H,M) x (M,W) product per channel, with the centres
    at their exact sub-pixel positions and a peak of exactly 1 x value on a centre that sits on a pixel.

    Returns:
        (H,W,C) float32 for (M,C) values.
    """
    out = np.zeros((height, width, values.shape[1]), np.float32)
    if len(centres_px) == 0:
        return out
    xs = np.arange(width, dtype=np.float64)
    ys = np.arange(height, dtype=np.float64)
    gx = np.exp(-((xs[None, :] - centres_px[:, :1]) ** 2) / (2 * sigma_px**2))
    gy = np.exp(-((ys[None, :] - centres_px[:, 1:]) ** 2) / (2 * sigma_px**2))
    for c in range(values.shape[1]):
        out[..., c] = gy.T @ (gx * values[:, c : c + 1])
    return out


def sparse_flow(
    tracks_norm: np.ndarray, height: int, width: int, *, sigma_px: float = 10.0, cumulative: bool = False
) -> np.ndarray:
    """DragNUWA-style sparse flow maps: each track's displacement, Gaussian-blurred at its position.

    Frame t of the frame-to-frame variant holds p_t - p_{t-1} at the track's position p_{t-1} (flow
    defined on the source frame's grid, like the project's flow convention); the cumulative variant
    holds p_t - p_0 at p_0. Each value is spread with exp(-r^2 / 2 sigma^2) (peak 1, so a lone track's
    displacement is exact at its position); overlapping tracks add. Frame 0 is zero. Anchors move by
    zero and add nothing here; `sparse_flow_mask` marks them.

    Args:
        tracks_norm: (M,N,2) positions in [0,1] (`Trajectories.tracks_norm`).
        height, width: output size in px.
        sigma_px: Gaussian standard deviation in px (> 0).
        cumulative: displacement from frame 0 instead of from the previous frame.

    Returns:
        (N,H,W,2) float32 (dx, dy) in px.
    """
    tracks = tracks_to_px(_check_tracks(tracks_norm), *_check_hw(height, width))
    sigma_px = _check_sigma(sigma_px)
    num_frames = tracks.shape[1]
    out = np.zeros((num_frames, height, width, 2), np.float32)
    for t in range(1, num_frames):
        source = tracks[:, 0] if cumulative else tracks[:, t - 1]
        out[t] = _gaussian_splat(source, tracks[:, t] - source, height, width, sigma_px)
    return out


def sparse_flow_mask(
    tracks_norm: np.ndarray, height: int, width: int, *, sigma_px: float = 10.0, cumulative: bool = False
) -> np.ndarray:
    """Where `sparse_flow` carries information: the blurred track positions, anchors included.

    Frame t marks the positions `sparse_flow` writes to in frame t (p_{t-1}, or p_0 when
    `cumulative`), each spread like the flow values and the sum clipped to 1; frame 0 is zero like
    the flow. A zero-motion track shows here but not in the flow, which tells a model "pinned".

    Returns:
        (N,H,W,1) float32 in [0,1].
    """
    tracks = tracks_to_px(_check_tracks(tracks_norm), *_check_hw(height, width))
    sigma_px = _check_sigma(sigma_px)
    num_frames = tracks.shape[1]
    out = np.zeros((num_frames, height, width, 1), np.float32)
    ones = np.ones((tracks.shape[0], 1))
    for t in range(1, num_frames):
        source = tracks[:, 0] if cumulative else tracks[:, t - 1]
        out[t] = np.minimum(_gaussian_splat(source, ones, height, width, sigma_px), 1.0)
    return out


@dataclass(frozen=True)
class CameraMotion:
    """A global camera move over the whole clip, ramped linearly from frame 0 to the last frame.

    Attributes:
        pan_x, pan_y: how far the content moves by the last frame, as a fraction of the image width /
            height (+x right, +y down).
        zoom: content scale at the last frame about the image centre (> 1 zooms in); frames in
            between use zoom ** (t / (N-1)), a constant zoom speed.
        rotate_deg: content rotation at the last frame about the image centre, in degrees, clockwise
            on screen (y points down).
    """

    pan_x: float = 0.0
    pan_y: float = 0.0
    zoom: float = 1.0
    rotate_deg: float = 0.0

    def __post_init__(self) -> None:
        values = (self.pan_x, self.pan_y, self.zoom, self.rotate_deg)
        if not all(isinstance(v, int | float) and math.isfinite(v) for v in values):
            raise InputError(f"Camera motion values must be finite numbers, got {values}.")
        if self.zoom <= 0:
            raise InputError(f"Camera zoom must be positive (1 = no zoom), got {self.zoom}.")

    def _frame(self, fraction: float, height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(2x2 linear map, centre, shift) of frame `fraction` in [0,1]: x' = c + A (x - c) + shift."""
        scale = self.zoom**fraction
        angle = math.radians(self.rotate_deg * fraction)
        linear = scale * np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        centre = np.array([(width - 1) / 2, (height - 1) / 2])
        shift = fraction * np.array([self.pan_x * width, self.pan_y * height])
        return linear, centre, shift

    def forward(self, points_px: np.ndarray, fraction: float, height: int, width: int) -> np.ndarray:
        """Displacement (...,2) in px of pixel-centre points at frame `fraction` of the clip."""
        linear, centre, shift = self._frame(fraction, height, width)
        return (points_px - centre) @ (linear - np.eye(2)).T + shift

    def backward(self, points_px: np.ndarray, fraction: float, height: int, width: int) -> np.ndarray:
        """b(q) such that content at q in frame `fraction` came from q + b(q) in frame 0 (exact inverse)."""
        linear, centre, shift = self._frame(fraction, height, width)
        source = (points_px - centre - shift) @ np.linalg.inv(linear).T + centre
        return source - points_px


# Dense fields: a track's neighbourhood follows it with weight exp(-rho^2/2) / rho^4 (rho = distance /
# reach) against a background weight 1 that holds still. The 1/rho^4 factor makes the weight infinite
# on the track (the pixel on it moves exactly with it) and flat around it (a patch travels nearly
# rigidly, and bilinear upsampling of the coarse field costs ~nothing there); the Gaussian factor cuts
# it off beyond ~2 reaches. _KERNEL_EPS only keeps the division finite on a centre.
_KERNEL_EPS = 1e-12
# The motion profile w / (w + 1) of one track falls by at most 1.36 per reach (at rho ~ 0.85), so a reach
# of twice the track's largest displacement keeps its warp from folding: the map's Jacobian stays
# >= 1 - 1.36 / 2 = 0.32 along the drag.
_REACH_PER_PX = 2.0


def _kernel(points_px: np.ndarray, centres_px: np.ndarray, radii_px: np.ndarray) -> np.ndarray:
    """(G,M) float32 weights of centres (M,2) with radii (M,) at points (G,2)."""
    diff = points_px[:, None, :] - centres_px[None, :, :].astype(np.float32)
    rho2 = np.einsum("gmc,gmc->gm", diff, diff) / (radii_px.astype(np.float32) ** 2)
    return np.exp(-0.5 * rho2) / (rho2 * rho2 + np.float32(_KERNEL_EPS))


def _interpolate(
    points_px: np.ndarray, centres_px: np.ndarray, values: np.ndarray, radii_px: np.ndarray
) -> np.ndarray:
    """(G,2) weighted average of (M,2) `values` with a still background: exact at every centre."""
    weights = _kernel(points_px, centres_px, radii_px)
    return (weights @ values.astype(np.float32)) / (weights.sum(axis=1, keepdims=True) + 1.0)


class _Gate:
    """A region mask feathered with a Gaussian, in [0,1], sampled bilinearly at any pixel position."""

    def __init__(self, region_mask: np.ndarray, feather_px: float) -> None:
        self.soft = cv2.GaussianBlur(region_mask.astype(np.float32), (0, 0), sigmaX=feather_px)

    def __call__(self, points_px: np.ndarray) -> np.ndarray:
        return map_coordinates(self.soft, [points_px[:, 1], points_px[:, 0]], order=1, mode="nearest").astype(
            np.float32
        )


@dataclass(frozen=True)
class _Grid:
    """Coarse nodes every `step` px at the centres of step x step cells, one extra ring outside the image.

    The ring lets bilinear upsampling interpolate up to the image edges instead of extrapolating, and
    the integer step makes cv2.resize by exactly `step` put every node back where it was evaluated.
    """

    step: int
    height: int
    width: int

    @property
    def rows(self) -> int:
        return math.ceil(self.height / self.step) + 2

    @property
    def cols(self) -> int:
        return math.ceil(self.width / self.step) + 2

    def points(self) -> np.ndarray:
        """(rows*cols, 2) float32 full-resolution pixel-centre coordinates of the nodes."""
        xs = (np.arange(self.cols) - 0.5) * self.step - 0.5
        ys = (np.arange(self.rows) - 0.5) * self.step - 0.5
        grid_x, grid_y = np.meshgrid(xs, ys)
        return np.stack([grid_x.ravel(), grid_y.ravel()], axis=1).astype(np.float32)

    def upsample(self, field: np.ndarray) -> np.ndarray:
        """(rows*cols, 2) node values -> (H, W, 2) float32, bilinear."""
        coarse = field.reshape(self.rows, self.cols, 2).astype(np.float32)
        s = self.step
        if s == 1:
            return coarse[1:-1, 1:-1]
        fine = cv2.resize(coarse, (self.cols * s, self.rows * s), interpolation=cv2.INTER_LINEAR)
        return fine[s : s + self.height, s : s + self.width]


def _dense(
    tracks_norm: np.ndarray,
    height: int,
    width: int,
    direction: Literal["forward", "backward"],
    radius_px: float | None,
    region_mask: np.ndarray | None,
    camera: CameraMotion | None,
    grid_step: int,
) -> np.ndarray:
    height, width = _check_hw(height, width)
    tracks = tracks_to_px(_check_tracks(tracks_norm), height, width)
    if radius_px is None:
        radius_px = 0.1 * min(height, width)
    if isinstance(radius_px, bool) or not isinstance(radius_px, int | float) or not 0 < radius_px < math.inf:
        raise InputError(f"radius_px must be a positive number of pixels, got {radius_px!r}.")
    if isinstance(grid_step, bool) or not isinstance(grid_step, int | np.integer) or grid_step < 1:
        raise InputError(f"grid_step must be a positive integer, got {grid_step!r}.")
    if camera is not None and not isinstance(camera, CameraMotion):
        raise InputError("camera must be a CameraMotion (or None).")
    grid = _Grid(int(grid_step), height, width)
    gate = None
    if region_mask is not None:
        region_mask = np.asarray(region_mask)
        if region_mask.shape != (height, width):
            raise InputError(f"The motion region mask must be {height}x{width}, got {region_mask.shape}.")
        gate = _Gate(region_mask.astype(bool), feather_px=radius_px / 4)

    # A track's reach grows with its longest displacement (see dense_displacement).
    radii = np.maximum(radius_px, _REACH_PER_PX * np.linalg.norm(tracks - tracks[:, :1], axis=2).max(axis=1))
    nodes = grid.points()
    num_frames = tracks.shape[1]
    out = np.zeros((num_frames, height, width, 2), np.float32)
    starts = tracks[:, 0]
    for t in range(1, num_frames):
        fraction = t / (num_frames - 1)
        targets = tracks[:, t]
        if direction == "forward":
            field = _forward_field(nodes, starts, targets, radii, gate, camera, fraction, (height, width))
        else:
            field = _backward_field(nodes, starts, targets, radii, gate, camera, fraction, (height, width))
        out[t] = grid.upsample(field)
    return out


def _forward_field(
    nodes: np.ndarray,
    starts: np.ndarray,
    targets: np.ndarray,
    radii_px: np.ndarray,
    gate: _Gate | None,
    camera: CameraMotion | None,
    fraction: float,
    hw: tuple[int, int],
) -> np.ndarray:
    """d_t at `nodes` of frame 0: content at p moves to p + d_t(p) (see `dense_displacement`)."""
    # Tracks are absolute: the camera moves everything, each track adds what it still needs.
    camera_at_starts = 0.0 if camera is None else camera.forward(starts, fraction, *hw)
    field = _interpolate(nodes, starts, targets - starts - camera_at_starts, radii_px)
    if gate is not None:
        field *= gate(nodes)[:, None]
    if camera is not None:
        field += camera.forward(nodes, fraction, *hw).astype(np.float32)
    return field


def _backward_field(
    nodes: np.ndarray,
    starts: np.ndarray,
    targets: np.ndarray,
    radii_px: np.ndarray,
    gate: _Gate | None,
    camera: CameraMotion | None,
    fraction: float,
    hw: tuple[int, int],
) -> np.ndarray:
    """b_t at `nodes` of frame t: content at q comes from q + b_t(q) in frame 0 (see `backward_flow`)."""
    # Weight centres at the tracks' current positions, so a node on a target samples the track's start.
    camera_at_targets = 0.0 if camera is None else camera.backward(targets, fraction, *hw)
    field = _interpolate(nodes, targets, starts - targets - camera_at_targets, radii_px)
    camera_at_nodes = 0.0 if camera is None else camera.backward(nodes, fraction, *hw).astype(np.float32)
    if gate is not None:
        # The region is painted on frame 0: move a node only as much as the content it samples may move.
        field *= gate(nodes + field + camera_at_nodes)[:, None]
    return field + camera_at_nodes


def dense_displacement(
    tracks_norm: np.ndarray,
    height: int,
    width: int,
    *,
    radius_px: float | None = None,
    region_mask: np.ndarray | None = None,
    camera: CameraMotion | None = None,
    grid_step: int = 8,
) -> np.ndarray:
    """Forward displacement of every frame-0 pixel at every frame, interpolated from the tracks.

    d_t(p) is where the content at frame-0 pixel p has moved by frame t: p -> p + d_t(p). Each track's
    residual motion (what the camera does not already do) is spread around its start with weight
    exp(-rho^2/2) / rho^4, rho = distance / r, against a still background of weight 1: exact on the
    track, nearly rigid within ~0.3 r (>= 99% of the motion), ~38% at r, ~1% at 2 r. The reach r of a
    track is max(radius_px, 2 x its largest displacement), so a long drag stretches the picture like a
    rubber sheet, without folding it, instead of leaving the content at its start behind (nothing here
    inpaints). Anchors are tracks
    with zero motion and reach radius_px: they pin their neighbourhood. A region mask (motion brush)
    multiplies the track-driven motion by the mask feathered with a Gaussian of radius_px / 4, so only
    the painted region moves and tracks starting outside it move nothing. The camera's motion is added
    everywhere; tracks and anchors stay absolute (a track point lands on its drawn position whatever
    the camera does, an anchor stays put on screen).

    The field is computed on a grid `grid_step` times coarser and upsampled bilinearly (it is smooth),
    in float32.

    Args:
        tracks_norm: (M,N,2) positions in [0,1] (`Trajectories.tracks_norm`), anchors included.
        height, width: image size in px.
        radius_px: smallest reach of a track in px; default 0.1 * min(height, width).
        region_mask: optional (H,W) bool, True where motion is allowed.
        camera: optional global camera move.
        grid_step: coarse-grid step in px (1 = evaluate every pixel).

    Returns:
        (N,H,W,2) float32 (dx, dy) in px on the frame-0 grid; frame 0 is zero.
    """
    return _dense(tracks_norm, height, width, "forward", radius_px, region_mask, camera, grid_step)


def backward_flow(
    tracks_norm: np.ndarray,
    height: int,
    width: int,
    *,
    radius_px: float | None = None,
    region_mask: np.ndarray | None = None,
    camera: CameraMotion | None = None,
    grid_step: int = 8,
) -> np.ndarray:
    """Backward sampling maps that warp frame 0 into every frame along the tracks.

    frame_t = core.flow.backward_warp(frame_0, b[t]), i.e. frame_t(q) = frame_0(q + b_t(q)). b_t lives
    on the frame-t grid, so it is not -d_t (which lives on the frame-0 grid). It is interpolated at the
    tracks' *current* positions: weight centres at the targets p_t, values p_0 - p_t (minus what the
    camera's exact inverse already supplies there), same kernel and reaches as `dense_displacement`.
    A pixel at a target therefore samples its track's start exactly, and the patch around it travels
    with it. The camera's exact inverse is added everywhere. A region mask, painted on frame 0, scales
    the track-driven part by the feathered mask at the point sampled, so content outside the region
    never moves while the region's content may move over it.

    Both fields are smooth interpolations of the same tracks and agree exactly on them; elsewhere b_t
    is close to, not exactly, the inverse of d_t.

    Args and the coarse-grid computation are as in `dense_displacement`.

    Returns:
        (N,H,W,2) float32 (dx, dy) in px on the frame-t grid; frame 0 is zero.
    """
    return _dense(tracks_norm, height, width, "backward", radius_px, region_mask, camera, grid_step)
