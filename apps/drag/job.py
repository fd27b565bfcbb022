"""The drag job: a picture, trajectories and `DragParams` -> video files and their run record.

One job behind both front ends: the app (`apps.drag.app`, Generate) and the CLI (`apps.drag.cli`). No UI:
progress goes to a callback as `apps.drag.backends.RenderProgress` events (the app draws a bar, the CLI
tqdm bars). Bad input raises InputError, missing weights ModelNotAvailable.

Inputs are files (`DragRequest`): the picture (any size), a trajectories JSON normalised to it
(`Trajectories.to_json`) and optionally a motion-brush mask at its size (white = moves), painted objects and
a depth map (greyscale, 8- or 16-bit, at its size: the objects engine puts the nearer objects in front;
`DragParams.depth_white` says whether white is near, as in the joint app's depth PNG, or far). The job fits
the picture into the video frame (`DragParams.max_side`, `DragParams.resize`: sides multiples of 64) and
maps the trajectories, the masks and the depth map into that frame. The app saves what its canvas shows first
(`save_inputs`: the working image, which already fits, so its trajectories stay exactly as drawn).

Outputs (`DragOutputs`): the video (.mp4 or .gif), optionally the flow video, a GIF copy and the side by
side (trajectories | video | motion), and the run record (`apps.common.runs.RunRecord`). The app writes a
run folder (`DragOutputs.in_folder`); the CLI writes where its flags say. Each file is written through
`core.outputs.atomic_path` (complete under its name, or not there).

Record ``arguments``: the request (``image``, ``trajectories``, ``region_mask``, ``object_masks``, ``depth``
and every DragParams field), the front end's own options (the CLI's flags as parsed), and under ``resolved``
what the job worked out: the video and source sizes, the motion bucket, strength and ControlNet scale used,
and the trajectories it read. `request_from_record` reads the request back, so a record redoes its run
(from its run folder, or from its downloads: the inputs beside the record, where the app's run folder
keeps them too).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from apps.common.runs import RunRecord
from apps.drag import backends
from apps.drag.backends import RenderProgress
from apps.drag.overlay import draw_trajectory_overlay
from apps.drag.params import DragParams
from core.cancel import CancelToken
from core.config import Settings
from core.engines.objects import ObjectLayer
from core.errors import InputError
from core.flow import flows_to_video, render_flow_video
from core.imaging import ResizeInfo, apply_resize, load_image, load_png16, plan_resize, save_png16
from core.outputs import atomic_path
from core.trajectory import Trajectories, Trajectory
from core.video import write_video

Progress = Callable[[RenderProgress], None]

# Share of the progress the backend's render takes; writing the videos takes the rest.
RENDER_SHARE = 0.9


@dataclass(frozen=True)
class DragRequest:
    """What one run animates and how: input files and the parameters.

    Attributes:
        image: the picture (png, jpg, ...), any size up to `Settings.max_image_side`.
        trajectories: a trajectories JSON, coordinates normalised to `image`.
        params: every other choice (`apps.drag.params.DragParams`).
        region_mask: optional motion-brush image at `image`'s size: white moves, black stays.
        object_masks: the objects engine's painted objects: (drag index, image at `image`'s size, white = the
            object) pairs; each replaces the object found under that drag.
        depth: optional depth map for the objects engine, greyscale at `image`'s size (`read_depth`); the
            nearer objects are in front.
    """

    image: Path
    trajectories: Path
    params: DragParams = DragParams()
    region_mask: Path | None = None
    object_masks: tuple[tuple[int, Path], ...] = ()
    depth: Path | None = None

    def to_arguments(self) -> dict[str, Any]:
        files = {
            "image": self.image,
            "trajectories": self.trajectories,
            "region_mask": self.region_mask,
            "depth": self.depth,
        }
        return {
            **{k: None if v is None else str(v) for k, v in files.items()},
            "object_masks": {str(index): str(path) for index, path in self.object_masks},
            **self.params.to_arguments(),
        }


@dataclass(frozen=True)
class DragOutputs:
    """Where a run writes. `folder`: the app's run folder (its record names files relative to it);
    None: the CLI's paths (its record names absolute paths). `flow_in_step`: the flow video gets a still
    first frame so it plays in step with the video (T frames) instead of one frame per transition (T-1)."""

    video: Path
    record: Path
    flow: Path | None = None
    gif: Path | None = None
    side_by_side: Path | None = None
    flow_in_step: bool = False
    folder: Path | None = None

    @classmethod
    def in_folder(cls, folder: Path) -> DragOutputs:
        """The app's layout: video.mp4, flow.mp4 and side_by_side.mp4 in step, parameters.json."""
        folder = Path(folder)
        return cls(
            video=folder / "video.mp4",
            record=folder / "parameters.json",
            flow=folder / "flow.mp4",
            side_by_side=folder / "side_by_side.mp4",
            flow_in_step=True,
            folder=folder,
        )

    def files(self) -> dict[str, Path]:
        """The videos this run writes, by name."""
        named = {"video": self.video, "gif": self.gif, "flow": self.flow, "side_by_side": self.side_by_side}
        return {name: path for name, path in named.items() if path is not None}


