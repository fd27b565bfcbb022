"""The keyframe app's event functions and per-session data (UI only: the work is in `apps.keyframe.job` and
the modules it uses). `apps.keyframe.app` lays out the page and wires these to it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np

from apps.common.examples import mini_clip_example
from apps.common.gradio import RunStops, served_copies, shows_errors, step_progress
from apps.common.runs import new_run_folder
from apps.common.runs_panel import RunsPanel
from apps.keyframe import job
from apps.keyframe.backends import EDIT_BACKENDS, SVD_BACKENDS, EditRequest, edit_keyframes, fit_image
from apps.keyframe.interp_controls import DEFAULT_REFINE_STRENGTH, interp_request
from apps.keyframe.job import KeyframeEdit, KeyframeRequest, OutputFiles, Prepared
from apps.keyframe.keyframes import (
    format_indices,
    keyframes_from_text,
    motion_of,
    optional_number,
    parse_indices,
    parse_keyframe_prompts,
    selected_keyframe,
)
from apps.keyframe.sample import SAMPLE_VIDEO
from apps.keyframe.video import (
    MAX_AUTO_STRIDE,
    LoadedVideo,
    default_end_s,
    duration_s,
    load_video,
    probe,
)
from apps.keyframe.views import (
    edit_estimate,
    estimate_lines,
    frame_strip,
    inbetween_estimate,
    keyframe_gallery,
)
from core.config import ENV_PREFIX, Settings
from core.engines.edit import EDITS
from core.engines.interpolate import VideoMotion
from core.engines.keyframes import Keyframe, select_keyframes
from core.errors import InputError
from core.eval.learning import MINI_FRAMES, MINI_SIDE
from core.imaging import load_image
from core.video import side_by_side

STATE_TTL_S = 3600  # a session's frames and motion are dropped an hour after its last change
DEFAULT_FILTER = "cartoon"
# Keyframe spacing for the mini SVD: each SVD call then makes MINI_FRAMES frames, the clip length it learned.
MINI_KEY_EVERY = MINI_FRAMES - 1


@dataclass
class Session:
    """What one browser session has loaded and made.

    request: the loaded part (video path, start, end, working size) as the job's request.
    edited / edits: by frame index, the edited keyframe (H,W,3) uint8 and how it was made (one
    `KeyframeEdit` per edit action, shared by the keyframes it edited).
    motion: the loaded video's motion for flow method `motion_method` (estimated once, reused).
    result_uint8: the last inbetweened video (T,H,W,3) uint8, for the frame-by-frame compare.
    """

    request: KeyframeRequest | None = None
    video: LoadedVideo | None = None
    suggested: tuple[Keyframe, ...] = ()
    motion: VideoMotion | None = None
    motion_method: str = ""
    edited: dict[int, np.ndarray] = field(default_factory=dict)
    edits: dict[int, KeyframeEdit] = field(default_factory=dict)
    result_uint8: np.ndarray | None = None


def filter_inputs() -> list[tuple[str, str, Any]]:
    """(keyword name, edit, EditParam) of every filter parameter, in registry order."""
    return [(f"{edit.name}_{p.name}", edit.name, p) for edit in EDITS.values() for p in edit.params]


class Handlers:
    """The event functions; `settings` holds models and limits. Each returns values for its outputs."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.stops = RunStops()
        self.runs = RunsPanel("kf")

    def _run_settings(self, low_vram: bool | None) -> Settings:
        """The settings of one run: the server's, with the run's low-VRAM choice (None: the server's)."""
        return self.settings if low_vram is None else self.settings.replace(low_vram=low_vram)

    # -- helpers -------------------------------------------------------------------------------------

    @staticmethod
    def _video(session: Session | None) -> LoadedVideo:
        if session is None or session.video is None:
            raise InputError("Load a video first (step 1).")
        return session.video

    @staticmethod
    def _keys(session: Session, keys_text: str) -> list[Keyframe]:
        return keyframes_from_text(keys_text, Handlers._video(session).num_frames, session.suggested)

    def _motion(self, session: Session, method: str) -> VideoMotion:
        if session.motion is None or session.motion_method != method:
            session.motion = motion_of(self._video(session).frames_uint8, method, progress=True)
            session.motion_method = method
        return session.motion

    @staticmethod
    def _keyframe_gallery(session: Session, keys: list[Keyframe]) -> list[tuple[np.ndarray, str]]:
        return keyframe_gallery(Handlers._video(session).frames_uint8, keys, session.edited, session.edits)

    def _image(self, path: str | None, what: str) -> np.ndarray:
        """An image upload (its path, from an `image_upload` input) read by core.imaging: its size checked from
        the header against Settings.max_image_side, anything unreadable refused in one sentence."""
        if not path:
            raise InputError(f"Upload {what} first.")
        return load_image(path, max_side=self.settings.max_image_side)

    def _edit_request(self, keys: list[Keyframe], edit: dict[str, Any]) -> EditRequest:
        """An EditRequest from the edit controls (`EDIT_SETTINGS` and the filter parameters, by name; an
        image parameter as its upload)."""
        filter_name = edit.get("filter")
        params: dict[str, Any] = {}
        if edit.get("backend") == "filter" and filter_name in EDITS:
            for key, name, param in filter_inputs():
                value = edit.get(key)
                if name != filter_name or value is None:
                    continue
                if param.kind == "int" and isinstance(value, float) and value.is_integer():
                    value = int(value)  # sliders send floats
                if param.kind == "image":
                    value = self._image(value, f"the {param.name} image")
                params[param.name] = value
        return EditRequest(
            backend=edit.get("backend", "filter"),
            filter=filter_name or "",
            filter_params=params,
            prompt=edit.get("prompt") or "",
            negative_prompt=edit.get("negative_prompt") or "",
            keyframe_prompts=parse_keyframe_prompts(
                edit.get("keyframe_prompts") or "", [k.index for k in keys]
            ),
            strength=float(edit.get("strength", 0.6)),
            guidance=float(edit.get("guidance", 7.5)),
            steps=int(edit.get("steps", 30)),
            seed=int(edit.get("seed") or 0),
            controlnet_scale=float(edit.get("controlnet_scale", 1.0)),
        ).check()

    def _run_edit(
        self,
        session: Session,
        indices: list[int],
        request: EditRequest,
        progress: gr.Progress,
        low_vram: bool | None,
        client: gr.Request | None,
        anchors: np.ndarray | None = None,
    ) -> tuple[np.ndarray, float]:
        video = self._video(session)
        frames = video.frames_uint8
        progress(
            0, desc=f"editing {len(indices)} keyframe{'s' if len(indices) > 1 else ''} ({request.backend})"
        )
        started = time.perf_counter()
        settings = self._run_settings(low_vram)
        on_step = None
        if request.backend == "sd":  # the anchors (edited keyframes) are in the batch too
            batch = len(indices) + (0 if anchors is None else len(anchors))
            on_step = step_progress(
                progress, edit_estimate(settings, video, batch, request.steps, request.strength)
            ).step
        with self.stops.running(client, on_step) as stop:
            edited = edit_keyframes(
                frames[indices], indices, request, settings, anchors_uint8=anchors, progress=True, cancel=stop
            )
        return edited, time.perf_counter() - started

    # -- 1. video --------------------------------------------------------------------------------------

    def sample_video(self) -> str:
        """The sample clip's path (for the video input)."""
        return str(SAMPLE_VIDEO)

    def mini_sample_video(self) -> tuple[str, int, int]:
        """The held-out synthetic clip for the mini models (MINI_CLIP_FRAMES frames at MINI_SIDE px), the
        working size that keeps it at MINI_SIDE and the keyframe spacing that gives each SVD call MINI_FRAMES
        frames (keyframes 0, 7, 14)."""
        return str(mini_clip_example()), MINI_SIDE, MINI_KEY_EVERY

    @shows_errors
    def probe_video(self, video_path: str | None) -> tuple[str, float, str]:
        """Describe a chosen video and set the part to its first max_frames frames (the end as text, "" for
        none); nothing is decoded."""
        if not video_path:
            return "", 0.0, ""
        info = probe(video_path, self.settings)
        duration = duration_s(info)
        end_s = default_end_s(info, self.settings)
        height, width = info.size_hw
        text = (
            f"**{Path(video_path).name}**: {info.num_frames} frames, {info.fps:.3g} fps, {duration:.2f} s, "
            f"{width}x{height}. Set the part to use, then load it."
        )
        if end_s < duration:
            text += (
                f" The part is set to the first {self.settings.max_frames} frames ({ENV_PREFIX}MAX_FRAMES); longer "
                f"parts are read every 2nd to {MAX_AUTO_STRIDE}th frame."
            )
        return text, 0.0, str(round(end_s, 3))

    @shows_errors
    def load_video(
        self,
        video_path: str | None,
        start_s: float | None,
        end_s: str | float | None,
        working_side: float,
        mode: str,
        every: float,
        signal: str,
        threshold: str | float | None,
        flow_method: str,
        progress=gr.Progress(track_tqdm=True),
    ):
        """Read the part [start_s, end_s] (end empty = to the end) at the working size; suggest keyframes."""
        progress(0, desc="reading frames")
        request = KeyframeRequest(
            edit=None,  # the keyframes are edited in steps 2 and 3 (`Session.edits`)
            video=str(video_path or ""),
            start_s=float(start_s or 0.0),
            end_s=optional_number(end_s, "The end"),
            working_side=int(working_side),
        )
        video = load_video(
            request.video,
            self.settings,
            start_s=request.start_s,
            end_s=request.end_s,
            working_side=request.working_side,
        )
        session = Session(request=request, video=video)
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
            frame_strip(video, [k.index for k in keys]),
            format_indices([k.index for k in keys]),
            self._keyframe_gallery(session, keys),
        )

    # -- 2. keyframes ----------------------------------------------------------------------------------

    def _suggest(
        self,
        session: Session,
        mode: str,
        every: float,
        signal: str,
        threshold: str | float | None,
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
            threshold=optional_number(threshold, "The threshold"),
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
        threshold: str | float | None,
        flow_method: str,
        progress=gr.Progress(track_tqdm=True),
    ):
        """Suggest keyframes: "uniform" (every N frames) or "adaptive" (after enough motion or change)."""
        progress(0, desc="suggesting keyframes")
        keys = self._suggest(session, mode, every, signal, threshold, flow_method)
        reasons = "; ".join(f"{k.index}: {k.reason}" for k in keys)
        return (
            session,
            format_indices([k.index for k in keys]),
            self._keyframe_gallery(session, keys),
            f"Suggested {len(keys)} keyframes - {reasons}.",
        )

    @shows_errors
    def set_keyframes(self, session: Session | None, keys_text: str):
        """Use the listed keyframes (frame numbers separated by commas)."""
        keys = self._keys(session, keys_text)
        return (
            format_indices([k.index for k in keys]),
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
        indices = set(parse_indices(keys_text)) if (keys_text or "").strip() else set()
        if frame in indices and len(indices) == 1:
            raise InputError("At least one keyframe must remain.")
        indices ^= {frame}
        keys = self._keys(session, format_indices(sorted(indices)))
        action = "added" if frame in indices else "removed"
        return (
            format_indices([k.index for k in keys]),
            self._keyframe_gallery(session, keys),
            f"Keyframe {frame} {action}; {len(keys)} keyframes.",
        )

    def select_frame(self, evt: gr.SelectData) -> int:
        return int(evt.index)

    @shows_errors
    def select_keyframe(self, keys_text: str, evt: gr.SelectData) -> int | None:
        indices = parse_indices(keys_text)
        return indices[evt.index] if 0 <= evt.index < len(indices) else None

    # -- 3. editing ------------------------------------------------------------------------------------

    @shows_errors
    def edit_preview(
        self,
        session: Session | None,
        keys_text: str,
        progress=gr.Progress(),
        client: gr.Request = None,
        *,
        color_grade_reference: str | None = None,
        low_vram: bool | None = None,
        **edit,
    ):
        """Edit the first keyframe only, as a preview (original | edited); nothing is kept."""
        keys = self._keys(session, keys_text)
        request = self._edit_request(keys, {**edit, "color_grade_reference": color_grade_reference})
        first = keys[0].index
        edited, seconds = self._run_edit(session, [first], request, progress, low_vram, client)
        original = self._video(session).frames_uint8[first]
        preview = side_by_side(original[None], edited)[0]
        return preview, f"Preview of keyframe {first} (original | edited) in {seconds:.1f} s."

    @shows_errors
    def edit_all(
        self,
        session: Session | None,
        keys_text: str,
        progress=gr.Progress(),
        client: gr.Request = None,
        *,
        color_grade_reference: str | None = None,
        low_vram: bool | None = None,
        **edit,
    ):
        """Edit every keyframe together (the SD backend keeps them consistent with each other)."""
        keys = self._keys(session, keys_text)
        request = self._edit_request(keys, {**edit, "color_grade_reference": color_grade_reference})
        indices = [k.index for k in keys]
        edited, seconds = self._run_edit(session, indices, request, progress, low_vram, client)
        step = KeyframeEdit(tuple(indices), tuple(indices), request)
        session = replace(
            session,
            edited={**session.edited, **dict(zip(indices, edited))},
            edits={**session.edits, **dict.fromkeys(indices, step)},
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
        progress=gr.Progress(),
        client: gr.Request = None,
        *,
        color_grade_reference: str | None = None,
        low_vram: bool | None = None,
        **edit,
    ):
        """Edit the selected keyframe again with these settings; SD attends to the others' edits (job.anchors_of)."""
        keys = self._keys(session, keys_text)
        index = selected_keyframe(keys, frame)
        request = self._edit_request(keys, {**edit, "color_grade_reference": color_grade_reference})
        anchors, images = job.anchors_of(request, session.edited, session.edits, index)
        edited, seconds = self._run_edit(session, [index], request, progress, low_vram, client, images)
        session = replace(
            session,
            edited={**session.edited, index: edited[0]},
            edits={**session.edits, index: KeyframeEdit((index,), (index,), request, anchors=anchors)},
        )
        return (
            session,
            self._keyframe_gallery(session, keys),
            f"Re-edited keyframe {index} in {seconds:.1f} s.",
        )

    @shows_errors
    def upload_edit(self, session: Session | None, keys_text: str, frame: float | None, upload: str | None):
        """Use your own image as the edit of the selected keyframe (resized to the frames' size)."""
        keys = self._keys(session, keys_text)
        index = selected_keyframe(keys, frame)
        image = self._image(upload, "an image to use as the edit of the selected keyframe")
        video = self._video(session)
        fitted = fit_image(image, video.size_hw)
        note = ""
        if image.shape[:2] != video.size_hw:
            note = (
                f" (resized from {image.shape[1]}x{image.shape[0]} to {video.size_hw[1]}x{video.size_hw[0]})"
            )
        upload = KeyframeEdit((index,), (index,), image_uint8=fit_image(image, image.shape[:2]))
        session = replace(
            session,
            edited={**session.edited, index: fitted},
            edits={**session.edits, index: upload},
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
        low_vram: bool | None = None,
        noise_reinjection: float = 0,
        refine_strength: float = DEFAULT_REFINE_STRENGTH,
        progress=gr.Progress(),
        client: gr.Request = None,
    ):
        """Fill the frames between the edited keyframes; write the mp4, gif, side by side, zip and record.
        `low_vram`: this run's low-VRAM mode (None: the server's), recorded with its settings;
        `noise_reinjection`: the SVD backends' repeats (0: off); `refine_strength`: flow+svd's SDEdit strength."""
        video = self._video(session)
        keys = self._keys(session, keys_text)
        indices = [k.index for k in keys]
        made_by: dict[int, list[int]] = {}  # id of an edit action -> the keyframes that still keep its edit
        for index in indices:
            if index in session.edits:
                made_by.setdefault(id(session.edits[index]), []).append(index)
        request = replace(
            session.request,
            keyframes=format_indices(indices),
            keyframe_reasons={k.index: k.reason for k in keys},
            keyframe_edits=tuple(replace(session.edits[ks[0]], keys=tuple(ks)) for ks in made_by.values()),
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
        prepared = Prepared(video, session.motion, session.motion_method, session.edited)

        def report(stage: str, done: int, total: int) -> None:
            if total > 1:
                progress((done, total), desc=stage, unit="frames")
            else:
                progress(float(done), desc=stage)

        settings = self._run_settings(low_vram)
        on_step = None
        if backend in SVD_BACKENDS:
            prior = inbetween_estimate(settings, video, indices, request.interp)
            on_step = step_progress(progress, prior).step
        folder = new_run_folder(self.settings.output_dir, "keyframe")
        try:
            with self.stops.running(client, on_step) as token:
                done = job.run(
                    request,
                    settings,
                    OutputFiles.in_folder(folder),
                    action="ui:inbetween",
                    prepared=prepared,
                    progress=report,
                    cancel=token,
                )
        finally:
            if not any(folder.iterdir()):
                folder.rmdir()  # a refused or failed run leaves no empty run folder behind
        self.runs.remember(client, done.files.params_json)
        session = replace(session, result_uint8=done.result_uint8)
        if done.motion is not None:
            session = replace(session, motion=done.motion, motion_method=flow_method)
        status = "\n\n".join(
            [
                f"{done.result_uint8.shape[0]} frames at {done.fps:.3g} fps from {len(indices)} keyframes ({backend}) "
                f"in {sum(done.record.timings_s.values()):.1f} s; run {folder.name}.",
                *done.notes,
            ]
        )
        paths = done.files.paths()
        served = dict(zip(paths, served_copies(paths)))
        return (
            session,
            served[done.files.video_mp4],
            served[done.files.side_by_side_mp4],
            [served[path] for path in paths],
            status,
        )

    # -- estimates and the strip's keyframe marks (UI glue) ---------------------------------------------

    def estimates(self, session: Session | None, keys_text: str, *controls) -> tuple[str, str]:
        """The estimate lines under the edit buttons and the inbetween button (`views.estimate_lines`, which
        names the `controls`)."""
        video = session.video if session is not None else None
        return estimate_lines(self.settings, video, self._listed(session, keys_text) or [], *controls)

    def mark_keyframes(self, session: Session | None, keys_text: str):
        """The frame strip with the listed keyframes marked (unchanged while the list does not parse)."""
        listed = self._listed(session, keys_text)
        return gr.update() if listed is None else frame_strip(self._video(session), listed)

    def _listed(self, session: Session | None, keys_text: str) -> list[int] | None:
        """The listed keyframes' frame numbers; None without a video or while the list does not parse."""
        try:
            return [k.index for k in self._keys(session, keys_text)]
        except InputError:
            return None

    # -- visibility (UI glue) ----------------------------------------------------------------------------

    @staticmethod
    def show_edit_backend(backend: str):
        options = EDIT_BACKENDS[backend].options
        return gr.update(visible="filter" in options), gr.update(visible="prompt" in options)

    @staticmethod
    def show_filter(filter_name: str):
        return [gr.update(visible=name == filter_name) for name in EDITS]
