"""Drag to video: draw trajectories on an image and get a video whose content follows them.

Run: ``python -m apps drag`` (or ``streamlit run apps/drag/app.py`` from the repository root).
Settings come from KINEMA_* variables (core/config.py). The backend radio lists the backends whose
weights are configured (apps/drag/backends.py): the warp needs none; the others load once per process.

Session state (per browser tab):
    canvas_rev, canvas_seed   the canvas is mounted under a key holding canvas_rev, showing canvas_seed;
                              deleting, resetting, loading a trajectory file or switching tools bumps
                              canvas_rev with a new seed (the component keeps its own objects otherwise)
    canvas_objects            the objects the canvas last reported (one per trajectory, in order)
    brush_rev                 the motion-brush canvas starts empty; clearing it bumps brush_rev
    result, run_error         the last finished run (kept when a later run fails) and the last failure
"""

from __future__ import annotations

import hashlib
import logging
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `streamlit run apps/drag/app.py` puts only apps/drag on the path
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import streamlit as st  # noqa: E402

from apps.drag import backends, ui_canvas, ui_generate  # noqa: E402
from apps.drag.ui_overlay import colour_of, draw_trajectory_overlay, with_border  # noqa: E402
from core.config import Settings  # noqa: E402
from core.engines.warp import CAMERA_PRESETS, preview_flow  # noqa: E402
from core.errors import InputError, KinemaError, ModelNotAvailable  # noqa: E402
from core.imaging import load_image, resize_to_multiple  # noqa: E402
from core.motion import suggest_motion_bucket  # noqa: E402
from core.trajectory import Trajectories  # noqa: E402
from core.trajectory.canvas import (  # noqa: E402
    ParsedCanvas,
    canvas_objects,
    mask_from_strokes,
    objects_from_trajectories,
    parse_objects,
)

log = logging.getLogger("kinema.drag")

SAMPLES_DIR = ROOT / "assets" / "images"
IMAGE_TYPES = ["png", "jpg", "jpeg", "webp", "bmp", "gif", "tif", "tiff"]
WORKING_SIDES = [128, 256, 384, 512, 768, 1024]
CANVAS_MAX_W, CANVAS_MAX_H = 560, 520
RESIZE_MODES = {"crop": "Crop to fit", "pad": "Keep aspect (pad)"}
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
    }
    for key, value in defaults.items():
        st.session_state.setdefault(key, value)


def remount_canvas(objects: list[dict]) -> None:
    """Show `objects` on a freshly mounted canvas (the only way to take objects away from the component)."""
    st.session_state.canvas_seed = list(objects)
    st.session_state.canvas_objects = list(objects)
    st.session_state.canvas_rev += 1


def delete_trajectory(object_index: int) -> None:
    objects = list(st.session_state.canvas_objects)
    del objects[object_index]
    remount_canvas(objects)


def on_tool_change() -> None:
    # An open polyline lives only in the component until it is sent; remounting keeps what was sent
    # as a finished object instead of letting the new tool silently drop it.
    remount_canvas(st.session_state.canvas_objects)


def on_trajectory_file() -> None:
    upload = st.session_state.get("trajectory_file")
    st.session_state.trajectory_file_error = None
    if upload is None:
        return
    try:
        st.session_state.pending_trajectories = Trajectories.from_json(upload.getvalue())
    except InputError as err:
        st.session_state.trajectory_file_error = str(err)


def read_settings() -> Settings:
    try:
        return Settings.from_env()
    except InputError as err:
        st.error(f"The app's settings are invalid: {err}")
        st.stop()


# -- page sections -------------------------------------------------------------------------------------


def image_source(settings: Settings) -> tuple[str, bytes] | None:
    """The chosen image's (name, bytes), or None (with a message shown) when there is none to use."""
    st.sidebar.header("Image")
    source = st.sidebar.radio("Source", ["Sample photo", "Upload"], horizontal=True, key="source")
    if source == "Sample photo":
        samples = sorted(p.stem for p in SAMPLES_DIR.glob("*.jpg"))
        if not samples:
            st.sidebar.error(f"No sample photos in {SAMPLES_DIR}; upload an image instead.")
            return None
        name = st.sidebar.selectbox("Sample", samples, key="sample")
        return name, (SAMPLES_DIR / f"{name}.jpg").read_bytes()
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
    return upload.name, data


