"""Drag to video: draw trajectories on an image and get a video whose content follows them.

Run: ``python -m apps drag`` (or ``streamlit run apps/drag/app.py`` from the repository root).
Settings come from KINEMA_* variables (core/config.py). The backend radio lists the backends whose
weights are configured (apps/drag/backends.py): the warp needs none; the others load once per process.
The widgets' labels, limits and start values come from `apps.drag.params.DragParams` (the CLI's flags
too); the SVD section's low-VRAM checkbox (start: KINEMA_LOW_VRAM) sets `Settings.low_vram` for the run.
The samples include a held-out synthetic scene for the mini models (`apps.common.examples`; listed first, and
the widgets start at the mini SVD's 64 px, 8 frames at fps 8 and 15 steps, when KINEMA_SVD_MODEL=mini): picking
it loads the scene's exact sprite tracks onto the canvas.
Under the canvas, the engine (`apps.drag.ui_engine`): drags move the object under them (tinted in the
track's colour beside the canvas; grow/shrink) or the whole picture (reach, motion brush). The track list
(`apps.drag.ui_tracks`) sets when each track moves. The motion bucket is pre-filled with
`core.motion.suggest_motion_bucket` of the request as drawn: the number the CLI computes for it.
Generate (`apps.drag.ui_generate`) runs the CLI's job (`apps.drag.job`): a new run folder under
KINEMA_OUTPUT_DIR/drag gets the working image, the trajectories (with their timing) and the brush as
drawn, then the videos and the run record (parameters.json, which names the low-VRAM choice in its
settings) that redoes the run; all of them can be downloaded.

Session state (per browser tab):
    canvas_rev, canvas_seed   the canvas is mounted under a key holding canvas_rev, showing canvas_seed;
                              deleting, resetting, loading a trajectory file or the example's tracks, or
                              switching tools bumps canvas_rev with a new seed (the component keeps its own
                              objects otherwise)
    canvas_objects            the objects the canvas last reported (one per trajectory, in order)
    track_timings             each canvas object's Timing, by index (`apps.drag.ui_tracks`)
    brush_rev                 the painting canvases (motion brush, repaint) start empty when it changes
    brush_loaded, brush_mask  the motion brush read back from a run or kept over a canvas resize, and the
                              last brush (`apps.drag.ui_brush`)
    object_layers             the objects engine's objects of recent drawings (`apps.drag.ui_engine`)
    painted_objects           objects painted by hand, by their drag's start point (`apps.drag.ui_engine`)
    run_picture, run_depth    a redone run's picture (name, PNG bytes: the "Source" it adds) and depth map
    pending_inputs            a redone run's brush, painted objects and depth map, put in once its picture
                              and tracks are (`apps.drag.ui_runs`)
    result, run_error         the last finished run (kept when a later run fails) and the last failure
    run_history, redo_bucket  this session's runs and the motion bucket a redo sets (`apps.drag.ui_runs`)
"""

from __future__ import annotations

import hashlib
import logging
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `streamlit run apps/drag/app.py` puts only apps/drag on the path
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import streamlit as st  # noqa: E402

from apps.common.catalog import APPS  # noqa: E402
from apps.common.examples import MINI_DESCRIPTION, MINI_EXAMPLE_LABEL, is_mini, mini_drag_example  # noqa: E402
from apps.common.low_vram import LOW_VRAM_LABEL, low_vram_help  # noqa: E402
from apps.common.start_values import start_values  # noqa: E402
from apps.common.streamlit import page_header, set_page  # noqa: E402
from apps.drag import backends, job, ui_brush, ui_canvas, ui_engine, ui_generate, ui_runs, ui_tracks  # noqa: E402
from apps.drag.overlay import draw_object_overlay, draw_trajectory_overlay, with_border  # noqa: E402
from apps.drag.params import DragParams  # noqa: E402
from core.config import ENV_PREFIX, Settings  # noqa: E402
from core.engines.objects import ObjectLayer, animate_objects, preview_object_flow  # noqa: E402
from core.engines.warp import preview_flow, preview_video  # noqa: E402
from core.errors import InputError, KinemaError  # noqa: E402
from core.eval.learning import MINI_SIDE  # noqa: E402
from core.imaging import load_image, plan_resize, resize_to_multiple  # noqa: E402
from core.models.presets import MINI  # noqa: E402
from core.motion import suggest_motion_bucket  # noqa: E402
from core.trajectory import Trajectories  # noqa: E402
from core.trajectory.canvas import (  # noqa: E402
    ParsedCanvas,
    canvas_objects,
    objects_from_trajectories,
    parse_objects,
)
from core.video import write_video  # noqa: E402

