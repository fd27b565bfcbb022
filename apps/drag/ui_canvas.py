"""The drawing canvas widget of the drag app: streamlit-drawable-canvas (0.13, Fabric 7.4).

Only the widget lives here: mounting the component, its tools and the canvas size on screen. Reading
and writing its Fabric objects (and how drawn trajectories look) is `core.trajectory.canvas`, which says
why. Everything the app asks of the component goes through `st_canvas` below, so tests replace
`apps.drag.ui_canvas.st_canvas` with a function that returns recorded canvas JSON.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from core.trajectory.canvas import (
    ANCHOR_COLOUR,
    ANCHOR_RADIUS_PX,
    FABRIC_VERSION,
    STROKE_WIDTH_PX,
    TRACK_COLOUR,
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


def st_canvas(**kwargs):
    """streamlit-drawable-canvas's `st_canvas`, imported on first use.

    The component registers its frontend files when imported, which needs Streamlit's component
    registry (a running server or AppTest); importing it lazily keeps this module importable anywhere.
    """
    from streamlit_drawable_canvas import st_canvas as component

    return component(**kwargs)


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
