"""The drag app's backends: which engines turn an image and trajectories into a video, and one render.

- "warp": the engine alone (below), instant, no weights.
- "svd": the warp as the guide video of `core.pipelines.svd_trajectory.SVDTrajectoryPipeline` (SDEdit,
  training-free, stock SVD weights).
- "svd-controlnet": the same pipeline with the trained flow ControlNet (`core.controlnet_svd`), fed the
  sparse flow of the user's tracks; strength 1 (default) is the pure ControlNet mode, a lower strength
  also starts from the warp.
- "svd-joint-flow" (experimental, the research path): `core.pipelines.svd_joint_flow`, which generates
  the video and its flow together with the tracks' flow held by replacement; its generated flow is
  shown where the others show the warp's.

The warp always runs first: it is the "warp" backend's result and the guide video of the SVD backends.
Its engine is the request's: "objects" (`core.engines.objects.animate_objects`: each drag moves the object
under its start, the background holds) or "sheet" (`core.engines.warp.animate`: the whole picture moves
as a smooth field, with the reach and the motion brush). A request without a motion bucket gets
`core.motion.suggest_motion_bucket` of the same request (tracks, camera, brush, reach, the objects): the
number the app suggests for it. The drag job (`apps.drag.job`,
behind the app and the CLI) and the ObjMC harness call `render`; they differ only in how they show its
progress events.

A backend is listed (`available`) when its weights are configured in `Settings`: the warp needs none,
SVD's default hub id counts as configured (a missing model is reported by the loader with the
setting to change), the trained backends need their own setting. `require` turns "not configured"
into core.models' missing-weights error naming the env var and the flag; `load` builds the pipeline (the heavy part;
the app caches it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.config import Settings
from core.engines.objects import ObjectLayer, animate_objects, object_layers
from core.engines.warp import CAMERA_PRESETS, DEFAULT_FRAMES, WarpResult, animate
from core.errors import InputError
from core.flow import video_to_flows
from core.imaging import unit_to_uint8
from core.memory import decode_chunk_frames
from core.models.presets import MINI, MINI_FOLDER, TINY
from core.motion import suggest_motion_bucket
from core.trajectory import CameraMotion, Trajectories, tracks_to_px

# Frames the VAE decodes at once: bounds decoder memory (SVD-XT at 1024x576 fits a 24 GB card).
SVD_DECODE_CHUNK = 8
# Share of a model backend's progress that the warp takes (the denoising loop takes the rest).
_WARP_SHARE = 1 / 3
# What a drag moves: the object under it (core.engines.objects) or the whole picture (core.engines.warp).
ENGINES = ("objects", "sheet")


@dataclass(frozen=True)
class RenderProgress:
    """One progress event of `render`: `done` of `total` units of `stage` ("warp" frames or "svd"
    denoising steps; the job adds "write": files written); `fraction` in [0,1] is how far the whole
    render (or job) is."""

    stage: str
    done: int
    total: int
    fraction: float

    @property
    def text(self) -> str:
        if self.stage == "warp":
            return f"Warping frame {self.done} of {self.total}"
        if self.stage == "write":
            return f"Writing the videos ({self.done} of {self.total})"
        if self.done == 0:
            return "SVD: encoding the inputs"
        return f"SVD step {self.done} of {self.total}"


ProgressFn = Callable[[RenderProgress], None]


@dataclass(frozen=True)
class Backend:
    """A way to make the video.

    Attributes:
        name: the CLI's --backend value and the run record's "backend".
        label: what the app's backend radio shows.
        experimental: research code, labelled as such.
        models: the Settings fields naming the weights it runs, its own last (empty: needs none).
        default_strength: SDEdit strength from the warp guide when the user gives none (None: the
            backend takes no strength, and the app shows no strength slider).
        strength_label: the app's strength slider label (what the strength means for this backend).
    """

    name: str
    label: str
    experimental: bool
    models: tuple[str, ...]
    default_strength: float | None
    strength_label: str = ""

    @property
    def setting(self) -> str | None:
        """The Settings field of its own weights (what configures it), None for the warp."""
        return self.models[-1] if self.models else None

    def available(self, settings: Settings) -> bool:
        """Whether its weights are configured (not whether they load: `load` reports that)."""
        return self.setting is None or bool(getattr(settings, self.setting))


BACKENDS: dict[str, Backend] = {
    backend.name: backend
    for backend in (
        Backend("warp", "Warp preview (instant, no weights)", False, (), None),
        Backend(
            "svd",
            "SVD",
            False,
            ("svd_model",),
            0.4,
            "Strength (how far SVD may depart from the warp)",
        ),
        Backend(
            "svd-controlnet",
            "SVD + flow ControlNet",
            False,
            ("svd_model", "svd_controlnet_model"),
            1.0,
            "Strength (1: the ControlNet alone; lower: it refines the warp)",
        ),
        Backend(
            "svd-joint-flow",
            "SVD joint video + flow, experimental",
            True,
            ("svd_model", "svd_joint_flow_model"),
            None,
        ),
    )
}

MODELS = tuple(dict.fromkeys(m for b in BACKENDS.values() for m in b.models))  # every model setting, once


# What each weights setting is called in a label that names several.
MODEL_ROLES = {"svd_model": "SVD", "svd_controlnet_model": "ControlNet", "svd_joint_flow_model": "joint flow"}


def weights_label(value: str) -> str:
    """What a model setting loads, in words: the tiny preset (random), the mini models (trained; the
    trained-weights settings hold the mini run's folder), or the hub id or folder named."""
    if value == TINY:
        return "tiny random weights"
    if value == MINI or Path(value).parent == MINI_FOLDER:
        return "mini, trained"
    return value


def loaded_label(name: str, settings: Settings) -> str:
    """Backend `name` with the weights it runs under `settings`, e.g. "SVD (tiny random weights: outputs
    are noise)" or "SVD + flow ControlNet (mini, trained)": what the app lists and its result names."""
    backend = BACKENDS[name]
    if not backend.models:
        return backend.label
    values = [getattr(settings, model) for model in backend.models]
    labels = {model: weights_label(value) for model, value in zip(backend.models, values)}
    if len(set(labels.values())) == 1:
        what = labels[backend.models[0]]
    else:
        what = "; ".join(f"{MODEL_ROLES[model]} {label}" for model, label in labels.items())
    noise = ": outputs are noise" if TINY in values else ""
    return f"{backend.label} ({what}{noise})"


def backend_of(name: str) -> Backend:
    """The registered backend called `name`; InputError naming the choices otherwise."""
    if name not in BACKENDS:
        raise InputError(f"Unknown backend {name!r}; choose one of {', '.join(BACKENDS)}.")
    return BACKENDS[name]


def available_backends(settings: Settings) -> list[Backend]:
    """The backends whose weights `settings` configure, in registry order (warp first)."""
    return [backend for backend in BACKENDS.values() if backend.available(settings)]


def require(name: str, settings: Settings) -> Backend:
    """The backend `name`, or ModelNotAvailable (one sentence naming the env var and flag) when its
    weights are not configured; InputError for an unknown name."""
    backend = backend_of(name)
    if not backend.available(settings):
        from core.models import missing_weights

        raise missing_weights(backend.setting, "", f"the {backend.name} backend needs them")
    return backend


def load(name: str, settings: Settings):
    """The pipeline backend `name` runs (None for the warp). Raises ModelNotAvailable when its weights
    are not configured or cannot be loaded."""
    require(name, settings)
    if name == "warp":
        return None
    # Imported here so that the warp backend never loads diffusers.
    from core.models import load_pipeline, load_svd_controlnet, load_svd_joint_flow

    if name == "svd-joint-flow":
        return load_svd_joint_flow(settings)
    from core.pipelines.svd_trajectory import SVDTrajectoryPipeline

    # A new pipeline object over the cached SVD modules, so registering a ControlNet on it leaves the
    # plain "svd" pipeline without one.
    pipe = load_pipeline("svd", settings, pipeline_cls=SVDTrajectoryPipeline)
    if name == "svd-controlnet":
        pipe.register_modules(controlnet=load_svd_controlnet(settings))
    return pipe


def camera_of(preset: str) -> CameraMotion | None:
    """The CameraMotion of a preset name of `core.engines.warp.CAMERA_PRESETS` ("none": no move)."""
    if preset == "none":
        return None
    if preset not in CAMERA_PRESETS:
        raise InputError(
            f"Unknown camera move {preset!r}; choose none or one of {', '.join(CAMERA_PRESETS)}."
        )
    return CAMERA_PRESETS[preset]


@dataclass(frozen=True)
class DragVideo:
    """A rendered clip.

    Attributes:
        frames_uint8: (T,H,W,3) uint8, the video.
        warp: the warp that drove it (its `tracks_px` are the requested positions).
        flow_px: (T-1,H,W,2) float32 frame-to-frame flow (entry t: frame t -> t+1) to show beside the
            video: the warp's, or the joint-flow backend's generated flow.
        motion_bucket_id: the bucket SVD was (or would have been) conditioned on, in [0, 255].
        strength: the SDEdit strength used (None for backends without one).
        controlnet_scale: the ControlNet conditioning scale used (None for backends without one).
    """

    frames_uint8: np.ndarray
    warp: WarpResult
    flow_px: np.ndarray
    motion_bucket_id: int
    strength: float | None
    controlnet_scale: float | None


def render(
    name: str,
    image_uint8: np.ndarray,
    trajectories: Trajectories,
    *,
    num_frames: int = DEFAULT_FRAMES,
    fps: int = 7,
    motion_bucket_id: int | None = None,
    strength: float | None = None,
    num_inference_steps: int = 25,
    noise_aug_strength: float = 0.02,
    seed: int = 0,
    controlnet_scale: float = 1.0,
    camera: str = "none",
    region_mask: np.ndarray | None = None,
    radius_px: float | None = None,
    engine: str = "sheet",
    grow_px: int = 0,
    object_masks: dict[int, np.ndarray] | None = None,
    disparity: np.ndarray | None = None,
    layers: list[ObjectLayer] | None = None,
    settings: Settings | None = None,
    pipeline=None,
    progress: ProgressFn | None = None,
) -> DragVideo:
    """Animate `image_uint8` (H,W,3) uint8 along `trajectories` with backend `name`.

    The warp runs first (bad input is reported before any weights load), with `engine` "sheet"
    (`core.engines.warp.animate`; `region_mask` and `radius_px` apply) or "objects"
    (`core.engines.objects.animate_objects` over `layers`, or over `object_layers` with `grow_px`, the
    painted `object_masks` {drag index: (H,W) bool}, the `disparity` (H,W) (larger = nearer: the nearer
    objects in front) and `core.models.load_sam(settings)` when None; a motion brush or reach is an
    InputError there, as painted objects and a depth map are for the sheet).
    `motion_bucket_id` None takes `core.motion.suggest_motion_bucket` of the same request. `strength` None takes the backend's default. `pipeline` is what `load(name,
    settings)` returns (loaded here when None). SVD arguments are those of
    `SVDTrajectoryPipeline.__call__` (`controlnet_scale` is its `controlnet_conditioning_scale`, used by
    "svd-controlnet" only); the generator is a CPU generator seeded with `seed`, and the VAE decodes
    `SVD_DECODE_CHUNK` frames at a time (fewer when `core.memory` says they do not fit). The trained backends get the tracks of `condition_tracks_norm`.
    `progress` gets a `RenderProgress` per warped frame and per denoising step.

    Raises:
        InputError: bad input. ModelNotAvailable: the backend's weights are not configured or missing.
    """
    settings = settings or Settings.from_env()
    backend = require(name, settings)
    camera_motion = camera_of(camera)
    _check_options(fps, motion_bucket_id, strength, num_inference_steps, noise_aug_strength, controlnet_scale)
    if backend.name != "svd-controlnet":
        controlnet_scale = None
    if backend.default_strength is None:
        strength = None  # the backend takes none
    elif strength is None:
        strength = backend.default_strength
    if engine not in ENGINES:
        raise InputError(f"Unknown engine {engine!r}; choose one of {', '.join(ENGINES)}.")
    if engine == "objects" and (region_mask is not None or radius_px is not None):
        raise InputError(
            "The motion brush and the reach shape the sheet engine's field; the objects engine moves whole "
            "objects. Choose the sheet engine to use them."
        )
    if engine == "sheet" and object_masks:
        raise InputError("Painted objects are moved by the objects engine; choose it to use them.")
    if engine == "sheet" and disparity is not None:
        raise InputError("A depth map orders the objects engine's objects; choose that engine to use one.")
    report = progress or (lambda event: None)
    warp_share = 1.0 if backend.name == "warp" else _WARP_SHARE

    def warp_progress(done: int, total: int) -> None:
        report(RenderProgress("warp", done, total, round(warp_share * done / max(total, 1), 4)))

    if engine == "objects":
        if layers is None:
            from core.models import load_sam

            layers = object_layers(
                image_uint8,
                trajectories,
                masks=object_masks,
                grow_px=grow_px,
                segmenter=load_sam(settings),
                disparity=disparity,
            )
        warp = animate_objects(
            image_uint8,
            trajectories,
            num_frames,
            layers=layers,
            camera=camera_motion,
            progress=warp_progress,
            settings=settings,
        )
    else:
        layers = None
        warp = animate(
            image_uint8,
            trajectories,
            num_frames,
            region_mask=region_mask,
            camera=camera_motion,
            radius_px=radius_px,
            progress=warp_progress,
            settings=settings,
        )
    height, width = image_uint8.shape[:2]
    if motion_bucket_id is None:
        motion_bucket_id = suggest_motion_bucket(
            trajectories,
            num_frames,
            fps,
            (width, height),
            camera=camera_motion,
            region_mask=region_mask,
            radius_px=radius_px,
            layers=layers,
        )
    frames, flow_px = warp.frames_uint8, warp.flow_px
    if backend.name != "warp":
        if pipeline is None:
            pipeline = load(backend.name, settings)
        from core.models.state import attached

        # The cached SVD UNet is shared: hold it for this run, with the joint-flow patch for that backend.
        with attached(pipeline.unet, *([pipeline.joint_weights] if backend.name == "svd-joint-flow" else [])):
            frames, generated_flow_px = _run_model(
                backend.name,
                pipeline,
                image_uint8,
                warp.frames_uint8,
                condition_tracks_norm(trajectories, camera_motion, num_frames, (width, height)),
                strength=strength,
                controlnet_scale=controlnet_scale,
                num_inference_steps=num_inference_steps,
                fps=fps,
                motion_bucket_id=int(motion_bucket_id),
                noise_aug_strength=noise_aug_strength,
                seed=seed,
                report=report,
                low_vram=settings.low_vram,
            )
        if generated_flow_px is not None:
            flow_px = generated_flow_px
    return DragVideo(frames, warp, flow_px, int(motion_bucket_id), strength, controlnet_scale)


def condition_tracks_norm(
    trajectories: Trajectories, camera: CameraMotion | None, num_frames: int, image_size: tuple[int, int]
) -> np.ndarray:
    """The tracks the trained backends are conditioned on: (M,T,2) float64 in [0,1].

    The user's trajectories resampled as the warp resamples them (`Trajectories.tracks_norm`; anchors
    included: they pin), plus, when the camera moves, the camera's motion of a 3x3 grid of points at a
    quarter, half and three quarters of each side (the presets keep those inside the frame), so a
    camera move reaches a model that sees only sparse tracks.
    """
    tracks = trajectories.tracks_norm(num_frames, image_size)
    if camera is None or camera == CameraMotion():
        return tracks
    width, height = image_size
    grid_norm = np.array([[x, y] for y in (0.25, 0.5, 0.75) for x in (0.25, 0.5, 0.75)])
    grid_px = tracks_to_px(grid_norm, height, width)
    fractions = np.linspace(0.0, 1.0, num_frames)
    moved_px = np.stack([grid_px + camera.forward(grid_px, f, height, width) for f in fractions], axis=1)
    camera_tracks = np.clip((moved_px + 0.5) / [width, height], 0.0, 1.0)
    return np.concatenate([tracks, camera_tracks])


def _check_options(
    fps: int,
    motion_bucket_id: int | None,
    strength: float | None,
    steps: int,
    noise_aug_strength: float,
    controlnet_scale: float,
) -> None:
    """Reject out-of-range options before any work (the SVD pipelines check them only after loading)."""
    if not isinstance(fps, int) or fps < 1:
        raise InputError(f"The frame rate must be a whole number of at least 1, got {fps!r}.")
    if motion_bucket_id is not None and not (
        isinstance(motion_bucket_id, int) and 0 <= motion_bucket_id <= 255
    ):
        raise InputError(f"The motion bucket must be a whole number in [0, 255], got {motion_bucket_id!r}.")
    if strength is not None and not 0.0 <= strength <= 1.0:
        raise InputError(f"The strength must be in [0, 1], got {strength!r}.")
    if not isinstance(steps, int) or steps < 1:
        raise InputError(f"The number of steps must be a whole number of at least 1, got {steps!r}.")
    if not 0.0 <= noise_aug_strength <= 1.0:
        raise InputError(f"The noise augmentation must be in [0, 1], got {noise_aug_strength!r}.")
    if not (isinstance(controlnet_scale, int | float) and 0.0 <= controlnet_scale < float("inf")):
        raise InputError(f"The ControlNet scale must be a number of at least 0, got {controlnet_scale!r}.")


def _step_reporter(report: ProgressFn) -> Callable:
    """A `callback_on_step_end` that reports each denoising step as a RenderProgress."""

    def on_step(pipeline, step: int, timestep, tensors: dict) -> dict:
        total = max(int(getattr(pipeline, "num_timesteps", 0) or 0), 1)
        fraction = _WARP_SHARE + (1 - _WARP_SHARE) * (step + 1) / total
        report(RenderProgress("svd", step + 1, total, round(fraction, 4)))
        return tensors

    return on_step


def _run_model(
    name: str,
    pipe,
    image_uint8: np.ndarray,
    guide_uint8: np.ndarray,
    tracks_norm: np.ndarray,
    *,
    strength: float | None,
    controlnet_scale: float | None,
    num_inference_steps: int,
    fps: int,
    motion_bucket_id: int,
    noise_aug_strength: float,
    seed: int,
    report: ProgressFn,
    low_vram: bool,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Run backend `name`'s pipeline: frames (T,H,W,3) uint8 and, for the joint-flow backend, its
    generated flow (T-1,H,W,2) float32 px (entry t: frame t -> t+1; None for the others)."""
    import torch

    from core.pipelines.svd_common import steps_for_strength

    pipe.set_progress_bar_config(disable=True)  # progress goes through `report`
    steps = num_inference_steps if strength is None else steps_for_strength(num_inference_steps, strength)
    report(RenderProgress("svd", 0, steps, _WARP_SHARE))
    common = {
        "num_inference_steps": num_inference_steps,
        "fps": fps,
        "motion_bucket_id": motion_bucket_id,
        "noise_aug_strength": noise_aug_strength,
        "decode_chunk_size": decode_chunk_frames(*image_uint8.shape[:2], SVD_DECODE_CHUNK, low_vram),
        "generator": torch.Generator("cpu").manual_seed(seed),
        "output_type": "np",
        "callback_on_step_end": _step_reporter(report),
    }
    flow_px = None
    if name == "svd":
        out = pipe(image_uint8, guide_uint8, strength=strength, **common)
    elif name == "svd-controlnet":
        from core.controlnet_svd import flow_condition

        height, width = image_uint8.shape[:2]
        condition = flow_condition(
            tracks_norm, height, width, flow_scale_px=pipe.controlnet.config.flow_scale_px
        )
        out = pipe(
            image_uint8,
            guide_uint8,  # the pipeline uses it only below strength 1
            strength=strength,
            flow_condition=condition,
            controlnet_conditioning_scale=controlnet_scale,
            **common,
        )
    else:
        out = pipe(image_uint8, tracks_norm, num_frames=len(guide_uint8), **common)
        flow_px = video_to_flows(out.flows_px[0])
    return unit_to_uint8(np.asarray(out.frames[0])), flow_px
