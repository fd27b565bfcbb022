"""The drawing canvas widget of the drag app: streamlit-drawable-canvas (0.13, Fabric 7.4).

Only the widget lives here: mounting the component, its tools, the canvas size on screen and what the
canvas shows under the drawing. Reading and writing its Fabric objects is `core.trajectory.canvas`, which
says why. Everything the app asks of the component goes through `st_canvas` below, so tests replace
`apps.drag.ui_canvas.st_canvas` with a function that returns recorded canvas JSON.

Fitting the column: the component draws at a fixed size in px (wider than its column, it scrolls
sideways), so `column_width` measures the column in the browser (a small component reporting its width,
again whenever it changes) and the app sizes the canvas to it. The canvas's pixels are then the screen's and
coordinates stay exact: `core.trajectory.canvas` normalises by the canvas size the app passed.

Touch: the component's tools draw only for the main mouse button (`event.button == 0`), which touch events
lack, so a tap or a swipe drew nothing; the same small component gives touch events the main button.

Readable tracks: each stroke is drawn in its track's list colour (`stroke_colour_for`, the next track's
colour while drawing; `recoloured` when objects are put back), over a background that carries each track's
arrow head and number (`apps.drag.overlay.draw_trajectory_overlay` at the canvas's size:
`canvas_background`). The toolbar floats above the canvas; `CANVAS_STYLE` keeps room for it there, so it
never covers the help text and the polyline's finish button (pinned while a polyline is drawn) shows.
"""

from __future__ import annotations

import cv2
import numpy as np
import streamlit as st
from PIL import Image

from apps.drag.overlay import colour_of, draw_trajectory_overlay
from core.trajectory import Trajectories
from core.trajectory.canvas import (
    ANCHOR_COLOUR,
    ANCHOR_RADIUS_PX,
    FABRIC_VERSION,
    STROKE_WIDTH_PX,
    canvas_objects,
    mask_from_strokes,
)

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


CANVAS_MAX_W, CANVAS_MAX_H = 560, 520  # px: a canvas is never larger, its column may make it smaller
# Keys of the app's canvases (tracks, motion brush, repainted objects): the style below finds them by these.
CANVAS_KEY_PREFIXES = ("canvas-", "brush-", "repaint-")
# The component's toolbar floats 2.65 rem above its canvas: keep that room free above each canvas.
CANVAS_STYLE = (
    "<style>"
    + ", ".join(f'[class*=" st-key-{prefix}"]' for prefix in CANVAS_KEY_PREFIXES)
    + " { margin-top: 2.75rem; }</style>"
)
_COLUMN_PROBE_JS = """
export default function ({ parentElement, setStateValue }) {
  // The canvas's tools draw for button 0 only; a touch event has no button: it is the main one.
  if (typeof TouchEvent !== "undefined" && !("button" in TouchEvent.prototype)) {
    Object.defineProperty(TouchEvent.prototype, "button", { get: () => 0 });
  }
  const element = parentElement instanceof ShadowRoot ? parentElement.host : parentElement;
  let reported = 0;
  const report = () => {
    const width = Math.floor(element.getBoundingClientRect().width);
    if (width > 0 && width !== reported) {
      reported = width;
      setStateValue("width", width);
    }
  };
  const observer = new ResizeObserver(report);
  observer.observe(element);
  report();
  return () => observer.disconnect();
}
"""
_probe = None


def column_width(key: str, default: int) -> int:
    """The width in px of the column this is called in, as the browser lays it out (`default` until the
    browser has said, and without one: AppTest). Also makes touch draw on the canvases (module docstring)."""
    global _probe
    if _probe is None:  # registered on first use, like the canvas (it needs Streamlit's runtime)
        _probe = st.components.v2.component("kinema_column_width", js=_COLUMN_PROBE_JS)
    result = _probe(key=key, default={"width": default}, on_width_change=lambda: None, height=0)
    width = result.get("width")
    return int(width) if isinstance(width, int | float) and width > 0 else default


