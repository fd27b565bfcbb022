"""Video in and out: read mp4 / webm / mov / mkv / gif files and frame folders, write mp4 or gif.

Frames are uint8 numpy (T,H,W,3), RGB. Every bad input (missing, empty, corrupt, truncated beyond the
header, zero frames, too few frames for the request) raises InputError with one sentence.

Public API:
    VideoClip(frames_uint8, fps, source_indices)
        frames_uint8 (T,H,W,3) uint8; fps after sampling; source_indices (T,) int64, the index of
        each frame in the source.
    VideoInfo(num_frames, fps, size_hw)   a NamedTuple, so `num_frames, fps, (h, w) = probe_video(p)`
    read_video(path, *, num_frames=None, stride=None, start=0, max_frames=None, folder_fps=8.0)
        -> VideoClip. Frames are picked by `sample_frame_indices` (see there).
    probe_video(path, *, folder_fps=8.0) -> VideoInfo, without decoding the frames of a video file
        (its frame count is the container's duration x fps, exact for constant-rate files).
    write_video(path, frames_uint8, fps, *, crf=18) -> Path
        .mp4: H.264 (libx264), yuv420p, BT.709 tagged, +faststart. Odd sizes are PADDED to even by
        repeating the last row / column (H.264 4:2:0 needs even sides), so nothing is cut off.
        .gif: one palette per frame, looping; frame delays are whole centiseconds (fps is rounded
        to 100 / k, at most 50).
    sample_frame_indices(total, *, num_frames=None, stride=None, start=0) -> int64 array
    side_by_side(*clips_uint8, gap_px=8) -> (T,H,sum W + gaps,3) uint8: clips next to each other, frame by
        frame, so one player (or one frame index) shows all of them in step (the apps' compare videos).

Sources: a folder of .png / .jpg / .jpeg frames (natural sort order: frame2 before frame10; fps is
`folder_fps`); .gif via Pillow (variable frame delays are resampled to a constant rate by repeating
frames, which also restores identical frames that Pillow's writer merged); anything else via the
ffmpeg binary that imageio-ffmpeg ships (mp4, webm, mov, mkv, avi). A truncated file whose header
survives gives the frames that still decode, as video players do.
"""

from __future__ import annotations

import itertools
import math
import os
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import imageio.v3 as iio
import imageio_ffmpeg
import numpy as np
from PIL import Image, ImageSequence

from core.checks import check_frames
from core.errors import InputError
from core.imaging import load_image, pil_to_rgb_uint8

# The app servers are multi-threaded: imageio-ffmpeg's default preexec_fn (os.setpgrp, run between fork and
# exec) can leave a forked child spinning forever there (imageio-ffmpeg issue #58), and the request with it.
# Every process that reads or writes video through this module starts ffmpeg without it.
os.environ.setdefault("IMAGEIO_FFMPEG_NO_PREVENT_SIGINT", "1")

DEFAULT_FPS = 8.0  # frame folders, and files whose header gives no rate
FRAME_EXTENSIONS = (".png", ".jpg", ".jpeg")
DEFAULT_CRF = 18  # x264 constant-rate factor: 18 is visually near-lossless at modest file sizes

# Uploads are untrusted: ffmpeg may open local files in plain video containers only (no playlists
# or network protocols that could pull other files into the decoded frames).
_FFMPEG_INPUT_GUARD = [
    "-protocol_whitelist",
    "file",
    "-format_whitelist",
    "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,avi",
]
# Accurate rounding in the YUV -> RGB conversion; the default fast path darkens colours by ~1 level
# (measured H.264 round trip error on smooth 256x320 content: 1.57 -> 0.91 mean absolute).
_FFMPEG_READ_PARAMS = ["-sws_flags", "accurate_rnd+full_chroma_int"]
_MP4_COLOUR_FILTER = (
    "scale=out_color_matrix=bt709:out_range=tv,"
    "setparams=colorspace=bt709:color_primaries=bt709:color_trc=bt709:range=tv"
)
_BACKEND_ERRORS = (
    OSError,
    RuntimeError,
    ValueError,
    IndexError,
    KeyError,
    EOFError,
    Image.DecompressionBombError,
)


