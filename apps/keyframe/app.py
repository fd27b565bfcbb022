"""Keyframe app (Gradio): video -> keyframes -> consistent edit -> inbetweened video.

Run: ``python -m apps.keyframe.app --host 127.0.0.1 --port 7862`` (or ``python -m apps keyframe``); the
Settings flags (``--sd-model`` ...) and KINEMA_* variables choose models and limits. Tests import
`demo` (or call `build_demo`) and drive it with gradio_client.

Staged, as users of such tools expect: load a part of a video (frames and suggested keyframes), adjust
the keyframes, preview the edit on the first keyframe, edit all keyframes, re-edit or replace single
keyframes, then inbetween. Per-session data (frames, motion, keyframes, edits) lives in `gr.State`;
all computation is in `apps.keyframe.workflow` over the core. The edit and inbetween events share one
queue slot ("gpu", limit 1).

API (every work event has an api_name; gradio_client keeps the session across calls):
    /sample_video, /probe_video, /load_video, /suggest_keyframes, /set_keyframes, /toggle_keyframe,
    /edit_preview, /edit_all, /reedit_keyframe, /upload_edit, /inbetween.
The edit controls are keyword inputs of the edit events: backend, filter, prompt, negative_prompt,
keyframe_prompts, strength, guidance, steps, seed and the filter parameters as EDIT_PARAM (e.g.
``adjust_hue_deg``); only those of the chosen filter are read. Clicking a frame
in a gallery only fills the "selected frame" number (UI glue, not in the API); the API sets that
number directly.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np

from apps.common.gradio import serve, shows_errors
from apps.keyframe import workflow
from apps.keyframe.sample import SAMPLE_VIDEO
from apps.keyframe.workflow import EditRequest, InterpRequest, LoadedVideo
from core.config import ENV_PREFIX, Settings
from core.engines.edit import EDITS
from core.engines.interpolate import VideoMotion
from core.engines.keyframes import DEFAULT_THRESHOLDS, Keyframe, select_keyframes
from core.errors import InputError
from core.flow import METHODS as FLOW_METHODS
from core.models import TINY

GPU = "gpu"  # concurrency_id shared by the model-running events
THUMB_SIDE = 160  # frame strip thumbnails (px)
STATE_TTL_S = 3600  # a session's frames and motion are dropped an hour after its last change
DEFAULT_FILTER = "cartoon"


@dataclass
class Session:
    """What one browser session has loaded and made.

    edited / edit_records: by frame index, the edited keyframe (H,W,3) uint8 and how it was made.
    motion: the loaded video's motion for flow method `motion_method` (estimated once, reused).
    """

    video: LoadedVideo | None = None
    suggested: tuple[Keyframe, ...] = ()
    motion: VideoMotion | None = None
    motion_method: str = ""
    edited: dict[int, np.ndarray] = field(default_factory=dict)
    edit_records: dict[int, dict[str, Any]] = field(default_factory=dict)


def _filter_inputs() -> list[tuple[str, str, Any]]:
    """(keyword name, edit, EditParam) of every filter parameter, in registry order."""
    return [(f"{edit.name}_{p.name}", edit.name, p) for edit in EDITS.values() for p in edit.params]


def model_summary(settings: Settings) -> str:
    """One Markdown line naming the model settings in use (and that 'tiny' means random weights)."""

    def describe(name: str, value: str) -> str:
        setting = f"{ENV_PREFIX}{name.upper()}"
        if value == TINY:
            return f"`{value}` (random test weights: outputs are noise; set {setting} for real ones)"
        return f"`{value}` ({setting})"

    return (
        f"**Models** - SD: {describe('sd_model', settings.sd_model)}; SVD: {describe('svd_model', settings.svd_model)}; "
        f"device `{settings.device}`. Filters and flow inbetweening need no weights.\n\n"
        f"**Limits** - {settings.max_upload_mb} MB upload; {settings.max_image_side} px longest side (larger videos "
        f"are refused, smaller ones are downscaled to the working size); {settings.max_frames} frames per part "
        f"(longer parts are read every 2nd to {workflow.MAX_AUTO_STRIDE}th frame, longer still are refused: trim them)."
    )


class Handlers:
    """The event functions; `settings` holds models and limits. Each returns values for its outputs."""

    def __init__(self, settings: Settings):
        self.settings = settings

    # -- helpers -------------------------------------------------------------------------------------

    @staticmethod
    def _video(session: Session | None) -> LoadedVideo:
        if session is None or session.video is None:
            raise InputError("Load a video first (step 1).")
        return session.video

    @staticmethod
    def _keys(session: Session, keys_text: str) -> list[Keyframe]:
        return workflow.keyframes_from_text(keys_text, Handlers._video(session).num_frames, session.suggested)

    def _motion(self, session: Session, method: str) -> VideoMotion:
        if session.motion is None or session.motion_method != method:
            session.motion = workflow.motion_of(self._video(session).frames_uint8, method, progress=True)
            session.motion_method = method
        return session.motion

    @staticmethod
    def _keyframe_gallery(session: Session, keys: list[Keyframe]) -> list[tuple[np.ndarray, str]]:
        frames = Handlers._video(session).frames_uint8
        items = []
        for key in keys:
            record = session.edit_records.get(key.index)
            if key.index in session.edited:
                how = (record.get("filter") or record.get("backend")) if record else "edited"
                items.append((session.edited[key.index], f"{key.index}: edited ({how})"))
            else:
                items.append((frames[key.index], f"{key.index}: original - {key.reason}"))
        return items

    @staticmethod
    def _frame_strip(video: LoadedVideo) -> list[tuple[np.ndarray, str]]:
        height, width = video.size_hw
        thumbs = workflow.resize_frames(video.frames_uint8, workflow.working_size(height, width, THUMB_SIDE))
        return [(thumb, f"{i} ({i / video.fps:.2f} s)") for i, thumb in enumerate(thumbs)]

    def _edit_request(self, keys: list[Keyframe], edit: dict[str, Any]) -> EditRequest:
        """An EditRequest from the edit controls (`EDIT_SETTINGS` and the filter parameters, by name)."""
        filter_name = edit.get("filter")
        params: dict[str, Any] = {}
        if edit.get("backend") == "filter" and filter_name in EDITS:
            for key, name, param in _filter_inputs():
                value = edit.get(key)
                if name != filter_name or value is None:
                    continue
                if param.kind == "int" and isinstance(value, float) and value.is_integer():
                    value = int(value)  # sliders send floats
                params[param.name] = value
        return EditRequest(
            backend=edit.get("backend", "filter"),
            filter=filter_name or "",
            filter_params=params,
            prompt=edit.get("prompt") or "",
            negative_prompt=edit.get("negative_prompt") or "",
            keyframe_prompts=workflow.parse_keyframe_prompts(
                edit.get("keyframe_prompts") or "", [k.index for k in keys]
            ),
            strength=float(edit.get("strength", 0.6)),
            guidance=float(edit.get("guidance", 7.5)),
            steps=int(edit.get("steps", 30)),
            seed=int(edit.get("seed") or 0),
        ).check()

    def _run_edit(
        self, session: Session, indices: list[int], request: EditRequest, progress: gr.Progress
    ) -> tuple[np.ndarray, float]:
        frames = self._video(session).frames_uint8
        progress(
            0, desc=f"editing {len(indices)} keyframe{'s' if len(indices) > 1 else ''} ({request.backend})"
        )
        started = time.perf_counter()
        edited = workflow.edit_keyframes(frames[indices], indices, request, self.settings, progress=True)
        return edited, time.perf_counter() - started

    # -- 1. video --------------------------------------------------------------------------------------

    def sample_video(self) -> str:
        """The sample clip's path (for the video input)."""
        return str(SAMPLE_VIDEO)

    @shows_errors
    def probe_video(self, video_path: str | None) -> tuple[str, float, float | None]:
        """Describe a chosen video and set the part to its first max_frames frames; nothing is decoded."""
        if not video_path:
            return "", 0.0, None
        info = workflow.probe(video_path, self.settings)
        duration = workflow.duration_s(info)
        end_s = workflow.default_end_s(info, self.settings)
        height, width = info.size_hw
        text = (
            f"**{Path(video_path).name}**: {info.num_frames} frames, {info.fps:.3g} fps, {duration:.2f} s, "
            f"{width}x{height}. Set the part to use, then load it."
        )
        if end_s < duration:
            text += (
                f" The part is set to the first {self.settings.max_frames} frames ({ENV_PREFIX}MAX_FRAMES); longer "
                f"parts are read every 2nd to {workflow.MAX_AUTO_STRIDE}th frame."
            )
        return text, 0.0, round(end_s, 3)

    @shows_errors
    def load_video(
        self,
        video_path: str | None,
        start_s: float | None,
        end_s: float | None,
        working_side: float,
        mode: str,
        every: float,
        signal: str,
        threshold: float | None,
        flow_method: str,
        progress=gr.Progress(track_tqdm=True),
    ):
        """Read the part [start_s, end_s] (end empty = to the end) at the working size; suggest keyframes."""
        progress(0, desc="reading frames")
        video = workflow.load_video(
            video_path,
            self.settings,
            start_s=float(start_s or 0.0),
            end_s=float(end_s) if end_s else None,
            working_side=int(working_side),
        )
        session = Session(video=video)
        keys = self._suggest(session, mode, every, signal, threshold, flow_method)
        height, width = video.size_hw
        lines = [
            f"Loaded {video.num_frames} frames of {width}x{height} at {video.fps:.3g} fps "
            f"({video.start_s:.2f}-{video.end_s:.2f} s of {video.source_name}).",
            *video.notices,
            f"Suggested {len(keys)} keyframes ({mode}).",
        ]
        return (
            session,
            "\n\n".join(lines),
            self._frame_strip(video),
            workflow.format_indices([k.index for k in keys]),
            self._keyframe_gallery(session, keys),
        )

    # -- 2. keyframes ----------------------------------------------------------------------------------

    def _suggest(
        self,
        session: Session,
        mode: str,
        every: float,
        signal: str,
        threshold: float | None,
        flow_method: str,
    ) -> list[Keyframe]:
        frames = self._video(session).frames_uint8
        flows_px = None
        if mode == "adaptive" and signal == "flow":
            flows_px = self._motion(session, flow_method).forward_px
        keys = select_keyframes(
            frames,
            mode,
            every=int(every),
            signal=signal,
            threshold=float(threshold) if threshold else None,
            flows_px=flows_px,
        )
        session.suggested = tuple(keys)
        return keys

    @shows_errors
    def suggest_keyframes(
        self,
        session: Session | None,
        mode: str,
        every: float,
        signal: str,
        threshold: float | None,
        flow_method: str,
        progress=gr.Progress(track_tqdm=True),
    ):
        """Suggest keyframes: "uniform" (every N frames) or "adaptive" (after enough motion or change)."""
        progress(0, desc="suggesting keyframes")
        keys = self._suggest(session, mode, every, signal, threshold, flow_method)
        reasons = "; ".join(f"{k.index}: {k.reason}" for k in keys)
        return (
            session,
            workflow.format_indices([k.index for k in keys]),
            self._keyframe_gallery(session, keys),
            f"Suggested {len(keys)} keyframes - {reasons}.",
        )

    @shows_errors
    def set_keyframes(self, session: Session | None, keys_text: str):
        """Use the listed keyframes (frame numbers separated by commas)."""
        keys = self._keys(session, keys_text)
        return (
            workflow.format_indices([k.index for k in keys]),
            self._keyframe_gallery(session, keys),
            f"{len(keys)} keyframes.",
        )

    @shows_errors
    def toggle_keyframe(self, session: Session | None, frame: float | None, keys_text: str):
        """Make the selected frame a keyframe, or stop it being one."""
        video = self._video(session)
        if frame is None or not float(frame).is_integer() or not 0 <= frame < video.num_frames:
            raise InputError(f"Select a frame between 0 and {video.num_frames - 1} first (click one).")
        frame = int(frame)
        indices = set(workflow.parse_indices(keys_text)) if (keys_text or "").strip() else set()
        if frame in indices and len(indices) == 1:
            raise InputError("At least one keyframe must remain.")
        indices ^= {frame}
        keys = self._keys(session, workflow.format_indices(sorted(indices)))
        action = "added" if frame in indices else "removed"
        return (
            workflow.format_indices([k.index for k in keys]),
            self._keyframe_gallery(session, keys),
            f"Keyframe {frame} {action}; {len(keys)} keyframes.",
        )

    def select_frame(self, evt: gr.SelectData) -> int:
        return int(evt.index)

    @shows_errors
    def select_keyframe(self, keys_text: str, evt: gr.SelectData) -> int | None:
        indices = workflow.parse_indices(keys_text)
        return indices[evt.index] if 0 <= evt.index < len(indices) else None

    # -- 3. editing ------------------------------------------------------------------------------------

    @shows_errors
    def edit_preview(
        self,
        session: Session | None,
        keys_text: str,
        progress=gr.Progress(track_tqdm=True),
        *,
        color_grade_reference: np.ndarray | None = None,
        **edit,
    ):
        """Edit the first keyframe only, as a preview (original | edited); nothing is kept."""
        keys = self._keys(session, keys_text)
        request = self._edit_request(keys, {**edit, "color_grade_reference": color_grade_reference})
        first = keys[0].index
        edited, seconds = self._run_edit(session, [first], request, progress)
        original = self._video(session).frames_uint8[first]
        preview = workflow.side_by_side(original[None], edited)[0]
        return preview, f"Preview of keyframe {first} (original | edited) in {seconds:.1f} s."

    @shows_errors
    def edit_all(
        self,
        session: Session | None,
        keys_text: str,
        progress=gr.Progress(track_tqdm=True),
        *,
        color_grade_reference: np.ndarray | None = None,
        **edit,
    ):
        """Edit every keyframe together (the SD backend keeps them consistent with each other)."""
        keys = self._keys(session, keys_text)
        request = self._edit_request(keys, {**edit, "color_grade_reference": color_grade_reference})
        indices = [k.index for k in keys]
        edited, seconds = self._run_edit(session, indices, request, progress)
        record = request.record()
        session = replace(
            session,
            edited={**session.edited, **dict(zip(indices, edited))},
            edit_records={**session.edit_records, **dict.fromkeys(indices, record)},
        )
        return (
            session,
            self._keyframe_gallery(session, keys),
            f"Edited {len(indices)} keyframes in {seconds:.1f} s.",
        )

    @shows_errors
    def reedit_keyframe(
        self,
        session: Session | None,
        keys_text: str,
        frame: float | None,
        progress=gr.Progress(track_tqdm=True),
        *,
        color_grade_reference: np.ndarray | None = None,
        **edit,
    ):
        """Edit the selected keyframe again with the current settings (e.g. another seed or prompt)."""
        keys = self._keys(session, keys_text)
        index = self._selected_keyframe(keys, frame)
        request = self._edit_request(keys, {**edit, "color_grade_reference": color_grade_reference})
        edited, seconds = self._run_edit(session, [index], request, progress)
        session = replace(
            session,
            edited={**session.edited, index: edited[0]},
            edit_records={**session.edit_records, index: request.record()},
        )
        return (
            session,
            self._keyframe_gallery(session, keys),
            f"Re-edited keyframe {index} in {seconds:.1f} s.",
        )

    @staticmethod
    def _selected_keyframe(keys: list[Keyframe], frame: float | None) -> int:
        indices = [k.index for k in keys]
        if frame is None or not float(frame).is_integer() or int(frame) not in indices:
            raise InputError(
                f"Select a keyframe first (click it in the keyframes; keyframes: {workflow.format_indices(indices)})."
            )
        return int(frame)

    @shows_errors
    def upload_edit(
        self, session: Session | None, keys_text: str, frame: float | None, image: np.ndarray | None
    ):
        """Use your own image as the edit of the selected keyframe (resized to the frames' size)."""
        keys = self._keys(session, keys_text)
        index = self._selected_keyframe(keys, frame)
        if image is None:
            raise InputError("Upload an image to use as the edit of the selected keyframe.")
        video = self._video(session)
        fitted = workflow.fit_image(image, video.size_hw)
        note = ""
        if image.shape[:2] != video.size_hw:
            note = (
                f" (resized from {image.shape[1]}x{image.shape[0]} to {video.size_hw[1]}x{video.size_hw[0]})"
            )
        record = {"backend": "upload", "size_wh": [int(image.shape[1]), int(image.shape[0])]}
        session = replace(
            session,
            edited={**session.edited, index: fitted},
            edit_records={**session.edit_records, index: record},
        )
        return session, self._keyframe_gallery(session, keys), f"Keyframe {index} now uses your image{note}."

    # -- 4. inbetweening -------------------------------------------------------------------------------

    @shows_errors
    def inbetween(
        self,
        session: Session | None,
        keys_text: str,
        backend: str,
        fps: float | None,
        flow_method: str,
        motion_bucket: float,
        steps: float,
        seed: float,
        decode_chunk_size: float,
        progress=gr.Progress(track_tqdm=True),
    ):
        """Fill the frames between the edited keyframes; write the mp4, gif, side by side, zip and JSON."""
        video = self._video(session)
        keys = self._keys(session, keys_text)
        indices = [k.index for k in keys]
        missing = [i for i in indices if i not in session.edited]
        if missing:
            raise InputError(
                f"Keyframe{'s' if len(missing) > 1 else ''} {workflow.format_indices(missing)} "
                "not edited yet: edit all keyframes (step 2) or upload an edit for them."
            )
        request = InterpRequest(
            backend=backend,
            fps=float(fps) if fps else None,
            flow_method=flow_method,
            motion_bucket=int(motion_bucket),
            steps=int(steps),
            seed=int(seed),
            decode_chunk_size=int(decode_chunk_size),
        ).check()
        timings: dict[str, float] = {}
        started = time.perf_counter()
        motion = None
        if backend == "flow":
            progress(0, desc="estimating motion")
            motion = self._motion(session, flow_method)
            timings["motion"] = time.perf_counter() - started
        edited = np.stack([session.edited[i] for i in indices])

        def report(done: int, total: int) -> None:
            progress((done, total), desc=f"inbetweening ({backend})", unit="frames")

        started = time.perf_counter()
        result = workflow.inbetween(
            video.frames_uint8,
            indices,
            edited,
            request,
            self.settings,
            fps=video.fps,
            motion=motion,
            progress=True,
            callback=report,
        )
        timings["inbetween"] = time.perf_counter() - started
        progress(1.0, desc="writing videos")
        fps_out = request.fps or video.fps
        folder = workflow.new_run_folder(self.settings)
        record = workflow.job_record(
            video, keys, session.edit_records, request, self.settings, fps_out, timings
        )
        files = workflow.write_outputs(
            folder / "result.mp4",
            result,
            video.frames_uint8,
            fps_out,
            indices,
            edited,
            record,
            gif=folder / "result.gif",
            side_by_side_mp4=folder / "side_by_side.mp4",
            keyframes_zip=folder / "keyframes.zip",
            params_json=folder / "params.json",
        )
        status = "\n\n".join(
            [
                f"{result.shape[0]} frames at {fps_out:.3g} fps from {len(indices)} keyframes ({backend}) in "
                f"{sum(timings.values()):.1f} s; files in {folder.relative_to(self.settings.output_dir)} of the output folder.",
                *workflow.backend_notes(request, self.settings),
            ]
        )
        return (
            session,
            str(files.video_mp4),
            str(files.side_by_side_mp4),
            [str(p) for p in files.paths()],
            status,
        )

    # -- visibility (UI glue) ----------------------------------------------------------------------------

    @staticmethod
    def show_edit_backend(backend: str):
        return gr.update(visible=backend == "filter"), gr.update(visible=backend == "sd")

    @staticmethod
    def show_filter(filter_name: str):
        return [gr.update(visible=name == filter_name) for name in EDITS]

    @staticmethod
    def show_interp_backend(backend: str):
        return gr.update(visible=backend == "flow"), gr.update(visible=backend in workflow.SVD_BACKENDS)


