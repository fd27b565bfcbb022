"""The keyframe app's compare views and redo (UI only; `apps.keyframe.app` lays them out and wires them).

- A keyframe's original | edit on a before/after slider (``gr.ImageSlider``): the selected keyframe when it is
  edited, else the first edited one; shown after each edit and on each selection.
- Original | result in step: the side-by-side video (one player, so both halves play in sync; written by the
  job with ``core.video.side_by_side``) and a frame scrubber whose slider shows frame i of both.
- Redo: a run record (:mod:`apps.common.history`) back into the controls (``job.request_from_record``): the
  part of the video, the keyframes, the first edit's settings and the inbetweening's. The video itself is not
  loaded again: the status names it and the steps to take. A chain of images puts back its images, frames
  between, loop and inbetweening (``apps.keyframe.ui_sequence.redo_values``).
"""

from __future__ import annotations

from typing import Any

import gradio as gr
import numpy as np

from apps.common.history import RunEntry
from apps.keyframe import job, ui_sequence
from apps.keyframe.handlers import Session, filter_inputs
from apps.keyframe.interp_controls import INTERP_CONTROLS, interp_values
from apps.keyframe.keyframes import format_indices, parse_indices
from core.errors import InputError

COMPARE_LABEL = "Compare a keyframe: original | edited (drag the handle; click a keyframe to choose it)"


def keyframe_view() -> gr.ImageSlider:
    return gr.ImageSlider(
        label=COMPARE_LABEL, interactive=False, format="png", max_height=300, elem_id="kf-compare"
    )


def scrubber_views() -> tuple[gr.Slider, gr.ImageSlider]:
    """The frame scrubber and its original | result slider (filled after inbetweening)."""
    scrub = gr.Slider(0, 1, value=0, step=1, label="Frame (original | result)", elem_id="kf-scrub")
    frame = gr.ImageSlider(
        label="Frame i: original | result",
        interactive=False,
        format="png",
        max_height=300,
        elem_id="kf-frame",
    )
    return scrub, frame


def edited_pair(session: Session | None, keys_text: str, selected: float | None):
    """(original, edited) of the selected keyframe when it is edited, else of the first edited keyframe;
    None before any edit."""
    if session is None or session.video is None or not session.edited:
        return None
    try:
        keys = parse_indices(keys_text) if (keys_text or "").strip() else []
    except InputError:  # a list being typed: the keyframe steps say what is wrong with it
        keys = []
    edited = [index for index in keys if index in session.edited] or sorted(session.edited)
    index = int(selected) if selected is not None and int(selected) in edited else edited[0]
    return session.video.frames_uint8[index], session.edited[index]


def frame_pair(session: Session | None, frame: float | None):
    """(original frame i, result frame i) of the last inbetweening; None before one."""
    if session is None or session.video is None or session.result_uint8 is None:
        return None
    frames = min(len(session.video.frames_uint8), len(session.result_uint8))
    index = int(np.clip(frame or 0, 0, frames - 1))
    return session.video.frames_uint8[index], session.result_uint8[index]


def scrubber_after_run(session: Session | None):
    """After inbetweening: the scrubber's range over the result's frames (at frame 0) and frame 0 of both."""
    if session is None or session.result_uint8 is None:
        return gr.skip(), None
    frames = min(len(session.video.frames_uint8), len(session.result_uint8))
    return gr.Slider(0, frames - 1, value=0, step=1), frame_pair(session, 0)


def redo_values(entry: RunEntry) -> tuple[Any, ...]:
    """The controls' values that redo `entry`, in the order of `REDO_CONTROLS` then the filter controls
    (``filter_inputs()`` order; those of other filters and image parameters stay as they are). A chain of
    images (the images panel's run) fills step 3 and the panel only."""
    keep = gr.skip()
    low_vram = bool(entry.record.settings.get("low_vram", False))
    if "images" in entry.record.arguments:
        chain = ui_sequence.redo_values(entry, low_vram)
        return (keep,) * REDO_CONTROLS.index("interp_backend") + chain + (keep,) * len(filter_inputs())
    request = job.request_from_record(entry.record, entry.folder)
    edits = [step.edit for step in request.keyframe_edits if step.edit is not None]
    edit = edits[0] if edits else None
    status = (
        f"Settings of run {entry.name} loaded (video {entry.record.arguments['video']['source']}): load it "
        "(step 1) if it is not loaded, edit the keyframes (2b) and inbetween (3)."
    )
    if len(request.keyframe_edits) > 1:
        status += f" The run edited its keyframes in {len(request.keyframe_edits)} goes; the controls show the first's."
    edit_values = (
        (keep,) * 9
        if edit is None
        else (
            edit.backend,
            edit.filter,
            edit.prompt,
            edit.negative_prompt,
            "\n".join(f"{frame}: {text}" for frame, text in edit.keyframe_prompts.items()),
            edit.strength,
            edit.guidance,
            edit.steps,
            edit.seed,
        )
    )
    filters = []
    for _, name, param in filter_inputs():
        value = edit.filter_params.get(param.name) if edit is not None and name == edit.filter else None
        filters.append(keep if value is None or param.kind == "image" else value)
    return (
        request.start_s,
        request.end_s,
        request.working_side,
        format_indices(sorted(request.keyframe_reasons)),
        *edit_values,
        *interp_values(request.interp, low_vram),
        status,
        *(keep,) * len(ui_sequence.REDO_CONTROLS),
        *filters,
    )


# The components `redo_values` fills, in its order (keys of the app's component dict), before the filters'.
REDO_CONTROLS = (
    "start_s",
    "end_s",
    "working_side",
    "keys_text",
    "edit_backend",
    "filter_name",
    "prompt",
    "negative_prompt",
    "keyframe_prompts",
    "strength",
    "guidance",
    "edit_steps",
    "edit_seed",
    *INTERP_CONTROLS,
    "status",
    *ui_sequence.REDO_CONTROLS,
)
