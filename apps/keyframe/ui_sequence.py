"""The keyframe app's "Images instead of a video" panel: chain 2+ images A -> B -> C, or loop A -> B -> A.

`build` adds the panel (the images, frames between, loop, a button); `wire` connects its button to
:meth:`ImagesPanel.inbetween_images`, which reads the inbetweening controls of step 3 (backend and its options, low VRAM)
and shows the result in step 3's result video and downloads. The job is :func:`apps.keyframe.sequence.run_images`.
API: /inbetween_images (images as files, frames_between, loop, then step 3's controls as in /inbetween).

The uploads are copied into the run folder first (``image_01.png`` ...: the record names them), so the run is
listed in the Runs panel like a video's and Redo (:func:`redo_values`) puts its images and settings back.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gradio as gr

from apps.common.gradio import served_copies, shows_errors
from apps.common.history import RunEntry
from apps.common.runs import new_run_folder
from apps.keyframe.handlers import Handlers
from apps.keyframe.interp_controls import DEFAULT_REFINE_STRENGTH, interp_request, interp_values
from apps.keyframe.job import OutputFiles
from apps.keyframe.sequence import DEFAULT_FRAMES_BETWEEN, SequenceRequest, request_from_record, run_images
from core.errors import InputError

Components = dict[str, Any]
MAX_FRAMES_BETWEEN = 31
REDO_CONTROLS = ("seq_images", "seq_between", "seq_loop")  # what `redo_values` fills besides step 3's


def _kept_in(folder: Path, paths: Sequence[str]) -> tuple[str, ...]:
    """The uploaded images copied into the run folder as image_01.png ... (their own suffixes), in order."""
    copies = []
    for k, path in enumerate(paths, start=1):
        copies.append(folder / f"image_{k:02d}{Path(path).suffix.lower()}")
        shutil.copyfile(path, copies[-1])
    return tuple(str(copy) for copy in copies)


def build() -> Components:
    """The panel's components, closed by default under step 3."""
    ui: Components = {}
    with gr.Accordion("Images instead of a video: A -> B -> C, or a loop", open=False):
        ui["seq_images"] = gr.File(
            label="Images (2 or more, one size, in order)",
            file_count="multiple",
            file_types=["image"],
            elem_id="kf-seq-images",
        )
        with gr.Row():
            ui["seq_between"] = gr.Slider(
                1, MAX_FRAMES_BETWEEN, value=DEFAULT_FRAMES_BETWEEN, step=1, label="Frames between images"
            )
            ui["seq_loop"] = gr.Checkbox(False, label="Loop back to the first image (A -> B -> A)")
        ui["seq_btn"] = gr.Button("Inbetween the images", elem_id="kf-seq-inbetween")
    return ui


class ImagesPanel:
    """The panel's event over the app's `Handlers` (settings, Stop tokens, Runs panel). A bound method, so that
    Gradio sees its signature and passes the request (`client`): its Stop button and a closed page stop the run,
    and the run joins the session's Runs panel."""

    def __init__(self, h: Handlers):
        self.h = h

    @shows_errors
    def inbetween_images(
        self,
        paths: list[str] | None,
        frames_between: float,
        loop: bool,
        backend: str,
        fps: float | None,
        flow_method: str,
        motion_bucket: float,
        steps: float,
        seed: float,
        decode_chunk_size: float,
        low_vram: bool | None = None,
        noise_reinjection: float = 0,
        refine_strength: float = DEFAULT_REFINE_STRENGTH,
        progress=gr.Progress(track_tqdm=True),
        client: gr.Request = None,
    ):
        """Chain the uploaded images with step 3's backend; returns (result mp4, downloads, status)."""
        if not paths:
            raise InputError("Upload 2 or more images to chain (A -> B, or A -> B -> A with loop).")
        folder = new_run_folder(self.h.settings.output_dir, "keyframe")
        files = OutputFiles(folder / "result.mp4", folder / "params.json", folder / "result.gif")
        try:
            request = SequenceRequest(
                images=_kept_in(folder, paths),
                frames_between=int(frames_between),
                loop=bool(loop),
                interp=interp_request(
                    backend,
                    fps,
                    flow_method,
                    motion_bucket,
                    steps,
                    seed,
                    decode_chunk_size,
                    noise_reinjection,
                    refine_strength,
                ),
            )
            with self.h.stops.running(client) as token:
                done = run_images(
                    request,
                    self.h._run_settings(low_vram),
                    files,
                    action="ui:images",
                    progress=lambda stage, i, total: progress(
                        (i, total) if total > 1 else float(i), desc=stage
                    ),
                    cancel=token,
                )
        finally:
            if not files.params_json.is_file():
                shutil.rmtree(folder)  # a refused or failed run leaves no run folder behind
        self.h.runs.remember(client, files.params_json)
        served = served_copies(files.paths())
        status = "\n\n".join(
            [
                f"{done.result_uint8.shape[0]} frames at {done.fps:.3g} fps from {len(paths)} images "
                f"({backend}{', loop' if loop else ''}); run {folder.name}.",
                *done.notes,
            ]
        )
        return served[0], served, status


def wire(h: Handlers, ui: Components, interp_inputs: list, gpu: dict[str, Any]) -> Any:
    """Connect the panel's button (API /inbetween_images); `interp_inputs` are step 3's controls in the order
    of :meth:`ImagesPanel.inbetween_images`. Returns the event, for step 3's Stop button."""
    return ui["seq_btn"].click(
        ImagesPanel(h).inbetween_images,
        [ui["seq_images"], ui["seq_between"], ui["seq_loop"], *interp_inputs],
        [ui["result"], ui["downloads"], ui["status"]],
        api_name="inbetween_images",
        **gpu,
    )


def redo_values(entry: RunEntry, low_vram: bool) -> tuple[Any, ...]:
    """What redoes a chain of images: step 3's controls (`INTERP_CONTROLS` order; `low_vram`: the run's), the
    status, then the panel's `REDO_CONTROLS`: the run's images (served to this session), frames between, loop."""
    request = request_from_record(entry.record, entry.folder)
    gone = [Path(path).name for path in request.images if not Path(path).is_file()]
    if gone:
        raise InputError(
            f"Image {gone[0]} of run {entry.name} is gone from its folder: upload the images again."
        )
    status = (
        f"Settings of run {entry.name} loaded ({len(request.images)} images): inbetween them in the images panel "
        "under step 3."
    )
    return (
        *interp_values(request.interp, low_vram),
        status,
        served_copies(request.images),
        request.frames_between,
        request.loop,
    )
