"""The keyframe job's backends, described as data: how keyframes are edited and how the frames between them
are filled. The app's choices, the CLI's choices and the error messages are built from `EDIT_BACKENDS` and
`INTERP_BACKENDS`.

- edit "filter": `core.engines.edit` (no weights); "sd": `core.pipelines.keyframe_edit`, SD img2img over
  all keyframes at once with per-keyframe prompts.
- inbetween "flow": `core.engines.interpolate` (no weights); "crossfade": the baseline; "svd-trf" and
  "svd-lora": `core.pipelines.svd_interpolate` (svd-lora with the head-and-tail LoRA of
  `Settings.svd_interp_lora`); "flow+svd": the flow frames refined by an SVD SDEdit from the first keyframe
  (`core.pipelines.svd_trajectory`, the drag app's "svd" pipeline); "flow+svd-lora", offered once
  `Settings.svd_interp_lora` is set: the same refinement conditioned on both keyframes with svd-lora's LoRA
  (`core.pipelines.svd_interpolate` from the flow frames as its guide).
- chaining bare images (no video; A -> B -> C, loops A -> B -> A): `inbetween_images`, with any of the
  inbetweening backends (`core.engines.chain`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from apps.keyframe.video import resize_frames
from core.cancel import CancelToken
from core.config import ENV_PREFIX, LIMITS, MINI_WEIGHTS, Settings
from core.engines.chain import chain_layout, check_images, morph_flow
from core.engines.edit import apply_edit, resolve_params
from core.engines.interpolate import VideoMotion, crossfade, interpolate_flow
from core.errors import InputError, ModelNotAvailable
from core.flow import METHODS as FLOW_METHODS
from core.imaging import resize_to_multiple, undo_resize

SVD_SIDE_MULTIPLE = 64
INTERP_LORA = "svd_interp"  # adapter name of the svd-lora weights in the SVD UNet

ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class Backend:
    """One way to edit keyframes or to fill the frames between them.

    Attributes:
        name: the CLI's value and the run record's "backend".
        label: what the app's backend radio shows.
        models: the Settings fields naming the weights it runs (empty: needs none).
        options: the request fields it reads; the app shows their controls only for this backend.
        requires: the models that must be set for it to be offered (`offered`); without them it is refused.
    """

    name: str
    label: str
    models: tuple[str, ...]
    options: tuple[str, ...]
    requires: tuple[str, ...] = ()

    @property
    def needs_weights(self) -> bool:
        return bool(self.models)


SVD_OPTIONS = ("motion_bucket", "steps", "seed", "decode_chunk_size", "noise_reinjection")
# Noise re-injection is time-reversal fusion's remedy: an SDEdit from the flow frames takes none.
REFINE_OPTIONS = ("flow_method", *(o for o in SVD_OPTIONS if o != "noise_reinjection"), "refine_strength")
SD_OPTIONS = (
    "prompt",
    "negative_prompt",
    "keyframe_prompts",
    "strength",
    "guidance",
    "steps",
    "seed",
    "controlnet_scale",
)
MAX_CONTROLNET_SCALE = 2.0

EDIT_BACKENDS: dict[str, Backend] = {
    backend.name: backend
    for backend in (
        Backend("filter", "Filter (no weights)", (), ("filter", "filter_params")),
        Backend("sd", "Stable Diffusion", ("sd_model",), SD_OPTIONS),
    )
}
INTERP_BACKENDS: dict[str, Backend] = {
    backend.name: backend
    for backend in (
        Backend("flow", "Optical flow (no weights)", (), ("flow_method",)),
        Backend("crossfade", "Cross-fade (baseline)", (), ()),
        Backend("svd-trf", "SVD + trajectory (svd-trf)", ("svd_model",), SVD_OPTIONS),
        Backend("svd-lora", "SVD + LoRA (svd-lora)", ("svd_model", "svd_interp_lora"), SVD_OPTIONS),
        Backend("flow+svd", "Optical flow refined by SVD (flow+svd)", ("svd_model",), REFINE_OPTIONS),
        Backend(
            "flow+svd-lora",
            "Optical flow refined by SVD + LoRA, both keyframes (flow+svd-lora)",
            ("svd_model", "svd_interp_lora"),
            REFINE_OPTIONS,
            requires=("svd_interp_lora",),
        ),
    )
}
SVD_BACKENDS = tuple(name for name, b in INTERP_BACKENDS.items() if "svd_model" in b.models)
FLOW_BACKENDS = tuple(name for name, b in INTERP_BACKENDS.items() if "flow_method" in b.options)
# Every model setting a backend uses, once each.
MODELS = tuple(
    dict.fromkeys(m for b in (*EDIT_BACKENDS.values(), *INTERP_BACKENDS.values()) for m in b.models)
)


def _choose(kind: str, name: str, registry: Mapping[str, Backend]) -> Backend:
    if name not in registry:
        raise InputError(f"Unknown {kind} backend {name!r}; choose one of {', '.join(registry)}.")
    return registry[name]


def offered(registry: Mapping[str, Backend], settings: Settings) -> list[Backend]:
    """The backends of `registry` the app lists under `settings`: those whose `requires` are all set."""
    return [b for b in registry.values() if all(getattr(settings, name) for name in b.requires)]


def require_offered(request: InterpRequest, settings: Settings) -> None:
    """ModelNotAvailable (one sentence naming the variable and the flag) when `request.backend` is not offered
    under `settings` (`offered`): checked before any work, by the jobs and by `inbetween`, `inbetween_images`."""
    from core.models.presets import MINI

    for name in INTERP_BACKENDS[request.backend].requires:
        if not getattr(settings, name):
            raise ModelNotAvailable(
                f"The {request.backend} backend needs {ENV_PREFIX}{name.upper()} (or --{name.replace('_', '-')}): "
                f"set it to weights that python -m core.training.{MINI_WEIGHTS[name]} wrote, or to '{MINI}'."
            )


def weight_free_labels() -> list[str]:
    """Labels of the backends that run without weights, edit ones first."""
    return [b.label for b in (*EDIT_BACKENDS.values(), *INTERP_BACKENDS.values()) if not b.needs_weights]


@dataclass(frozen=True)
class EditRequest:
    """How to edit keyframes.

    backend "filter": `filter` (a key of core.engines.edit.EDITS) with `filter_params` (missing ones
    take their defaults; an "image" parameter is an RGB uint8 (H,W,3) array).
    backend "sd": SD img2img over all keyframes at once toward `prompt`, with `keyframe_prompts`
    overriding it for some frames (by frame index), `strength` in (0,1], `guidance`, `steps`, `seed`;
    `controlnet_scale` (0..2, 0 = off) weighs the canny ControlNet when `Settings.controlnet_model` is set.
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
    controlnet_scale: float = 1.0

    def check(self) -> EditRequest:
        """Validate what can be checked without frames or models; returns self."""
        _choose("edit", self.backend, EDIT_BACKENDS)
        LIMITS["edit_steps"].check(self.steps)
        if not 0 <= self.controlnet_scale <= MAX_CONTROLNET_SCALE:
            raise InputError(
                f"The ControlNet scale must be between 0 and {MAX_CONTROLNET_SCALE}, got {self.controlnet_scale}."
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
            "controlnet_scale": self.controlnet_scale,
        }


