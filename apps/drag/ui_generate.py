"""The drag app's run section: the Generate button and the job behind it (with its Stop button), and the
result with its videos, a frame scrubber over the side by side (trajectories | video | motion, the job's own
video read back) and the downloads (the inputs too: a run redoes from them, `job.request_from_record`).

Before an SVD backend's run, its time estimate (`core.estimate`, from measured per-step figures for the device,
model, size, frames and steps); while it runs, the bar says the step, the percent and the time left, refined
from the run's own steps (`core.estimate.StepClock`). Stop: a click reruns the page, and Streamlit ends the
running script at its next progress update (every warped frame and denoising step), where the unfinished
run's folder is removed.

Session state it uses (see `apps.drag.app`): result, run_error.
"""

from __future__ import annotations

import logging
import shutil

import streamlit as st

from apps.common.runs import new_run_folder
from apps.drag import backends, job, ui_runs
from apps.drag.params import DragParams
from apps.drag.ui_engine import EngineChoice
from core.cancel import STOPPED_MESSAGE
from core.config import Settings
from core.errors import KinemaError, ModelNotAvailable
from core.estimate import Estimate, Job, Segment, StepClock, device_name, estimate
from core.video import read_video

log = logging.getLogger("kinema.drag")


@st.cache_data(max_entries=2, show_spinner=False)
def side_by_side_frames(path: str) -> list:
    """The side by side video's frames, (H,W,3) uint8 each (a run's files never change)."""
    return list(read_video(path).frames_uint8)


def show_result(result: job.DragResult, settings: Settings) -> None:
    """The result (run under the app's `settings`): videos, frame scrubber, downloads."""
    st.subheader("Result")
    p = result.request.params
    files = result.outputs
    st.caption(
        f"{backends.loaded_label(p.backend, settings)}: {p.frames} frames at {p.fps} fps, "
        f"{result.frames_uint8.shape[2]}x{result.frames_uint8.shape[1]} px, {result.seconds:.1f} s "
        f"(run {files.folder.name})"  # the run's name: a served page shows no server path
    )
    video_col, flow_col = st.columns(2)
    with video_col:
        st.markdown("Video")
        st.video(files.video.read_bytes(), format="video/mp4", loop=True, autoplay=True, muted=True)
    generated_flow = p.backend == "svd-joint-flow"
    with flow_col:
        st.markdown("Generated flow (flow colours)" if generated_flow else "Motion (flow colours)")
        st.video(files.flow.read_bytes(), format="video/mp4", loop=True, autoplay=True, muted=True)
    st.markdown("Side by side: trajectories, video, motion")
    st.video(files.side_by_side.read_bytes(), format="video/mp4", loop=True, autoplay=True, muted=True)
    frames = side_by_side_frames(str(files.side_by_side))
    number = st.slider("Frame", 1, len(frames), 1, key=f"scrub-{files.folder.name}")
    st.image(
        frames[number - 1],
        caption=f"Frame {number} of {len(frames)}: trajectories | video | motion",
        width="stretch",
    )
    request = result.request
    inputs = [("Picture (PNG)", request.image)]
    if request.region_mask is not None:
        inputs.append(("Motion brush (PNG)", request.region_mask))
    inputs += [(f"Object of track {index + 1} (PNG)", path) for index, path in request.object_masks]
    if request.depth is not None:
        inputs.append(("Depth map (PNG)", request.depth))
    downloads = [
        ("Video (mp4)", files.video.read_bytes, "kinema-drag.mp4", "video/mp4"),
        ("Video (gif)", result.gif_bytes, "kinema-drag.gif", "image/gif"),
        ("Flow video (mp4)", files.flow.read_bytes, "kinema-drag-flow.mp4", "video/mp4"),
        ("Side by side (mp4)", files.side_by_side.read_bytes, "kinema-drag-side-by-side.mp4", "video/mp4"),
        (
            "Trajectories (JSON)",
            result.request.trajectories.read_text,
            "trajectories.json",
            "application/json",
        ),
        ("Parameters (JSON)", files.record.read_text, "parameters.json", "application/json"),
    ]
    downloads += [(label, path.read_bytes, path.name, "image/png") for label, path in inputs]
    columns = [column for _ in range(0, len(downloads), 3) for column in st.columns(3)]
    for column, (label, data, name, mime) in zip(columns, downloads, strict=False):
        column.download_button(label, data, file_name=name, mime=mime, on_click="ignore")