def trajectory_list(parsed: ParsedCanvas, image_wh: tuple[int, int]) -> None:
    st.markdown("**Trajectories**")
    if not len(parsed.trajectories):
        st.caption("None yet: draw on the image.")
    rev = st.session_state.canvas_rev
    for i, (trajectory, object_index) in enumerate(zip(parsed.trajectories, parsed.object_index)):
        text_col, button_col = st.columns([4, 1], vertical_alignment="center")
        if trajectory.is_anchor:
            x, y = trajectory.points_norm[0] * image_wh
            text_col.markdown(f":blue[**{i + 1}**] anchor at ({x:.0f}, {y:.0f}) px")
        else:
            r, g, b = colour_of(i)
            swatch = f'<span style="color:rgb({r},{g},{b})">&#9632;</span>'
            text_col.markdown(
                f"{swatch} **{i + 1}** track, {len(trajectory.points_norm)} points, "
                f"{trajectory.length(image_wh):.0f} px",
                unsafe_allow_html=True,
            )
        button_col.button(
            "Delete",
            key=f"delete-{rev}-{i}",
            on_click=delete_trajectory,
            args=(object_index,),
            help=f"Delete trajectory {i + 1}",
        )
    for problem in parsed.problems:
        st.warning(problem)
    if parsed.clipped:
        numbers = ", ".join(str(i + 1) for i in parsed.clipped)
        if len(parsed.clipped) == 1:
            st.warning(f"Trajectory {numbers} left the image and was clipped to its edge.")
        else:
            st.warning(f"Trajectories {numbers} left the image and were clipped to its edge.")
    st.button(
        "Reset all",
        key=f"reset-{rev}",
        on_click=remount_canvas,
        args=([],),
        disabled=not st.session_state.canvas_objects,
    )


def motion_brush(image: np.ndarray, canvas_size: tuple[int, int], image_id: str) -> np.ndarray | None:
    """The optional motion-brush region (H,W) bool at the image's size, or None."""
    with st.expander("Motion brush (optional): only the painted region moves"):
        if not st.checkbox("Use a motion brush", key="use_brush"):
            return None
        size = st.slider("Brush size (px)", 5, 80, 30, key="brush_size")
        st.button("Clear the brush", on_click=_clear_brush)
        result = ui_canvas.draw_canvas(
            image,
            canvas_size,
            drawing_mode="freedraw",
            initial_objects=[],
            key=f"brush-{image_id}-{st.session_state.brush_rev}",
            stroke_width=size,
            stroke_colour="rgba(52, 199, 89, 0.6)",
        )
        objects = canvas_objects(result.json_data)
        mask = mask_from_strokes(objects, canvas_size, image.shape[:2])
        if mask is None:
            st.caption("Paint over the part of the image that may move.")
        return mask


def _clear_brush() -> None:
    st.session_state.brush_rev += 1


def svd_controls(backend: str) -> tuple[float | None, float | None]:
    """The strength and ControlNet scale sliders of the chosen backend: (strength, scale), None where it
    takes none. The ControlNet backend keeps its own strength (default 1: the ControlNet alone)."""
    spec = backends.BACKENDS[backend]
    strength = controlnet_scale = None
    if backend == "svd-controlnet":
        strength = st.slider(
            "Strength (1: the ControlNet alone; lower: it refines the warp)",
            0.0,
            1.0,
            spec.default_strength,
            0.05,
            key="controlnet_strength",
        )
        controlnet_scale = st.slider("ControlNet scale", 0.0, 2.0, 1.0, 0.05, key="controlnet_scale")
    elif spec.default_strength is not None or backend == "warp":  # shown for the warp as before
        strength = st.slider(
            "Strength (how far SVD may depart from the warp)", 0.0, 1.0, 0.4, 0.05, key="strength"
        )
    if spec.experimental:
        st.caption(
            "Experimental: the research path (video and flow generated together, the drags held in the "
            "flow); in the original work its control over the motion was weak."
        )
    return strength, controlnet_scale


