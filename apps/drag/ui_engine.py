"""The drag app's engine section: what a drag moves, and that engine's controls.

- "objects" (`core.engines.objects`): each drag moves the object under its start. The objects are found
  once per picture and drawing (`object_layers_for`: cached in the session, keyed by the working image and
  the drags' start points, since nothing else changes them) with SAM when KINEMA_SAM_MODEL is set
  (`core.models.load_sam`), GrabCut otherwise; a slider grows or shrinks them, and a drag's object can be
  repainted by hand (a brush stroke on its own canvas replaces the object found; kept per drag start
  point, so it follows the drag through deletions and redraws of others). An optional depth map of the
  picture (greyscale 8/16-bit, e.g. the joint app's depth PNG; white near or far) puts the nearer objects in
  front instead of the later drawn; it is fitted to the working image as the picture is (`job.fit_depth`).
- "sheet" (`core.engines.warp`): the whole picture moves as a smooth field, shaped by the reach (the
  smallest distance a drag pulls, default 0.1 x the shorter side) and the optional motion brush
  (`apps.drag.ui_brush`).

A redone run's brush, painted objects and depth map come back through `load_inputs`.

Session state it uses (see `apps.drag.app`): brush_rev, object_layers (the cache), painted_objects, run_depth
(a redone run's depth map, PNG bytes, used while no depth map is uploaded).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import streamlit as st

from apps.drag import ui_brush, ui_canvas
from apps.drag.job import disparity_of, fit_depth, read_depth
from apps.drag.params import DragParams
from core.config import Settings
from core.engines.objects import ObjectLayer, object_layers
from core.errors import InputError
from core.imaging import ResizeInfo
from core.trajectory import Trajectories

ENGINE_LABELS = {"objects": "The object under each drag", "sheet": "The whole picture (sheet)"}
# Cached drawings per session: enough to go back and forth between a few edits without segmenting again.
LAYER_CACHE_SIZE = 8


@dataclass(frozen=True)
class EngineChoice:
    """The engine section's choices: the DragParams fields it sets (`params`: engine, grow_px, depth_white,
    radius), the motion-brush mask (H,W) bool or None (sheet only), the painted objects {drag index: (H,W)
    bool} and the depth map (H,W) in [0,1] as uploaded, fitted to the working image, or None (objects
    only)."""

    params: dict
    region_mask: np.ndarray | None
    object_masks: dict[int, np.ndarray] = field(default_factory=dict)
    depth_unit: np.ndarray | None = None

    @property
    def disparity(self) -> np.ndarray | None:
        """The depth map as disparity (larger = nearer), or None."""
        return None if self.depth_unit is None else disparity_of(self.depth_unit, self.params["depth_white"])


@dataclass(frozen=True)
class RunInputs:
    """What a run drew besides its tracks, read back to redo it: its motion brush (H,W) bool, its painted
    objects {drag index: (H,W) bool} and its depth map (the PNG's bytes); None or empty where it had none."""

    brush: np.ndarray | None
    painted: dict[int, np.ndarray]
    depth_png: bytes | None


def load_inputs(inputs: RunInputs, trajectories: Trajectories) -> None:
    """Put a redone run's inputs into the page, once its picture and `trajectories` (as the canvas now holds
    them: painted objects are kept by their drag's start point) are in place."""
    if inputs.brush is None:
        ui_brush.clear_brush()
        st.session_state.use_brush = False
    else:
        ui_brush.load_brush(inputs.brush)
    st.session_state.painted_objects = {
        start_key(trajectories[index]): mask
        for index, mask in inputs.painted.items()
        if index < len(trajectories)
    }
    st.session_state.run_depth = inputs.depth_png


def engine_controls(
    image: np.ndarray,
    image_id: str,
    trajectories: Trajectories,
    fit: ResizeInfo,
    max_side: int,
) -> EngineChoice:
    """The engine radio and the chosen engine's controls (under the canvas). `fit`: how the uploaded picture
    became `image` (a depth map of it is fitted the same way); `max_side`: the largest side an upload may
    have."""
    engine = DragParams.widget("engine")
    name = st.radio(
        engine.label, list(engine.choices), format_func=ENGINE_LABELS.get, horizontal=True, key="engine"
    )
    if name == "objects":
        grow = DragParams.widget("grow_px")
        grow_px = st.slider(
            grow.label,
            grow.low,
            grow.high,
            grow.default,
            grow.step,
            key="grow_px",
            help="Each drag moves the object under its start, tinted in its colour beside the canvas; "
            "grow the objects to take in more of their edge, shrink them to leave the background out.",
        )
        painted = repaint_control(image, image_id, trajectories)
        depth_unit, depth_white = depth_control(fit, image_id, max_side)
        params = {"engine": name, "grow_px": grow_px, "depth_white": depth_white, "radius": None}
        return EngineChoice(params, None, painted, depth_unit)
    return EngineChoice(
        {"engine": name, "grow_px": 0, "depth_white": "near", "radius": reach_control(image.shape[:2])},
        ui_brush.motion_brush(image, image_id, trajectories),
    )


def depth_control(fit: ResizeInfo, image_id: str, max_side: int) -> tuple[np.ndarray | None, str]:
    """The depth expander: an optional depth map of the picture and what its white means. Returns the map
    fitted to the working image ((H,W) in [0,1] as uploaded, or None) and "near" or "far"."""
    white = DragParams.widget("depth_white")
    with st.expander("Depth map (optional): the nearer objects in front"):
        upload = st.file_uploader(
            "Depth map of this picture (greyscale PNG, 8- or 16-bit, e.g. the joint app's depth)",
            type=["png", "tif", "tiff"],
            key=f"depth-{image_id}",
        )
        depth_white = st.radio(
            white.label, list(white.choices), horizontal=True, key="depth_white", help=white.help
        )
        data = st.session_state.get("run_depth") if upload is None else upload.getvalue()
        if data is None:
            st.caption("Without one, the object of the later drawn drag is in front.")
            return None, depth_white
        if upload is None:
            st.caption("The redone run's depth map; upload another to replace it.")
        try:
            return fit_depth(read_depth(data, max_side), fit), depth_white
        except InputError as err:
            st.error(str(err))
            return None, depth_white


def reach_control(image_hw: tuple[int, int]) -> float | None:
    """The sheet's reach in px, or None for the engine's default (0.1 x the shorter side)."""
    reach = DragParams.widget("radius")
    default = round(0.1 * min(image_hw))
    if not st.checkbox(
        "Set the reach", key="custom_reach", help=f"Default: 0.1 x the shorter side ({default} px)."
    ):
        return None
    high = max(reach.low, min(reach.high, max(image_hw)))
    value = st.slider(
        reach.label, reach.low, high, min(max(default, reach.low), high), reach.step, key="radius"
    )
    return float(value)


def repaint_control(image: np.ndarray, image_id: str, trajectories: Trajectories) -> dict[int, np.ndarray]:
    """The repaint expander: paint a drag's object by hand. Returns the painted objects by drag index."""
    painted: dict = st.session_state.setdefault("painted_objects", {})
    moving = [i for i, trajectory in enumerate(trajectories) if not trajectory.is_anchor]
    with st.expander("Repaint an object (optional): paint the part a drag moves"):
        if not moving:
            st.caption("Draw a drag first.")
        else:
            number = st.selectbox("Object of track", [i + 1 for i in moving], key="repaint_track")
            start = start_key(trajectories[number - 1])
            size = st.slider("Brush size (px)", 5, 80, 30, key="repaint_size")
            st.button("Use the object found again", on_click=forget_painted, args=(start,))
            mask = ui_canvas.painted_mask(
                image,
                trajectories,
                "repaint_column",
                f"repaint-{image_id}-{start}-{st.session_state.brush_rev}",
                size,
                "rgba(255, 149, 0, 0.6)",
            )
            if mask is not None:
                painted[start] = mask
            if start not in painted:
                st.caption(
                    f"Paint over what track {number} should move; until then it moves the object found."
                )
    return {i: painted[start_key(trajectories[i])] for i in moving if start_key(trajectories[i]) in painted}


def start_key(trajectory) -> str:
    """A drag's identity for its painted object: its start point (exact floats)."""
    x, y = trajectory.points_norm[0]
    return f"{x!r},{y!r}"


def forget_painted(start: str) -> None:
    st.session_state.painted_objects.pop(start, None)
    st.session_state.brush_rev += 1  # the painting canvases start empty again


def clear_brush() -> None:
    """A new picture or layout: the brush and the painted objects start empty."""
    ui_brush.clear_brush()
    st.session_state.painted_objects = {}


def _digest(array: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(array).tobytes()).hexdigest()[:12]


def layers_key(image_id: str, trajectories: Trajectories, settings: Settings, engine: EngineChoice) -> str:
    """What the objects of a drawing depend on: the picture, the drags' start points and which of them are
    anchors, the grow/shrink, the segmenter, the painted objects and the depth map."""
    starts = ";".join(f"{start_key(t)},{t.is_anchor:d}" for t in trajectories)
    painted = ";".join(f"{i}:{_digest(m)}" for i, m in sorted(engine.object_masks.items()))
    depth = "" if engine.disparity is None else _digest(engine.disparity)
    return f"{image_id}|{engine.params['grow_px']}|{settings.sam_model}|{starts}|{painted}|{depth}"


def object_layers_for(
    image: np.ndarray, key: str, trajectories: Trajectories, settings: Settings, engine: EngineChoice
) -> list[ObjectLayer]:
    """`core.engines.objects.object_layers` of the drawing, from the session's cache when `key` (see
    `layers_key`) was seen. Raises ModelNotAvailable when a configured SAM cannot be loaded."""
    cache: dict = st.session_state.setdefault("object_layers", {})
    if key in cache:
        cache[key] = cache.pop(key)  # the most recently used last: the oldest is dropped first
    else:
        from core.models import load_sam

        while len(cache) >= LAYER_CACHE_SIZE:
            cache.pop(next(iter(cache)))
        cache[key] = object_layers(
            image,
            trajectories,
            masks=engine.object_masks,
            grow_px=engine.params["grow_px"],
            segmenter=load_sam(settings),
            disparity=engine.disparity,
        )
    return cache[key]