log = logging.getLogger("kinema.drag")

SAMPLES_DIR = ROOT / "assets" / "images"
# The sample whose picture is a held-out synthetic scene's first frame and whose drags are its sprite tracks.
MINI_SAMPLE = f"{MINI_EXAMPLE_LABEL} (held-out, {MINI_SIDE} px)"
IMAGE_TYPES = ["png", "jpg", "jpeg", "webp", "bmp", "gif", "tif", "tiff"]
RESIZE_MODES = {"crop": "Crop to fit", "pad": "Keep aspect (pad)"}
PREVIEW_CRF = 30
CAMERA_LABELS = {"rotate_cw": "rotate clockwise", "rotate_ccw": "rotate anticlockwise"}


# -- cached work ---------------------------------------------------------------------------------------


@st.cache_data(max_entries=8, show_spinner=False)
def decode_image(data: bytes, max_side: int) -> np.ndarray:
    """Uploaded or sample bytes -> uint8 (H,W,3); InputError (not cached) for a bad or huge image."""
    return load_image(data, max_side=max_side)


@st.cache_data(max_entries=16, show_spinner=False)
def working_image(data: bytes, max_side: int, working_side: int, mode: str) -> np.ndarray:
    """The image the canvas shows and the engines animate: sides a multiple of 64, long side <= working_side."""
    image, _ = resize_to_multiple(decode_image(data, max_side), multiple=64, max_side=working_side, mode=mode)
    return image


@st.cache_data(max_entries=4, show_spinner=False)
def preview_clip(
    image: np.ndarray,
    trajectories_json: str,
    frames: int,
    fps: int,
    camera: str,
    region_mask: np.ndarray | None,
    radius: float | None,
    layers_key: str | None,
    _layers: list[ObjectLayer] | None,
) -> bytes:
    """The engine's quick look as mp4 bytes: the sheet's `core.engines.warp.preview_video`, or the objects
    engine's `animate_objects` without flow over `_layers` (named by `layers_key`, which the cache hashes
    instead). Cached, so widgets that do not change the motion do not redo it. InputError (not cached) when
    nothing moves."""
    trajectories = Trajectories.from_json(trajectories_json)
    if _layers is None:
        clip = preview_video(
            image,
            trajectories,
            frames,
            region_mask=region_mask,
            camera=backends.camera_of(camera),
            radius_px=radius,
        )
    else:
        clip = animate_objects(
            image, trajectories, frames, layers=_layers, camera=backends.camera_of(camera), with_flow=False
        ).frames_uint8
    with tempfile.TemporaryDirectory() as folder:  # a preview's quality (crf 30) keeps it small and quick
        return write_video(Path(folder) / "preview.mp4", clip, fps, crf=PREVIEW_CRF).read_bytes()


@st.cache_data(show_spinner=False)
def mini_sample() -> tuple[bytes, str]:
    """The mini sample's PNG bytes and its sprite tracks as trajectory JSON (`apps.common.examples`)."""
    image, trajectories = mini_drag_example()
    return image.read_bytes(), trajectories.to_json()


# -- state helpers -------------------------------------------------------------------------------------


def init_state() -> None:
    defaults = {
        "canvas_rev": 0,
        "canvas_seed": [],
        "canvas_objects": [],
        "brush_rev": 0,
        "image_id": None,
        "result": None,
        "run_error": None,
        "pending_trajectories": None,
        "trajectory_file_error": None,
        "bucket_suggestion": None,
        "track_timings": {},
        "brush_loaded": None,
        "brush_mask": None,
        "run_picture": None,
        "run_depth": None,
        "pending_inputs": None,
    }
    for key, value in defaults.items():
        st.session_state.setdefault(key, value)