def edit_keyframes(
    keyframes_uint8: np.ndarray,
    keyframe_indices: Sequence[int],
    request: EditRequest,
    settings: Settings,
    *,
    anchors_uint8: np.ndarray | None = None,
    progress: bool = False,
    cancel: CancelToken | None = None,
) -> np.ndarray:
    """Edit K keyframes (K,H,W,3) uint8 taken at frames `keyframe_indices`; returns (K,H,W,3) uint8.

    `anchors_uint8` (A,H,W,3) uint8, for SD: keyframes edited already (by SD or uploaded), put in the batch
    before the K keyframes with the first as the anchor of the cross-keyframe attention, so that a re-edit
    attends to the edits the others have; their own outputs are dropped. Filters ignore them.

    The SD backend edits all K in one batch (cross-keyframe attention keeps them consistent); editing
    a subset gives a different result than editing them all. With `Settings.controlnet_model` set
    (KINEMA_CONTROLNET_MODEL), a ControlNet conditioned on the keyframes' canny edges (OpenCV,
    `core.pipelines.keyframe_edit.canny_conditions`) keeps their structure, weighted by
    `request.controlnet_scale`. Raises InputError for bad parameters and ModelNotAvailable (naming the
    setting) when SD or ControlNet weights cannot be loaded; `cancel` is checked after every denoising step
    (core.cancel.Cancelled when set).
    """
    request.check()
    if len(keyframe_indices) != len(keyframes_uint8):
        raise InputError(f"{len(keyframes_uint8)} keyframes were given with {len(keyframe_indices)} indices.")
    if request.backend == "filter":
        return apply_edit(keyframes_uint8, request.filter, **request.filter_params)

    # Imported here: diffusers' pipelines take seconds to import and the weight-free path needs none.
    from core.models import load_controlnet, load_pipeline
    from core.models.state import attached
    from core.pipelines.keyframe_edit import KeyframeEditPipeline

    pipe = load_pipeline("sd", settings, pipeline_cls=KeyframeEditPipeline)
    # Loaded whenever configured, so that weights that cannot be loaded are said even at scale 0.
    controlnet = load_controlnet(settings)
    use_controlnet = controlnet is not None and request.controlnet_scale > 0
    if use_controlnet:
        pipe.register_modules(controlnet=controlnet)
    pipe.set_progress_bar_config(disable=not progress, desc="editing keyframes (SD)")
    anchors = np.empty((0, *keyframes_uint8.shape[1:]), np.uint8) if anchors_uint8 is None else anchors_uint8
    if anchors.shape[1:] != keyframes_uint8.shape[1:]:
        raise InputError(
            f"The anchor keyframes are {anchors.shape[1:3]} (H,W) but the keyframes {keyframes_uint8.shape[1:3]}."
        )
    # The VAE needs sides divisible by 8: pad by repeating edges, edit, cut the padding off again.
    padded, resize = resize_to_multiple(np.concatenate([anchors, keyframes_uint8]), multiple=8, mode="pad")
    prompts = [request.prompt] * len(anchors)
    prompts += [request.keyframe_prompts.get(int(i), request.prompt) for i in keyframe_indices]
    with attached(pipe.unet):  # the cached SD UNet is shared: its cross-frame attention is this run's alone
        edited = pipe(
            keyframes=padded,
            prompts=prompts,
            negative_prompt=request.negative_prompt or None,
            strength=float(request.strength),
            guidance_scale=float(request.guidance),
            num_inference_steps=int(request.steps),
            seed=int(request.seed),
            controlnet_conditioning="canny" if use_controlnet else None,
            controlnet_conditioning_scale=float(request.controlnet_scale),
            output_type="uint8",
            callback_on_step_end=(cancel or CancelToken()).on_step_end,
        ).images
    return undo_resize(edited[len(anchors) :], resize)


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
    (frames decoded by the VAE at once: lower uses less memory) and `noise_reinjection` (repeats of each of
    the first half of the steps with fresh noise, 0 = off; see `core.pipelines.svd_interpolate`).
    "flow+svd" and "flow+svd-lora" read both: the flow backend's frames are the guide of an SVD SDEdit at
    `refine_strength` (the last ceil(steps x strength) steps run; `core.pipelines.svd_common.steps_for_strength`).
    """

    backend: str = "flow"
    fps: float | None = None
    flow_method: str = "dis"
    motion_bucket: int = 127
    steps: int = 25
    seed: int = 0
    decode_chunk_size: int = 8
    noise_reinjection: int = 0
    refine_strength: float = 0.3

    def check(self) -> InterpRequest:
        _choose("inbetweening", self.backend, INTERP_BACKENDS)
        if self.fps is not None and not (isinstance(self.fps, int | float) and 0 < self.fps <= 120):
            raise InputError(f"The output frame rate must be between 0 and 120 fps, got {self.fps!r}.")
        if self.flow_method not in FLOW_METHODS:
            raise InputError(
                f"Unknown flow method {self.flow_method!r}; choose one of {', '.join(FLOW_METHODS)}."
            )
        if not 0 <= self.motion_bucket <= 255:
            raise InputError(f"The motion bucket must be between 0 and 255, got {self.motion_bucket}.")
        LIMITS["interp_steps"].check(self.steps)
        LIMITS["decode_chunk_size"].check(self.decode_chunk_size)
        LIMITS["noise_reinjection"].check(self.noise_reinjection)
        if not 0 < self.refine_strength <= 1:
            raise InputError(f"The refinement strength must be in (0, 1], got {self.refine_strength!r}.")
        return self

    def record(self) -> dict[str, Any]:
        """JSON-ready: the backend, fps, flow method and the backend's own options."""
        keep = {"backend", "fps", "flow_method", *INTERP_BACKENDS[self.backend].options}
        return {k: v for k, v in asdict(self).items() if k in keep}

    @classmethod
    def from_record(cls, recorded: Mapping[str, Any]) -> InterpRequest:
        """The request a run record's "inbetween" names (what `record` wrote; other keys, e.g. the output fps
        the job adds, are left out; options it does not name take their defaults). Not checked here."""
        return cls(**{f.name: recorded[f.name] for f in fields(cls) if f.name in recorded})


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
    cancel: CancelToken | None = None,
) -> np.ndarray:
    """Fill every frame of the original video (T,H,W,3) from the edited keyframes (K,H,W,3) uint8.

    Returns (T,H,W,3) uint8; frame keyframe_indices[k] is edited_uint8[k]. `motion` reuses
    `estimate_video_motion(frames_uint8, request.flow_method)` for the flow backend; `callback(done,
    total)` reports output frames. `fps` (the video's) conditions SVD when `request.fps` is None.
    Raises InputError / ModelNotAvailable like the backends; `cancel` is checked at every output frame and,
    for SVD, every denoising step (core.cancel.Cancelled when set).
    """
    request.check()
    require_offered(request, settings)
    cancel = cancel or CancelToken()
    callback = cancel.watch(callback)
    if request.backend in FLOW_BACKENDS:
        flow = interpolate_flow(
            frames_uint8,
            keyframe_indices,
            edited_uint8,
            motion=motion,
            method=request.flow_method,
            progress=progress,
            callback=callback if request.backend == "flow" else None,
        )
        if request.backend == "flow":
            return flow
        return _svd_refine(
            flow, keyframe_indices, request, settings, request.fps or fps, progress, cancel, callback
        )
    if request.backend == "crossfade":
        out = crossfade(frames_uint8.shape[0], keyframe_indices, edited_uint8)
        callback(out.shape[0], out.shape[0])
        return out
    return _svd_inbetween(
        frames_uint8.shape[0],
        keyframe_indices,
        edited_uint8,
        request,
        settings,
        request.fps or fps,
        progress,
        callback,
        cancel,
    )