@dataclass(frozen=True)
class DragResult:
    """One finished run: its request, files and record, and the clip itself (T,H,W,3) uint8."""

    request: DragRequest
    outputs: DragOutputs
    record: RunRecord
    frames_uint8: np.ndarray
    seconds: float

    def gif_bytes(self) -> bytes:
        """The clip as a looping GIF, written beside the video on the first call.

        Encoding a GIF takes several times longer than all the mp4s together, so the app's runs do not
        wait for a download nobody may ask for.
        """
        path = self.outputs.gif or self.outputs.video.with_suffix(".gif")
        if not path.is_file():
            with atomic_path(path) as temp:
                write_video(temp, self.frames_uint8, self.request.params.fps)
        return path.read_bytes()


@dataclass(frozen=True)
class FittedInputs:
    """The request's inputs in the video frame: image (H,W,3) uint8, trajectories normalised to it, the
    mask (H,W) bool or None, the painted objects {drag index: (H,W) bool}, the disparity (H,W) float32 in
    [0,1] (larger = nearer) or None; `source` is what was read (the trajectories as in the file)."""

    image_uint8: np.ndarray
    trajectories: Trajectories
    region_mask: np.ndarray | None
    source_hw: tuple[int, int]
    source_trajectories: Trajectories
    object_masks: dict[int, np.ndarray]
    disparity: np.ndarray | None = None


# -- inputs ----------------------------------------------------------------------------------------------


def save_inputs(
    folder: Path,
    image_uint8: np.ndarray,
    trajectories: Trajectories,
    params: DragParams,
    region_mask: np.ndarray | None = None,
    object_masks: dict[int, np.ndarray] | None = None,
    depth_unit: np.ndarray | None = None,
) -> DragRequest:
    """Write what the app animates into its run folder (image.png, trajectories.json, region_mask.png,
    object_mask_<drag number>.png, depth.png) and return the request that names them (absolute paths, so the
    record redoes the run from anywhere). `region_mask` and each of `object_masks` (by drag index) are (H,W)
    bool at the image's size; `depth_unit` (H,W) in [0,1] as uploaded (`fit_depth`), saved as 16-bit."""
    folder = Path(folder).absolute()
    with atomic_path(folder / "image.png") as temp:
        Image.fromarray(image_uint8).save(temp)
    with atomic_path(folder / "trajectories.json") as temp:
        temp.write_text(trajectories.to_json())
    mask_path = None if region_mask is None else _save_mask(folder / "region_mask.png", region_mask)
    painted = tuple(
        (index, _save_mask(folder / f"object_mask_{index + 1}.png", mask))
        for index, mask in sorted((object_masks or {}).items())
    )
    depth = None if depth_unit is None else save_png16(folder / "depth.png", depth_unit)
    return DragRequest(folder / "image.png", folder / "trajectories.json", params, mask_path, painted, depth)


