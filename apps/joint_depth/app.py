"""Joint-depth app (Gradio): prompt -> image + depth; image -> depth; depth -> image.

Run: ``python -m apps.joint_depth.app --host 127.0.0.1 --port 7861`` (or ``python -m apps joint``); the
Settings flags (``--sd-model``, ``--joint-weights`` ...) and KINEMA_* variables choose models and limits. Tests
import `demo` (or call `build_demo`) and drive it with gradio_client.

Three tabs share the settings column (joint weights, steps, guidance, seed, batch, the low-VRAM mode for the
run, point-cloud camera) and the results column: images, depth colour maps, the point cloud of the selected
sample (gr.Model3D, a binary PLY: gradio 6 draws a PLY without Gaussian-splat fields as a point cloud), and
the downloads (PNG image, 16-bit depth PNG, colour map, PLY per sample, params.json), an image | depth
compare slider, and this session's earlier runs with "Redo with these settings" (:mod:`apps.common.runs_panel`;
compare view, phone layout and redo: :mod:`apps.joint_depth.compare`). Without SD weights the
app runs on the tiny preset and the banner says so; without joint weights it runs the untrained patch and says
so too. With ``KINEMA_SD_MODEL=mini`` the banner says what the mini models are, the steps start at 15, and each
tab's examples start with the held-out synthetic scene they were made for (:mod:`apps.common.examples`); a preset
model on the CPU starts at CPU-sized steps (:mod:`apps.common.start_values`). Under each start button, the run's
time estimate (:mod:`core.estimate`) follows the sizes, steps and batch; while it runs, the progress bar says
"step i of N - P% - about N s left".

Uploads reach the handlers as paths, undecoded (:func:`apps.common.gradio.image_upload`), and are read by
core.imaging, which checks the size from the header before decoding and answers unreadable files with one
sentence. A colour image given as a depth map is refused (its colours are not depth); a grey image stored as
RGB is accepted.

Privacy: results are served only through the links each run hands its own session
(:func:`apps.common.gradio.served_copies`); the page shows the run's name, never a server path. The joint
weights are picked by name from the folders under Settings.joint_weights; any other value is refused alike,
whether or not such a path exists on the server.

API (every event has an api_name; model events share one queue slot, "gpu", limit 1):
    /startup (model banner and its native size; runs on page load), /model_status (banner for a weights
    choice), /list_weights, /generate, /image_to_depth, /depth_to_image; /stop_generate, /stop_image_to_depth,
    /stop_depth_to_image (the Stop buttons: this session's runs stop at their next denoising step, as they do
    when the page or client goes away); /runs, /run_details, /redo (this session's runs, a run's parameters
    JSON and files, the controls' values that redo it).
The settings are keyword inputs: weights, steps, guidance, seed, batch, low_vram, near, far, fov_deg,
max_points.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import gradio as gr

from apps.common.catalog import APPS
from apps.common.examples import MINI_EXAMPLE_LABEL, is_mini, mini_image_example
from apps.common.gradio import (
    RunStops,
    image_upload,
    low_vram_checkbox,
    page_header,
    serve,
    served_copies,
    shows_errors,
    step_progress,
)
from apps.common.history import RunEntry
from apps.common.runs_panel import RunsPanel
from apps.common.start_values import start_values
from apps.joint_depth import compare, examples, job
from apps.joint_depth.job import JointRequest, LoadedModel
from core.config import ENV_PREFIX, LIMITS, Settings
from core.errors import InputError
from core.estimate import estimate_for, joint_job
from core.eval.learning import MINI_SIDE
from core.models import find_joint_weights
from core.pointcloud import DEFAULT_FAR, DEFAULT_FOV_DEG, DEFAULT_MAX_POINTS, DEFAULT_NEAR

GPU = "gpu"  # concurrency_id shared by the model-running events
NO_WEIGHTS_LABEL = "none: untrained joint layers"
DEFAULT_SIDE = 512
DEFAULT_STEPS = 30


class Handlers:
    """The event functions; `settings` holds models and limits. Each returns values for its outputs."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.stops = RunStops()
        self.runs = RunsPanel("jd")

    # -- models ----------------------------------------------------------------------------------------

    def weight_folders(self) -> dict[str, str]:
        """Every joint-weights folder under Settings.joint_weights by its name: its path from the root's parent
        (e.g. ``joint/checkpoint-10``), so the page never shows a server path."""
        root = Path(self.settings.joint_weights).expanduser() if self.settings.joint_weights else None
        folders = {}
        for folder in find_joint_weights(self.settings.joint_weights):
            name = folder.relative_to(root.parent) if root.is_dir() else Path(folder.name)
            folders[name.as_posix()] = str(folder)
        return folders

    def weight_choices(self) -> list[tuple[str, str]]:
        """(label, value) of the 'none' choice and every joint-weights folder, both by its name."""
        return [(NO_WEIGHTS_LABEL, ""), *((name, name) for name in self.weight_folders())]

    def _weights(self, choice: str | None) -> str:
        """The folder of a listed joint-weights name ("" for none). Anything else is refused with the same
        sentence, without looking it up on disk: the answer tells nothing about the server's files."""
        if not choice:
            return ""
        folders = self.weight_folders()
        if choice not in folders:
            raise InputError("Choose joint weights from the list (Refresh finds new checkpoints).")
        return folders[choice]

    def _model_with_warning(self, weights: str | None) -> LoadedModel:
        """Load the model with the chosen joint weights (by name); a fallback to the tiny preset also pops up
        as a warning."""
        model = job.load_model(self.settings, self._weights(weights))
        if model.sd_model != self.settings.sd_model:
            gr.Warning(model.notices[0], duration=15)
        return model

    def _banner(self, model: LoadedModel) -> str:
        names = {folder: name for name, folder in self.weight_folders().items()}
        weights = (
            f"`{names.get(model.weights, Path(model.weights).name)}`"
            if model.weights
            else "none (untrained joint layers)"
        )
        lines = [
            f"**Model**: Stable Diffusion `{model.sd_model}` ({ENV_PREFIX}SD_MODEL), joint weights {weights}; "
            f"native size {model.native_side} px; device `{self.settings.resolved_device()}`. **Limits**: "
            f"{self.settings.max_image_side} px side, {self.settings.max_upload_mb} MB upload."
        ]
        lines += [f"> ⚠️ {notice}" for notice in model.notices]
        return "\n\n".join(lines)

    @shows_errors
    def startup(self, weights: str | None, progress=gr.Progress(track_tqdm=True)):
        """Load the model (on page load): the banner, and the model's native size for the size controls."""
        progress(0, desc="loading models")
        model = self._model_with_warning(weights)
        return (self._banner(model), *[model.native_side] * 4)

    @shows_errors
    def model_status(self, weights: str | None, progress=gr.Progress(track_tqdm=True)) -> str:
        """Load the chosen joint weights; the banner saying what runs."""
        progress(0, desc="loading joint weights")
        return self._banner(self._model_with_warning(weights))

    def list_weights(self):
        """Search Settings.joint_weights again for joint-weights folders (e.g. new checkpoints)."""
        return gr.update(choices=self.weight_choices())

    # -- estimates -------------------------------------------------------------------------------------

    def _estimate(self, request: JointRequest):
        """The time of a request's denoising (an upload taken as square: at most its side on both sides)."""
        side_hw = (request.height, request.width) if request.mode == "joint" else (request.side, request.side)
        return estimate_for(
            joint_job(self.settings.sd_model, side_hw, request.batch, request.steps), self.settings
        )

    def estimates(
        self, height: float, width: float, image_side: float, depth_side: float, steps: float, batch: float
    ) -> tuple[str, str, str]:
        """The estimate line under each tab's button, for the current sizes, steps and batch."""
        sizes = ((height, width), (image_side, image_side), (depth_side, depth_side))
        jobs = [joint_job(self.settings.sd_model, (int(h), int(w)), int(batch), int(steps)) for h, w in sizes]
        return tuple(estimate_for(run, self.settings).text() for run in jobs)

    # -- runs ------------------------------------------------------------------------------------------

    def _run(
        self, request: JointRequest, action: str, progress, low_vram: bool | None, client: gr.Request | None
    ):
        """Run a checked request with its files and record; the values of the result outputs. `low_vram`:
        this run's low-VRAM mode (None: the server's); `client`: whose Stop button or leaving stops it."""
        settings = self.settings if low_vram is None else self.settings.replace(low_vram=low_vram)
        clock = step_progress(progress, self._estimate(request))
        with self.stops.running(client, on_step=clock.step) as token:
            done = job.run_job(
                request,
                settings,
                action=action,
                progress=lambda text: progress(clock.fraction, desc=text),
                cancel=token,
            )
        self.runs.remember(client, done.files.params_json)
        model, images, files = done.model, done.images_uint8, done.files
        height, width = images.shape[1:3]
        weights_name = Path(model.weights).name if model.weights else "none (untrained)"
        status = (
            f"{len(images)} sample{'s' if len(images) > 1 else ''} of {width}x{height} in {done.seconds:.1f} s "
            f"({request.mode}, {request.steps} steps, guidance {request.guidance:g}, seed {request.seed}; model "
            f"{model.sd_model}, joint weights {weights_name}); run {files.folder.name}."
        )
        status = "\n\n".join([status, *(f"> ⚠️ {note}" for note in done.notes)])
        captions = [f"{k}" for k in range(1, len(images) + 1)]
        downloads = files.downloads()
        served = dict(zip(downloads, served_copies(downloads)))
        samples = [
            tuple(served[path] for path in paths)
            for paths in zip(files.images, files.depth_color, files.clouds)
        ]
        return (
            [(served[path], caption) for path, caption in zip(files.images, captions)],
            [(served[path], caption) for path, caption in zip(files.depth_color, captions)],
            samples[0][2],
            [served[path] for path in downloads],
            status,
            samples,
        )

    @shows_errors
    def generate(
        self,
        prompt: str,
        negative_prompt: str,
        height: float,
        width: float,
        progress=gr.Progress(),
        client: gr.Request = None,
        *,
        weights: str | None = "",
        low_vram: bool | None = None,
        **options,
    ):
        """Prompt -> images and their depth maps, with point clouds."""
        request = JointRequest.from_ui(
            self.settings,
            mode="joint",
            prompt=prompt,
            negative_prompt=negative_prompt,
            height=height,
            width=width,
            weights=self._weights(weights),
            **options,
        )
        return self._run(request, "ui:generate", progress, low_vram, client)

    @shows_errors
    def image_to_depth(
        self,
        image: str | None,
        prompt: str,
        side: float,
        progress=gr.Progress(),
        client: gr.Request = None,
        *,
        weights: str | None = "",
        low_vram: bool | None = None,
        **options,
    ):
        """An uploaded image -> its depth map (one per batch entry), with point clouds in its colours."""
        request = JointRequest.from_ui(
            self.settings,
            mode="image_to_depth",
            prompt=prompt,
            side=side,
            weights=self._weights(weights),
            **options,
        )
        request = replace(request, input_path=image or "")  # run_job asks for an upload when there is none
        return self._run(request, "ui:image_to_depth", progress, low_vram, client)

    @shows_errors
    def depth_to_image(
        self,
        depth: str | None,
        prompt: str,
        negative_prompt: str,
        side: float,
        progress=gr.Progress(),
        client: gr.Request = None,
        *,
        weights: str | None = "",
        low_vram: bool | None = None,
        **options,
    ):
        """An uploaded depth map (greyscale, near = bright) -> images that fit it, with point clouds."""
        request = JointRequest.from_ui(
            self.settings,
            mode="depth_to_image",
            prompt=prompt,
            negative_prompt=negative_prompt,
            side=side,
            weights=self._weights(weights),
            **options,
        )
        request = replace(request, input_path=depth or "")
        return self._run(request, "ui:depth_to_image", progress, low_vram, client)

    def redo(self, entry: RunEntry):
        """The controls' values that redo a run of this session (apps.joint_depth.compare.REDO_CONTROLS)."""
        return compare.redo_values(entry, {folder: name for name, folder in self.weight_folders().items()})


