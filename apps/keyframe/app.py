"""Keyframe app (Gradio): video -> keyframes -> consistent edit -> inbetweened video.

Run: ``python -m apps.keyframe.app --host 127.0.0.1 --port 7862`` (or ``python -m apps keyframe``); the
Settings flags (``--sd-model`` ...) and KINEMA_* variables choose models and limits. Tests import
`demo` (or call `build_demo`) and drive it with gradio_client.

Staged, as users of such tools expect: load a part of a video (frames and suggested keyframes), adjust
the keyframes, preview the edit on the first keyframe, edit all keyframes, re-edit or replace single
keyframes, then inbetween (which writes the run record, params.json, beside the outputs). Per-session data (frames, motion, keyframes, edits) lives in `gr.State`;
the event functions are in `apps.keyframe.handlers`, the job in `apps.keyframe.job`. The edit and inbetween events share one
queue slot ("gpu", limit 1). Image uploads (the colour-grade reference, your own edit) reach the handlers as
paths (:func:`apps.common.gradio.image_upload`) and are read by core.imaging with its size limit; a run's files
are served only to the session that made them (:func:`apps.common.gradio.served_copies`).

API (every work event has an api_name; gradio_client keeps the session across calls):
    /sample_video, /mini_sample_video (the synthetic clip for the mini models, with its working size and
    keyframe spacing), /probe_video, /load_video, /suggest_keyframes, /set_keyframes, /toggle_keyframe,
    /edit_preview, /edit_all, /reedit_keyframe, /upload_edit, /inbetween, /inbetween_images (chain 2+ images,
    :mod:`apps.keyframe.ui_sequence`); /stop_edit, /stop_inbetween (the Stop
    buttons: this session's runs stop at their next step or frame, as they do when the page or client goes away);
    /runs, /run_details, /redo (this session's runs, a run's parameters JSON and files, the controls' values
    that redo it: :mod:`apps.common.runs_panel`). The compare views (a keyframe's original | edit slider, the
    frame scrubber over original | result) and redo are in :mod:`apps.keyframe.compare`.
The edit controls are keyword inputs of the edit events: backend, filter, prompt, negative_prompt,
keyframe_prompts, strength, guidance, steps, seed, low_vram and the filter parameters as EDIT_PARAM (e.g.
``adjust_hue_deg``); only those of the chosen filter are read. The low-VRAM checkbox under the model line
(start: the server's KINEMA_LOW_VRAM) sets the mode of each edit and inbetweening run. /inbetween and
/inbetween_images take the inbetweening controls in the order of `apps.keyframe.interp_controls.INTERP_CONTROLS`
(backend, fps, flow method, motion bucket, steps, seed, decode chunk, low VRAM, noise re-injection, refine
strength). Clicking a frame
in a gallery only fills the "selected frame" number (UI glue, not in the API); the API sets that
number directly.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from apps.common.catalog import APPS
from apps.common.examples import EXAMPLE_FOLDER, MINI_EXAMPLE_LABEL, is_mini
from apps.common.gradio import image_upload, low_vram_checkbox, page_header, serve
from apps.common.start_values import start_values
from apps.keyframe import compare, interp_controls, ui_sequence
from apps.keyframe.backends import EDIT_BACKENDS, INTERP_BACKENDS, MAX_CONTROLNET_SCALE, MODELS, offered
from apps.keyframe.handlers import (
    DEFAULT_FILTER,
    MINI_KEY_EVERY,
    STATE_TTL_S,
    Handlers,
    Session,
    filter_inputs,
)
from apps.keyframe.sample import SAMPLE_VIDEO
from apps.keyframe.video import DEFAULT_WORKING_SIDE, MIN_WORKING_SIDE
from apps.keyframe.views import STRIP_CSS, model_summary
from core.config import LIMITS, Settings
from core.engines.edit import EDITS
from core.engines.keyframes import DEFAULT_THRESHOLDS
from core.eval.learning import MINI_SIDE
from core.flow import METHODS as FLOW_METHODS

GPU = "gpu"  # concurrency_id shared by the model-running events
DEFAULT_SVD_STEPS = 25  # with real weights; presets on the CPU start lower (apps.common.start_values)
Components = dict[str, Any]


def _control(param, key: str):
    """A Gradio control for one EditParam."""
    label = f"{param.name.replace('_', ' ')}"
    if param.kind == "bool":
        return gr.Checkbox(value=param.default, label=label, info=param.help, elem_id=f"kf-{key}")
    if param.kind == "image":  # its path; the handler reads it with core.imaging
        return image_upload(sources=["upload"], label=f"{label}: {param.help}", height=160)
    return gr.Slider(
        param.minimum,
        param.maximum,
        value=param.default,
        step=param.step,
        label=label,
        info=param.help,
        elem_id=f"kf-{key}",
    )


def _video_section(settings: Settings) -> Components:
    """1. The video, the part to use, the working size and the keyframe suggestion (their start values suit
    the mini SVD when it is the configured model: MINI_SIDE px, a keyframe every MINI_KEY_EVERY frames)."""
    max_side = settings.limit("side").high
    mini = is_mini(settings.svd_model)
    ui: Components = {}
    ui["video_in"] = gr.Video(label="Video", sources=["upload"], elem_id="kf-video", height=260)
    with gr.Row():
        ui["sample_btn"] = gr.Button("Use the sample clip", size="sm", elem_id="kf-sample")
        ui["mini_sample_btn"] = gr.Button(
            f"Use the {MINI_EXAMPLE_LABEL} ({MINI_SIDE} px, held-out)", size="sm", elem_id="kf-mini-sample"
        )
    ui["video_info"] = gr.Markdown(label="video info", elem_id="kf-video-info")
    with gr.Row():
        ui["start_s"] = gr.Number(0.0, label="Start (s)", minimum=0, elem_id="kf-start")
        # Text boxes, not gr.Number: gradio shows an empty number field as 0 (the handlers parse the text).
        ui["end_s"] = gr.Textbox(
            label="End (s, empty = to the end)", placeholder="to the end", elem_id="kf-end"
        )
    start = start_values(settings.svd_model, "svd", settings, DEFAULT_WORKING_SIDE, DEFAULT_SVD_STEPS)
    ui["working_side"] = gr.Slider(
        MIN_WORKING_SIDE,
        max_side,
        value=min(start.side, max_side),
        step=32,
        label="Working size (longer side, px)",
        info="larger videos are downscaled to this",
        elem_id="kf-working-side",
    )
    if start.note:
        gr.Markdown(start.note, elem_id="kf-start-note")
    with gr.Accordion("Keyframe suggestion", open=False):
        ui["key_mode"] = gr.Radio(["uniform", "adaptive"], value="uniform", label="Mode")
        ui["key_every"] = gr.Slider(
            1, 32, value=MINI_KEY_EVERY if mini else 8, step=1, label="Uniform: every N frames"
        )
        ui["key_signal"] = gr.Radio(["flow", "appearance"], value="flow", label="Adaptive: signal")
        ui["key_threshold"] = gr.Textbox(
            label="Adaptive: threshold (empty = default)",
            placeholder="default",
            elem_id="kf-threshold",
            info=f"px of motion for flow (default {DEFAULT_THRESHOLDS['flow']:g}), fraction of "
            f"grey range for appearance (default {DEFAULT_THRESHOLDS['appearance']:g})",
        )
        ui["flow_method"] = gr.Dropdown(list(FLOW_METHODS), value="dis", label="Flow method")
    ui["load_btn"] = gr.Button("1. Load frames and suggest keyframes", variant="primary", elem_id="kf-load")
    return ui


def _keyframes_section() -> Components:
    """The status, the frame strip, the keyframe list and the keyframes (original or edited)."""
    ui: Components = {}
    ui["status"] = gr.Markdown(label="status", elem_id="kf-status")
    ui["frame_strip"] = gr.Gallery(
        label="Frames (click one to select it)",
        columns=8,
        height=230,
        allow_preview=False,
        elem_id="kf-frames",
    )
    with gr.Row():
        ui["selected"] = gr.Number(
            None,
            label="Selected frame (click one)",
            placeholder="none",
            precision=0,
            elem_id="kf-selected",
        )
        ui["keys_text"] = gr.Textbox(
            label="Keyframes (frame numbers; edit and press Enter)", scale=3, elem_id="kf-keys"
        )
    with gr.Row():
        ui["toggle_btn"] = gr.Button("Add / remove the selected frame", size="sm")
        ui["suggest_btn"] = gr.Button("Suggest keyframes again", size="sm")
    # PNG, not the lossy default: the keyframes are shown (and returned by the API) exactly.
    ui["key_gallery"] = gr.Gallery(
        label="Keyframes (click one to select it)",
        columns=6,
        height=260,
        format="png",
        elem_id="kf-keyframes",
    )
    return ui


def _filter_controls() -> Components:
    """The filter choice and, per filter, a group of its parameters (shown for the chosen filter)."""
    ui: Components = {"filter_groups": [], "filter_controls": {}}
    ui["filter_name"] = gr.Dropdown(
        [(e.label, e.name) for e in EDITS.values()], value=DEFAULT_FILTER, label="Filter", elem_id="kf-filter"
    )
    for edit in EDITS.values():
        with gr.Group(visible=edit.name == DEFAULT_FILTER) as group:
            gr.Markdown(edit.description)
            for key, name, param in filter_inputs():
                if name == edit.name:
                    ui["filter_controls"][key] = _control(param, key)
        ui["filter_groups"].append(group)
    return ui


def _edit_section(settings: Settings) -> Components:
    """2. The edit backend and its settings, the edit buttons, the preview and an own edit."""
    gr.Markdown("### 2. Edit the keyframes")
    ui: Components = {}
    ui["edit_backend"] = gr.Radio(
        [(b.label, b.name) for b in offered(EDIT_BACKENDS, settings)],
        value="filter",
        label="Edit backend",
        elem_id="kf-edit-backend",
    )
    with gr.Group(visible=True) as ui["filter_group"]:
        ui.update(_filter_controls())
    with gr.Group(visible=False) as ui["sd_group"]:
        ui["prompt"] = gr.Textbox(
            "", label="Prompt", placeholder="a watercolour painting", elem_id="kf-prompt"
        )
        ui["negative_prompt"] = gr.Textbox("", label="Negative prompt")
        ui["keyframe_prompts"] = gr.Textbox(
            "",
            label="Per-keyframe prompts (optional), one 'FRAME: prompt' per line",
            lines=3,
            placeholder="16: the same scene at night",
        )
        with gr.Row():
            ui["strength"] = gr.Slider(0.05, 1.0, value=0.6, step=0.05, label="Strength")
            ui["guidance"] = gr.Slider(0.0, 20.0, value=7.5, step=0.5, label="Guidance")
        with gr.Row():
            ui["edit_steps"] = gr.Slider(
                LIMITS["edit_steps"].low,
                LIMITS["edit_steps"].high,
                value=start_values(settings.sd_model, "sd", settings, DEFAULT_WORKING_SIDE, 30).steps,
                step=1,
                label="Steps",
            )
            ui["edit_seed"] = gr.Number(0, label="Seed", precision=0)
        ui["controlnet_scale"] = gr.Slider(
            0.0,
            MAX_CONTROLNET_SCALE,
            value=1.0,
            step=0.1,
            label="ControlNet scale (canny edges)",
            info="Keeps the keyframes' edges when KINEMA_CONTROLNET_MODEL is set (0: off)",
        )
    with gr.Row():
        ui["preview_btn"] = gr.Button("2a. Preview on the first keyframe", elem_id="kf-preview")
        ui["edit_btn"] = gr.Button("2b. Edit all keyframes", variant="primary", elem_id="kf-edit-all")
    with gr.Row():
        ui["reedit_btn"] = gr.Button("Re-edit the selected keyframe", size="sm")
        ui["edit_stop"] = gr.Button("Stop", variant="stop", size="sm", elem_id="kf-edit-stop")
    ui["edit_estimate"] = gr.Markdown(elem_id="kf-edit-estimate", min_height=48)
    ui["preview"] = gr.Image(label="Preview: original | edited", interactive=False, height=240, format="png")
    ui["compare"] = compare.keyframe_view()
    with gr.Accordion("Your own edit for the selected keyframe", open=False):
        ui["own_image"] = image_upload(sources=["upload"], label="Image", height=200)
        ui["upload_btn"] = gr.Button("Use it for the selected keyframe", size="sm")
    return ui


def _inbetween_section(settings: Settings) -> Components:
    """3. The inbetweening backend and its settings, the result and the downloads."""
    gr.Markdown("### 3. Inbetween")
    ui: Components = {}
    ui["interp_backend"] = gr.Radio(
        [(b.label, b.name) for b in offered(INTERP_BACKENDS, settings)],
        value="flow",
        label="Inbetweening backend",
        elem_id="kf-interp-backend",
    )
    ui["out_fps"] = gr.Number(0, label="Output fps (0 = the video's)", minimum=0)
    with gr.Group(visible=True) as ui["flow_group"]:
        ui["interp_flow_method"] = gr.Dropdown(list(FLOW_METHODS), value="dis", label="Flow method")
    with gr.Group(visible=False) as ui["svd_group"]:
        ui["motion_bucket"] = gr.Slider(0, 255, value=127, step=1, label="Motion bucket")
        with gr.Row():
            steps = start_values(settings.svd_model, "svd", settings, DEFAULT_WORKING_SIDE, DEFAULT_SVD_STEPS)
            ui["interp_steps"] = gr.Slider(
                LIMITS["interp_steps"].low,
                LIMITS["interp_steps"].high,
                value=steps.steps,
                step=1,
                label="Steps",
                elem_id="kf-interp-steps",
            )
            ui["interp_seed"] = gr.Number(0, label="Seed", precision=0)
        ui["reinjection"] = gr.Slider(
            LIMITS["noise_reinjection"].low,
            LIMITS["noise_reinjection"].high,
            value=0,
            step=1,
            label="Noise re-injection",
            info="Repeat the first half of the steps with fresh noise (0: off; each repeat costs a step)",
        )
        ui["refine_strength"] = interp_controls.refine_slider()
        ui["decode_chunk"] = gr.Slider(
            LIMITS["decode_chunk_size"].low,
            LIMITS["decode_chunk_size"].high,
            value=8,
            step=1,
            label="Decode chunk size (frames)",
        )
    with gr.Row():
        ui["interp_btn"] = gr.Button("3. Inbetween", variant="primary", elem_id="kf-inbetween", scale=3)
        ui["interp_stop"] = gr.Button("Stop", variant="stop", elem_id="kf-inbetween-stop", scale=1)
    ui["interp_estimate"] = gr.Markdown(elem_id="kf-inbetween-estimate", min_height=48)
    ui["result"] = gr.Video(label="Result", elem_id="kf-result", autoplay=True, loop=True, height=360)
    ui["result_side"] = gr.Video(
        label="Original | result (in step)", elem_id="kf-side-by-side", loop=True, height=240
    )
    ui["scrub"], ui["frame_compare"] = compare.scrubber_views()
    ui["downloads"] = gr.File(label="Downloads", file_count="multiple", elem_id="kf-downloads")
    ui.update(ui_sequence.build())
    return ui


def _video_and_keyframe_events(h: Handlers, ui: Components) -> None:
    """Step 1 and the keyframe list: sample, probe, load, suggest, set, toggle, gallery clicks."""
    ui["sample_btn"].click(h.sample_video, None, ui["video_in"], api_name="sample_video", queue=False)
    ui["mini_sample_btn"].click(
        h.mini_sample_video,
        None,
        [ui["video_in"], ui["working_side"], ui["key_every"]],
        api_name="mini_sample_video",
        queue=False,
    )
    ui["video_in"].change(
        h.probe_video,
        ui["video_in"],
        [ui["video_info"], ui["start_s"], ui["end_s"]],
        api_name="probe_video",
        queue=False,
    )
    key_inputs = [ui[k] for k in ("key_mode", "key_every", "key_signal", "key_threshold", "flow_method")]
    keys_out = [ui["keys_text"], ui["key_gallery"], ui["status"]]
    ui["load_btn"].click(
        h.load_video,
        [ui["video_in"], ui["start_s"], ui["end_s"], ui["working_side"], *key_inputs],
        [ui["session"], ui["status"], ui["frame_strip"], ui["keys_text"], ui["key_gallery"]],
        api_name="load_video",
    )
    ui["suggest_btn"].click(
        h.suggest_keyframes,
        [ui["session"], *key_inputs],
        [ui["session"], ui["keys_text"], ui["key_gallery"], ui["status"]],
        api_name="suggest_keyframes",
    )
    ui["keys_text"].submit(
        h.set_keyframes, [ui["session"], ui["keys_text"]], keys_out, api_name="set_keyframes"
    )
    ui["toggle_btn"].click(
        h.toggle_keyframe,
        [ui["session"], ui["selected"], ui["keys_text"]],
        keys_out,
        api_name="toggle_keyframe",
    )
    # Gallery clicks only fill the selected-frame number; the API sets that number itself.
    glue = {"queue": False, "api_visibility": "private"}
    ui["frame_strip"].select(h.select_frame, None, ui["selected"], **glue)
    ui["key_gallery"].select(h.select_keyframe, ui["keys_text"], ui["selected"], **glue)


def _edit_and_inbetween_events(demo: gr.Blocks, h: Handlers, ui: Components) -> None:
    """Steps 2 and 3: the edit events (edit controls as keyword inputs), uploads, inbetweening, their Stop
    buttons, visibility."""
    edit_controls = {
        "backend": ui["edit_backend"],
        "filter": ui["filter_name"],
        "prompt": ui["prompt"],
        "negative_prompt": ui["negative_prompt"],
        "keyframe_prompts": ui["keyframe_prompts"],
        "strength": ui["strength"],
        "guidance": ui["guidance"],
        "steps": ui["edit_steps"],
        "seed": ui["edit_seed"],
        "controlnet_scale": ui["controlnet_scale"],
        "low_vram": ui["low_vram"],
        **ui["filter_controls"],
    }
    gpu = {"concurrency_id": GPU, "concurrency_limit": 1}
    session, keys_text, selected = ui["session"], ui["keys_text"], ui["selected"]
    edited_out = [session, ui["key_gallery"], ui["status"]]
    # Edit progress shows under the edit buttons, where the click was (not on the keyframes at the top).
    edit = {**gpu, "inputs_kwargs": edit_controls, "show_progress_on": [ui["edit_estimate"]]}
    preview = ui["preview_btn"].click(
        h.edit_preview, [session, keys_text], [ui["preview"], ui["status"]], api_name="edit_preview", **edit
    )
    edit_all = ui["edit_btn"].click(h.edit_all, [session, keys_text], edited_out, api_name="edit_all", **edit)
    reedit = ui["reedit_btn"].click(
        h.reedit_keyframe, [session, keys_text, selected], edited_out, api_name="reedit_keyframe", **edit
    )
    upload = ui["upload_btn"].click(
        h.upload_edit, [session, keys_text, selected, ui["own_image"]], edited_out, api_name="upload_edit"
    )
    interp_inputs = [ui[k] for k in interp_controls.INTERP_CONTROLS]
    inbetween = ui["interp_btn"].click(
        h.inbetween,
        [session, keys_text, *interp_inputs],
        [session, ui["result"], ui["result_side"], ui["downloads"], ui["status"]],
        api_name="inbetween",
        show_progress_on=[ui["interp_estimate"]],
        **gpu,
    )
    edits = [preview, edit_all, reedit]
    chain = ui_sequence.wire(h, ui, interp_inputs, gpu)
    stops = {
        "stop_edit": (ui["edit_stop"], edits),
        "stop_inbetween": (ui["interp_stop"], [inbetween, chain]),
    }
    h.stops.wire(demo, ui["status"], stops)
    glue = {"queue": False, "api_visibility": "private"}
    costs = ["edit_backend", "edit_steps", "strength"]  # `views.estimate_lines` names them, in this order
    costs += ["interp_backend", "interp_steps", "reinjection", "refine_strength"]
    # The estimate lines follow the controls, and every run rewrites them when it ends, which also clears an
    # "Error" badge its progress left there: a failed run says why in its message, and a run that a Stop ended
    # first (it raised Cancelled before Gradio cancelled its event) is no error at all.
    estimates = {
        "fn": h.estimates,
        "inputs": [session, keys_text, *(ui[name] for name in costs)],
        "outputs": [ui["edit_estimate"], ui["interp_estimate"]],
        **glue,
    }
    gr.on([keys_text.change, *(ui[name].change for name in costs)], **estimates)
    for run in (*edits, upload, inbetween):
        run.then(**estimates)
    keys_text.change(h.mark_keyframes, [session, keys_text], ui["frame_strip"], **glue)
    _compare_events(demo, h, ui, [edit_all, reedit, upload], inbetween, chain)
    backend = ui["edit_backend"]
    backend.change(h.show_edit_backend, backend, [ui["filter_group"], ui["sd_group"]], **glue)
    ui["filter_name"].change(h.show_filter, ui["filter_name"], ui["filter_groups"], **glue)
    interp_backend = ui["interp_backend"]
    shown = [ui[name] for name in interp_controls.SHOWN_BY_OPTION]  # by the backend's options
    interp_backend.change(interp_controls.show_interp_backend, interp_backend, shown, **glue)


def _compare_events(demo: gr.Blocks, h: Handlers, ui: Components, edits: list, inbetween, chain) -> None:
    """The compare views (a keyframe's original | edit after each edit and selection; frame i of original |
    result after inbetweening, by the scrubber) and the Runs panel (listed after each inbetweening, of a video
    or a chain of images)."""
    glue = {"queue": False, "api_visibility": "private"}
    pair_inputs = [ui["session"], ui["keys_text"], ui["selected"]]
    for edit in edits:
        edit.success(compare.edited_pair, pair_inputs, ui["compare"], **glue)
    ui["selected"].change(compare.edited_pair, pair_inputs, ui["compare"], **glue)
    inbetween.success(compare.scrubber_after_run, ui["session"], [ui["scrub"], ui["frame_compare"]], **glue)
    ui["scrub"].change(compare.frame_pair, [ui["session"], ui["scrub"]], ui["frame_compare"], **glue)
    redo_outputs = [*(ui[name] for name in compare.REDO_CONTROLS), *ui["filter_controls"].values()]
    h.runs.wire(demo, ui, [inbetween, chain], compare.redo_values, redo_outputs)


def build_demo(settings: Settings, offline: bool = False) -> gr.Blocks:
    """The app's Blocks for these settings (models, limits, output folder); `offline`: the copy on the offline
    models (:mod:`apps.common.offline`), which says so."""
    h = Handlers(settings)
    spec = APPS["keyframe"]
    with gr.Blocks(title=spec.title, delete_cache=(3600, 6 * 3600)) as demo:
        ui: Components = {"session": gr.State(Session(), time_to_live=STATE_TTL_S)}
        gr.HTML(head=f"<style>{STRIP_CSS}</style>", padding=False)
        page_header(spec, settings, MODELS, offline)
        gr.Markdown(model_summary(settings))
        ui["low_vram"] = low_vram_checkbox(settings, "kf-low-vram")  # the SD edits and the SVD inbetweening
        with gr.Row():
            with gr.Column(scale=1):
                ui.update(_video_section(settings))
            with gr.Column(scale=2):
                ui.update(_keyframes_section())
        with gr.Row():
            with gr.Column():
                ui.update(_edit_section(settings))
            with gr.Column():
                ui.update(_inbetween_section(settings))
        ui.update(h.runs.build())
        _video_and_keyframe_events(h, ui)
        _edit_and_inbetween_events(demo, h, ui)
    return demo


# Folders besides the output folder that the app serves files from.
SERVED_FOLDERS = [SAMPLE_VIDEO.parent, EXAMPLE_FOLDER]

demo = build_demo(Settings.from_env())


def main(argv: list[str] | None = None) -> int:
    return serve(
        "python -m apps.keyframe.app", __doc__.split("\n\n")[0], 7862, demo, build_demo, SERVED_FOLDERS, argv
    )


if __name__ == "__main__":
    raise SystemExit(main())