def read_mask(source: Path | bytes) -> np.ndarray:
    """A mask PNG as `save_inputs` writes it (white inside), a file or an upload -> (H,W) bool."""
    return load_image(source).max(axis=2) >= 128


def _save_mask(path: Path, mask: np.ndarray) -> Path:
    with atomic_path(path) as temp:
        Image.fromarray(np.where(mask, 255, 0).astype(np.uint8)).save(temp)
    return path


def read_depth(source: Path | bytes, max_side: int) -> np.ndarray:
    """A depth map file or upload -> (H,W) float32 in [0,1] as stored (8- or 16-bit greyscale); InputError
    in one sentence for anything else."""
    name = "upload" if isinstance(source, bytes) else f"file {Path(source).name}"
    if not isinstance(source, bytes) and not Path(source).is_file():
        raise InputError(f"The depth {name} does not exist.")
    try:
        return load_png16(source, max_side=max_side)
    except InputError as err:
        raise InputError(
            f"The depth {name} is not a greyscale 8- or 16-bit image of at most {max_side} px a side (such "
            "as the joint app's depth PNG)."
        ) from err


def fit_depth(depth_unit: np.ndarray, info: ResizeInfo) -> np.ndarray:
    """A depth map (H,W) of the source picture, fitted into the video frame as `apply_resize(..., info)`
    fits the picture; InputError when it is not the picture's size."""
    if depth_unit.shape != info.source_hw:
        (height, width), (source_h, source_w) = depth_unit.shape, info.source_hw
        raise InputError(
            f"The depth map is {width}x{height} px but the image is {source_w}x{source_h}; use the depth map "
            "of this image."
        )
    return apply_resize(depth_unit, info, pad_mode="edge")


def disparity_of(depth_unit: np.ndarray, depth_white: str) -> np.ndarray:
    """The disparity (larger = nearer) of a depth map whose white is `depth_white` ("near" or "far")."""
    return depth_unit if depth_white == "near" else 1.0 - depth_unit


def load_trajectories(path: str | Path) -> Trajectories:
    """A trajectories file written by `Trajectories.to_json()`; InputError when missing or invalid."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"The trajectory file {path.name} does not exist.")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"The trajectory file {path.name} cannot be read as text.") from err
    return Trajectories.from_json(text)


def fit_trajectories(trajectories: Trajectories, info: ResizeInfo) -> Trajectories:
    """Map trajectories normalised to a source image into the frame `apply_resize(..., info)` makes.

    Crop: positions are re-normalised to the crop box (points cut off end at its edge). Pad: they are
    moved into the letterboxed picture. A source that already fits keeps its trajectories exactly (the
    round trip through pixels is not exact in floating point for sides that are not powers of two).
    """
    source_h, source_w = info.source_hw
    top, left, crop_h, crop_w = info.crop_box
    if info.crop_box == (0, 0, source_h, source_w) and info.output_hw == info.source_hw:
        return trajectories
    pad_top, _, pad_left, _ = info.padding
    out_h, out_w = info.output_hw
    scaled_h, scaled_w = info.scaled_hw
    origin = np.array([left, top], dtype=np.float64)
    crop = np.array([crop_w, crop_h], dtype=np.float64)
    source = np.array([source_w, source_h], dtype=np.float64)
    offset = np.array([pad_left, pad_top], dtype=np.float64)
    scaled = np.array([scaled_w, scaled_h], dtype=np.float64)
    out = np.array([out_w, out_h], dtype=np.float64)
    items = []
    for trajectory in trajectories:
        in_crop = (trajectory.points_norm * source - origin) / crop
        items.append(Trajectory((offset + np.clip(in_crop, 0.0, 1.0) * scaled) / out, trajectory.timing))
    return Trajectories(tuple(items))


def fit_inputs(request: DragRequest, settings: Settings) -> FittedInputs:
    """Read the request's files and fit them into the video frame (see the module docstring)."""
    trajectories = load_trajectories(request.trajectories)
    source = load_image(request.image, max_side=settings.max_image_side)
    params = request.params
    info = plan_resize(*source.shape[:2], multiple=64, max_side=params.max_side, mode=params.resize)

    def fitted_mask(path: Path, what: str) -> np.ndarray:
        mask = load_image(path, max_side=settings.max_image_side).max(axis=2)
        if mask.shape != source.shape[:2]:
            raise InputError(
                f"{what} is {mask.shape[1]}x{mask.shape[0]} px but the image is "
                f"{source.shape[1]}x{source.shape[0]}; draw the mask on the same image."
            )
        return apply_resize(mask, info, pad_mode="constant", pad_value=0) >= 128

    region_mask = None if request.region_mask is None else fitted_mask(request.region_mask, "The region mask")
    object_masks = {
        index: fitted_mask(path, f"The object mask of drag {index + 1}")
        for index, path in request.object_masks
    }
    depth = None
    if request.depth is not None:
        depth = fit_depth(read_depth(request.depth, settings.max_image_side), info)
    return FittedInputs(
        image_uint8=apply_resize(source, info, pad_mode="edge"),
        trajectories=fit_trajectories(trajectories, info),
        region_mask=region_mask,
        source_hw=source.shape[:2],
        source_trajectories=trajectories,
        object_masks=object_masks,
        disparity=None if depth is None else disparity_of(depth, params.depth_white),
    )


