"""The drag app's "Runs" panel: this session's earlier runs (`apps.common.history`), newest first, each with a
thumbnail, what it ran, its parameters (the run record) and its files, and "Redo with these settings".

Redo reads the run back as the job does (`job.request_from_record`) and puts it into the page: every
`DragParams` field into its widget, the tracks with their timing onto the canvas, the motion brush, the
low-VRAM choice, and the sample photo it was made from (an uploaded picture stays whatever is uploaded;
painted objects and a depth map are painted or uploaded again); the user sees the settings and presses
Generate, which writes the same parameters again.

Session state it uses (see `apps.drag.app`): run_history (this session's `RunHistory`), redo_bucket (the
motion bucket a redo sets, which the suggestion for the drawing it loads must not replace).
"""

from __future__ import annotations

import streamlit as st

from apps.common.history import RunEntry, RunHistory
from apps.drag import backends, job, ui_brush
from core.config import Settings
from core.errors import InputError
from core.imaging import load_image

RUNS_LABEL = "Runs (this session)"


def history() -> RunHistory:
    return st.session_state.setdefault("run_history", RunHistory())


def remember(result: job.DragResult) -> None:
    """List a finished run (by its record) in this session's panel."""
    history().add(result.outputs.record)


def runs_panel(settings: Settings, samples: list[str]) -> None:
    """The panel (nothing before the first run). `samples`: the sample photos a redo can pick again."""
    entries, notes = history().entries()
    if not entries and not notes:
        return
    with st.expander(f"{RUNS_LABEL}: {len(entries)}"):
        for note in notes:
            st.caption(note)
        for entry in entries:
            thumb_col, text_col = st.columns([1, 3])
            thumbnail = entry.thumbnail_uint8()
            if thumbnail is not None:
                thumb_col.image(thumbnail)
            arguments = entry.record.arguments
            text_col.markdown(
                f"**{entry.name}**: {backends.loaded_label(arguments['backend'], settings)}, "
                f"{arguments['frames']} frames at {arguments['fps']} fps"
            )
            text_col.caption(entry.summary())
            text_col.button(
                "Redo with these settings", key=f"redo-{entry.name}", on_click=redo, args=(entry, samples)
            )
            if text_col.toggle("Parameters and files", key=f"details-{entry.name}"):
                text_col.code(entry.parameters_json(), language="json")
                for path in entry.downloads():
                    text_col.download_button(
                        path.name, path.read_bytes, file_name=path.name, key=f"file-{entry.name}-{path.name}",
                        on_click="ignore",
                    )  # fmt: skip


def redo(entry: RunEntry, samples: list[str]) -> None:
    """Put run `entry` into the page (see the module docstring); a run that cannot be read says why."""
    state = st.session_state
    try:
        request = job.request_from_record(entry.record, entry.folder)
        trajectories = job.load_trajectories(request.trajectories)
        mask = None if request.region_mask is None else load_image(request.region_mask).max(axis=2) >= 128
    except InputError as err:
        state.run_error = str(err)
        return
    if mask is None:
        ui_brush.clear_brush()
        state.use_brush = False
    else:
        ui_brush.load_brush(mask)
    params = request.params.to_arguments()
    for name in (
        "backend",
        "engine",
        "grow_px",
        "depth_white",
        "frames",
        "fps",
        "camera",
        "resize",
        "max_side",
    ):
        state[name] = params[name]
    for name in ("steps", "noise_aug", "seed", "controlnet_scale"):
        state[name] = params[name]
    if params["strength"] is not None:
        state[f"strength_{params['backend']}"] = params["strength"]
    state.custom_reach = params["radius"] is not None
    if params["radius"] is not None:
        state.radius = round(params["radius"])
    state.redo_bucket = params["motion_bucket"]
    state.low_vram = entry.record.settings.get("low_vram") == "True"
    image_name = entry.record.arguments.get("image_name")
    if image_name in samples:
        state.source, state.sample = "Sample photo", image_name
    state.pending_trajectories = trajectories
    state.run_error = None
