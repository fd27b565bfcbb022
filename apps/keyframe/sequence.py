"""The keyframe job for bare images (no video): inbetween A -> B -> C ..., or loop A -> B -> A.

Shared by the CLI (``--images A.png B.png [...] [--loop] [--frames-between N]``) and the app (the "Images
instead of a video" panel, :mod:`apps.keyframe.ui_sequence`). The images are the keyframes as given (no
edit step): they are read with the size limit, checked to be 2 or more of one size
(`core.engines.chain.check_images`; scaled together to the working size), and the frames between them are
filled by any inbetweening backend (`apps.keyframe.backends.inbetween_images`). Writes the mp4 (and a gif
when asked) and the run record (action "cli" or "ui:images"; its arguments hold "images"), like :func:`apps.keyframe.job.run`;
:func:`request_from_record` redoes it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from apps.common.runs import RunRecord
from apps.keyframe.backends import InterpRequest, backend_notes, inbetween_images, require_offered
from apps.keyframe.job import OutputFiles, Progress, recorded_input, write_outputs
from apps.keyframe.video import DEFAULT_WORKING_SIDE, resize_frames, working_size
from core.cancel import CancelToken
from core.config import Settings
from core.engines.chain import chain_layout, check_images
from core.errors import InputError
from core.imaging import load_image

DEFAULT_FRAMES_BETWEEN = 7
DEFAULT_FPS = 8.0  # output frame rate of a chain when none is asked for (images have none)


@dataclass(frozen=True)
class SequenceRequest:
    """One chain: `images` (paths, in order), `frames_between` generated frames between neighbours, `loop`
    back to the first image, the longer side `working_side` in px, inbetweened by `interp`."""

    images: tuple[str, ...]
    frames_between: int = DEFAULT_FRAMES_BETWEEN
    loop: bool = False
    working_side: int = DEFAULT_WORKING_SIDE
    interp: InterpRequest = field(default_factory=InterpRequest)


@dataclass(frozen=True)
class SequenceResult:
    """result_uint8 (N,H,W,3) at `fps`, with the keyframe (image) positions, the files and the record."""

    result_uint8: np.ndarray
    fps: float
    keyframe_indices: tuple[int, ...]
    files: OutputFiles
    record: RunRecord
    notes: list[str]


def load_images(paths: Sequence[str | Path], settings: Settings, working_side: int) -> np.ndarray:
    """The images of a chain as (K,H,W,3) uint8, scaled to the working size. InputError (one sentence) for
    fewer than 2 images, images of different sizes, or a file that is not an image."""
    images = check_images([load_image(p, max_side=settings.max_image_side) for p in paths])
    return resize_frames(images, working_size(*images.shape[1:3], working_side))


def run_images(
    request: SequenceRequest,
    settings: Settings,
    files: OutputFiles,
    *,
    action: str = "cli",
    command: list[str] | None = None,
    progress: Progress | None = None,
    say: Callable[[str], None] | None = None,
    cancel: CancelToken | None = None,
) -> SequenceResult:
    """Inbetween the request's images and write `files` (mp4, gif when set) and the run record."""
    cancel = cancel or CancelToken()
    report = cancel.watch(progress)
    tell = say or (lambda text: None)
    interp = request.interp.check()
    require_offered(interp, settings)
    layout = chain_layout(len(request.images), request.frames_between, request.loop)
    if layout.num_frames > settings.max_frames:
        raise InputError(
            f"{len(request.images)} images with {request.frames_between} frames between make "
            f"{layout.num_frames} frames, over this server's limit of {settings.max_frames}: use fewer frames between."
        )
    notes = backend_notes(interp, settings)
    for note in notes:
        tell(note)
    report("reading images", 0, 1)
    started = time.perf_counter()
    images = load_images(request.images, settings, request.working_side)
    timings = {"load": time.perf_counter() - started}
    tell(
        f"Chaining {images.shape[0]} images of {images.shape[2]}x{images.shape[1]}{' (loop)' if request.loop else ''}."
    )

    fps = interp.fps or DEFAULT_FPS
    started = time.perf_counter()
    result = inbetween_images(
        images,
        interp,
        settings,
        frames_between=request.frames_between,
        loop=request.loop,
        fps=fps,
        progress=True,
        callback=lambda done, total: report(f"inbetweening ({interp.backend})", done, total),
        cancel=cancel,
    )
    timings["inbetween"] = time.perf_counter() - started
    report("writing videos", 1, 1)
    indices = list(layout.keyframe_indices)
    record = RunRecord(
        app="keyframe",
        action=action,
        command=command,
        arguments={
            "images": [str(Path(p).resolve()) for p in request.images],
            "frames_between": request.frames_between,
            "loop": request.loop,
            "working_side": request.working_side,
            "keyframe_indices": indices,
            "inbetween": {**interp.record(), "output_fps": fps},
        },
        settings={
            name: getattr(settings, name)
            for name in ("svd_model", "svd_interp_lora", "device", "dtype", "low_vram")
        },
        outputs=write_outputs(files, result, result, fps, indices, result[indices]),
        timings_s=timings,
    )
    record.write(files.params_json)
    tell(f"Wrote {result.shape[0]} frames at {fps:.3g} fps: {', '.join(str(p) for p in files.paths())}")
    return SequenceResult(result, fps, layout.keyframe_indices, files, record, notes)


def request_from_record(record: RunRecord, folder: str | Path) -> SequenceRequest:
    """The chain a keyframe run record of images (its arguments hold "images") redoes. Each image is where the
    record names it, or else in `folder` (the record's) under its name: the app keeps its uploads there."""
    if record.app != "keyframe" or "images" not in record.arguments:
        raise InputError(
            "This run record does not chain images: apps.keyframe.job.request_from_record redoes it."
        )
    args = record.arguments
    try:
        return SequenceRequest(
            images=tuple(str(recorded_input(path, Path(folder))) for path in args["images"]),
            frames_between=int(args["frames_between"]),
            loop=bool(args["loop"]),
            working_side=int(args["working_side"]),
            interp=InterpRequest.from_record(args["inbetween"]),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise InputError(f"The keyframe run record is damaged: {error!r} is missing or wrong.") from error
