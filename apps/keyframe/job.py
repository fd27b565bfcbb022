"""The keyframe job without a UI, shared by the Gradio app and the CLI: one orchestration of the whole run.

1. read the chosen part of the video (`apps.keyframe.video`);
2. keyframes from a spec: "uniform:N", "adaptive[:SIGNAL[:THRESHOLD]]" or frame numbers (`apps.keyframe.keyframes`);
3. edit them (`apps.keyframe.backends`: a filter or SD), all at once or, from the app, in several goes;
4. fill the frames between them (flow, cross-fade, SVD);
5. write the mp4 (and, when asked, a gif, original | result, a zip of the keyframes) and the run record
   (`apps.common.runs.RunRecord`) beside them. Images given as inputs (an uploaded edit, a filter's
   reference image) are written beside the record too, so :func:`request_from_record` redoes the run.
   Every file goes through `core.outputs.atomic_path`: complete under its name, or not there.

The app runs steps 1-3 interactively and hands what it has (`Prepared`) to :func:`run`, which then only
does what is left; the CLI hands nothing and :func:`run` does it all.
"""

from __future__ import annotations

import io
import json
import time
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from apps.common.runs import RunRecord
from apps.keyframe.backends import (
    FLOW_BACKENDS,
    EditRequest,
    InterpRequest,
    backend_notes,
    edit_keyframes,
    fit_image,
    inbetween,
    require_offered,
)
from apps.keyframe.keyframes import check_keyframe_prompts, choose_keyframes, format_indices, motion_of
from apps.keyframe.video import DEFAULT_WORKING_SIDE, LoadedVideo, load_video
from core.cancel import CancelToken
from core.config import Settings
from core.engines.interpolate import VideoMotion
from core.engines.keyframes import Keyframe
from core.errors import InputError
from core.imaging import load_image
from core.outputs import atomic_path
from core.video import side_by_side, write_video

# stage text, done, total: a stage that reports once has total 1.
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class KeyframeEdit:
    """How keyframes `keys` got their edit: `edit` run on the frames `batch` together (an SD edit depends
    on the whole batch), or `image_uint8`, an uploaded (H,W,3) uint8 image used as the edit of keys[0].
    `anchors`: keyframes whose edits (made before, e.g. uploaded) the SD edit attended to (a re-edit: see
    `backends.edit_keyframes`). The edits of one request make disjoint sets of keyframes."""

    keys: tuple[int, ...]
    batch: tuple[int, ...]
    edit: EditRequest | None = None
    image_uint8: np.ndarray | None = None
    anchors: tuple[int, ...] = ()


@dataclass(frozen=True)
class KeyframeRequest:
    """One run. `keyframes`: a spec (see the module docstring); `keyframe_reasons` keep the reasons of listed
    frame numbers. `edit` edits every keyframe in one go; with `edit` None, `keyframe_edits` (the app's
    several goes) must cover every keyframe."""

    video: str
    start_s: float = 0.0
    end_s: float | None = None
    working_side: int = DEFAULT_WORKING_SIDE
    keyframes: str = "uniform:8"
    keyframe_reasons: Mapping[int, str] = field(default_factory=dict)
    edit: EditRequest | None = field(default_factory=EditRequest)
    keyframe_edits: tuple[KeyframeEdit, ...] = ()
    interp: InterpRequest = field(default_factory=InterpRequest)


