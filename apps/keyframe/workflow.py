"""The keyframe job without a UI, shared by the Gradio app and the CLI.

Steps (each a function here, over the core engines and pipelines):

1. `load_video`: read the chosen part of a video within the limits of `Settings`, at a working size.
2. `select_keyframes` (core) suggests keyframes; `keyframes_from_text` reads a hand-edited list.
3. `edit_keyframes`: the "filter" backend (`core.engines.edit`, no weights) or "sd"
   (`core.pipelines.keyframe_edit`, SD img2img over all keyframes at once, per-keyframe prompts).
4. `inbetween`: "flow" (`core.engines.interpolate`, no weights), "crossfade" (the baseline), or
   "svd-trf" / "svd-lora" (`core.pipelines.svd_interpolate`).
5. `write_outputs`: mp4, gif, original | result side by side, a zip of the keyframes, a parameters JSON.

Input limits (documented in the app and the CLI help):
- a file larger than `max_upload_mb` is refused;
- a video whose longer side exceeds `max_image_side` is refused before decoding (decoding it would
  hold T full frames in memory); smaller videos are downscaled to the working size (longer side,
  default 512 px, sides even) with a notice;
- the chosen part must hold at least 2 frames (a still image has nothing to inbetween);
- a part longer than `max_frames` frames is read at a stride (every 2nd, 3rd or 4th frame) with a
  notice; one that would need a stride above `MAX_AUTO_STRIDE` is refused with the longest duration
  that fits, because the motion between frames that far apart is too large to inbetween well.
"""

from __future__ import annotations

import io
import json
import math
import re
import time
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from core.config import ENV_PREFIX, Settings
from core.engines.edit import apply_edit, resolve_params
from core.engines.interpolate import VideoMotion, crossfade, estimate_video_motion, interpolate_flow
from core.engines.keyframes import Keyframe, manual_keyframes
from core.errors import InputError
from core.flow import METHODS as FLOW_METHODS
from core.imaging import resize_to_multiple, undo_resize
from core.video import VideoInfo, probe_video, read_video, write_video

DEFAULT_WORKING_SIDE = 512
MIN_WORKING_SIDE = 64
MIN_FRAMES = 2
MAX_AUTO_STRIDE = 4
EDIT_BACKENDS = ("filter", "sd")
INTERP_BACKENDS = ("flow", "crossfade", "svd-trf", "svd-lora")
SVD_BACKENDS = ("svd-trf", "svd-lora")
SVD_SIDE_MULTIPLE = 64
INTERP_LORA = "svd_interp"  # adapter name of the svd-lora weights in the SVD UNet

ProgressCallback = Callable[[int, int], None]


# -- 1. video --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadedVideo:
    """The part of a video the job works on.

    frames_uint8: (T,H,W,3) uint8 RGB at the working size, T >= 2.
    fps: frame rate of these frames (the source's divided by `stride`).
    source_name: the file's name; source_info: what `probe_video` reported for the whole file.
    source_indices: (T,) int64, the index of each frame in the source.
    start_s, end_s: the chosen part of the source, in seconds.
    notices: one sentence per adjustment made to fit the limits (stride, downscale).
    """

    frames_uint8: np.ndarray
    fps: float
    source_name: str
    source_info: VideoInfo
    source_indices: np.ndarray
    start_s: float
    end_s: float
    stride: int
    notices: tuple[str, ...] = ()

    @property
    def num_frames(self) -> int:
        return int(self.frames_uint8.shape[0])

    @property
    def size_hw(self) -> tuple[int, int]:
        return int(self.frames_uint8.shape[1]), int(self.frames_uint8.shape[2])

    def record(self) -> dict[str, Any]:
        """JSON-ready description for the parameters file."""
        src_frames, src_fps, (src_h, src_w) = self.source_info
        return {
            "source": self.source_name,
            "source_frames": src_frames,
            "source_fps": src_fps,
            "source_size_wh": [src_w, src_h],
            "start_s": self.start_s,
            "end_s": self.end_s,
            "stride": self.stride,
            "frames": self.num_frames,
            "fps": self.fps,
            "size_wh": [self.size_hw[1], self.size_hw[0]],
            "first_source_frame": int(self.source_indices[0]),
            "notices": list(self.notices),
        }