def on_tool_change() -> None:
    # An open polyline lives only in the component until it is sent; remounting keeps what was sent
    # as a finished object instead of letting the new tool silently drop it.
    ui_tracks.remount_canvas(st.session_state.canvas_objects, st.session_state.track_timings)


def on_trajectory_file() -> None:
    """A run's trajectories JSON and, if it had one, its motion brush PNG (its downloads) redo the run."""
    st.session_state.trajectory_file_error = None
    try:
        for upload in st.session_state.get("trajectory_file") or []:
            if upload.name.lower().endswith(".json"):
                st.session_state.pending_trajectories = Trajectories.from_json(upload.getvalue())
            else:
                ui_brush.load_brush(job.read_mask(upload.getvalue()))
    except InputError as err:
        st.session_state.trajectory_file_error = str(err)


def read_settings() -> Settings:
    try:
        return Settings.from_env()
    except InputError as err:
        st.error(f"The app's settings are invalid: {err}")
        st.stop()


# -- page sections -------------------------------------------------------------------------------------


def load_tracks(trajectories_json: str) -> None:
    st.session_state.pending_trajectories = Trajectories.from_json(trajectories_json)


def sample_photos() -> list[str]:
    return sorted(p.stem for p in SAMPLES_DIR.glob("*.jpg"))


def image_source(settings: Settings) -> tuple[str, bytes, str | None] | None:
    """The chosen image's (name, bytes, trajectory JSON of its example drags or None), or None (with a message
    shown) when there is none to use. The mini sample comes first when the SVD model is mini."""
    st.sidebar.header("Image")
    run_picture = st.session_state.run_picture
    sources = ["Sample photo", "Upload", *([ui_runs.RUN_PICTURE] if run_picture is not None else [])]
    source = st.sidebar.radio("Source", sources, horizontal=True, key="source")
    if source == ui_runs.RUN_PICTURE:
        st.sidebar.caption(f"The picture of the redone run {run_picture[0]!r}, as it was animated.")
        return run_picture[0], run_picture[1], None
    if source == "Sample photo":
        photos = sample_photos()
        samples = [MINI_SAMPLE, *photos] if is_mini(settings.svd_model) else [*photos, MINI_SAMPLE]
        name = st.sidebar.selectbox("Sample", samples, key="sample")
        if name != MINI_SAMPLE:
            return name, (SAMPLES_DIR / f"{name}.jpg").read_bytes(), None
        data, tracks_json = mini_sample()
        st.sidebar.caption(
            "The first frame of a synthetic sprite clip the mini models never saw; its drags are the sprites' "
            "exact tracks (loaded when the picture is picked)."
        )
        st.sidebar.button("Load the scene's tracks again", on_click=load_tracks, args=(tracks_json,))
        return name, data, tracks_json
    upload = st.sidebar.file_uploader("Image file", type=IMAGE_TYPES, key="upload")
    if upload is None:
        st.info("Upload an image in the sidebar, or pick a sample photo.")
        return None
    data = upload.getvalue()
    if len(data) > settings.max_upload_bytes:
        st.error(
            f"The upload is {len(data) / 2**20:.1f} MiB; the limit is {settings.max_upload_mb} MiB "
            "(KINEMA_MAX_UPLOAD_MB)."
        )
        return None
    return upload.name, data, None


def sidebar_controls(settings: Settings) -> dict:
    """The sidebar's Fit and Motion sections: the DragParams fields chosen there, by name."""
    st.sidebar.header("Fit")
    resize = DragParams.widget("resize")
    chosen = {
        "resize": st.sidebar.radio(
            resize.label, list(resize.choices), format_func=RESIZE_MODES.get, horizontal=True, key="resize"
        )
    }
    mini = is_mini(settings.svd_model)
    working = DragParams.widget("max_side", mini)
    sides = [s for s in working.choices if s <= getattr(settings, working.limit)] or [working.choices[0]]
    chosen["max_side"] = st.sidebar.select_slider(
        working.label, sides, value=working.default if working.default in sides else sides[-1], key="max_side"
    )
    st.sidebar.header("Motion")
    offered = {b.name: backends.loaded_label(b.name, settings) for b in backends.available_backends(settings)}
    chosen["backend"] = st.sidebar.radio(
        DragParams.widget("backend").label, list(offered), format_func=offered.get, key="backend"
    )
    chosen["frames"] = param_slider("frames", settings, st.sidebar)
    chosen["fps"] = param_slider("fps", settings, st.sidebar)
    camera = DragParams.widget("camera")
    chosen["camera"] = st.sidebar.selectbox(
        camera.label,
        list(camera.choices),
        format_func=lambda name: CAMERA_LABELS.get(name, name.replace("_", " ")),
        key="camera",
    )
    return chosen