def _svd_pipeline(
    pipeline_cls: type, request: InterpRequest, settings: Settings, progress: bool
) -> tuple[Any, tuple]:
    """The SVD pipeline `pipeline_cls` (cached components) for `request.backend`, and what it carries for this
    job only (`core.models.state.attached`): the head-and-tail LoRA of `Settings.svd_interp_lora` for the
    backends that run it (svd-lora, flow+svd-lora), nothing for the others (stock weights)."""
    from core.models import load_pipeline
    from core.models.state import LoraWeights

    pipe = load_pipeline("svd", settings, pipeline_cls=pipeline_cls)
    pipe.set_progress_bar_config(disable=not progress, desc=f"inbetweening ({request.backend})")
    runs_lora = "svd_interp_lora" in INTERP_BACKENDS[request.backend].models and settings.svd_interp_lora
    return pipe, ((LoraWeights(settings.svd_interp_lora, INTERP_LORA),) if runs_lora else ())


def _svd_options(
    request: InterpRequest, settings: Settings, padded_hw: tuple[int, int], fps: float, cancel: CancelToken
) -> dict[str, Any]:
    """The pipeline arguments every SVD backend passes alike, for frames padded to `padded_hw`."""
    from core.memory import decode_chunk_frames

    return {
        "num_inference_steps": request.steps,
        "motion_bucket_id": request.motion_bucket,
        "fps": max(1, round(fps)),
        "decode_chunk_size": decode_chunk_frames(*padded_hw, request.decode_chunk_size, settings.low_vram),
        "callback_on_step_end": cancel.on_step_end,
    }


