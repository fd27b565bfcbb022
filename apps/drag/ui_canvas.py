"""The drawing canvas of the drag app: streamlit-drawable-canvas (0.13, Fabric 7.4) and its objects.

Everything the app asks of the component goes through `st_canvas` below, so tests replace
`apps.drag.ui_canvas.st_canvas` with a function that returns recorded canvas JSON.

Objects on the canvas map one to one, in order, to trajectories: `parse_objects` reads each object on
its own, so one unreadable object is reported and skipped without shifting the others, and deleting
trajectory i means dropping object i. `objects_from_trajectories` goes the other way (a loaded
trajectory file, or the canvas rebuilt at another size).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from core.errors import InputError
from core.trajectory import Trajectories, Trajectory, from_canvas_json

FABRIC_VERSION = "7.4.0"  # what streamlit-drawable-canvas 0.13 inlines and writes into its JSON

# Label shown in the app -> the component's drawing_mode. The component has no open-polyline tool: its
# polygon tool adds a vertex per click; clicking the first vertex closes the shape (a loop that returns
# to its start), while the toolbar's send button hands over the open path drawn so far.
TOOLS = {
    "Line": "line",
    "Polyline": "polygon",
    "Freehand": "freedraw",
    "Anchor (pin a point)": "point",
}
TOOL_HELP = {
    "line": "Drag from where the content starts to where it should end up.",
    "polygon": (
        "Click the path's points one by one, then press the canvas toolbar's arrow button (Update the app "
        "with this drawing) to use the open path, or click the first point again to close it into a loop."
    ),
    "freedraw": "Drag along the path the content should follow.",
    "point": "Click to pin the image there: the content around an anchor stays still.",
}

TRACK_COLOUR = "#ff2d55"
ANCHOR_COLOUR = "#00b7ff"
STROKE_WIDTH_PX = 4
ANCHOR_RADIUS_PX = 4


def st_canvas(**kwargs):
    """streamlit-drawable-canvas's `st_canvas`, imported on first use.

    The component registers its frontend files when imported, which needs Streamlit's component
    registry (a running server or AppTest); importing it lazily keeps this module importable anywhere.
    """
    from streamlit_drawable_canvas import st_canvas as component

    return component(**kwargs)


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


def canvas_size_for(image_hw: tuple[int, int], max_width: int, max_height: int) -> tuple[int, int]:
    """(width, height) in px of a canvas showing an image of `image_hw` whole, at most max_width x max_height."""
    height, width = image_hw
    scale = min(max_width / width, max_height / height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def draw_canvas(
    image_uint8: np.ndarray,
    size: tuple[int, int],
    *,
    drawing_mode: str,
    initial_objects: list[dict],
    key: str,
    stroke_width: int = STROKE_WIDTH_PX,
    stroke_colour: str | None = None,
):
    """Show the canvas over the image (stretched to `size`, which keeps its aspect); return the CanvasResult.

    `initial_objects` is what a freshly mounted canvas shows; later edits live in the component until it
    is remounted under a new `key`. Pass the same `initial_objects` for a key on every run: the component
    reloads a canvas whose initial drawing changed and sends it back, which reruns the app, forever if
    the app feeds the canvas's output back in.
    """
    if stroke_colour is None:
        stroke_colour = ANCHOR_COLOUR if drawing_mode == "point" else TRACK_COLOUR
    return st_canvas(
        fill_color="rgba(0, 0, 0, 0)",
        stroke_width=stroke_width,
        stroke_color=stroke_colour,
        background_image=Image.fromarray(image_uint8),
        update_streamlit=True,
        width=size[0],
        height=size[1],
        drawing_mode=drawing_mode,
        initial_drawing={"version": FABRIC_VERSION, "objects": initial_objects},
        point_display_radius=ANCHOR_RADIUS_PX,
        key=key,
    )


def canvas_objects(json_data: dict | None) -> list[dict]:
    """The object list of a canvas result's `json_data` ([] for None or a drawing without objects)."""
    if not isinstance(json_data, dict) or not isinstance(json_data.get("objects"), list):
        return []
    return list(json_data["objects"])


def parse_objects(objects: list[dict], canvas_size: tuple[int, int]) -> ParsedCanvas:
    """Trajectories of canvas objects drawn on a canvas of `canvas_size` (width, height) px.

    Each object is read by `core.trajectory.from_canvas_json`. Clipping is detected by reading the object
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
        thickness = max(1, round(stroke_px))
        cv2.polylines(mask, [points], isClosed=False, color=1, thickness=thickness, lineType=cv2.LINE_8)
        cv2.circle(mask, tuple(int(v) for v in points[0]), max(1, thickness // 2), 1, thickness=-1)
    return mask.astype(bool)