def check_upload(path: str | Path, settings: Settings) -> Path:
    """The path, once it exists and is within `settings.max_upload_mb`; InputError otherwise."""
    if path is None or str(path) == "":
        raise InputError("Choose a video first (upload one or use the sample clip).")
    path = Path(path)
    if not path.exists():
        raise InputError(f"The video {path} does not exist.")
    if path.is_file() and path.stat().st_size > settings.max_upload_bytes:
        size_mb = path.stat().st_size / 2**20
        raise InputError(
            f"The video is {size_mb:.0f} MB; the limit is {settings.max_upload_mb} MB "
            f"({ENV_PREFIX}MAX_UPLOAD_MB)."
        )
    return path


def probe(path: str | Path, settings: Settings) -> VideoInfo:
    """`probe_video` with the upload and size limits checked; no frame is decoded."""
    info = probe_video(check_upload(path, settings))
    height, width = info.size_hw
    if max(height, width) > settings.max_image_side:
        raise InputError(
            f"The video is {width}x{height}; the largest accepted side is {settings.max_image_side} px "
            f"({ENV_PREFIX}MAX_IMAGE_SIDE). Downscale it first or raise the limit."
        )
    return info


def duration_s(info: VideoInfo) -> float:
    return info.num_frames / info.fps


def default_end_s(info: VideoInfo, settings: Settings) -> float:
    """End time (s) of the first part that fits `settings.max_frames` frames read one by one:
    the whole video when it fits, else frames 0 .. max_frames-1 (rounded down to milliseconds)."""
    if info.num_frames <= settings.max_frames:
        return duration_s(info)
    return math.floor((settings.max_frames - 1) / info.fps * 1000) / 1000