def show_result(result: ui_generate.DragResult) -> None:
    st.subheader("Result")
    p = result.params
    st.caption(
        f"{backends.BACKENDS[p.backend].label}: {p.num_frames} frames at {p.fps} fps, "
        f"{result.frames_uint8.shape[2]}x{result.frames_uint8.shape[1]} px, {result.seconds:.1f} s "
        f"(saved in {result.folder})"
    )
    video_col, flow_col = st.columns(2)
    with video_col:
        st.markdown("Video")
        st.video(result.video_mp4, format="video/mp4", loop=True, autoplay=True, muted=True)
    generated_flow = p.backend == "svd-joint-flow"
    with flow_col:
        st.markdown("Generated flow (flow colours)" if generated_flow else "Motion (flow colours)")
        st.video(result.flow_mp4, format="video/mp4", loop=True, autoplay=True, muted=True)
    st.markdown("Side by side: trajectories, video, motion")
    st.video(result.side_by_side_mp4, format="video/mp4", loop=True, autoplay=True, muted=True)
    columns = st.columns(4)
    downloads = [
        ("Video (mp4)", result.video_mp4, "kinema-drag.mp4", "video/mp4"),
        ("Video (gif)", result.gif_bytes, "kinema-drag.gif", "image/gif"),
        ("Trajectories (JSON)", result.trajectories_json, "trajectories.json", "application/json"),
        ("Parameters (JSON)", result.params_json, "parameters.json", "application/json"),
    ]
    for column, (label, data, name, mime) in zip(columns, downloads):
        column.download_button(label, data, file_name=name, mime=mime, on_click="ignore")


# -- the page ------------------------------------------------------------------------------------------