def _svd_inbetween(
    n_frames: int,
    keyframe_indices: Sequence[int],
    edited_uint8: np.ndarray,
    request: InterpRequest,
    settings: Settings,
    fps: float,
    progress: bool,
    callback: ProgressCallback,
    cancel: CancelToken,
) -> np.ndarray:
    """One SVD run per pair of neighbouring keyframes, as long as their gap; keyframes stay exact.
    Returns (n_frames,H,W,3) uint8."""
    indices = [int(i) for i in keyframe_indices]
    if indices[0] != 0 or indices[-1] != n_frames - 1:
        raise InputError(
            f"The SVD backends fill the frames between keyframes only: make frames 0 and {n_frames - 1} "
            "keyframes (the flow backend also extends past the first and last keyframe)."
        )
    from core.models.state import attached
    from core.pipelines.svd_interpolate import SVDInterpolatePipeline, interpolate_keyframes

    # svd-lora with a head-and-tail LoRA carries it for this job only; svd-trf runs the stock weights.
    pipe, lora = _svd_pipeline(SVDInterpolatePipeline, request, settings, progress)
    # SVD halves the latents three times: pad the sides to multiples of 64 (edges repeated), cut after.
    padded, resize = resize_to_multiple(edited_uint8, multiple=SVD_SIDE_MULTIPLE, mode="pad")
    options = _svd_options(request, settings, padded.shape[1:3], fps, cancel)
    out = np.empty((n_frames, *edited_uint8.shape[1:]), np.uint8)
    out[indices] = edited_uint8
    done = len(indices)
    with attached(pipe.unet, *lora):
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
                noise_reinjection=request.noise_reinjection,
                **options,
            )
            out[a + 1 : b] = undo_resize(video[1:-1], resize)
            done += b - a - 1
            callback(done, n_frames)
    return out