def plan_part(
    info: VideoInfo, settings: Settings, start_s: float, end_s: float | None
) -> tuple[int, int, int]:
    """Which source frames to read for the part [start_s, end_s] (seconds; None = to the end).

    Returns (first frame, stride, frame count). Raises InputError for a bad range, fewer than
    `MIN_FRAMES` frames, or a part that would need a stride above `MAX_AUTO_STRIDE`.
    """
    total, fps = info.num_frames, info.fps
    duration = total / fps
    end_s = duration if end_s is None else end_s
    for name, value in (("start", start_s), ("end", end_s)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise InputError(f"The {name} time must be a number of seconds, got {value!r}.")
    if 0 <= start_s and start_s >= duration:
        raise InputError(f"The start time {start_s:g} s is past the end of the video ({duration:.2f} s).")
    if start_s < 0 or end_s <= start_s:
        raise InputError(f"Choose 0 <= start < end; got start {start_s:g} s and end {end_s:g} s.")
    # Frame t is shown at t / fps; the part holds the frames shown from start_s up to end_s.
    first = math.ceil(start_s * fps - 1e-6)
    last = min(total - 1, math.floor(end_s * fps + 1e-6))
    count = last - first + 1
    if count < MIN_FRAMES:
        raise InputError(
            f"The chosen part holds {max(count, 0)} frame{'s' if count != 1 else ''}; keyframe editing needs "
            f"a video of at least {MIN_FRAMES} frames."
        )
    stride = math.ceil(count / settings.max_frames)
    if stride > MAX_AUTO_STRIDE:
        longest_s = settings.max_frames * MAX_AUTO_STRIDE / fps
        raise InputError(
            f"The chosen part is {count / fps:.1f} s long ({count} frames at {fps:g} fps) but at most "
            f"{settings.max_frames} frames are processed ({ENV_PREFIX}MAX_FRAMES); choose a part of at most "
            f"{longest_s:.1f} s with the start and end times."
        )
    return first, stride, (count - 1) // stride + 1


def working_size(height: int, width: int, working_side: int) -> tuple[int, int]:
    """(H, W) with the longer side at most `working_side`, aspect kept, both sides even (H.264 4:2:0)."""
    scale = min(1.0, working_side / max(height, width))
    # Round down: never above the working size, never upscaled (the epsilon absorbs float error).
    return max(2, 2 * math.floor(height * scale / 2 + 1e-6)), max(2, 2 * math.floor(width * scale / 2 + 1e-6))


def resize_frames(frames_uint8: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """(T,H,W,3) uint8 resized to `size_hw` (area averaging when shrinking)."""
    if frames_uint8.shape[1:3] == tuple(size_hw):
        return frames_uint8
    shrink = size_hw[0] * size_hw[1] < frames_uint8.shape[1] * frames_uint8.shape[2]
    method = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    return np.stack([cv2.resize(f, (size_hw[1], size_hw[0]), interpolation=method) for f in frames_uint8])


def load_video(
    path: str | Path,
    settings: Settings,
    *,
    start_s: float = 0.0,
    end_s: float | None = None,
    working_side: int = DEFAULT_WORKING_SIDE,
) -> LoadedVideo:
    """Read the part [start_s, end_s] of a video within the limits (see the module docstring).

    Args:
        path: a video file (mp4, webm, mov, mkv, avi, gif) or a folder of frames.
        settings: limits (`max_upload_mb`, `max_image_side`, `max_frames`).
        start_s, end_s: the part to read in seconds (end None = to the end).
        working_side: longer side of the frames the job works on, in px (larger videos are downscaled).

    Returns:
        `LoadedVideo` with (T,H,W,3) uint8 frames, T >= 2.
    """
    if isinstance(working_side, bool) or not isinstance(working_side, int | np.integer):
        raise InputError(f"The working size must be a whole number of pixels, got {working_side!r}.")
    if not MIN_WORKING_SIDE <= working_side <= settings.max_image_side:
        raise InputError(
            f"The working size must be between {MIN_WORKING_SIDE} and {settings.max_image_side} px, got {working_side}."
        )
    path = check_upload(path, settings)
    info = probe(path, settings)
    first, stride, count = plan_part(info, settings, start_s, end_s)
    # max_frames (not num_frames): the header's count is an estimate for some files, so read what is there.
    clip = read_video(path, start=first, stride=stride, max_frames=count)
    if clip.num_frames < MIN_FRAMES:
        raise InputError(
            f"The video holds {clip.num_frames} readable frame from {start_s:g} s; keyframe editing needs "
            f"at least {MIN_FRAMES}."
        )
    notices = []
    if stride > 1:
        notices.append(
            f"Kept every {_ordinal(stride)} frame ({clip.num_frames} frames at {clip.fps:.3g} fps) to stay "
            f"within {settings.max_frames} frames ({ENV_PREFIX}MAX_FRAMES)."
        )
    height, width = clip.size_hw
    size_hw = working_size(height, width, working_side)
    if size_hw != (height, width):
        notices.append(
            f"Working at {size_hw[1]}x{size_hw[0]} (the video is {width}x{height}; the working size is "
            f"{working_side} px)."
        )
    source_end_s = (int(clip.source_indices[-1]) + 1) / info.fps
    return LoadedVideo(
        frames_uint8=resize_frames(clip.frames_uint8, size_hw),
        fps=float(clip.fps),
        source_name=path.name,
        source_info=info,
        source_indices=clip.source_indices,
        start_s=first / info.fps,
        end_s=min(source_end_s, duration_s(info)),
        stride=stride,
        notices=tuple(notices),
    )


def _ordinal(n: int) -> str:
    return {2: "2nd", 3: "3rd"}.get(n, f"{n}th")


# -- 2. keyframes ----------------------------------------------------------------------------------------


def parse_indices(text: str) -> list[int]:
    """Frame numbers from "0, 8, 16" (commas and/or spaces); InputError for anything else."""
    parts = [p for p in re.split(r"[,\s]+", (text or "").strip()) if p]
    if not parts:
        raise InputError("List at least one keyframe (frame numbers separated by commas, e.g. 0, 8, 16).")
    bad = [p for p in parts if not re.fullmatch(r"\d+", p)]
    if bad:
        raise InputError(f"Keyframes are frame numbers separated by commas; {bad[0]!r} is not one.")
    return [int(p) for p in parts]


def keyframes_from_text(text: str, n_frames: int, suggested: Sequence[Keyframe] = ()) -> list[Keyframe]:
    """The keyframes a user listed, sorted; those also in `suggested` keep its reason."""
    reasons = {k.index: k.reason for k in suggested}
    keys = manual_keyframes(n_frames, parse_indices(text))
    return [Keyframe(k.index, reasons.get(k.index, k.reason)) for k in keys]


def format_indices(indices: Sequence[int]) -> str:
    return ", ".join(str(int(i)) for i in indices)


def parse_keyframe_prompts(text: str, keyframe_indices: Sequence[int]) -> dict[int, str]:
    """Per-keyframe prompt overrides, one "FRAME: prompt" per line (blank lines are skipped).

    Raises InputError for a line without "FRAME:", a frame that is not a keyframe, or one listed twice.
    """
    prompts: dict[int, str] = {}
    for number, line in enumerate((text or "").splitlines(), start=1):
        if not line.strip():
            continue
        match = re.fullmatch(r"\s*(\d+)\s*:\s*(.*?)\s*", line)
        if match is None:
            raise InputError(
                f'Per-keyframe prompts are lines "FRAME: prompt"; line {number} is {line.strip()!r}.'
            )
        index, prompt = int(match.group(1)), match.group(2)
        if index not in keyframe_indices:
            raise InputError(
                f"Frame {index} has a prompt but is not a keyframe (keyframes: {format_indices(keyframe_indices)})."
            )
        if index in prompts:
            raise InputError(f"Frame {index} has two per-keyframe prompts; keep one.")
        prompts[index] = prompt
    return prompts


# -- 3. editing ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EditRequest:
    """How to edit keyframes.

    backend "filter": `filter` (a key of core.engines.edit.EDITS) with `filter_params` (missing ones
    take their defaults; an "image" parameter is an RGB uint8 (H,W,3) array).
    backend "sd": SD img2img over all keyframes at once toward `prompt`, with `keyframe_prompts`
    overriding it for some frames (by frame index), `strength` in (0,1], `guidance`, `steps`, `seed`.
    """

    backend: str = "filter"
    filter: str = "cartoon"
    filter_params: Mapping[str, Any] = field(default_factory=dict)
    prompt: str = ""
    negative_prompt: str = ""
    keyframe_prompts: Mapping[int, str] = field(default_factory=dict)
    strength: float = 0.6
    guidance: float = 7.5
    steps: int = 30
    seed: int = 0

    def check(self) -> EditRequest:
        """Validate what can be checked without frames or models; returns self."""
        if self.backend not in EDIT_BACKENDS:
            raise InputError(
                f"Unknown edit backend {self.backend!r}; choose one of {', '.join(EDIT_BACKENDS)}."
            )
        if self.backend == "filter":
            resolve_params(self.filter, **self.filter_params)
        elif not self.prompt.strip() and not self.keyframe_prompts:
            raise InputError(
                "The SD edit needs a prompt describing the edit (e.g. 'a watercolour painting')."
            )
        return self

    def record(self) -> dict[str, Any]:
        """JSON-ready description (an image parameter is recorded by its size only)."""
        if self.backend == "filter":
            params = resolve_params(self.filter, **self.filter_params)
            shown = {
                k: (f"image {v.shape[1]}x{v.shape[0]}" if isinstance(v, np.ndarray) else v)
                for k, v in params.items()
            }
            return {"backend": "filter", "filter": self.filter, "params": shown}
        return {
            "backend": "sd",
            "prompt": self.prompt,
            "negative_prompt": self.negative_prompt,
            "keyframe_prompts": {str(k): v for k, v in sorted(self.keyframe_prompts.items())},
            "strength": self.strength,
            "guidance": self.guidance,
            "steps": self.steps,
            "seed": self.seed,
        }


def edit_keyframes(
    keyframes_uint8: np.ndarray,
    keyframe_indices: Sequence[int],
    request: EditRequest,
    settings: Settings,
    *,
    progress: bool = False,
) -> np.ndarray:
    """Edit K keyframes (K,H,W,3) uint8 taken at frames `keyframe_indices`; returns (K,H,W,3) uint8.

    The SD backend edits all K in one batch (cross-keyframe attention keeps them consistent); editing
    a subset gives a different result than editing them all. Raises InputError for bad parameters and
    ModelNotAvailable (naming the setting) when SD weights are missing.
    """
    request.check()
    if len(keyframe_indices) != len(keyframes_uint8):
        raise InputError(f"{len(keyframes_uint8)} keyframes were given with {len(keyframe_indices)} indices.")
    if request.backend == "filter":
        return apply_edit(keyframes_uint8, request.filter, **request.filter_params)

    # Imported here: diffusers' pipelines take seconds to import and the weight-free path needs none.
    from core.models import load_pipeline
    from core.pipelines.keyframe_edit import KeyframeEditPipeline

    pipe = load_pipeline("sd", settings, pipeline_cls=KeyframeEditPipeline)
    pipe.set_progress_bar_config(disable=not progress, desc="editing keyframes (SD)")
    # The VAE needs sides divisible by 8: pad by repeating edges, edit, cut the padding off again.
    padded, resize = resize_to_multiple(keyframes_uint8, multiple=8, mode="pad")
    prompts = [request.keyframe_prompts.get(int(i), request.prompt) for i in keyframe_indices]
    edited = pipe(
        keyframes=padded,
        prompts=prompts,
        negative_prompt=request.negative_prompt or None,
        strength=float(request.strength),
        guidance_scale=float(request.guidance),
        num_inference_steps=int(request.steps),
        seed=int(request.seed),
        output_type="uint8",
    ).images
    return undo_resize(edited, resize)


def fit_image(image_uint8: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """An uploaded edit (H,W,3) uint8 resized to the frames' size (H,W); grey or RGBA is converted."""
    if not isinstance(image_uint8, np.ndarray) or image_uint8.ndim not in (2, 3) or image_uint8.size == 0:
        raise InputError("The uploaded edit is not an image.")
    image = image_uint8.astype(np.uint8) if image_uint8.dtype != np.uint8 else image_uint8
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    image = np.ascontiguousarray(image[..., :3])
    return resize_frames(image[None], size_hw)[0]


# -- 4. inbetweening -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InterpRequest:
    """How to fill the frames between keyframes.

    backend: one of `INTERP_BACKENDS`. fps: output frame rate (None = the loaded video's).
    flow_method: estimator of the "flow" backend (core.flow.METHODS). The SVD backends read
    `motion_bucket` (0..255, SVD's motion conditioning), `steps`, `seed`, `decode_chunk_size`
    (frames decoded by the VAE at once: lower uses less memory).
    """

    backend: str = "flow"
    fps: float | None = None
    flow_method: str = "dis"
    motion_bucket: int = 127
    steps: int = 25
    seed: int = 0
    decode_chunk_size: int = 8

    def check(self) -> InterpRequest:
        if self.backend not in INTERP_BACKENDS:
            raise InputError(
                f"Unknown inbetweening backend {self.backend!r}; choose one of {', '.join(INTERP_BACKENDS)}."
            )
        if self.fps is not None and not (isinstance(self.fps, int | float) and 0 < self.fps <= 120):
            raise InputError(f"The output frame rate must be between 0 and 120 fps, got {self.fps!r}.")
        if self.flow_method not in FLOW_METHODS:
            raise InputError(
                f"Unknown flow method {self.flow_method!r}; choose one of {', '.join(FLOW_METHODS)}."
            )
        if not 0 <= self.motion_bucket <= 255:
            raise InputError(f"The motion bucket must be between 0 and 255, got {self.motion_bucket}.")
        for name in ("steps", "decode_chunk_size"):
            if getattr(self, name) < 1:
                raise InputError(
                    f"{name.replace('_', ' ').capitalize()} must be at least 1, got {getattr(self, name)}."
                )
        return self

    def record(self) -> dict[str, Any]:
        keep = ("backend", "fps", "flow_method") if self.backend in ("flow", "crossfade") else None
        values = asdict(self)
        return {k: v for k, v in values.items() if keep is None or k in keep}


def inbetween(
    frames_uint8: np.ndarray,
    keyframe_indices: Sequence[int],
    edited_uint8: np.ndarray,
    request: InterpRequest,
    settings: Settings,
    *,
    fps: float = 7.0,
    motion: VideoMotion | None = None,
    progress: bool = False,
    callback: ProgressCallback | None = None,
) -> np.ndarray:
    """Fill every frame of the original video (T,H,W,3) from the edited keyframes (K,H,W,3) uint8.

    Returns (T,H,W,3) uint8; frame keyframe_indices[k] is edited_uint8[k]. `motion` reuses
    `estimate_video_motion(frames_uint8, request.flow_method)` for the flow backend; `callback(done,
    total)` reports output frames. `fps` (the video's) conditions SVD when `request.fps` is None.
    Raises InputError / ModelNotAvailable like the backends.
    """
    request.check()
    if request.backend == "flow":
        return interpolate_flow(
            frames_uint8,
            keyframe_indices,
            edited_uint8,
            motion=motion,
            method=request.flow_method,
            progress=progress,
            callback=callback,
        )
    if request.backend == "crossfade":
        out = crossfade(frames_uint8.shape[0], keyframe_indices, edited_uint8)
        if callback is not None:
            callback(out.shape[0], out.shape[0])
        return out
    return _svd_inbetween(
        frames_uint8,
        keyframe_indices,
        edited_uint8,
        request,
        settings,
        request.fps or fps,
        progress,
        callback,
    )


def _svd_inbetween(
    frames_uint8: np.ndarray,
    keyframe_indices: Sequence[int],
    edited_uint8: np.ndarray,
    request: InterpRequest,
    settings: Settings,
    fps: float,
    progress: bool,
    callback: ProgressCallback | None,
) -> np.ndarray:
    """One SVD run per pair of neighbouring keyframes, as long as their gap; keyframes stay exact."""
    n_frames = frames_uint8.shape[0]
    indices = [int(i) for i in keyframe_indices]
    if indices[0] != 0 or indices[-1] != n_frames - 1:
        raise InputError(
            f"The SVD backends fill the frames between keyframes only: make frames 0 and {n_frames - 1} "
            "keyframes (the flow backend also extends past the first and last keyframe)."
        )
    from core.models import load_pipeline
    from core.pipelines.svd_interpolate import SVDInterpolatePipeline, interpolate_keyframes

    pipe = load_pipeline("svd", settings, pipeline_cls=SVDInterpolatePipeline)
    _use_interp_lora(pipe.unet, request.backend, settings)
    pipe.set_progress_bar_config(disable=not progress, desc=f"inbetweening ({request.backend})")
    # SVD halves the latents three times: pad the sides to multiples of 64 (edges repeated), cut after.
    padded, resize = resize_to_multiple(edited_uint8, multiple=SVD_SIDE_MULTIPLE, mode="pad")
    out = np.empty_like(frames_uint8)
    out[indices] = edited_uint8
    done = len(indices)
    for segment, (a, b) in enumerate(zip(indices, indices[1:])):
        if b - a < 2:
            continue
        # Two keyframes per call: gaps differ, and the chain's seed rule (seed + segment) is kept.
        video = interpolate_keyframes(
            pipe,
            padded[segment : segment + 2],
            frames_between=b - a - 1,
            mode=request.backend,
            seed=request.seed + segment,
            num_inference_steps=request.steps,
            motion_bucket_id=request.motion_bucket,
            fps=max(1, round(fps)),
            decode_chunk_size=request.decode_chunk_size,
        )
        out[a + 1 : b] = undo_resize(video[1:-1], resize)
        done += b - a - 1
        if callback is not None:
            callback(done, n_frames)
    return out


def _use_interp_lora(unet, backend: str, settings: Settings) -> None:
    """svd-lora with `settings.svd_interp_lora`: load the head-and-tail LoRA once, switch it on; else off."""
    from core import lora

    if backend == "svd-lora" and settings.svd_interp_lora:
        if INTERP_LORA not in lora.list_loras(unet):
            lora.load_lora(unet, settings.svd_interp_lora, name=INTERP_LORA)
        lora.set_active_loras(unet, [INTERP_LORA])
        lora.set_lora_enabled(unet, True)
    else:
        lora.set_lora_enabled(unet, False)  # the cached UNet is shared: svd-trf runs the stock weights


def backend_notes(interp: InterpRequest, settings: Settings) -> list[str]:
    """Sentences a user should read before trusting a backend's output with these settings."""
    if interp.backend == "svd-lora" and not settings.svd_interp_lora:
        return [
            f"svd-lora runs without a head-and-tail LoRA ({ENV_PREFIX}SVD_INTERP_LORA is empty): stock SVD has "
            "not learned what the tail keyframe means, so expect svd-trf-like or worse results."
        ]
    return []


def motion_of(frames_uint8: np.ndarray, method: str, progress: bool = False) -> VideoMotion:
    """`estimate_video_motion` (both directions and occlusions), computed once per video and method."""
    return estimate_video_motion(frames_uint8, method, progress)


# -- 5. outputs ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OutputFiles:
    """What a run writes. The mp4 and the parameters JSON always; the others when asked for."""

    video_mp4: Path
    params_json: Path
    video_gif: Path | None = None
    side_by_side_mp4: Path | None = None
    keyframes_zip: Path | None = None

    def paths(self) -> list[Path]:
        found = (self.video_mp4, self.video_gif, self.side_by_side_mp4, self.keyframes_zip, self.params_json)
        return [p for p in found if p is not None]


def side_by_side(original_uint8: np.ndarray, result_uint8: np.ndarray, gap_px: int = 8) -> np.ndarray:
    """(T,H,2W+gap,3) uint8: the original on the left, the result on the right, a black gap between."""
    gap = np.zeros((*original_uint8.shape[:2], gap_px, 3), np.uint8)
    return np.concatenate([original_uint8, gap, result_uint8], axis=2)


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


def new_run_folder(settings: Settings) -> Path:
    """A new folder under `settings.output_dir`/keyframe/, named by the time (and a counter if taken)."""
    base = Path(settings.output_dir) / "keyframe"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1000):
        folder = base / (stamp if n == 0 else f"{stamp}-{n}")
        try:
            folder.mkdir(parents=True, exist_ok=False)
            return folder
        except FileExistsError:
            continue
    raise OSError(f"Could not create a new run folder under {base}.")


def write_outputs(
    video_mp4: Path,
    result_uint8: np.ndarray,
    original_uint8: np.ndarray,
    fps: float,
    keyframe_indices: Sequence[int],
    edited_uint8: np.ndarray,
    record: dict[str, Any],
    *,
    gif: Path | None = None,
    side_by_side_mp4: Path | None = None,
    keyframes_zip: Path | None = None,
    params_json: Path | None = None,
) -> OutputFiles:
    """Write the result (T,H,W,3) uint8 as `video_mp4` and the files asked for.

    `record` (the parameters, JSON-ready) is written to `params_json` (default: next to the mp4,
    same name, .json) with an "outputs" entry naming the files.
    """
    video_mp4 = Path(video_mp4)
    params_json = video_mp4.with_suffix(".json") if params_json is None else Path(params_json)
    write_video(video_mp4, result_uint8, fps)
    if gif is not None:
        write_video(gif, result_uint8, fps)
    if side_by_side_mp4 is not None:
        write_video(side_by_side_mp4, side_by_side(original_uint8, result_uint8), fps)
    if keyframes_zip is not None:
        write_keyframes_zip(
            keyframes_zip, keyframe_indices, original_uint8[list(keyframe_indices)], edited_uint8
        )
    files = OutputFiles(video_mp4, params_json, gif, side_by_side_mp4, keyframes_zip)
    outputs = {
        name: p.name
        for name, p in (
            ("video_mp4", video_mp4),
            ("video_gif", gif),
            ("side_by_side_mp4", side_by_side_mp4),
            ("keyframes_zip", keyframes_zip),
        )
        if p is not None
    }
    params_json.write_text(json.dumps({**record, "outputs": outputs}, indent=2) + "\n")
    return files


def job_record(
    video: LoadedVideo,
    keyframes: Sequence[Keyframe],
    keyframe_edits: Mapping[int, dict[str, Any]],
    interp: InterpRequest,
    settings: Settings,
    fps: float,
    timings_s: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """The parameters file: enough to redo the run (video part, keyframes and how each was edited,
    the inbetweening, the model settings) plus timings."""
    return {
        "app": "kinema keyframe",
        "video": video.record(),
        "keyframes": [
            {"index": k.index, "reason": k.reason, "edit": keyframe_edits.get(k.index)} for k in keyframes
        ],
        "inbetween": {**interp.record(), "output_fps": fps},
        "models": {"sd_model": settings.sd_model, "svd_model": settings.svd_model, "device": settings.device},
        "timings_s": {k: round(v, 3) for k, v in (timings_s or {}).items()},
    }