def load_backend(backend: str, settings: Settings):
    """The chosen backend's pipeline (None for the warp) and the sentence saying why it cannot run."""
    if backend == "warp":
        return None, None
    try:
        with st.spinner(f"Loading {backends.loaded_label(backend, settings)} (once per process)..."):
            return backends.load(backend, settings), None  # core.models caches the weights
    except ModelNotAvailable as err:
        st.error(f"{err} The warp backend works without weights.")
        return None, str(err)


def generate_section(
    image, image_name, trajectories, engine: EngineChoice, params: DragParams, settings, layers=None
) -> None:
    """The Generate button and the run behind it (a failed run keeps the earlier result on screen). Each progress
    update (every frame and step) is where Streamlit stops a rerun or stopped script; an unfinished run's folder
    is removed. `engine`: its brush, painted objects or depth map; `layers`: the objects engine's objects of this drawing
    (found once, `apps.drag.ui_engine`)."""
    pipe, blocked = load_backend(params.backend, settings)
    moving = len(trajectories.moving) > 0 or params.camera != "none"
    if not moving:
        st.info(
            "Draw at least one trajectory that moves (line, polyline or freehand), or choose a camera "
            "move, then press Generate. Anchors alone only pin the image."
        )
    expected = svd_estimate(params, settings, image.shape[:2])
    if expected is not None:
        st.caption(expected.text())
    if not st.button("Generate", type="primary", disabled=not moving or blocked is not None):
        return
    bar = st.progress(0.0, text="Starting")
    clock = None

    def on_progress(event: backends.RenderProgress) -> None:
        nonlocal clock
        text = event.text
        if expected is not None and event.stage == "svd":
            clock = clock or StepClock(expected)  # from the first denoising event: the estimate's span
            while clock.done < event.done:
                clock.step()
            text = f"SVD {clock.text()}"
        bar.progress(min(max(event.fraction, 0.0), 1.0), text=text)

    stop = st.empty()  # clicked, it reruns the page: the run ends at its next progress update
    stop.button("Stop", key="stop", on_click=_stopped, help="End the run at its next step; nothing is saved.")
    folder = None
    try:
        folder = new_run_folder(settings.output_dir, "drag")
        request = job.save_inputs(
            folder, image, trajectories, params, engine.region_mask, engine.object_masks, engine.depth_unit
        )
        st.session_state.result = job.run(
            request,
            job.DragOutputs.in_folder(folder),
            settings,
            action="ui:generate",
            front_end_arguments={"image_name": image_name},
            pipeline=pipe,
            layers=layers,
            progress=on_progress,
        )
        st.session_state.run_error = None
        ui_runs.remember(st.session_state.result)
        folder = None  # finished: the run folder stays
    except (KinemaError, OSError) as err:
        st.session_state.run_error = str(err)
    except Exception as err:  # keep the app and the earlier result alive; the log has the trace
        log.exception("drag generation failed")
        st.session_state.run_error = f"Generation failed ({type(err).__name__}: {err})."
    finally:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
    bar.empty()
    stop.empty()


def svd_estimate(params: DragParams, settings: Settings, image_hw: tuple[int, int]) -> Estimate | None:
    """How long an SVD backend's denoising takes (None for the warp): the steps its strength runs (the
    joint flow: all) over the frames at the working size, on this device with this SVD model."""
    spec = backends.BACKENDS[params.backend]
    if not spec.models:
        return None
    from core.pipelines.svd_common import steps_for_strength  # diffusers: only for the SVD backends

    strength = spec.default_strength if params.strength is None else params.strength
    steps = params.steps if strength is None else steps_for_strength(params.steps, strength)
    job = Job("svd", settings.svd_model, image_hw, (Segment(steps, params.frames),))
    return estimate(job, device_name(settings.resolved_device()))


def _stopped() -> None:
    st.session_state.run_error = STOPPED_MESSAGE