def _svd_refine(
    guide_uint8: np.ndarray,
    keyframe_indices: Sequence[int],
    request: InterpRequest,
    settings: Settings,
    fps: float,
    progress: bool,
    cancel: CancelToken,
    callback: ProgressCallback,
) -> np.ndarray:
    """flow+svd and flow+svd-lora: each gap between neighbouring keyframes of the flow result `guide_uint8`
    (T,H,W,3) is the guide video of an SVD SDEdit at `request.refine_strength`. flow+svd conditions SVD on the
    gap's first keyframe (the drag app's "svd" pipeline, `core.pipelines.svd_trajectory`); flow+svd-lora on
    both, with svd-lora's head-and-tail LoRA (`core.pipelines.svd_interpolate`, mode "svd-lora"). Keyframes
    and the frames outside the first and last keyframe stay as the flow made them. Returns (T,H,W,3) uint8."""
    import torch

    from core.imaging import unit_to_uint8
    from core.models.state import attached
    from core.pipelines.svd_interpolate import SVDInterpolatePipeline
    from core.pipelines.svd_trajectory import SVDTrajectoryPipeline

    conditioned = request.backend == "flow+svd-lora"
    pipeline_cls = SVDInterpolatePipeline if conditioned else SVDTrajectoryPipeline
    pipe, lora = _svd_pipeline(pipeline_cls, request, settings, progress)
    padded, resize = resize_to_multiple(guide_uint8, multiple=SVD_SIDE_MULTIPLE, mode="pad")
    options = _svd_options(request, settings, padded.shape[1:3], fps, cancel)
    out = guide_uint8.copy()
    indices = [int(i) for i in keyframe_indices]
    total = out.shape[0]
    with attached(pipe.unet, *lora):
        for segment, (a, b) in enumerate(zip(indices, indices[1:])):
            if b - a >= 2:
                ends = (
                    {"head_image": padded[a], "tail_image": padded[b], "mode": "svd-lora"}
                    if conditioned
                    else {"image": padded[a]}
                )
                frames_unit = pipe(
                    **ends,
                    guide_video=padded[a : b + 1],
                    strength=float(request.refine_strength),
                    generator=torch.Generator().manual_seed(request.seed + segment),
                    output_type="np",
                    **options,
                ).frames[0]
                out[a + 1 : b] = undo_resize(unit_to_uint8(frames_unit[1:-1]), resize)
            callback(b + 1 if b < indices[-1] else total, total)
    return out