# -- the run ---------------------------------------------------------------------------------------------


def run(
    request: DragRequest,
    outputs: DragOutputs,
    settings: Settings,
    *,
    action: str = "ui:generate",
    command: list[str] | None = None,
    front_end_arguments: dict[str, Any] | None = None,
    pipeline=None,
    progress: Progress | None = None,
    cancel: CancelToken | None = None,
    layers: list[ObjectLayer] | None = None,
) -> DragResult:
    """Animate the request with its backend, write `outputs` and the run record; return the result.

    `pipeline` is what `apps.drag.backends.load(backend, settings)` returned (loaded here when None).
    `action` and `command` go into the record ("ui:<button>" for the app, "cli" and the command line
    for the CLI); `front_end_arguments` are recorded beside the request's (the CLI's other flags).
    `cancel` is checked at every warped frame and denoising step: a cancelled run raises
    `core.cancel.Cancelled` before it writes anything. `layers`: the objects engine's objects, already
    found on the request's image as fitted (the app caches them per image); None: found by the backend.
    """
    report = progress or (lambda event: None)
    started = time.perf_counter()
    params = request.params
    backends.require(params.backend, settings)  # unconfigured weights: say so before any work
    fitted = fit_inputs(request, settings)

    def on_render(event: RenderProgress) -> None:
        report(replace(event, fraction=round(RENDER_SHARE * event.fraction, 4)))

    video = backends.render(
        params.backend,
        fitted.image_uint8,
        fitted.trajectories,
        num_frames=params.frames,
        fps=params.fps,
        motion_bucket_id=params.motion_bucket,
        strength=params.strength,
        controlnet_scale=params.controlnet_scale,
        num_inference_steps=params.steps,
        noise_aug_strength=params.noise_aug,
        seed=params.seed,
        camera=params.camera,
        region_mask=fitted.region_mask,
        radius_px=params.radius,
        engine=params.engine,
        grow_px=params.grow_px,
        object_masks=fitted.object_masks or None,
        disparity=fitted.disparity,
        layers=layers,
        settings=settings,
        pipeline=pipeline,
        progress=(cancel or CancelToken()).watch(on_render),
    )
    rendered = time.perf_counter()
    _write_videos(outputs, fitted, video, params.fps, report)
    finished = time.perf_counter()
    height, width = fitted.image_uint8.shape[:2]
    resolved = {
        "video_size": [width, height],
        "source_size": [fitted.source_hw[1], fitted.source_hw[0]],
        "motion_bucket_id": video.motion_bucket_id,
        "strength": video.strength,
        "controlnet_scale": video.controlnet_scale,
        "trajectories": json.loads(fitted.source_trajectories.to_json()),
    }
    record = RunRecord(
        app="drag",
        action=action,
        command=command,
        arguments={**(front_end_arguments or {}), **request.to_arguments(), "resolved": resolved},
        settings={f.name: str(getattr(settings, f.name)) for f in fields(settings)},
        outputs={name: _recorded_path(path, outputs.folder) for name, path in outputs.files().items()},
        timings_s={"render": rendered - started, "write": finished - rendered, "total": finished - started},
    )
    record.write(outputs.record)
    return DragResult(request, outputs, record, video.frames_uint8, finished - started)