@dataclass
class VideoClip:
    """Decoded frames (T,H,W,3) uint8 with their frame rate and where they came from in the source."""

    frames_uint8: np.ndarray
    fps: float
    source_indices: np.ndarray

    @property
    def num_frames(self) -> int:
        return int(self.frames_uint8.shape[0])

    @property
    def size_hw(self) -> tuple[int, int]:
        return int(self.frames_uint8.shape[1]), int(self.frames_uint8.shape[2])


class VideoInfo(NamedTuple):
    """What `probe_video` reports: frame count, frames per second, (height, width)."""

    num_frames: int
    fps: float
    size_hw: tuple[int, int]


# -- frame sampling ----------------------------------------------------------------------------------


def _check_count(value: int | None, name: str, minimum: int) -> None:
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum
    ):
        raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}.")


def sample_frame_indices(
    total: int, *, num_frames: int | None = None, stride: int | None = None, start: int = 0
) -> np.ndarray:
    """Indices (increasing int64) of the frames to take from a clip of `total` frames.

    - neither given: every frame from `start`;
    - `stride` only: every stride-th frame from `start` to the end;
    - `num_frames` only: that many frames spread evenly from `start` to the last frame (both ends
      included, indices rounded to nearest);
    - both: `num_frames` frames, `stride` apart, from `start`.
    Raises InputError when the clip is empty, `start` is past its end, or it is too short.
    """
    _check_count(total, "The frame count", 0)
    _check_count(num_frames, "The number of frames", 1)
    _check_count(stride, "The frame stride", 1)
    _check_count(start, "The start frame", 0)
    if total == 0:
        raise InputError("The video has no frames.")
    if start >= total:
        raise InputError(f"The start frame {start} is past the end of the video ({total} frames).")
    if num_frames is None:
        return np.arange(start, total, stride or 1, dtype=np.int64)
    span = 1 + (num_frames - 1) * (stride or 1)
    if start + span > total:
        need = f"{num_frames} frames" + (f" at stride {stride}" if stride else "")
        raise InputError(
            f"The video has {total} frames; {need} from frame {start} need {start + span}. "
            "Use a longer video or ask for fewer frames."
        )
    if stride is not None:
        return start + stride * np.arange(num_frames, dtype=np.int64)
    return np.rint(np.linspace(start, total - 1, num_frames)).astype(np.int64)


# -- sources: what a reader knows before decoding, and a lazy frame stream ----------------------------


@dataclass
class _Source:
    """A video before decoding. `stream()` yields one decoder per frame, in order; call a decoder
    before advancing the stream. `exact` tells whether `info.num_frames` is a count or an estimate."""

    info: VideoInfo
    exact: bool
    stream: Callable[[], Iterator[Callable[[], np.ndarray]]]


def _natural_key(path: Path) -> list[int | str]:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def _folder_source(folder: Path, fps: float) -> _Source:
    files = sorted(
        (p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in FRAME_EXTENSIONS),
        key=_natural_key,
    )
    if not files:
        raise InputError(f"The folder {folder.name} holds no .png or .jpg frames.")
    size_hw = load_image(files[0]).shape[:2]

    def decode(path: Path) -> np.ndarray:
        frame = load_image(path)
        if frame.shape[:2] != size_hw:
            raise InputError(
                f"Frame {path.name} is {frame.shape[1]}x{frame.shape[0]} but the first frame is "
                f"{size_hw[1]}x{size_hw[0]}; all frames of a folder must have one size."
            )
        return frame

    def stream() -> Iterator[Callable[[], np.ndarray]]:
        for path in files:
            yield lambda path=path: decode(path)

    return _Source(VideoInfo(len(files), fps, size_hw), True, stream)