def param_slider(name: str, settings: Settings, where=st, *, label: str = "", value=None, key: str = ""):
    """A slider for DragParams field `name` with its label, limits and start value (`value` overrides it)."""
    widget = DragParams.widget(name, is_mini(settings.svd_model))
    high = widget.high if widget.limit is None else getattr(settings, widget.limit)
    start = widget.default if value is None else value
    return where.slider(
        label or widget.label, widget.low, high, min(start, high), widget.step, key=key or name
    )


def svd_controls(backend: str, settings: Settings, suggestion: int) -> dict:
    """The SVD section: the DragParams fields it sets, by name. The strength slider appears for backends
    that take one (its label and start value from the registry); the ControlNet scale for its backend."""
    spec = backends.BACKENDS[backend]
    st.header("SVD")
    st.caption("Used by the SVD backends; the warp preview ignores them.")
    bucket = DragParams.widget("motion_bucket")
    chosen = {
        "motion_bucket": st.number_input(
            bucket.label,
            bucket.low,
            bucket.high,
            key="motion_bucket",
            help=f"Suggested from the drawing: {suggestion}.",
        )
    }
    if spec.default_strength is not None:  # each backend keeps its own strength (key)
        chosen["strength"] = param_slider(
            "strength",
            settings,
            label=spec.strength_label,
            value=spec.default_strength,
            key=f"strength_{backend}",
        )
    if backend == "svd-controlnet":
        chosen["controlnet_scale"] = param_slider("controlnet_scale", settings)
    if spec.experimental:
        st.caption(
            "Experimental: the research path (video and flow generated together, the drags held in the "
            "flow); in the original work its control over the motion was weak."
        )
    # A preset SVD on the CPU starts at CPU-sized steps (apps.common.start_values). The working size stays
    # where it is: it is also the weight-free warp's, and the estimate shown before a run gives the cost of both.
    mini = is_mini(settings.svd_model)
    start = start_values(settings.svd_model, "svd", settings, DragParams.widget("max_side", mini).default, 0)
    chosen["steps"] = param_slider("steps", settings, value=start.steps or None)
    if start.note:
        st.caption(
            f"Steps start at {start.steps} for the `{settings.svd_model}` SVD on the CPU; the working size sets "
            "the time too (see the estimate)."
        )
    chosen["noise_aug"] = param_slider("noise_aug", settings)
    seed = DragParams.widget("seed")
    chosen["seed"] = st.number_input(seed.label, seed.low, seed.high, seed.default, key="seed")
    return chosen


def trajectory_file_section() -> None:
    st.sidebar.header("Trajectory file")
    st.sidebar.file_uploader(
        "Load trajectories (JSON) and a motion brush (PNG) to redo a run",
        type=["json", "png"],
        accept_multiple_files=True,
        key="trajectory_file",
        on_change=on_trajectory_file,
    )
    if st.session_state.trajectory_file_error:
        st.sidebar.error(st.session_state.trajectory_file_error)


# -- the page ------------------------------------------------------------------------------------------