def st_canvas(**kwargs):
    """streamlit-drawable-canvas's `st_canvas`, imported on first use.

    The component registers its frontend files when imported, which needs Streamlit's component
    registry (a running server or AppTest); importing it lazily keeps this module importable anywhere.
    """
    from streamlit_drawable_canvas import st_canvas as component

    return component(**kwargs)


def fitted_size(image_hw: tuple[int, int], column_key: str) -> tuple[int, int]:
    """(width, height) in px of a canvas showing an image of `image_hw` whole in the column it is called in
    (measured under `column_key`), at most CANVAS_MAX_W x CANVAS_MAX_H."""
    width = min(CANVAS_MAX_W, column_width(column_key, CANVAS_MAX_W))
    return canvas_size_for(image_hw, width, CANVAS_MAX_H)


def canvas_size_for(image_hw: tuple[int, int], max_width: int, max_height: int) -> tuple[int, int]:
    """(width, height) in px of a canvas showing an image of `image_hw` whole, at most max_width x max_height."""
    height, width = image_hw
    scale = min(max_width / width, max_height / height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def stroke_colour_for(index: int) -> str:
    """The CSS colour of trajectory `index` (0-based, the list's order): its list and arrow colour."""
    return "#{:02x}{:02x}{:02x}".format(*colour_of(index))


def recoloured(objects: list[dict]) -> list[dict]:
    """Canvas objects with each track's stroke in its list colour (by position; anchors keep theirs)."""
    return [
        obj if str(obj.get("type", "")).lower() == "circle" else {**obj, "stroke": stroke_colour_for(i)}
        for i, obj in enumerate(objects)
    ]


def canvas_background(
    image_uint8: np.ndarray, canvas_size: tuple[int, int], trajectories: Trajectories
) -> np.ndarray:
    """What a canvas shows under its drawing: the image at the canvas's size (width, height) with each
    trajectory's arrow head and number in its colour, drawn at screen resolution. (H,W,3) uint8."""
    shrink = canvas_size[0] < image_uint8.shape[1]
    shown = cv2.resize(image_uint8, canvas_size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return draw_trajectory_overlay(shown, trajectories)


def draw_canvas(
    image_uint8: np.ndarray,
    size: tuple[int, int],
    *,
    drawing_mode: str,
    initial_objects: list[dict],
    key: str,
    stroke_width: int = STROKE_WIDTH_PX,
    stroke_colour: str,
):
    """Show the canvas over the image (stretched to `size`, which keeps its aspect); return the CanvasResult.
    New strokes are drawn in `stroke_colour` (anchors: `ANCHOR_COLOUR`).

    `initial_objects` is what a freshly mounted canvas shows; later edits live in the component until it
    is remounted under a new `key`. Pass the same `initial_objects` for a key on every run: the component
    reloads a canvas whose initial drawing changed and sends it back, which reruns the app, forever if
    the app feeds the canvas's output back in.
    """
    if drawing_mode == "point":
        stroke_colour = ANCHOR_COLOUR
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


def painted_mask(
    image_uint8: np.ndarray, trajectories: Trajectories, column_key: str, key: str, size: int, colour: str
) -> np.ndarray | None:
    """A painting canvas over the image with the tracks drawn (`canvas_background`), fitted to its column
    (measured under `column_key`), under `key`; its strokes as an (H,W) bool mask at the image's size, or
    None before any stroke. The key holds the canvas's width: at another width it starts empty."""
    canvas_size = fitted_size(image_uint8.shape[:2], column_key)
    result = draw_canvas(
        canvas_background(image_uint8, canvas_size, trajectories),
        canvas_size,
        drawing_mode="freedraw",
        initial_objects=[],
        key=f"{key}-{canvas_size[0]}",
        stroke_width=size,
        stroke_colour=colour,
    )
    return mask_from_strokes(canvas_objects(result.json_data), canvas_size, image_uint8.shape[:2])
