"""The drag app's engine section: what a drag moves, and that engine's controls.

- "objects" (`core.engines.objects`): each drag moves the object under its start. The objects are found
  once per picture and drawing (`object_layers_for`: cached in the session, keyed by the working image and
  the drags' start points, since nothing else changes them) with SAM when KINEMA_SAM_MODEL is set
  (`core.models.load_sam`), GrabCut otherwise; a slider grows or shrinks them, and a drag's object can be
  repainted by hand (a brush stroke on its own canvas replaces the object found; kept per drag start
  point, so it follows the drag through deletions and redraws of others).
- "sheet" (`core.engines.warp`): the whole picture moves as a smooth field, shaped by the reach (the
  smallest distance a drag pulls, default 0.1 x the shorter side) and the optional motion brush
  (`apps.drag.ui_brush`).

Session state it uses (see `apps.drag.app`): brush_rev, object_layers (the cache), painted_objects.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import streamlit as st

from apps.drag import ui_brush, ui_canvas
from apps.drag.params import DragParams
from core.config import Settings
from core.engines.objects import ObjectLayer, object_layers
from core.trajectory import Trajectories

ENGINE_LABELS = {"objects": "The object under each drag", "sheet": "The whole picture (sheet)"}
# Cached drawings per session: enough to go back and forth between a few edits without segmenting again.
LAYER_CACHE_SIZE = 8


@dataclass(frozen=True)
class EngineChoice:
    """The engine section's choices: the DragParams fields it sets (`params`: engine, grow_px, radius), the
    motion-brush mask (H,W) bool or None (sheet only) and the painted objects {drag index: (H,W) bool}
    (objects only)."""

    params: dict
    region_mask: np.ndarray | None
    object_masks: dict[int, np.ndarray] = field(default_factory=dict)


def engine_controls(image: np.ndarray, image_id: str, trajectories: Trajectories) -> EngineChoice:
    """The engine radio and the chosen engine's controls (under the canvas)."""
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
        return EngineChoice({"engine": name, "grow_px": grow_px, "radius": None}, None, painted)
    return EngineChoice(
        {"engine": name, "grow_px": 0, "radius": reach_control(image.shape[:2])},
        ui_brush.motion_brush(image, image_id, trajectories),
    )


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


def layers_key(
    image_id: str,
    trajectories: Trajectories,
    grow_px: int,
    settings: Settings,
    masks: dict[int, np.ndarray],
) -> str:
    """What the objects of a drawing depend on: the picture, the drags' start points and which of them are
    anchors, the grow/shrink, the segmenter and the painted objects."""
    starts = ";".join(f"{start_key(t)},{t.is_anchor:d}" for t in trajectories)
    painted = ";".join(f"{i}:{hashlib.sha1(m.tobytes()).hexdigest()[:12]}" for i, m in sorted(masks.items()))
    return f"{image_id}|{grow_px}|{settings.sam_model}|{starts}|{painted}"


def object_layers_for(
    image: np.ndarray,
    key: str,
    trajectories: Trajectories,
    grow_px: int,
    settings: Settings,
    masks: dict[int, np.ndarray],
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
            image, trajectories, masks=masks, grow_px=grow_px, segmenter=load_sam(settings)
        )
    return cache[key]