def _gif_source(path: Path) -> _Source:
    with Image.open(path) as gif:
        size_hw = (gif.height, gif.width)
        delays_ms = []
        for index in range(gif.n_frames):
            gif.seek(index)
            # Browsers show missing or <= 10 ms delays as 100 ms; so do we.
            delay = gif.info.get("duration") or 0
            delays_ms.append(delay if delay > 10 else 100)
    base_ms = min(delays_ms)
    repeats = [round(delay / base_ms) for delay in delays_ms]
    if all(abs(delay - count * base_ms) <= 5 for delay, count in zip(delays_ms, repeats)):
        fps = 1000.0 / base_ms
    else:  # irregular delays: one frame each, at the mean rate, so the total duration is kept
        repeats = [1] * len(delays_ms)
        fps = 1000.0 * len(delays_ms) / sum(delays_ms)

    def stream() -> Iterator[Callable[[], np.ndarray]]:
        with Image.open(path) as gif:
            for frame, count in zip(ImageSequence.Iterator(gif), repeats):
                for _ in range(count):
                    yield lambda frame=frame: pil_to_rgb_uint8(frame)

    return _Source(VideoInfo(sum(repeats), fps, size_hw), True, stream)


def _ffmpeg_frames(path: Path) -> Iterator[dict | bytes]:
    return imageio_ffmpeg.read_frames(
        str(path), input_params=_FFMPEG_INPUT_GUARD, output_params=_FFMPEG_READ_PARAMS
    )


def _ffmpeg_source(path: Path) -> _Source:
    with closing(_ffmpeg_frames(path)) as frames:
        meta = next(frames)
    width, height = meta["size"]
    if width < 1 or height < 1:
        raise InputError(f"The video {path.name} has no picture ({width}x{height}).")
    fps = float(meta.get("fps") or 0.0)
    duration = float(meta.get("duration") or 0.0)
    if fps <= 0:  # ffmpeg could not tell; better a plausible rate than none
        fps = DEFAULT_FPS
    frame_bytes = width * height * 3

    def stream() -> Iterator[Callable[[], np.ndarray]]:
        with closing(_ffmpeg_frames(path)) as frames:
            next(frames)  # the metadata again
            for raw in frames:
                if len(raw) != frame_bytes:
                    raise RuntimeError("ffmpeg returned a partial frame")
                yield lambda raw=raw: np.frombuffer(raw, np.uint8).reshape(height, width, 3).copy()

    return _Source(VideoInfo(round(duration * fps), fps, (height, width)), False, stream)


def _open_source(path: str | Path, folder_fps: float) -> _Source:
    path = Path(path)
    if not path.exists():
        raise InputError(f"The video {path.name} does not exist.")
    if path.is_dir():
        if not (folder_fps > 0 and math.isfinite(folder_fps)):
            raise InputError(f"The frame rate of a frame folder must be a positive number, got {folder_fps}.")
        return _folder_source(path, float(folder_fps))
    if path.stat().st_size == 0:
        raise InputError(f"The video file {path.name} is empty (0 bytes).")
    try:
        return _gif_source(path) if path.suffix.lower() == ".gif" else _ffmpeg_source(path)
    except InputError:
        raise
    except _BACKEND_ERRORS as error:
        raise InputError(
            f"The video file {path.name} cannot be read: it is corrupt or not a video."
        ) from error


def _collect(
    source: _Source, wanted: Iterable[int], *, to_end: bool = False
) -> tuple[list[np.ndarray], list[int], int]:
    """Decode the frames at the increasing indices `wanted`.

    Returns (frames, their indices, frames passed). Stops after the last wanted index unless
    `to_end`, in which case "frames passed" is the true frame count.
    """
    wanted = iter(wanted)
    target = next(wanted, None)
    frames: list[np.ndarray] = []
    taken: list[int] = []
    passed = 0
    if target is None and not to_end:
        return frames, taken, passed
    with closing(source.stream()) as stream:
        for index, decode in enumerate(stream):
            passed = index + 1
            if index == target:
                frames.append(decode())
                taken.append(index)
                target = next(wanted, None)
                if target is None and not to_end:
                    break
    return frames, taken, passed