def sync_canvas(
    data: bytes, resize: str, max_side: int, canvas_size: tuple[int, int], tracks_json: str | None
) -> str:
    """Keep the drawing in step with the picture: a new picture starts empty (an example's with its drags,
    `tracks_json`), the same picture at another size or fit or on a canvas of another size (the column's)
    shows the same (normalised) trajectories, a loaded trajectory file replaces the drawing. Returns the
    image id (the canvas keys hold it)."""
    image_id = hashlib.sha1(data).hexdigest()[:12]
    layout_id = f"{image_id}-{resize}-{max_side}"
    if st.session_state.image_id is None or st.session_state.image_id.split("-")[0] != image_id:
        ui_tracks.remount_canvas([])
        ui_engine.clear_brush()
        st.session_state.run_depth = None
        if tracks_json is not None:
            load_tracks(tracks_json)
    elif st.session_state.image_id != layout_id or st.session_state.canvas_size != canvas_size:
        old = st.session_state.get("canvas_size", canvas_size)
        kept = parse_objects(st.session_state.canvas_objects, old)
        timings = st.session_state.track_timings
        kept_timings = {new: timings[i] for new, i in enumerate(kept.object_index) if i in timings}
        ui_tracks.remount_canvas(objects_from_trajectories(kept.trajectories, canvas_size), kept_timings)
        if st.session_state.image_id != layout_id:
            ui_engine.clear_brush()
        else:  # only the canvas's size: the brush is the same picture's
            ui_brush.keep_brush()
    st.session_state.image_id = layout_id
    st.session_state.canvas_size = canvas_size
    if st.session_state.pending_trajectories is not None:
        pending = st.session_state.pending_trajectories
        ui_tracks.remount_canvas(
            objects_from_trajectories(pending, canvas_size), ui_tracks.timings_of(pending)
        )
        st.session_state.pending_trajectories = None
    if st.session_state.pending_inputs is not None:  # a redone run's brush, painted objects and depth map
        shown = parse_objects(st.session_state.canvas_objects, canvas_size).trajectories
        ui_engine.load_inputs(st.session_state.pending_inputs, shown)
        st.session_state.pending_inputs = None
    return image_id


def drawing_section(image: np.ndarray, canvas_size: tuple[int, int], image_id: str) -> ParsedCanvas:
    """The tool choice and the canvas: what it holds. The canvas shows each track's arrow and number under
    the strokes (`ui_canvas.canvas_background`), so a new drawing reruns the page to show them at once."""
    tool_label = st.radio(
        "Tool", list(ui_canvas.TOOLS), horizontal=True, key="tool", on_change=on_tool_change
    )
    mode = ui_canvas.TOOLS[tool_label]
    st.caption(ui_canvas.TOOL_HELP[mode])
    shown = st.session_state.canvas_objects
    result = ui_canvas.draw_canvas(
        ui_canvas.canvas_background(image, canvas_size, parse_objects(shown, canvas_size).trajectories),
        canvas_size,
        drawing_mode=mode,
        initial_objects=st.session_state.canvas_seed,
        key=f"canvas-{image_id}-{st.session_state.canvas_rev}",
        stroke_colour=ui_canvas.stroke_colour_for(len(shown)),
    )
    drawn = canvas_objects(result.json_data)
    if drawn != shown:
        st.session_state.canvas_objects = drawn
        st.rerun()
    return parse_objects(drawn, canvas_size)


def preview_section(
    image: np.ndarray,
    trajectories: Trajectories,
    chosen: dict,
    region_mask: np.ndarray | None,
    layers: list[ObjectLayer] | None,
    layers_key: str | None,
) -> None:
    """The trajectories over the image (with their objects, tinted, for the objects engine: `layers`), the
    engine's motion picture (colour = direction) and its preview video."""
    height, width = image.shape[:2]
    arrows_col, flow_col = st.columns(2)
    camera = backends.camera_of(chosen["camera"])
    if layers is None:
        preview = preview_flow(
            (width, height),
            trajectories,
            chosen["frames"],
            region_mask=region_mask,
            camera=camera,
            radius_px=chosen["radius"],
        )
        overlay, caption = draw_trajectory_overlay(image, trajectories), "Trajectories"
    else:
        preview = preview_object_flow((width, height), trajectories, layers, chosen["frames"], camera=camera)
        overlay = draw_trajectory_overlay(draw_object_overlay(image, layers), trajectories)
        caption = "Trajectories and the objects they move"
    arrows_col.image(overlay, caption=caption, width="stretch")
    flow_col.image(with_border(preview), caption="Motion preview (colour = direction)", width="stretch")
    try:
        clip = preview_clip(
            image,
            trajectories.to_json(),
            chosen["frames"],
            chosen["fps"],
            chosen["camera"],
            region_mask,
            chosen["radius"],
            layers_key,
            layers,
        )
    except InputError:  # nothing moves yet: the flow picture above says so by staying white
        return
    st.video(clip, format="video/mp4", loop=True, autoplay=True, muted=True)
    if layers is None:
        st.caption("Warp preview video (reduced resolution; Generate makes the full-size result)")
    else:
        st.caption("Preview video (Generate makes the result and its files)")