Components = dict[str, Any]


def _side_slider(settings: Settings, label: str, elem_id: str) -> gr.Slider:
    max_side = settings.limit("side").high
    max_side -= max_side % job.SIZE_MULTIPLE
    return gr.Slider(
        LIMITS["side"].low,
        max_side,
        value=min(DEFAULT_SIDE, max_side),
        step=job.SIZE_MULTIPLE,
        label=label,
        elem_id=elem_id,
    )


def _mode_tabs(settings: Settings) -> Components:
    """The three modes, one tab each: their inputs, examples and start button. The held-out synthetic scene
    for the mini models comes first in each tab's examples when the SD model is ``mini``, last otherwise."""
    scene_image, scene_depth, scene_caption = examples.synthetic_scene_files()
    mini_image, mini_depth, mini_caption = mini_image_example()
    mini_first = is_mini(settings.sd_model)
    mini_label = f"Examples: {MINI_EXAMPLE_LABEL} (held-out, {MINI_SIDE} px)"
    ui: Components = {}
    with gr.Tabs(overflow_behavior="wrap", elem_id="jd-modes") as ui["tabs"]:
        with gr.Tab("Prompt -> image + depth", id="joint"):
            ui["prompt"] = gr.Textbox(label="Prompt", lines=2, elem_id="jd-prompt")
            ui["negative"] = gr.Textbox(label="Negative prompt", elem_id="jd-negative")
            with gr.Row():
                ui["height"] = _side_slider(settings, "Height (px)", "jd-height")
                ui["width"] = _side_slider(settings, "Width (px)", "jd-width")
            with gr.Row():
                ui["generate_btn"] = gr.Button("Generate", variant="primary", elem_id="jd-generate", scale=3)
                ui["generate_stop"] = gr.Button("Stop", variant="stop", elem_id="jd-generate-stop", scale=1)
            ui["generate_estimate"] = gr.Markdown(elem_id="jd-generate-estimate")
            _examples(
                mini_first,
                ([[p] for p in [*examples.PROMPTS, scene_caption]], [ui["prompt"]], "Examples"),
                ([[mini_caption]], [ui["prompt"]], mini_label),
            )
        with gr.Tab("Image -> depth", id="image_to_depth"):
            ui["image_in"] = image_upload(sources=["upload", "clipboard"], label="Image", elem_id="jd-image")
            ui["image_prompt"] = gr.Textbox(label="Prompt (optional: what the image shows)")
            ui["image_side"] = _side_slider(
                settings, "Longest side (px; the image is cropped to multiples of 64)", "jd-image-side"
            )
            with gr.Row():
                ui["image_btn"] = gr.Button(
                    "Estimate depth", variant="primary", elem_id="jd-image-go", scale=3
                )
                ui["image_stop"] = gr.Button("Stop", variant="stop", elem_id="jd-image-stop", scale=1)
            ui["image_estimate"] = gr.Markdown(elem_id="jd-image-estimate")
            _examples(
                mini_first,
                ([[str(p)] for p in [*examples.SAMPLE_IMAGES, scene_image]], [ui["image_in"]], "Examples"),
                ([[str(mini_image), mini_caption]], [ui["image_in"], ui["image_prompt"]], mini_label),
            )
        with gr.Tab("Depth -> image", id="depth_to_image"):
            ui["depth_in"] = image_upload(
                sources=["upload", "clipboard"],
                label="Depth map (greyscale 8/16-bit PNG, near = white)",
                elem_id="jd-depth",
            )
            ui["depth_prompt"] = gr.Textbox(label="Prompt", elem_id="jd-depth-prompt")
            ui["depth_negative"] = gr.Textbox(label="Negative prompt")
            ui["depth_side"] = _side_slider(settings, "Longest side (px)", "jd-depth-side")
            with gr.Row():
                ui["depth_btn"] = gr.Button(
                    "Generate image", variant="primary", elem_id="jd-depth-go", scale=3
                )
                ui["depth_stop"] = gr.Button("Stop", variant="stop", elem_id="jd-depth-stop", scale=1)
            ui["depth_estimate"] = gr.Markdown(elem_id="jd-depth-estimate")
            depth_inputs = [ui["depth_in"], ui["depth_prompt"]]
            _examples(
                mini_first,
                ([[str(scene_depth), scene_caption]], depth_inputs, "Examples"),
                ([[str(mini_depth), mini_caption]], depth_inputs, mini_label),
            )
    return ui