def request_from_record(record: RunRecord, folder: str | Path | None = None) -> DragRequest:
    """The request a drag run record names, to run it again (InputError for another app's record).

    `folder`: where the record was read from. An input file that is no longer where the record names it, or
    is named without its folder (a served app's record names files only), is taken from there under its name: a run redoes from its downloads (parameters.json beside its
    image.png, trajectories.json and region_mask.png), not only from its run folder."""
    if record.app != "drag":
        raise InputError(f"The run record is from the {record.app} app; the drag job redoes drag runs only.")
    arguments = record.arguments
    for name in ("image", "trajectories"):
        if not isinstance(arguments.get(name), str):
            raise InputError(f'The run record is damaged: "arguments" has no {name} file.')

    def located(recorded: str) -> Path:
        path = Path(recorded)
        beside = None if folder is None else Path(folder) / path.name
        mine = path.is_absolute() and path.is_file()
        return beside if beside is not None and not mine and beside.is_file() else path

    mask, depth = arguments.get("region_mask"), arguments.get("depth")  # depth: absent from older records
    painted = arguments.get("object_masks") or {}  # absent from records older than painted objects
    return DragRequest(
        image=located(arguments["image"]),
        trajectories=located(arguments["trajectories"]),
        params=DragParams.from_arguments(arguments),
        region_mask=None if mask is None else located(mask),
        object_masks=tuple((int(index), located(path)) for index, path in painted.items()),
        depth=None if depth is None else located(depth),
    )


def _write_videos(
    outputs: DragOutputs, fitted: FittedInputs, video: backends.DragVideo, fps: int, report: Progress
) -> None:
    frames = video.frames_uint8
    files = outputs.files()
    done = 0

    def write(path: Path, clip: np.ndarray) -> None:
        nonlocal done
        with atomic_path(path) as temp:
            write_video(temp, clip, fps)
        done += 1
        fraction = RENDER_SHARE + (1 - RENDER_SHARE) * done / len(files)
        report(RenderProgress("write", done, len(files), round(fraction, 4)))

    report(RenderProgress("write", 0, len(files), RENDER_SHARE))
    write(outputs.video, frames)
    if outputs.gif is not None:
        write(outputs.gif, frames)
    in_step = None
    if outputs.flow_in_step or outputs.side_by_side is not None:
        # The flow video layout (frame 0 still, frame t+1 the motion t -> t+1) plays in step with the clip.
        in_step = render_flow_video(flows_to_video(video.flow_px))
    if outputs.flow is not None:
        write(outputs.flow, in_step if outputs.flow_in_step else render_flow_video(video.flow_px))
    if outputs.side_by_side is not None:
        overlay = draw_trajectory_overlay(fitted.image_uint8, fitted.trajectories)
        side_by_side = np.concatenate([np.broadcast_to(overlay, frames.shape), frames, in_step], axis=2)
        write(outputs.side_by_side, np.ascontiguousarray(side_by_side))


def _recorded_path(path: Path, folder: Path | None) -> str:
    """How the record names an output: relative to the run folder, else as an absolute path."""
    return str(path.relative_to(folder)) if folder is not None else str(path.absolute())