def _control(param, key: str):
    """A Gradio control for one EditParam."""
    label = f"{param.name.replace('_', ' ')}"
    if param.kind == "bool":
        return gr.Checkbox(value=param.default, label=label, info=param.help, elem_id=f"kf-{key}")
    if param.kind == "image":
        return gr.Image(
            type="numpy", image_mode="RGB", sources=["upload"], label=f"{label}: {param.help}", height=160
        )
    return gr.Slider(
        param.minimum,
        param.maximum,
        value=param.default,
        step=param.step,
        label=label,
        info=param.help,
        elem_id=f"kf-{key}",
    )


def build_demo(settings: Settings) -> gr.Blocks:
    """The app's Blocks for these settings (models, limits, output folder)."""
    h = Handlers(settings)
    max_side = min(settings.max_image_side, 2048)
    with gr.Blocks(title="Keyframe edit + interpolation", delete_cache=(3600, 6 * 3600)) as demo:
        session = gr.State(Session(), time_to_live=STATE_TTL_S)
        gr.Markdown("# Keyframe edit + interpolation\n" + model_summary(settings))

        # 1. video and keyframes
        with gr.Row():
            with gr.Column(scale=1):
                video_in = gr.Video(label="Video", sources=["upload"], elem_id="kf-video", height=260)
                sample_btn = gr.Button("Use the sample clip", size="sm", elem_id="kf-sample")
                video_info = gr.Markdown(label="video info", elem_id="kf-video-info")
                with gr.Row():
                    start_s = gr.Number(0.0, label="Start (s)", minimum=0, elem_id="kf-start")
                    end_s = gr.Number(None, label="End (s, empty = to the end)", minimum=0, elem_id="kf-end")
                working_side = gr.Slider(
                    workflow.MIN_WORKING_SIDE,
                    max_side,
                    value=min(workflow.DEFAULT_WORKING_SIDE, max_side),
                    step=32,
                    label="Working size (longer side, px)",
                    info="larger videos are downscaled to this",
                )
                with gr.Accordion("Keyframe suggestion", open=False):
                    key_mode = gr.Radio(["uniform", "adaptive"], value="uniform", label="Mode")
                    key_every = gr.Slider(1, 32, value=8, step=1, label="Uniform: every N frames")
                    key_signal = gr.Radio(["flow", "appearance"], value="flow", label="Adaptive: signal")
                    key_threshold = gr.Number(
                        None,
                        label="Adaptive: threshold (empty = default)",
                        info=f"px of motion for flow (default {DEFAULT_THRESHOLDS['flow']:g}), fraction of "
                        f"grey range for appearance (default {DEFAULT_THRESHOLDS['appearance']:g})",
                    )
                    flow_method = gr.Dropdown(list(FLOW_METHODS), value="dis", label="Flow method")
                load_btn = gr.Button(
                    "1. Load frames and suggest keyframes", variant="primary", elem_id="kf-load"
                )
            with gr.Column(scale=2):
                status = gr.Markdown(label="status", elem_id="kf-status")
                frame_strip = gr.Gallery(
                    label="Frames (click one to select it)",
                    columns=8,
                    height=230,
                    allow_preview=False,
                    elem_id="kf-frames",
                )
                with gr.Row():
                    selected = gr.Number(
                        None, label="Selected frame (click one)", precision=0, elem_id="kf-selected"
                    )
                    keys_text = gr.Textbox(
                        label="Keyframes (frame numbers; edit and press Enter)", scale=3, elem_id="kf-keys"
                    )
                with gr.Row():
                    toggle_btn = gr.Button("Add / remove the selected frame", size="sm")
                    suggest_btn = gr.Button("Suggest keyframes again", size="sm")
                # PNG, not the lossy default: the keyframes are shown (and returned by the API) exactly.
                key_gallery = gr.Gallery(
                    label="Keyframes (click one to select it)",
                    columns=6,
                    height=260,
                    format="png",
                    elem_id="kf-keyframes",
                )

        # 2. edit, 3. inbetween
        with gr.Row():
            with gr.Column():
                gr.Markdown("### 2. Edit the keyframes")
                edit_backend = gr.Radio(
                    [("Filter (no weights)", "filter"), ("Stable Diffusion", "sd")],
                    value="filter",
                    label="Edit backend",
                    elem_id="kf-edit-backend",
                )
                with gr.Group(visible=True) as filter_group:
                    filter_name = gr.Dropdown(
                        [(e.label, e.name) for e in EDITS.values()],
                        value=DEFAULT_FILTER,
                        label="Filter",
                        elem_id="kf-filter",
                    )
                    filter_groups, filter_controls = [], {}
                    for edit in EDITS.values():
                        with gr.Group(visible=edit.name == DEFAULT_FILTER) as group:
                            gr.Markdown(edit.description)
                            for key, name, param in _filter_inputs():
                                if name == edit.name:
                                    filter_controls[key] = _control(param, key)
                        filter_groups.append(group)
                with gr.Group(visible=False) as sd_group:
                    prompt = gr.Textbox(
                        "", label="Prompt", placeholder="a watercolour painting", elem_id="kf-prompt"
                    )
                    negative_prompt = gr.Textbox("", label="Negative prompt")
                    keyframe_prompts = gr.Textbox(
                        "",
                        label="Per-keyframe prompts (optional), one 'FRAME: prompt' per line",
                        lines=3,
                        placeholder="16: the same scene at night",
                    )
                    with gr.Row():
                        strength = gr.Slider(0.05, 1.0, value=0.6, step=0.05, label="Strength")
                        guidance = gr.Slider(0.0, 20.0, value=7.5, step=0.5, label="Guidance")
                    with gr.Row():
                        edit_steps = gr.Slider(1, 100, value=30, step=1, label="Steps")
                        edit_seed = gr.Number(0, label="Seed", precision=0)
                with gr.Row():
                    preview_btn = gr.Button("2a. Preview on the first keyframe", elem_id="kf-preview")
                    edit_btn = gr.Button("2b. Edit all keyframes", variant="primary", elem_id="kf-edit-all")
                with gr.Row():
                    reedit_btn = gr.Button("Re-edit the selected keyframe", size="sm")
                preview = gr.Image(
                    label="Preview: original | edited", interactive=False, height=240, format="png"
                )
                with gr.Accordion("Your own edit for the selected keyframe", open=False):
                    own_image = gr.Image(
                        type="numpy", image_mode="RGB", sources=["upload"], label="Image", height=200
                    )
                    upload_btn = gr.Button("Use it for the selected keyframe", size="sm")
            with gr.Column():
                gr.Markdown("### 3. Inbetween")
                interp_backend = gr.Radio(
                    [
                        ("Optical flow (no weights)", "flow"),
                        ("Cross-fade (baseline)", "crossfade"),
                        ("SVD + trajectory (svd-trf)", "svd-trf"),
                        ("SVD + LoRA (svd-lora)", "svd-lora"),
                    ],
                    value="flow",
                    label="Inbetweening backend",
                    elem_id="kf-interp-backend",
                )
                out_fps = gr.Number(0, label="Output fps (0 = the video's)", minimum=0)
                with gr.Group(visible=True) as flow_group:
                    interp_flow_method = gr.Dropdown(list(FLOW_METHODS), value="dis", label="Flow method")
                with gr.Group(visible=False) as svd_group:
                    motion_bucket = gr.Slider(0, 255, value=127, step=1, label="Motion bucket")
                    with gr.Row():
                        interp_steps = gr.Slider(1, 100, value=25, step=1, label="Steps")
                        interp_seed = gr.Number(0, label="Seed", precision=0)
                    decode_chunk = gr.Slider(1, 25, value=8, step=1, label="Decode chunk size (frames)")
                interp_btn = gr.Button("3. Inbetween", variant="primary", elem_id="kf-inbetween")
                result = gr.Video(label="Result", elem_id="kf-result", autoplay=True, loop=True, height=360)
                result_side = gr.Video(
                    label="Original | result", elem_id="kf-side-by-side", loop=True, height=240
                )
                downloads = gr.File(label="Downloads", file_count="multiple", elem_id="kf-downloads")

        # -- events ----------------------------------------------------------------------------------
        sample_btn.click(h.sample_video, None, video_in, api_name="sample_video", queue=False)
        video_in.change(
            h.probe_video, video_in, [video_info, start_s, end_s], api_name="probe_video", queue=False
        )
        key_inputs = [key_mode, key_every, key_signal, key_threshold, flow_method]
        load_btn.click(
            h.load_video,
            [video_in, start_s, end_s, working_side, *key_inputs],
            [session, status, frame_strip, keys_text, key_gallery],
            api_name="load_video",
        )
        suggest_btn.click(
            h.suggest_keyframes,
            [session, *key_inputs],
            [session, keys_text, key_gallery, status],
            api_name="suggest_keyframes",
        )
        keys_text.submit(
            h.set_keyframes, [session, keys_text], [keys_text, key_gallery, status], api_name="set_keyframes"
        )
        toggle_btn.click(
            h.toggle_keyframe,
            [session, selected, keys_text],
            [keys_text, key_gallery, status],
            api_name="toggle_keyframe",
        )
        # Gallery clicks only fill the selected-frame number; the API sets that number itself.
        frame_strip.select(h.select_frame, None, selected, queue=False, api_visibility="private")
        key_gallery.select(h.select_keyframe, keys_text, selected, queue=False, api_visibility="private")

        edit_controls = {
            "backend": edit_backend,
            "filter": filter_name,
            "prompt": prompt,
            "negative_prompt": negative_prompt,
            "keyframe_prompts": keyframe_prompts,
            "strength": strength,
            "guidance": guidance,
            "steps": edit_steps,
            "seed": edit_seed,
            **filter_controls,
        }
        gpu = {"concurrency_id": GPU, "concurrency_limit": 1, "inputs_kwargs": edit_controls}
        preview_btn.click(
            h.edit_preview, [session, keys_text], [preview, status], api_name="edit_preview", **gpu
        )
        edit_btn.click(
            h.edit_all, [session, keys_text], [session, key_gallery, status], api_name="edit_all", **gpu
        )
        reedit_btn.click(
            h.reedit_keyframe,
            [session, keys_text, selected],
            [session, key_gallery, status],
            api_name="reedit_keyframe",
            **gpu,
        )
        upload_btn.click(
            h.upload_edit,
            [session, keys_text, selected, own_image],
            [session, key_gallery, status],
            api_name="upload_edit",
        )
        interp_btn.click(
            h.inbetween,
            [
                session,
                keys_text,
                interp_backend,
                out_fps,
                interp_flow_method,
                motion_bucket,
                interp_steps,
                interp_seed,
                decode_chunk,
            ],
            [session, result, result_side, downloads, status],
            api_name="inbetween",
            concurrency_id=GPU,
            concurrency_limit=1,
        )

        glue = {"queue": False, "api_visibility": "private"}
        edit_backend.change(h.show_edit_backend, edit_backend, [filter_group, sd_group], **glue)
        filter_name.change(h.show_filter, filter_name, filter_groups, **glue)
        interp_backend.change(h.show_interp_backend, interp_backend, [flow_group, svd_group], **glue)
    return demo


# Folders besides the output folder that the app serves files from.
SERVED_FOLDERS = [SAMPLE_VIDEO.parent]

demo = build_demo(Settings.from_env())


def main(argv: list[str] | None = None) -> int:
    return serve(
        "python -m apps.keyframe.app", __doc__.split("\n\n")[0], 7862, demo, build_demo, SERVED_FOLDERS, argv
    )


if __name__ == "__main__":
    raise SystemExit(main())