def _examples(mini_first: bool, general: tuple, mini: tuple) -> None:
    """Two gr.Examples sets, each (rows, inputs, label): the mini scene's first when ``mini_first``."""
    for rows, inputs, label in (mini, general) if mini_first else (general, mini):
        gr.Examples(rows, inputs=inputs, label=label)


def _settings_panel(h: Handlers) -> Components:
    """The settings every mode shares: joint weights, steps, guidance, seed, batch, low-VRAM mode, point-cloud
    camera."""
    ui: Components = {}
    with gr.Accordion("Settings", open=True):
        with gr.Row():
            ui["weights"] = gr.Dropdown(
                h.weight_choices(),
                value=next(iter(h.weight_folders()), ""),
                label="Joint weights",
                info=f"a folder written by python -m core.training.joint_lora under {ENV_PREFIX}JOINT_WEIGHTS, "
                "or a checkpoint-N in it",
                elem_id="jd-weights",
                scale=4,
            )
            ui["refresh_btn"] = gr.Button("Refresh", size="sm", scale=1)
        start = start_values(h.settings.sd_model, "sd", h.settings, DEFAULT_SIDE, DEFAULT_STEPS)
        with gr.Row():
            ui["steps"] = gr.Slider(
                1, LIMITS["joint_steps"].high, value=start.steps, step=1, label="Steps", elem_id="jd-steps"
            )
            ui["guidance"] = gr.Slider(
                0.0, LIMITS["joint_guidance"].high, value=7.5, step=0.5, label="Guidance"
            )
        with gr.Row():
            ui["seed"] = gr.Number(
                0, label="Seed", precision=0, minimum=0, maximum=job.SEED.high, elem_id="jd-seed"
            )
            ui["batch"] = gr.Slider(1, LIMITS["joint_batch"].high, value=1, step=1, label="Batch size")
        ui["low_vram"] = low_vram_checkbox(h.settings, "jd-low-vram")
        if start.note:
            gr.Markdown(start.note, elem_id="jd-start-note")
    with gr.Accordion("Point cloud camera", open=False):
        gr.Markdown(
            "Disparity d in [0,1] becomes depth z by `1/z = d/near + (1-d)/far`; a pinhole camera "
            "with this horizontal field of view back-projects it. Units are arbitrary."
        )
        with gr.Row():
            ui["near"] = gr.Number(DEFAULT_NEAR, label="Near", minimum=1e-6)
            ui["far"] = gr.Number(DEFAULT_FAR, label="Far", minimum=1e-6)
        with gr.Row():
            ui["fov_deg"] = gr.Slider(10, 150, value=DEFAULT_FOV_DEG, step=1, label="Field of view (deg)")
            ui["max_points"] = gr.Number(
                DEFAULT_MAX_POINTS,
                label="Max points",
                precision=0,
                minimum=1,
                maximum=LIMITS["joint_max_points"].high,
            )
    return ui