def _read_evenly(source: _Source, num_frames: int, start: int) -> tuple[list[np.ndarray], list[int]]:
    """Evenly spaced frames need the true frame count; a video file's header only estimates it."""
    total = source.info.num_frames
    if source.exact or total >= start + num_frames:
        indices = sample_frame_indices(total, num_frames=num_frames, start=start)
        frames, taken, passed = _collect(source, indices, to_end=not source.exact)
        if source.exact or passed == total:
            return frames, taken
        total = passed  # the estimate was off: sample again from the counted total
    else:
        total = _collect(source, (), to_end=True)[2]
    frames, taken, _ = _collect(source, sample_frame_indices(total, num_frames=num_frames, start=start))
    return frames, taken


def read_video(
    path: str | Path,
    *,
    num_frames: int | None = None,
    stride: int | None = None,
    start: int = 0,
    max_frames: int | None = None,
    folder_fps: float = DEFAULT_FPS,
) -> VideoClip:
    """Read a video file or a folder of frames -> VideoClip with frames (T,H,W,3) uint8.

    Which frames: see `sample_frame_indices` (`num_frames` evenly spread or `stride` apart, from
    `start`). `max_frames` caps how many frames are decoded (a memory guard; asking for more
    `num_frames` than it allows raises InputError). The clip's fps is the source fps divided by the
    mean step between taken frames (fps / stride for a stride). `folder_fps` is the frame rate of a
    frame folder. Raises InputError for missing, empty, corrupt or too-short videos.
    """
    _check_count(num_frames, "The number of frames", 1)
    _check_count(stride, "The frame stride", 1)
    _check_count(start, "The start frame", 0)
    _check_count(max_frames, "The maximum number of frames", 1)
    if num_frames is not None and max_frames is not None and num_frames > max_frames:
        raise InputError(f"{num_frames} frames were requested but at most {max_frames} are allowed.")
    source = _open_source(path, folder_fps)
    try:
        if num_frames is not None and stride is None:
            frames, taken = _read_evenly(source, num_frames, start)
        else:
            # Decode as the stream goes: these indices do not depend on the (estimated) length.
            wanted: Iterable[int] = (
                itertools.count(start, stride or 1)
                if num_frames is None
                else range(start, start + num_frames * stride, stride)
            )
            frames, taken, passed = _collect(source, itertools.islice(wanted, max_frames))
            if not frames or (num_frames is not None and len(frames) < num_frames):
                # The video was too short: with the count now known, this raises the usual message.
                sample_frame_indices(passed, num_frames=num_frames, stride=stride, start=start)
    except InputError:
        raise
    except _BACKEND_ERRORS as error:
        raise InputError(
            f"The video {Path(path).name} cannot be decoded: it is corrupt or truncated."
        ) from error
    step = (taken[-1] - taken[0]) / (len(taken) - 1) if len(taken) > 1 else 1.0
    return VideoClip(np.stack(frames), source.info.fps / step, np.asarray(taken, dtype=np.int64))


def probe_video(path: str | Path, *, folder_fps: float = DEFAULT_FPS) -> VideoInfo:
    """(num_frames, fps, (H, W)) of a video file or frame folder, without decoding the video.

    For ffmpeg formats the count is the header's duration x fps: exact for the constant-rate files
    `write_video` makes, an estimate (usually within a frame or two) for variable-rate ones.
    A folder's first frame is decoded to learn its size. Raises InputError like `read_video`.
    """
    return _open_source(path, folder_fps).info


# -- writing -----------------------------------------------------------------------------------------


