"""The keyframe job's input: the chosen part of a video, read within the limits of `Settings`.

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

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from core.config import ENV_PREFIX, Settings
from core.errors import InputError
from core.video import VideoInfo, probe_video, read_video

DEFAULT_WORKING_SIDE = 512
MIN_WORKING_SIDE = 64
MIN_FRAMES = 2
MAX_AUTO_STRIDE = 4


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
        raise InputError(f"The video {path.name} does not exist.")
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