@dataclass(frozen=True)
class Prepared:
    """What the app computed already: the loaded video, its motion (for `motion_method`), edited keyframes."""

    video: LoadedVideo
    motion: VideoMotion | None = None
    motion_method: str = ""
    edited: Mapping[int, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class OutputFiles:
    """Where a run writes. The mp4 and the run record always; the others when asked for."""

    video_mp4: Path
    params_json: Path
    video_gif: Path | None = None
    side_by_side_mp4: Path | None = None
    keyframes_zip: Path | None = None

    @classmethod
    def in_folder(cls, folder: Path) -> OutputFiles:
        """Every output, under the app's names, in a run folder."""
        return cls(
            folder / "result.mp4",
            folder / "params.json",
            folder / "result.gif",
            folder / "side_by_side.mp4",
            folder / "keyframes.zip",
        )

    def paths(self) -> list[Path]:
        found = (self.video_mp4, self.video_gif, self.side_by_side_mp4, self.keyframes_zip, self.params_json)
        return [p for p in found if p is not None]


@dataclass(frozen=True)
class JobResult:
    """result_uint8 (T,H,W,3) at `fps`; the files and the record written; what the app may keep."""

    result_uint8: np.ndarray
    fps: float
    files: OutputFiles
    record: RunRecord
    video: LoadedVideo
    keyframes: list[Keyframe]
    motion: VideoMotion | None
    notes: list[str]


def _png_bytes(image_uint8: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image_uint8).save(buffer, format="PNG")
    return buffer.getvalue()


def write_keyframes_zip(
    path: Path, keyframe_indices: Sequence[int], originals_uint8: np.ndarray, edited_uint8: np.ndarray
) -> Path:
    """A zip of frame_NNNN_original.png and frame_NNNN_edited.png for every keyframe."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:  # PNG is compressed already
        for index, original, edited in zip(keyframe_indices, originals_uint8, edited_uint8):
            archive.writestr(f"frame_{int(index):04d}_original.png", _png_bytes(original))
            archive.writestr(f"frame_{int(index):04d}_edited.png", _png_bytes(edited))
    return path


# -- the run ---------------------------------------------------------------------------------------------


def _edits_of(request: KeyframeRequest, indices: list[int]) -> tuple[KeyframeEdit, ...]:
    """The edits that make every keyframe; InputError for keyframes without one."""
    if request.edit is not None:
        check_keyframe_prompts(request.edit.keyframe_prompts, indices)
        return (KeyframeEdit(tuple(indices), tuple(indices), request.edit),)
    covered = {k for step in request.keyframe_edits for k in step.keys}
    missing = [i for i in indices if i not in covered]
    if missing:
        raise InputError(
            f"Keyframe{'s' if len(missing) > 1 else ''} {format_indices(missing)} "
            "not edited yet: edit all keyframes (step 2) or upload an edit for them."
        )
    return tuple(
        replace(step, keys=tuple(k for k in step.keys if k in indices))
        for step in request.keyframe_edits
        if any(k in indices for k in step.keys)
    )


def anchors_of(
    request: EditRequest, edited: Mapping[int, np.ndarray], edits: Mapping[int, KeyframeEdit], key: int
) -> tuple[tuple[int, ...], np.ndarray | None]:
    """The edited keyframes an SD re-edit of keyframe `key` attends to: every other edited keyframe, uploads
    first (an uploaded edit is the anchor of the others), then by frame. Returns (their frames, their edits
    (A,H,W,3) uint8 or None); none for a filter, which edits each pixel on its own."""
    if request.backend != "sd":
        return (), None
    others = sorted((i for i in edited if i != key), key=lambda i: (edits[i].edit is not None, i))
    return tuple(others), (np.stack([edited[i] for i in others]) if others else None)


def _edit(
    video: LoadedVideo,
    step: KeyframeEdit,
    settings: Settings,
    cancel: CancelToken,
    edited: Mapping[int, np.ndarray],
) -> dict[int, np.ndarray]:
    if step.edit is None:
        return {step.keys[0]: fit_image(step.image_uint8, video.size_hw)}
    if not set(step.keys) <= set(step.batch) or not all(0 <= i < video.num_frames for i in step.batch):
        raise InputError(
            f"An edit of keyframes {format_indices(step.keys)} names frames {format_indices(step.batch)} "
            f"as its batch; they must include those keyframes and lie in 0..{video.num_frames - 1}."
        )
    anchors = [edited[i] for i in step.anchors if i in edited]  # a redo has those edited before
    result = edit_keyframes(
        video.frames_uint8[list(step.batch)],
        step.batch,
        step.edit,
        settings,
        anchors_uint8=np.stack(anchors) if anchors else None,
        progress=True,
        cancel=cancel,
    )
    return {k: result[step.batch.index(k)] for k in step.keys}


def _load(request: KeyframeRequest, settings: Settings, tell: Callable[[str], None]) -> LoadedVideo:
    video = load_video(
        request.video,
        settings,
        start_s=request.start_s,
        end_s=request.end_s,
        working_side=request.working_side,
    )
    height, width = video.size_hw
    tell(
        f"Loaded {video.num_frames} frames of {width}x{height} at {video.fps:.3g} fps from {video.source_name}."
    )
    for notice in video.notices:
        tell(notice)
    return video


def run(
    request: KeyframeRequest,
    settings: Settings,
    files: OutputFiles,
    *,
    action: str = "cli",
    command: list[str] | None = None,
    prepared: Prepared | None = None,
    progress: Progress | None = None,
    say: Callable[[str], None] | None = None,
    cancel: CancelToken | None = None,
) -> JobResult:
    """Run the whole job (the parts `prepared` does not hold) and write `files` with the run record.

    Raises InputError / ModelNotAvailable (one sentence) for bad input or missing weights. `cancel` is
    checked at every stage, output frame and denoising step: a cancelled run raises core.cancel.Cancelled
    before it writes any file.
    """
    cancel = cancel or CancelToken()
    report = cancel.watch(progress)
    tell = say or (lambda text: None)
    interp = request.interp.check()
    require_offered(interp, settings)
    notes = backend_notes(interp, settings)
    for note in notes:
        tell(note)
    if request.edit is not None:
        request.edit.check()  # bad filter parameters fail before any decoding
    timings: dict[str, float] = {}

    if prepared is None:
        started = time.perf_counter()
        report("reading frames", 0, 1)
        video = _load(request, settings, tell)
        timings["load"] = time.perf_counter() - started
    else:
        video = prepared.video
    suggested = [Keyframe(i, reason) for i, reason in request.keyframe_reasons.items()]
    keys, motion = choose_keyframes(request.keyframes, video.frames_uint8, interp.flow_method, suggested)
    indices = [k.index for k in keys]
    tell(f"Keyframes: {format_indices(indices)}.")
    steps = _edits_of(request, indices)

    started = time.perf_counter()
    edited_by_key = dict(prepared.edited) if prepared is not None else {}
    todo = [step for step in steps if not all(k in edited_by_key for k in step.keys)]
    for step in sorted(todo, key=lambda step: bool(step.anchors)):  # re-edits after the edits they attend to
        report(f"editing {len(step.batch)} keyframe{'s' if len(step.batch) > 1 else ''}", 0, 1)
        edited_by_key.update(_edit(video, step, settings, cancel, edited_by_key))
    if todo:
        timings["edit"] = time.perf_counter() - started
    edited = np.stack([edited_by_key[i] for i in indices])

    if interp.backend in FLOW_BACKENDS and motion is None and prepared is not None:
        if prepared.motion_method == interp.flow_method:
            motion = prepared.motion
    if interp.backend in FLOW_BACKENDS and motion is None:
        report("estimating motion", 0, 1)
        started = time.perf_counter()
        motion = motion_of(video.frames_uint8, interp.flow_method, progress=True)
        timings["motion"] = time.perf_counter() - started

    started = time.perf_counter()
    result = inbetween(
        video.frames_uint8,
        indices,
        edited,
        interp,
        settings,
        fps=video.fps,
        motion=motion,
        progress=True,
        callback=lambda done, total: report(f"inbetweening ({interp.backend})", done, total),
        cancel=cancel,
    )
    timings["inbetween"] = time.perf_counter() - started

    report("writing videos", 1, 1)
    fps = interp.fps or video.fps
    arguments = _arguments(request, video, keys, steps, files.params_json.parent)
    arguments["inbetween"] = {**interp.record(), "output_fps": fps}
    record = RunRecord(
        app="keyframe",
        action=action,
        command=command,
        arguments=arguments,
        settings={
            name: getattr(settings, name)
            for name in (
                "sd_model",
                "controlnet_model",
                "svd_model",
                "svd_interp_lora",
                "device",
                "dtype",
                "low_vram",
            )
        },
        outputs=write_outputs(files, result, video.frames_uint8, fps, indices, edited),
        timings_s=timings,
    )
    record.write(files.params_json)
    tell(f"Wrote {result.shape[0]} frames at {fps:.3g} fps: {', '.join(str(p) for p in files.paths())}")
    return JobResult(result, fps, files, record, video, keys, motion, notes)


def write_outputs(
    files: OutputFiles,
    result_uint8: np.ndarray,
    original_uint8: np.ndarray,
    fps: float,
    indices: list[int],
    edited_uint8: np.ndarray,
) -> dict[str, str]:
    """Write the outputs `files` asks for besides the record: the result (T,H,W,3) uint8 as the mp4 (and gif), the
    original | result video of `original_uint8` (T,H,W,3) uint8, the zip of the keyframes (`original_uint8` at
    `indices` and `edited_uint8` (K,H,W,3) uint8), each through `atomic_path`. Returns where each output is, by
    name, for the run record: relative to the record's folder when in it, else absolute."""
    with atomic_path(files.video_mp4) as temp:
        write_video(temp, result_uint8, fps)
    if files.video_gif is not None:
        with atomic_path(files.video_gif) as temp:
            write_video(temp, result_uint8, fps)
    if files.side_by_side_mp4 is not None:
        with atomic_path(files.side_by_side_mp4) as temp:
            write_video(temp, side_by_side(original_uint8, result_uint8), fps)
    if files.keyframes_zip is not None:
        with atomic_path(files.keyframes_zip) as temp:
            write_keyframes_zip(temp, indices, original_uint8[indices], edited_uint8)
    named = (
        ("video_mp4", files.video_mp4),
        ("video_gif", files.video_gif),
        ("side_by_side_mp4", files.side_by_side_mp4),
        ("keyframes_zip", files.keyframes_zip),
    )
    # Named relative to the record's folder when in it (a run folder), else absolute (a CLI user's paths).
    here = files.params_json.parent.resolve()
    return {
        name: path.name if path.parent.resolve() == here else str(path.resolve())
        for name, path in named
        if path is not None
    }


# -- the record ------------------------------------------------------------------------------------------


def _save_png(folder: Path, name: str, image_uint8: np.ndarray) -> str:
    with atomic_path(folder / name) as temp:
        Image.fromarray(image_uint8).save(temp)
    return name


def filter_image_path(folder: Path, filter_name: str, param: str, first: int | None = None) -> Path:
    """Where a filter's image parameter is saved beside the record: ``FILTER_PARAM.png`` when the run has one
    edit (always the CLI's, so it can check the path before any work), ``FILTER_PARAM_NNNN.png`` (NNNN: the
    first frame of the edit's batch) for the app's edits in several goes."""
    return folder / f"{filter_name}_{param}{'' if first is None else f'_{first:04d}'}.png"


def _step_record(step: KeyframeEdit, folder: Path, only: bool) -> dict[str, Any]:
    """How a keyframe was edited, JSON-ready; input images are written to `folder` and named. `only`: the
    run's only edit (see :func:`filter_image_path`)."""
    if step.edit is None:
        height, width = step.image_uint8.shape[:2]
        file = _save_png(folder, f"edit_{step.keys[0]:04d}.png", step.image_uint8)
        return {
            "backend": "upload",
            "size_wh": [int(width), int(height)],
            "file": file,
            "batch": list(step.batch),
        }
    record = step.edit.record()
    images = {k: v for k, v in step.edit.filter_params.items() if isinstance(v, np.ndarray)}
    if step.edit.backend == "filter" and images:
        first = None if only else step.batch[0]
        record["files"] = {
            name: _save_png(folder, filter_image_path(folder, step.edit.filter, name, first).name, image)
            for name, image in images.items()
        }
    anchors = {"anchors": [int(i) for i in step.anchors]} if step.anchors else {}
    return {**record, "batch": [int(i) for i in step.batch], **anchors}


def _arguments(
    request: KeyframeRequest,
    video: LoadedVideo,
    keys: list[Keyframe],
    steps: tuple[KeyframeEdit, ...],
    folder: Path,
) -> dict[str, Any]:
    """What redoes the run: the request, with each keyframe's edit, and what was loaded."""
    step_of = {k: step for step in steps for k in step.keys}
    records = {id(step): _step_record(step, folder, only=len(steps) == 1) for step in steps}
    return {
        "video_path": str(Path(request.video).resolve()),
        "start_s": request.start_s,
        "end_s": request.end_s,
        "working_side": request.working_side,
        "keyframe_spec": request.keyframes,
        "video": video.record(),
        "keyframes": [
            {"index": k.index, "reason": k.reason, "edit": records[id(step_of[k.index])]} for k in keys
        ],
    }


def _edit_from_record(edit: Mapping[str, Any], folder: Path) -> EditRequest:
    if edit["backend"] == "filter":
        params = dict(edit["params"])
        for name, file in edit.get("files", {}).items():
            params[name] = load_image(folder / file)
        return EditRequest(backend="filter", filter=edit["filter"], filter_params=params)
    values = {k: edit[k] for k in ("prompt", "negative_prompt", "strength", "guidance", "steps", "seed")}
    prompts = {int(k): v for k, v in edit["keyframe_prompts"].items()}
    # Records from before the ControlNet was wired ran without one: scale 0 redoes them.
    scale = edit.get("controlnet_scale", 0.0)
    return EditRequest(backend="sd", keyframe_prompts=prompts, controlnet_scale=scale, **values)


def recorded_input(recorded: str, folder: Path) -> Path:
    """An input file a run record names: where it names it, or else in the record's `folder` under its name (a
    served app's record names its inputs by name only; the app keeps them, or the user puts them, there)."""
    path = Path(recorded)
    if not (path.is_absolute() and path.is_file()) and (folder / path.name).is_file():
        return folder / path.name
    return path


def request_from_record(record: RunRecord, folder: str | Path) -> KeyframeRequest:
    """The request a keyframe run record (read from `folder`, which holds its input images) redoes. The video
    is where the record names it, or else in `folder` under its name (a served app's record names the
    uploaded video's file only: put the video beside the record to redo the run)."""
    if record.app != "keyframe":
        raise InputError(f"This is a run record of the {record.app} app, not of the keyframe app.")
    if "images" in record.arguments:
        raise InputError(
            "This run record chains images: apps.keyframe.sequence.request_from_record redoes it."
        )
    args, folder = record.arguments, Path(folder)
    try:
        groups: dict[str, list[int]] = {}
        for key in args["keyframes"]:
            groups.setdefault(json.dumps(key["edit"], sort_keys=True), []).append(int(key["index"]))
        edits = []
        for text, keys in groups.items():
            edit = json.loads(text)
            batch = tuple(int(i) for i in edit["batch"])
            if edit["backend"] == "upload":
                edits.append(KeyframeEdit(tuple(keys), batch, image_uint8=load_image(folder / edit["file"])))
            else:
                anchors = tuple(int(i) for i in edit.get("anchors", ()))
                edits.append(
                    KeyframeEdit(tuple(keys), batch, _edit_from_record(edit, folder), anchors=anchors)
                )
        return KeyframeRequest(
            video=str(recorded_input(args["video_path"], folder)),
            start_s=args["start_s"],
            end_s=args["end_s"],
            working_side=args["working_side"],
            keyframes=args["keyframe_spec"],
            keyframe_reasons={int(k["index"]): k["reason"] for k in args["keyframes"]},
            edit=None,
            keyframe_edits=tuple(edits),
            interp=InterpRequest.from_record(args["inbetween"]),
        )
    except InputError:
        raise  # an input image that cannot be read says so itself
    except (KeyError, TypeError, ValueError) as error:
        raise InputError(f"The keyframe run record is damaged: {error!r} is missing or wrong.") from error
