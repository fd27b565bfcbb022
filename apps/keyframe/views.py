"""What the keyframe app shows, UI-free: the model line, the frame strip (keyframes marked), the keyframe gallery and
the time estimates of the edit and inbetweening runs (`core.estimate`), before and while they run.

The strip's thumbnails of keyframes get a :data:`KEY_BORDER_RGB` frame drawn into their pixels and "key" in
their caption, so they are marked whatever the page's styles; :data:`STRIP_CSS` keeps every column of both
galleries inside the page (gradio's galleries ask 100 px per column, which 8 columns of a narrow column or a
phone do not have), puts the captions under the thumbnails instead of over them, and starts the thumbnails below
the gallery's label.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from apps.common.examples import MINI_DESCRIPTION, is_mini
from apps.keyframe.backends import (
    INTERP_BACKENDS,
    SVD_BACKENDS,
    SVD_SIDE_MULTIPLE,
    InterpRequest,
    weight_free_labels,
)
from apps.keyframe.job import KeyframeEdit
from apps.keyframe.video import MAX_AUTO_STRIDE, LoadedVideo, resize_frames, working_size
from core.config import ENV_PREFIX, Settings
from core.engines.keyframes import Keyframe
from core.estimate import Estimate, estimate_for, sd_edit_job, svd_inbetween_job
from core.models.presets import TINY

THUMB_SIDE = 160  # frame strip thumbnails (px)
KEY_BORDER_RGB = (255, 140, 0)
KEY_BORDER_PX = 8  # of THUMB_SIDE
SD_SIDE_MULTIPLE = 8  # the SD edit pads the keyframes to multiples of the VAE factor

STRIP_CSS = """
#kf-frames .grid-wrap, #kf-keyframes .grid-wrap { padding-top: 32px !important; }
#kf-frames .grid-container { grid-template-columns: repeat(auto-fill, minmax(64px, 1fr)) !important; }
#kf-keyframes .grid-container { grid-template-columns: repeat(auto-fill, minmax(96px, 1fr)) !important; }
#kf-frames .grid-container, #kf-keyframes .grid-container { grid-template-rows: none !important; }
#kf-frames .thumbnail-item, #kf-keyframes .thumbnail-item {
  aspect-ratio: auto !important; height: auto !important; display: flex; flex-direction: column;
}
#kf-frames .thumbnail-item img, #kf-keyframes .thumbnail-item img {
  aspect-ratio: 1; height: auto !important; object-fit: contain !important;
}
#kf-frames .caption-label, #kf-keyframes .caption-label {
  position: static !important; max-width: none !important; white-space: normal !important; opacity: 1 !important;
  border: 0 !important; border-radius: 0 !important; text-align: center !important; overflow: visible !important;
}
"""


def model_summary(settings: Settings) -> str:
    """One Markdown line naming the model settings in use (and what 'tiny' and 'mini' are)."""

    def describe(name: str, value: str) -> str:
        setting = f"{ENV_PREFIX}{name.upper()}"
        if value == TINY:
            return f"`{value}` (random test weights: outputs are noise; set {setting} for real ones)"
        if is_mini(value):
            return f"`{value}` ({setting}; toy model, see below)"
        return f"`{value}` ({setting})"

    models = (settings.sd_model, settings.svd_model)
    mini = f" The `mini` models are {MINI_DESCRIPTION}." if any(is_mini(m) for m in models) else ""
    return (
        f"**Models** - SD: {describe('sd_model', settings.sd_model)}; SVD: {describe('svd_model', settings.svd_model)}; "
        f"device `{settings.device}`. Need no weights: {', '.join(weight_free_labels())}.{mini}\n\n"
        f"**Limits** - {settings.max_upload_mb} MB upload; {settings.max_image_side} px longest side (larger videos "
        f"are refused, smaller ones are downscaled to the working size); {settings.max_frames} frames per part "
        f"(longer parts are read every 2nd to {MAX_AUTO_STRIDE}th frame, longer still are refused: trim them)."
    )


def frame_strip(video: LoadedVideo, key_indices: Sequence[int]) -> list[tuple[np.ndarray, str]]:
    """Every frame as a thumbnail captioned "INDEX · SECONDS s"; keyframes framed in KEY_BORDER_RGB and captioned
    "key INDEX · SECONDS s"."""
    height, width = video.size_hw
    thumbs = resize_frames(video.frames_uint8, working_size(height, width, THUMB_SIDE))
    keys = set(key_indices)
    items = []
    for i, thumb in enumerate(thumbs):
        caption = f"{i} · {i / video.fps:.1f} s"
        if i in keys:
            caption = f"key {caption}"
            thumb = thumb.copy()
            border = max(2, KEY_BORDER_PX * max(thumb.shape[:2]) // THUMB_SIDE)
            for edge in (np.s_[:border], np.s_[-border:]):
                thumb[edge] = KEY_BORDER_RGB
                thumb[:, edge] = KEY_BORDER_RGB
        items.append((thumb, caption))
    return items


def keyframe_gallery(
    frames_uint8: np.ndarray,
    keys: Sequence[Keyframe],
    edited: Mapping[int, np.ndarray],
    edits: Mapping[int, KeyframeEdit],
) -> list[tuple[np.ndarray, str]]:
    """The keyframes, edited (with how: a filter's name, "sd" or "upload") or original (with why chosen)."""
    items = []
    for key in keys:
        if key.index in edited:
            edit = edits[key.index].edit
            how = "upload" if edit is None else edit.filter if edit.backend == "filter" else edit.backend
            items.append((edited[key.index], f"{key.index}: edited ({how})"))
        else:
            items.append((frames_uint8[key.index], f"{key.index}: original - {key.reason}"))
    return items


def _padded(size_hw: tuple[int, int], multiple: int) -> tuple[int, int]:
    return tuple(-(-side // multiple) * multiple for side in size_hw)


def edit_estimate(
    settings: Settings, video: LoadedVideo, keyframes: int, steps: int, strength: float
) -> Estimate:
    """The SD edit of ``keyframes`` keyframes of ``video`` at its working size."""
    job = sd_edit_job(settings.sd_model, _padded(video.size_hw, SD_SIDE_MULTIPLE), keyframes, steps, strength)
    return estimate_for(job, settings)


def inbetween_estimate(
    settings: Settings, video: LoadedVideo, key_indices: Sequence[int], interp: InterpRequest
) -> Estimate:
    """SVD inbetweening (``interp.backend`` one of SVD_BACKENDS) between ``key_indices`` of ``video``: the steps
    that run (a refinement's share of them, at its strength) and the repeats of the backends that make them."""
    options = INTERP_BACKENDS[interp.backend].options
    steps = interp.steps
    if "refine_strength" in options:
        from core.pipelines.svd_common import steps_for_strength  # diffusers: only for the refining backends

        steps = steps_for_strength(interp.steps, interp.refine_strength)
    repeats = interp.noise_reinjection if "noise_reinjection" in options else 0
    gaps = [b - a for a, b in zip(key_indices, key_indices[1:])]
    side_hw = _padded(video.size_hw, SVD_SIDE_MULTIPLE)
    return estimate_for(
        svd_inbetween_job(settings.svd_model, side_hw, gaps, steps, interp.backend, repeats), settings
    )


def estimate_lines(
    settings: Settings,
    video: LoadedVideo | None,
    key_indices: Sequence[int],
    edit_backend: str,
    edit_steps: float,
    strength: float,
    interp_backend: str,
    interp_steps: float,
    repeats: float,
    refine_strength: float,
) -> tuple[str, str]:
    """The lines under the edit buttons and the inbetween button: the estimate of the diffusion run their controls
    describe (the SD edit, the SVD inbetweening), or why there is none."""

    def line(backend: str, estimate: Callable[[], Estimate]) -> str:
        if backend not in ("sd", *SVD_BACKENDS):
            return "No diffusion model: this backend takes seconds."
        return "Load a video to see how long this takes." if video is None else estimate().text()

    edit = line(
        edit_backend, lambda: edit_estimate(settings, video, len(key_indices), int(edit_steps), strength)
    )
    interp = line(
        interp_backend,
        lambda: inbetween_estimate(
            settings,
            video,
            key_indices,
            InterpRequest(
                interp_backend,
                steps=int(interp_steps),
                noise_reinjection=int(repeats),
                refine_strength=float(refine_strength),
            ),
        ),
    )
    return edit, interp