def main() -> None:
    st.set_page_config(page_title="Kinema: drag to video", layout="wide")
    init_state()
    settings = read_settings()
    st.title("Drag to video")
    st.caption(
        "Draw where things should move; anchors hold the image still. The warp preview is instant; "
        "SVD turns the warp into a generated video."
    )

    chosen = image_source(settings)
    st.sidebar.header("Fit")
    resize_mode = st.sidebar.radio(
        "Resize", list(RESIZE_MODES), format_func=RESIZE_MODES.get, horizontal=True, key="resize_mode"
    )
    sides = [s for s in WORKING_SIDES if s <= settings.max_image_side] or [WORKING_SIDES[0]]
    working_side = st.sidebar.select_slider(
        "Working size (long side, px)", sides, value=512 if 512 in sides else sides[-1], key="working_side"
    )
    st.sidebar.header("Motion")
    offered = {b.name: b.label for b in backends.available_backends(settings)}
    backend = st.sidebar.radio("Backend", list(offered), format_func=offered.get, key="backend")
    num_frames = st.sidebar.slider(
        "Frames", 2, settings.max_frames, min(14, settings.max_frames), key="frames"
    )
    fps = st.sidebar.slider("Frames per second", 1, 30, 7, key="fps")
    camera = st.sidebar.selectbox(
        "Camera move",
        ["none", *CAMERA_PRESETS],
        format_func=lambda name: CAMERA_LABELS.get(name, name.replace("_", " ")),
        key="camera",
    )
    svd_box = st.sidebar.container()
    st.sidebar.header("Trajectory file")
    st.sidebar.file_uploader(
        "Load trajectories (JSON) to redo a run",
        type=["json"],
        key="trajectory_file",
        on_change=on_trajectory_file,
    )
    if st.session_state.trajectory_file_error:
        st.sidebar.error(st.session_state.trajectory_file_error)

    image = None
    if chosen is not None:
        image_name, data = chosen
        try:
            image = working_image(data, settings.max_image_side, working_side, resize_mode)
        except InputError as err:
            st.error(str(err))
    if image is None:
        # No usable image: keep what was generated before on screen.
        if st.session_state.result is not None:
            show_result(st.session_state.result)
        return

    height, width = image.shape[:2]
    canvas_size = ui_canvas.canvas_size_for((height, width), CANVAS_MAX_W, CANVAS_MAX_H)
    image_id = hashlib.sha1(data).hexdigest()[:12]
    layout_id = f"{image_id}-{resize_mode}-{working_side}"
    if st.session_state.image_id is None or st.session_state.image_id.split("-")[0] != image_id:
        remount_canvas([])  # a new picture starts with an empty drawing
        _clear_brush()
    elif st.session_state.image_id != layout_id:
        # Same picture at another size or fit: redraw the same (normalised) trajectories on it.
        old = st.session_state.get("canvas_size", canvas_size)
        kept = parse_objects(st.session_state.canvas_objects, old).trajectories
        remount_canvas(objects_from_trajectories(kept, canvas_size))
        _clear_brush()
    st.session_state.image_id = layout_id
    st.session_state.canvas_size = canvas_size
    if st.session_state.pending_trajectories is not None:
        remount_canvas(objects_from_trajectories(st.session_state.pending_trajectories, canvas_size))
        st.session_state.pending_trajectories = None

    draw_col, side_col = st.columns([3, 2])
    with draw_col:
        tool_label = st.radio(
            "Tool", list(ui_canvas.TOOLS), horizontal=True, key="tool", on_change=on_tool_change
        )
        mode = ui_canvas.TOOLS[tool_label]
        st.caption(ui_canvas.TOOL_HELP[mode])
        result = ui_canvas.draw_canvas(
            image,
            canvas_size,
            drawing_mode=mode,
            initial_objects=st.session_state.canvas_seed,
            key=f"canvas-{image_id}-{st.session_state.canvas_rev}",
        )
        st.session_state.canvas_objects = canvas_objects(result.json_data)
        region_mask = motion_brush(image, canvas_size, image_id)
    parsed = parse_objects(st.session_state.canvas_objects, canvas_size)
    trajectories = parsed.trajectories

    with side_col:
        trajectory_list(parsed, (width, height))
        overlay = draw_trajectory_overlay(image, trajectories)
        preview = preview_flow(
            (width, height),
            trajectories,
            num_frames,
            region_mask=region_mask,
            camera=backends.camera_of(camera),
        )
        arrows_col, flow_col = st.columns(2)
        arrows_col.image(overlay, caption="Trajectories", width="stretch")
        flow_col.image(with_border(preview), caption="Motion preview (colour = direction)", width="stretch")

    suggestion = suggest_motion_bucket(trajectories, num_frames, fps, (width, height))
    if st.session_state.bucket_suggestion != suggestion:
        # Pre-fill the motion bucket whenever the drawing (or frames / fps) implies a new value.
        st.session_state.bucket_suggestion = suggestion
        st.session_state.motion_bucket = suggestion
    with svd_box:
        st.header("SVD")
        st.caption("Used by the SVD backends; the warp preview ignores them.")
        motion_bucket = st.number_input(
            "Motion bucket", 1, 255, key="motion_bucket", help=f"Suggested from the drawing: {suggestion}."
        )
        strength, controlnet_scale = svd_controls(backend)
        steps = st.slider("Steps", 1, 50, 25, key="steps")
        noise_aug = st.slider("Noise augmentation", 0.0, 0.3, 0.02, 0.01, key="noise_aug")
        seed = st.number_input("Seed", 0, 2**31 - 1, 0, key="seed")

    pipe = None
    blocked = None
    if backend != "warp":
        try:
            with st.spinner(f"Loading {offered[backend]} (once per process)..."):
                pipe = backends.load(backend, settings)  # core.models caches the weights
        except ModelNotAvailable as err:
            blocked = str(err)
            st.error(f"{blocked} The warp backend works without weights.")
    moving = len(trajectories.moving) > 0 or camera != "none"
    if not moving:
        st.info(
            "Draw at least one trajectory that moves (line, polyline or freehand), or choose a camera "
            "move, then press Generate. Anchors alone only pin the image."
        )
    clicked = st.button("Generate", type="primary", disabled=not moving or blocked is not None)
    if clicked:
        params = ui_generate.DragParams(
            backend=backend,
            num_frames=int(num_frames),
            fps=int(fps),
            camera=camera,
            resize_mode=resize_mode,
            working_side=int(working_side),
            motion_bucket_id=int(motion_bucket),
            strength=strength,
            num_inference_steps=int(steps),
            noise_aug_strength=float(noise_aug),
            seed=int(seed),
            motion_brush=region_mask is not None,
            controlnet_scale=controlnet_scale,
            image=image_name,
        )
        bar = st.progress(0.0, text="Starting")
        try:
            st.session_state.result = ui_generate.generate(
                image,
                trajectories,
                params,
                region_mask=region_mask,
                output_dir=settings.output_dir,
                pipeline=pipe,
                progress=lambda fraction, text: bar.progress(min(max(fraction, 0.0), 1.0), text=text),
                overlay_uint8=overlay,
            )
            st.session_state.run_error = None
        except (KinemaError, OSError) as err:
            st.session_state.run_error = str(err)
        except Exception as err:  # keep the app and the earlier result alive; the log has the trace
            log.exception("drag generation failed")
            st.session_state.run_error = f"Generation failed ({type(err).__name__}: {err})."
        bar.empty()
    if st.session_state.run_error:
        st.error(st.session_state.run_error)
    if st.session_state.result is not None:
        show_result(st.session_state.result)


main()