def _results_column(h: Handlers) -> Components:
    """Status, image and depth galleries, image | depth compare slider, the point cloud of the selected sample,
    downloads, and this session's runs."""
    ui: Components = {}
    ui["status"] = gr.Markdown(label="Status", elem_id="jd-status")
    with gr.Row():
        ui["images_out"] = gr.Gallery(label="Images", columns=2, height=300, elem_id="jd-images")
        ui["depth_out"] = gr.Gallery(
            label="Depth maps (near = warm)", columns=2, height=300, elem_id="jd-depth-maps"
        )
    gr.Markdown(
        "Click a sample to compare it and show its point cloud. Downloads per sample: image, 16-bit depth PNG "
        "(near = white), colour map, PLY point cloud; and params.json (the run record)."
    )
    ui["compare"] = compare.compare_view()
    ui["cloud_out"] = gr.Model3D(
        label="Point cloud",
        clear_color=(0.08, 0.08, 0.1, 1.0),
        camera_position=(90, 80, None),  # in front of the scene (on the +z side), a little above
        height=360,
        elem_id="jd-cloud",
    )
    ui["downloads"] = gr.File(label="Downloads", file_count="multiple", elem_id="jd-downloads")
    ui.update(h.runs.build())
    return ui


def _events(demo: gr.Blocks, h: Handlers, ui: Components) -> None:
    """Startup, weights, the three runs (settings as keyword inputs) and gallery clicks."""
    gpu = {"concurrency_id": GPU, "concurrency_limit": 1}
    run = {**gpu, "inputs_kwargs": {name: ui[name] for name in compare.RUN_SETTINGS}}
    results = [ui[k] for k in ("images_out", "depth_out", "cloud_out", "downloads", "status", "samples")]
    sizes = [ui[k] for k in ("banner", "height", "width", "image_side", "depth_side")]
    demo.load(h.startup, ui["weights"], sizes, api_name="startup", **gpu)
    ui["weights"].input(h.model_status, ui["weights"], ui["banner"], api_name="model_status", **gpu)
    ui["refresh_btn"].click(h.list_weights, None, ui["weights"], api_name="list_weights", queue=False)
    generate = gr.on(
        [ui["generate_btn"].click, ui["prompt"].submit],
        h.generate,
        [ui["prompt"], ui["negative"], ui["height"], ui["width"]],
        results,
        api_name="generate",
        **run,
    )
    image_to_depth = ui["image_btn"].click(
        h.image_to_depth,
        [ui["image_in"], ui["image_prompt"], ui["image_side"]],
        results,
        api_name="image_to_depth",
        **run,
    )
    depth_to_image = ui["depth_btn"].click(
        h.depth_to_image,
        [ui["depth_in"], ui["depth_prompt"], ui["depth_negative"], ui["depth_side"]],
        results,
        api_name="depth_to_image",
        **run,
    )
    stops = {
        "stop_generate": (ui["generate_stop"], [generate]),
        "stop_image_to_depth": (ui["image_stop"], [image_to_depth]),
        "stop_depth_to_image": (ui["depth_stop"], [depth_to_image]),
    }
    h.stops.wire(demo, ui["status"], stops)
    glue = {"queue": False, "api_visibility": "private"}
    costs = [ui[k] for k in ("height", "width", "image_side", "depth_side", "steps", "batch")]
    gr.on(
        [demo.load, *(control.change for control in costs)],
        h.estimates,
        costs,
        [ui["generate_estimate"], ui["image_estimate"], ui["depth_estimate"]],
        **glue,
    )
    for button in (ui["generate_btn"], ui["image_btn"], ui["depth_btn"]):
        button.click(None, js=compare.SHOW_RESULTS_JS, api_visibility="private")
    for run_event in (generate, image_to_depth, depth_to_image):
        run_event.success(compare.pair, ui["samples"], ui["compare"], **glue)
    for gallery in (ui["images_out"], ui["depth_out"]):
        gallery.select(compare.select_sample, ui["samples"], [ui["cloud_out"], ui["compare"]], **glue)
    redo_outputs = [ui[name] for name in compare.REDO_CONTROLS]
    h.runs.wire(demo, ui, [generate, image_to_depth, depth_to_image], h.redo, redo_outputs)