def inbetween_images(
    images_uint8: np.ndarray,
    request: InterpRequest,
    settings: Settings,
    *,
    frames_between: int,
    loop: bool = False,
    fps: float = 7.0,
    progress: bool = False,
    callback: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> np.ndarray:
    """Chain bare images A -> B -> C ... (A -> ... -> A with `loop`) with any inbetweening backend.

    images_uint8: (K,H,W,3) uint8, K >= 2, one size (`core.engines.chain.check_images`). Returns
    (N,H,W,3) uint8 with N = (K' - 1)(frames_between + 1) + 1, K' = K (K + 1 with `loop`); image k is
    frame k (frames_between + 1), exactly, and a loop ends on A. The flow backend morphs each pair along
    the flow between its two images (`core.engines.chain.morph_flow`); the others run as for a video.
    """
    request.check()
    require_offered(request, settings)
    images_uint8 = check_images(images_uint8)
    layout = chain_layout(images_uint8.shape[0], frames_between, loop)
    keys_uint8 = images_uint8[list(layout.image_order)]
    cancel = cancel or CancelToken()
    callback = cancel.watch(callback)
    if request.backend in FLOW_BACKENDS:
        out = np.empty((layout.num_frames, *keys_uint8.shape[1:]), np.uint8)
        indices = layout.keyframe_indices
        out[list(indices)] = keys_uint8
        for k, (a, b) in enumerate(zip(indices, indices[1:])):
            out[a + 1 : b] = morph_flow(keys_uint8[k], keys_uint8[k + 1], b - a - 1, request.flow_method)
            if request.backend == "flow":
                callback(b + 1, layout.num_frames)
        if request.backend == "flow":
            return out
        return _svd_refine(out, indices, request, settings, request.fps or fps, progress, cancel, callback)
    if request.backend == "crossfade":
        out = crossfade(layout.num_frames, layout.keyframe_indices, keys_uint8)
        callback(layout.num_frames, layout.num_frames)
        return out
    return _svd_inbetween(
        layout.num_frames,
        layout.keyframe_indices,
        keys_uint8,
        request,
        settings,
        request.fps or fps,
        progress,
        callback,
        cancel,
    )


def backend_notes(interp: InterpRequest, settings: Settings) -> list[str]:
    """Sentences a user should read before trusting a backend's output with these settings."""
    if interp.backend == "svd-lora" and not settings.svd_interp_lora:
        return [
            f"svd-lora runs without a head-and-tail LoRA ({ENV_PREFIX}SVD_INTERP_LORA is empty): stock SVD has "
            "not learned what the tail keyframe means, so expect svd-trf-like or worse results."
        ]
    return []