def _write_mp4(path: Path, frames: np.ndarray, fps: float, crf: int) -> None:
    _, height, width, _ = frames.shape
    if height % 2 or width % 2:  # 4:2:0 chroma needs even sides: repeat the last row / column
        frames = np.pad(frames, ((0, 0), (0, height % 2), (0, width % 2), (0, 0)), mode="edge")
    writer = imageio_ffmpeg.write_frames(
        str(path),
        (frames.shape[2], frames.shape[1]),
        # A plain float: imageio-ffmpeg >= 0.7 hands it to ffmpeg as an exact rational (30000/1001 stays
        # 30000/1001); releases before 0.7 accept only int or float (a Fraction fails their check).
        fps=fps,
        codec="libx264",
        pix_fmt_out="yuv420p",
        quality=None,
        macro_block_size=1,  # sizes are already even; stop imageio-ffmpeg rescaling to 16
        ffmpeg_log_level="error",
        output_params=["-crf", str(crf), "-vf", _MP4_COLOUR_FILTER, "-movflags", "+faststart"],
    )
    try:
        writer.send(None)
        for frame in frames:
            writer.send(np.ascontiguousarray(frame))
    except OSError as error:
        raise OSError(
            f"ffmpeg could not write {path}; check that its folder exists and is writable."
        ) from error
    finally:
        writer.close()


def _write_gif(path: Path, frames: np.ndarray, fps: float) -> None:
    # GIF stores delays in centiseconds, and browsers slow delays under 20 ms down to 100 ms.
    delay_cs = max(2, round(100.0 / fps))
    iio.imwrite(path, frames, plugin="pillow", extension=".gif", duration=10 * delay_cs, loop=0)


def write_video(path: str | Path, frames_uint8: np.ndarray, fps: float, *, crf: int = DEFAULT_CRF) -> Path:
    """Write frames (T,H,W,3) uint8 to `path` as .mp4 (H.264) or .gif, chosen by its extension.

    mp4: libx264, yuv420p, BT.709, `crf` quality (0 lossless luma .. 51 worst), odd sides padded to
    even by repeating the last row / column. gif: frame delay rounded to whole centiseconds, at
    least 20 ms. Returns the path. Raises InputError for bad frames, fps or extension.
    """
    path = Path(path)
    frames = check_frames(frames_uint8, "Video frames")
    if not (isinstance(fps, int | float) and math.isfinite(fps) and fps > 0):
        raise InputError(f"The frame rate must be a positive number, got {fps!r}.")
    suffix = path.suffix.lower()
    if suffix == ".mp4":
        _check_count(crf, "The H.264 quality (crf)", 0)
        if crf > 51:
            raise InputError(f"The H.264 quality (crf) must be between 0 and 51, got {crf}.")
        _write_mp4(path, frames, float(fps), crf)
    elif suffix == ".gif":
        _write_gif(path, frames, float(fps))
    else:
        raise InputError(f"Videos are written as .mp4 or .gif, got {path.name}.")
    if not path.is_file() or path.stat().st_size == 0:
        raise OSError(f"Writing {path} produced no file; check that its folder exists and is writable.")
    return path


def side_by_side(*clips_uint8: np.ndarray, gap_px: int = 8) -> np.ndarray:
    """Clips (T,H,W_k,3) uint8 of one length and height, left to right with a black gap of `gap_px` between:
    (T,H,sum W_k + gaps,3) uint8. A single image (T=1) broadcast to T frames may be passed as (1,H,W,3)."""
    if not clips_uint8:
        raise ValueError("side_by_side needs at least one clip")
    frames = max(clip.shape[0] for clip in clips_uint8)
    clips = [np.broadcast_to(clip, (frames, *clip.shape[1:])) for clip in clips_uint8]
    gap = np.zeros((frames, clips[0].shape[1], gap_px, 3), np.uint8)
    parts = [part for clip in clips for part in (gap, clip)][1:]
    return np.concatenate(parts, axis=2)