def build_demo(settings: Settings, offline: bool = False) -> gr.Blocks:
    """The app's Blocks for these settings (models, limits, output folder); `offline`: the copy on the offline
    models (:mod:`apps.common.offline`), which says so."""
    h = Handlers(settings)
    spec = APPS["joint"]
    with gr.Blocks(title=spec.title, delete_cache=(3600, 6 * 3600)) as demo:
        page_header(spec, settings, job.MODELS, offline)
        ui: Components = {"banner": gr.Markdown("Loading the model...", elem_id="jd-banner")}
        ui["samples"] = gr.State([])  # the last run's (image, depth colour map, point cloud) per sample
        compare.page_style()
        with gr.Row(elem_id="jd-main"):
            with gr.Column(scale=1, elem_id="jd-inputs"):
                ui.update(_mode_tabs(settings))
                with gr.Column(elem_id="jd-settings"):
                    ui.update(_settings_panel(h))
            with gr.Column(scale=1, elem_id="jd-results"):
                ui.update(_results_column(h))
        _events(demo, h, ui)
    return demo


# Folders besides the output folder that the app serves files from.
SERVED_FOLDERS = [examples.ROOT / "assets" / "images", examples.EXAMPLE_FOLDER]

demo = build_demo(Settings.from_env())


def main(argv: list[str] | None = None) -> int:
    return serve(
        "python -m apps.joint_depth.app",
        __doc__.split("\n\n")[0],
        7861,
        demo,
        build_demo,
        SERVED_FOLDERS,
        argv,
    )


if __name__ == "__main__":
    raise SystemExit(main())
