"""The drag app's motion brush (the sheet engine): paint where the picture may move, on the image with the
tracks drawn (their colours, arrow heads and numbers, as on the drawing canvas), with a warning for each
track that starts outside the painted region (the sheet moves nothing there).

The brush is what is painted on its canvas together with a loaded mask (`brush_loaded`): a run's
region_mask.png read back to redo the run, or the painting kept over a change of the canvas's size (the
canvas then starts empty, its strokes being in the old size's pixels). A run saves the mask beside its
parameters JSON (`apps.drag.job.save_inputs`: region_mask.png, also a download of the result).

Session state it uses (see `apps.drag.app`): brush_rev (the painting canvases start empty when it changes),
brush_loaded and brush_mask (the last brush, (H,W) bool or None).
"""

from __future__ import annotations

import cv2
import numpy as np
import streamlit as st

from apps.drag import ui_canvas
from core.trajectory import Trajectories

BRUSH_COLOUR = "rgba(52, 199, 89, 0.6)"
LOADED_TINT = np.array([52, 199, 89], np.float32)  # a loaded brush shows in the painting's colour
TINT_SHARE = 0.5


def motion_brush(image: np.ndarray, image_id: str, trajectories: Trajectories) -> np.ndarray | None:
    """The optional motion-brush region (H,W) bool at the image's size, or None."""
    loaded = st.session_state.get("brush_loaded")
    with st.expander("Motion brush (optional): only the painted region moves", expanded=loaded is not None):
        if not st.checkbox("Use a motion brush", key="use_brush"):
            return None
        size = st.slider("Brush size (px)", 5, 80, 30, key="brush_size")
        st.button("Clear the brush", on_click=clear_brush)
        image_hw = image.shape[:2]
        if loaded is not None and loaded.shape != image_hw:  # the same picture at another working size
            loaded = cv2.resize(loaded.astype(np.uint8), image_hw[::-1], interpolation=cv2.INTER_NEAREST) > 0
        shown = image if loaded is None else tinted(image, loaded)
        painted = ui_canvas.painted_mask(
            shown,
            trajectories,
            "brush_column",
            f"brush-{image_id}-{st.session_state.brush_rev}",
            size,
            BRUSH_COLOUR,
        )
        masks = [m for m in (loaded, painted) if m is not None]
        mask = np.logical_or.reduce(masks) if masks else None
        st.session_state.brush_mask = mask
        if mask is None:
            st.caption("Paint over the part of the image that may move.")
            return None
        outside = tracks_outside(trajectories, mask)
        if outside:
            which = (
                f"Track {outside[0]} starts"
                if len(outside) == 1
                else f"Tracks {', '.join(map(str, outside))} start"
            )
            st.warning(
                f"{which} outside the motion brush and will not move: paint over the start or clear the brush."
            )
        return mask


def tracks_outside(trajectories: Trajectories, mask: np.ndarray) -> list[int]:
    """The numbers (1-based, the list's) of the moving tracks whose start lies outside `mask` (H,W) bool."""
    height, width = mask.shape
    numbers = []
    for i, trajectory in enumerate(trajectories):
        if trajectory.is_anchor:
            continue
        x, y = np.clip((trajectory.points_norm[0] * (width, height)).astype(int), 0, (width - 1, height - 1))
        if not mask[y, x]:
            numbers.append(i + 1)
    return numbers


def tinted(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The image (H,W,3) uint8 with `mask`'s pixels tinted in the brush's colour."""
    out = image.astype(np.float32)
    out[mask] += TINT_SHARE * (LOADED_TINT - out[mask])
    return np.rint(out).astype(np.uint8)


def load_brush(mask: np.ndarray) -> None:
    """Redo a run's brush: `mask` (H,W) bool becomes the brush, with the sheet engine it applies to (a
    widget callback: it sets the engine and brush widgets before they are drawn)."""
    st.session_state.brush_loaded = mask
    st.session_state.brush_rev += 1
    st.session_state.engine = "sheet"
    st.session_state.use_brush = True


def keep_brush() -> None:
    """The canvas changes size: the brush painted so far stays (as loaded), its canvas starts empty."""
    st.session_state.brush_loaded = st.session_state.get("brush_mask")
    st.session_state.brush_rev += 1


def clear_brush() -> None:
    """The brush starts empty (a new picture or working size, or "Clear the brush")."""
    st.session_state.brush_loaded = None
    st.session_state.brush_mask = None
    st.session_state.brush_rev += 1
