"""The drag app's "Runs" panel: this session's earlier runs (`apps.common.history`), newest first, each with a
thumbnail, what it ran, its parameters (the run record) and its files, and "Redo with these settings".

Redo reads the run back as the job does (`job.request_from_record`) and puts it into the page: every
`DragParams` field into its widget, the tracks with their timing onto the canvas, the motion brush, the painted
objects, the depth map, the low-VRAM choice, and the picture: the sample photo it was made from, or else the
run's own picture (an upload, as it was animated) as a third "Source"; the user sees the settings and presses
Generate, which writes the same parameters again.

Session state it uses (see `apps.drag.app`): run_history (this session's `RunHistory`), redo_bucket (the
motion bucket a redo sets, which the suggestion for the drawing it loads must not replace), run_picture and
pending_inputs (the picture and the inputs it puts in).
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from apps.common.history import RunEntry, RunHistory
from apps.drag import backends, job, ui_engine
from core.config import Settings
from core.errors import InputError

RUNS_LABEL = "Runs (this session)"
RUN_PICTURE = "Redone run"


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
        inputs = ui_engine.RunInputs(
            None if request.region_mask is None else job.read_mask(request.region_mask),
            {index: job.read_mask(path) for index, path in request.object_masks},
            None if request.depth is None else _read(request.depth),
        )
        picture = _read(request.image)
    except InputError as err:
        state.run_error = str(err)
        return
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
    else:
        state.run_picture = (image_name or entry.name, picture)
        state.source = RUN_PICTURE
    state.pending_trajectories = trajectories
    state.pending_inputs = inputs
    state.run_error = None


def _read(path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise InputError(f"The run's file {Path(path).name} cannot be read ({err.strerror}).") from err
