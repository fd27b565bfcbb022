"""The joint-depth app's compare view, phone layout and redo (UI only; `apps.joint_depth.app` wires them).

- Compare: a before/after slider (``gr.ImageSlider``) of a sample's image and its depth colour map, for every
  mode (each yields both); a click on a sample in either gallery shows that sample.
- Phone layout (CSS, below 768 px): the results come right after the mode tabs and their start buttons, before
  the settings, and a start button scrolls to them, so Generate changes what is on screen; the tabs wrap
  instead of hiding in a "..." menu.
- Redo: a run record (:mod:`apps.common.history`) back into the controls, through the job's
  ``request_from_record``, so the user sees the run's settings and starts it again; an image -> depth or
  depth -> image run's input is put back from the run's own copy of it (the first sample's given modality,
  written as uploaded), so a redo does not depend on Gradio still keeping the upload.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from apps.common.gradio import served_copies
from apps.common.history import RunEntry
from apps.joint_depth import job
from core.errors import InputError

# One sample's served files: (image, depth colour map, point cloud).
Sample = tuple[str, str, str]

PHONE_CSS = """
@media (max-width: 768px) {
  #jd-main { flex-direction: column; }
  #jd-inputs { display: contents; }
  #jd-modes { order: 1; }
  #jd-results { order: 2; }
  #jd-settings { order: 3; }
}
"""
# A start button's client-side click on a phone: bring the results (just below the buttons) into view.
SHOW_RESULTS_JS = """() => {
  if (window.matchMedia('(max-width: 768px)').matches) {
    document.getElementById('jd-results').scrollIntoView({block: 'start'});
  }
}"""


def page_style() -> gr.HTML:
    """The phone layout, as a style element in the page (it holds whichever way the app is served)."""
    return gr.HTML(f"<style>{PHONE_CSS}</style>", padding=False, elem_id="jd-style")


def compare_view() -> gr.ImageSlider:
    return gr.ImageSlider(
        label="Compare: image | depth (drag the handle)",
        type="filepath",
        interactive=False,
        max_height=360,
        elem_id="jd-compare",
    )


def pair(samples: list[Sample] | None, index: int = 0) -> tuple[str, str] | None:
    """The slider's value for sample `index`: (image, depth colour map)."""
    if not samples or not 0 <= index < len(samples):
        return None
    image, depth_color, _ = samples[index]
    return image, depth_color


def select_sample(samples: list[Sample] | None, evt: gr.SelectData):
    """A click on a sample in either gallery: its point cloud and its image | depth pair."""
    if not samples or not 0 <= evt.index < len(samples):
        return gr.update(), gr.update()
    return samples[evt.index][2], pair(samples, evt.index)


def redo_values(entry: RunEntry, weight_names: dict[str, str]) -> tuple[Any, ...]:
    """The controls' values that redo `entry` (see `REDO_CONTROLS`); the weights by their listed name."""
    request = job.request_from_record(entry.record, entry.folder)
    if request.weights and request.weights not in weight_names:
        raise InputError(
            f"Run {entry.name} used joint weights that are no longer listed (Refresh, or choose others)."
        )
    given = Path(request.input_path)  # the run's own copy of its input (image -> depth, depth -> image)
    upload = served_copies([given])[0] if request.mode != "joint" and given.is_file() else None
    keep = gr.skip()  # the other modes' controls stay as they are (never gr.update() an image_upload)
    size = request.mode == "joint"
    given = {
        "image_to_depth": request.mode == "image_to_depth",
        "depth_to_image": request.mode == "depth_to_image",
    }
    start = {"joint": "Generate", "image_to_depth": "Estimate depth", "depth_to_image": "Generate image"}[
        request.mode
    ]
    status = f"Settings of run {entry.name} loaded: press {start}."
    if request.mode != "joint" and upload is None:
        status += " Upload its input again (the run folder no longer holds it)."
    return (
        gr.Tabs(selected=request.mode),
        request.prompt if size else keep,
        request.negative_prompt if size else keep,
        request.height if size else keep,
        request.width if size else keep,
        upload if given["image_to_depth"] else keep,
        request.prompt if given["image_to_depth"] else keep,
        request.side if given["image_to_depth"] else keep,
        upload if given["depth_to_image"] else keep,
        request.prompt if given["depth_to_image"] else keep,
        request.negative_prompt if given["depth_to_image"] else keep,
        request.side if given["depth_to_image"] else keep,
        weight_names.get(request.weights, ""),
        request.steps,
        request.guidance,
        request.seed,
        request.batch,
        bool(entry.record.settings.get("low_vram", False)),
        request.near,
        request.far,
        request.fov_deg,
        request.max_points,
        status,
    )


# The settings every run takes as keyword inputs (keys of the app's component dict), in `redo_values`' order.
RUN_SETTINGS = (
    "weights",
    "steps",
    "guidance",
    "seed",
    "batch",
    "low_vram",
    "near",
    "far",
    "fov_deg",
    "max_points",
)
# The components `redo_values` fills, in its order.
REDO_CONTROLS = (
    "tabs",
    "prompt",
    "negative",
    "height",
    "width",
    "image_in",
    "image_prompt",
    "image_side",
    "depth_in",
    "depth_prompt",
    "depth_negative",
    "depth_side",
    *RUN_SETTINGS,
    "status",
)