def main() -> None:
    set_page(APPS["drag"])
    st.html(ui_canvas.CANVAS_STYLE)
    init_state()
    settings = page_header(APPS["drag"], read_settings(), backends.MODELS)  # the offline models, if switched
    st.caption(
        "Draw where things should move; anchors hold the image still. The warp preview is instant; "
        "SVD turns the warp into a generated video."
    )
    if is_mini(settings.svd_model):
        st.caption(f"SVD model `{MINI}` ({ENV_PREFIX}SVD_MODEL): {MINI_DESCRIPTION}.")
    chosen_image = image_source(settings)
    chosen = sidebar_controls(settings)
    svd_box = st.sidebar.container()  # filled below: the motion bucket is suggested from the drawing
    trajectory_file_section()

    image = None
    if chosen_image is not None:
        image_name, data, tracks_json = chosen_image
        try:
            image = working_image(data, settings.max_image_side, chosen["max_side"], chosen["resize"])
        except InputError as err:
            st.error(str(err))
    if image is None:
        if st.session_state.result is not None:  # no usable image: keep what was generated before
            ui_generate.show_result(st.session_state.result, settings)
        return

    height, width = image.shape[:2]
    draw_col, side_col = st.columns([3, 2])
    with draw_col:
        canvas_size = ui_canvas.fitted_size((height, width), "canvas_column")
        image_id = sync_canvas(data, chosen["resize"], chosen["max_side"], canvas_size, tracks_json)
        parsed = drawing_section(image, canvas_size, image_id)
        source_hw = decode_image(data, settings.max_image_side).shape[:2]
        fit = plan_resize(*source_hw, multiple=64, max_side=chosen["max_side"], mode=chosen["resize"])
        engine = ui_engine.engine_controls(image, image_id, parsed.trajectories, fit, settings.max_image_side)
    chosen.update(engine.params)
    with side_col:
        trajectories = ui_tracks.trajectory_list(parsed, (width, height), chosen["frames"])
        layers = layers_key = None
        if chosen["engine"] == "objects":
            key = ui_engine.layers_key(st.session_state.image_id, trajectories, settings, engine)
            try:
                layers = ui_engine.object_layers_for(image, key, trajectories, settings, engine)
                layers_key = key
            except KinemaError as err:  # a configured SAM that does not load
                st.error(str(err))
                return
        preview_section(image, trajectories, chosen, engine.region_mask, layers, layers_key)

    suggestion = suggest_motion_bucket(
        trajectories,
        chosen["frames"],
        chosen["fps"],
        (width, height),
        camera=backends.camera_of(chosen["camera"]),
        region_mask=engine.region_mask,
        radius_px=chosen["radius"],
        layers=layers,
    )
    redo_bucket = st.session_state.pop("redo_bucket", None)  # a redone run's own (apps.drag.ui_runs)
    if st.session_state.bucket_suggestion != suggestion or redo_bucket is not None:
        # Pre-fill the motion bucket whenever the drawing (or frames / fps) implies a new value.
        st.session_state.bucket_suggestion = suggestion
        st.session_state.motion_bucket = suggestion if redo_bucket is None else redo_bucket
    with svd_box:
        chosen.update(svd_controls(chosen["backend"], settings, suggestion))
        low_vram = st.checkbox(
            LOW_VRAM_LABEL, settings.low_vram, help=low_vram_help(settings), key="low_vram"
        )
    run_settings = settings.replace(low_vram=low_vram)  # this run's mode: the pipeline is placed for it
    ui_generate.generate_section(
        image, image_name, trajectories, engine, DragParams(**chosen), run_settings, layers
    )
    if st.session_state.run_error:
        st.error(st.session_state.run_error)
    if st.session_state.result is not None:
        ui_generate.show_result(st.session_state.result, settings)
    ui_runs.runs_panel(settings, [*sample_photos(), MINI_SAMPLE])


main()
