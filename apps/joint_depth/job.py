"""The joint-depth job, UI-free, shared by the app and the CLI: models (with the tiny fallback), joint-weight
folders, one run from request to files and its run record.

- :func:`load_model`: the joint pipeline over the configured SD weights and the chosen joint-weights folder.
  Missing SD weights (ModelNotAvailable) fall back to the ``tiny`` preset with a notice naming KINEMA_SD_MODEL;
  no joint-weights folder means the untrained (zero-initialised) patch: stock SD images, meaningless depth.
  The SD weights stay loaded for the process (core.models caches them); :func:`run` attaches the joint patch
  with the chosen weights for the call only (core.models.state), so concurrent requests with other weights,
  and "none" after a folder, see exactly their own patch.
- Joint-weight folders: ``core.models.find_joint_weights`` (under ``Settings.joint_weights``) and
  ``core.models.joint_weights_folder``; :func:`default_weights` the one used unless another is chosen.
- :class:`JointRequest`, :func:`prepare_image`, :func:`prepare_depth`, :func:`run`, :func:`write_results`:
  one run from checked parameters to files (image PNG, 16-bit depth PNG, depth colour map, PLY point cloud).
- :func:`run_job`: all of it for a request (model, input, run, files) plus the run record ``params.json``
  (:class:`apps.common.runs.RunRecord`; :func:`record_arguments`: only the sizes the mode reads, and the size
  made); :func:`request_from_record` turns a record back into its request. An input cropped to fit the size
  is said in the job's notes, never silently.

Depth everywhere is relative disparity in [0,1], near = 1 (white in the 16-bit PNGs), as the pipeline returns
it; an uploaded depth map is read the same way (near = bright) and normalised as the pipeline's training data
(:func:`core.data.image_depth.normalize_disparity`: its 2nd / 98th percentiles to the ends of the range).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import PIL.Image

from apps.common.examples import MINI_DESCRIPTION, is_mini
from apps.common.runs import RunRecord, new_run_folder
from core.cancel import CancelToken
from core.config import ENV_PREFIX, LIMITS, Limit, Settings
from core.data.image_depth import normalize_disparity
from core.errors import InputError, ModelNotAvailable
from core.imaging import (
    colorize_depth,
    load_image,
    load_png16,
    resize_to_multiple,
    save_png16,
    signed_to_unit,
)
from core.models import TINY, check_joint_weights, find_joint_weights, joint_weights_folder, load_pipeline
from core.models.loading import JOINT_TRAIN_COMMAND
from core.models.presets import MINI
from core.models.state import JointWeights, attached
from core.outputs import atomic_path
from core.pipelines.joint_sd import MODES, JointSDPipeline
from core.pointcloud import (
    DEFAULT_FAR,
    DEFAULT_FOV_DEG,
    DEFAULT_MAX_POINTS,
    DEFAULT_NEAR,
    depth_to_point_cloud,
    write_ply,
)

SIZE_MULTIPLE = 64  # every SD-family UNet takes sides that divide by 64
MODELS = ("sd_model", "joint_weights")  # the model settings a run uses
# Steps, guidance, batch, points and sides: core.config.LIMITS ("joint_*", "side"); these are not costs.
SEED = Limit(0, 2**32 - 1, "Seed")
NEAR, FAR = Limit(1e-6, 1e6, "Near", whole=False), Limit(1e-6, 1e6, "Far", whole=False)
FOV_DEG = Limit(1.0, 170.0, "Field of view", whole=False)


def default_weights(settings: Settings) -> str:
    """The joint-weights folder used unless another is chosen: the first under ``settings.joint_weights``."""
    found = find_joint_weights(settings.joint_weights)
    return str(found[0]) if found else ""


# -- the model -------------------------------------------------------------------------------------------


@dataclass
class LoadedModel:
    """The joint pipeline in use and what the user should know about it.

    sd_model: the SD weights actually running ("tiny" after a fallback). weights: the joint-weights folder
    loaded into the patch, "" for the untrained patch. native_side: the model's own resolution in px.
    notices: sentences for the UI (fallbacks, untrained patch).
    """

    pipeline: JointSDPipeline
    sd_model: str
    weights: str
    native_side: int
    notices: list[str] = field(default_factory=list)


def _pipeline(settings: Settings) -> tuple[JointSDPipeline, str, str]:
    """The joint pipeline over the cached SD modules (no patch: :func:`run` attaches it), the SD model it runs,
    and the fallback notice ("" when the configured weights load)."""
    try:
        return load_pipeline("sd", settings, pipeline_cls=JointSDPipeline), settings.sd_model, ""
    except ModelNotAvailable as err:
        fallback = f"{err} Running on the '{TINY}' preset instead: random weights, so images and depth maps are noise."
        return (
            load_pipeline("sd", settings.replace(sd_model=TINY), pipeline_cls=JointSDPipeline),
            TINY,
            fallback,
        )


def load_model(settings: Settings, weights: str | None = "") -> LoadedModel:
    """The joint pipeline for ``settings`` with the joint-weights folder ``weights`` ("" or None: untrained).

    Falls back to the tiny preset when the SD weights are missing; raises InputError for a joint-weights
    folder that does not load onto the model (checked once per process; nothing of it stays loaded).
    """
    folder = joint_weights_folder(weights)
    pipeline, sd_model, fallback = _pipeline(settings)
    if folder:
        check_joint_weights(folder, "sd", sd_model, settings.resolved_dtype())
    notices = [fallback] if fallback else []
    if sd_model == TINY and not fallback:
        notices.append(
            f"Running on the '{TINY}' preset ({ENV_PREFIX}SD_MODEL={TINY}): random test weights, so images and "
            f"depth maps are noise. Set {ENV_PREFIX}SD_MODEL to Stable Diffusion 1.5 weights for real results."
        )
    if is_mini(sd_model):
        notices.append(f"The '{MINI}' models ({ENV_PREFIX}SD_MODEL={MINI}) are {MINI_DESCRIPTION}.")
    if not folder:
        notices.append(
            "No joint weights: the joint layers are untrained (zero-initialised), so images are plain Stable "
            f"Diffusion's and the depth maps carry no meaning. Train them with `{JOINT_TRAIN_COMMAND}` and pick the "
            f"output folder (or set {ENV_PREFIX}JOINT_WEIGHTS)."
        )
    sample_size = pipeline.unet.config.sample_size
    sample_size = sample_size if isinstance(sample_size, int) else sample_size[0]
    return LoadedModel(
        pipeline=pipeline,
        sd_model=sd_model,
        weights=folder,
        native_side=int(sample_size * pipeline.vae_scale_factor),
        notices=notices,
    )


# -- one run ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JointRequest:
    """One run's parameters. ``height`` / ``width``: the output size for "joint" (multiples of 64);
    ``side``: the longest side given inputs are resized to (a multiple of 64). Point cloud: see core.pointcloud.
    ``weights``: the joint-weights folder ("" = untrained); ``input_path``: the image (image_to_depth) or
    the depth map (depth_to_image) the mode starts from.
    """

    mode: str = "joint"
    prompt: str = ""
    negative_prompt: str = ""
    steps: int = 30
    guidance: float = 7.5
    seed: int = 0
    batch: int = 1
    height: int = 512
    width: int = 512
    side: int = 512
    near: float = DEFAULT_NEAR
    far: float = DEFAULT_FAR
    fov_deg: float = DEFAULT_FOV_DEG
    max_points: int = DEFAULT_MAX_POINTS
    weights: str = ""
    input_path: str = ""

    @classmethod
    def from_ui(cls, settings: Settings, **values: object) -> JointRequest:
        """A checked request from UI or API values (numbers may arrive as floats). Raises InputError."""
        if values.get("mode", "joint") not in MODES:
            raise InputError(f"mode must be one of {', '.join(MODES)}, got {values.get('mode')!r}.")
        sides = {}
        for name in ("height", "width", "side"):
            if name in values:
                side = settings.limit("side").check(values[name], name.capitalize())
                if side % SIZE_MULTIPLE:
                    raise InputError(
                        f"{name.capitalize()} must be a multiple of {SIZE_MULTIPLE} px, got {side}."
                    )
                sides[name] = side
        near = NEAR.check(values.get("near", DEFAULT_NEAR))
        far = FAR.check(values.get("far", DEFAULT_FAR))
        if not near < far:
            raise InputError(
                f"The point cloud's near plane ({near:g}) must be closer than its far plane ({far:g})."
            )
        return cls(
            mode=str(values.get("mode", "joint")),
            prompt=str(values.get("prompt") or ""),
            negative_prompt=str(values.get("negative_prompt") or ""),
            steps=LIMITS["joint_steps"].check(values.get("steps", cls.steps)),
            guidance=LIMITS["joint_guidance"].check(values.get("guidance", cls.guidance)),
            seed=SEED.check(values.get("seed", cls.seed)),
            batch=LIMITS["joint_batch"].check(values.get("batch", cls.batch)),
            near=near,
            far=far,
            fov_deg=FOV_DEG.check(values.get("fov_deg", DEFAULT_FOV_DEG)),
            max_points=LIMITS["joint_max_points"].check(values.get("max_points", DEFAULT_MAX_POINTS)),
            weights=str(values.get("weights") or ""),
            input_path=str(values.get("input_path") or ""),
            **sides,
        )


def _fit(picture: np.ndarray, side: int, what: str, notes: list[str] | None) -> np.ndarray:
    """`picture` centre-cropped and resized so both sides divide by 64, longest <= side; a crop that cuts part
    of it off is said in one sentence appended to `notes` (never done silently)."""
    fitted, info = resize_to_multiple(picture, multiple=SIZE_MULTIPLE, max_side=side)
    (height, width), (crop_h, crop_w) = info.source_hw, info.crop_box[2:]
    if notes is not None and crop_h * crop_w < height * width:
        out_h, out_w = info.output_hw
        notes.append(
            f"The {what} ({width}x{height}) was centre-cropped to {crop_w}x{crop_h} to make {out_w}x{out_h} "
            f"(both sides are multiples of {SIZE_MULTIPLE} px, the longest at most {side} px): "
            f"{1 - crop_h * crop_w / (height * width):.0%} of it is not used. A larger size keeps more of it."
        )
    return fitted


def prepare_image(
    path: str | Path, settings: Settings, side: int, *, notes: list[str] | None = None
) -> np.ndarray:
    """An uploaded image -> uint8 (H,W,3), centre-cropped and resized so both sides divide by 64, longest <= side.

    The size is checked against ``settings.max_image_side`` from the header, before decoding. A crop is said
    in `notes` (when given).
    """
    image = load_image(path, max_side=settings.max_image_side)
    return _fit(image, side, "image", notes)


def prepare_depth(
    path: str | Path, settings: Settings, side: int, *, notes: list[str] | None = None
) -> np.ndarray:
    """An uploaded depth map (greyscale 8/16-bit, near = bright) -> disparity float32 (H,W) in [0,1].

    Resized like :func:`prepare_image`, then normalised as training data is (percentiles 2/98 to 0/1). A
    colourised map is refused (InputError): its colours are not depth values.
    """
    depth = load_png16(path, max_side=settings.max_image_side)
    depth = _fit(depth, side, "depth map", notes)
    return signed_to_unit(normalize_disparity(depth)).astype(np.float32)


def run(
    model: LoadedModel,
    request: JointRequest,
    *,
    image_uint8: np.ndarray | None = None,
    depth_unit: np.ndarray | None = None,
    cancel: CancelToken | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Run one request -> (images uint8 (B,H,W,3), disparity float32 (B,H,W) in [0,1], near = 1).

    The given modality is returned as given (repeated B times), not after the VAE round trip the pipeline
    returns, so the files hold exactly what was uploaded (resized). Progress goes to the pipeline's tqdm bar;
    ``cancel`` is checked after every denoising step (a cancelled run raises core.cancel.Cancelled).
    """
    given = {"image_to_depth": image_uint8, "depth_to_image": depth_unit}.get(request.mode)
    if request.mode != "joint" and given is None:
        raise InputError(f"Mode {request.mode} needs its input: upload an image or a depth map first.")
    size = {} if request.mode != "joint" else {"height": request.height, "width": request.width}
    with attached(model.pipeline.unet, JointWeights(model.weights)):
        out = model.pipeline(
            request.prompt,
            image=image_uint8 if request.mode == "image_to_depth" else None,
            depth=depth_unit if request.mode == "depth_to_image" else None,
            mode=request.mode,
            negative_prompt=request.negative_prompt or None,
            num_inference_steps=request.steps,
            guidance_scale=request.guidance,
            num_images_per_prompt=request.batch,
            seed=request.seed,
            normalize_given_depth=False,  # prepare_depth normalised it already; the files keep that map
            output_type="uint8",
            callback_on_step_end=(cancel or CancelToken()).on_step_end,
            **size,
        )
    images, depth = out.images, out.depth
    if request.mode == "image_to_depth":
        images = np.repeat(image_uint8[None], request.batch, axis=0)
    elif request.mode == "depth_to_image":
        depth = np.repeat(depth_unit[None], request.batch, axis=0)
    return images, depth.astype(np.float32)


@dataclass
class RunFiles:
    """The files of one run, one entry per sample (K = 1..B), and the parameters record."""

    folder: Path
    images: list[Path]
    depth16: list[Path]
    depth_color: list[Path]
    clouds: list[Path]
    params_json: Path

    def downloads(self) -> list[Path]:
        """Every file, sample by sample, then params.json."""
        per_sample = zip(self.images, self.depth16, self.depth_color, self.clouds)
        return [path for sample in per_sample for path in sample] + [self.params_json]


def planned_files(folder: Path, batch: int) -> RunFiles:
    """The files a run of `batch` samples writes into `folder` (see :func:`write_results`)."""
    samples = range(1, batch + 1)
    return RunFiles(
        folder,
        images=[folder / f"image_{k}.png" for k in samples],
        depth16=[folder / f"depth_{k}.png" for k in samples],
        depth_color=[folder / f"depth_{k}_color.png" for k in samples],
        clouds=[folder / f"points_{k}.ply" for k in samples],
        params_json=folder / "params.json",
    )


def write_results(
    folder: Path, images_uint8: np.ndarray, depth_unit: np.ndarray, request: JointRequest
) -> RunFiles:
    """Write per sample K: ``image_K.png``, ``depth_K.png`` (16-bit, near = white), ``depth_K_color.png``
    (turbo, near = warm) and ``points_K.ply``, each through ``core.outputs.atomic_path``. The run record
    (``params.json``) is :func:`run_job`'s."""
    files = planned_files(folder, len(images_uint8))
    for k, (image, depth) in enumerate(zip(images_uint8, depth_unit)):
        with atomic_path(files.images[k]) as temp:
            PIL.Image.fromarray(image).save(temp)
        with atomic_path(files.depth16[k]) as temp:
            save_png16(temp, depth)
        with atomic_path(files.depth_color[k]) as temp:
            PIL.Image.fromarray(colorize_depth(depth, disparity=True)).save(temp)
        cloud = depth_to_point_cloud(
            image,
            depth,
            near=request.near,
            far=request.far,
            fov_deg=request.fov_deg,
            max_points=request.max_points,
        )
        with atomic_path(files.clouds[k]) as temp:
            write_ply(temp, cloud)
    return files


@dataclass
class JobResult:
    """What :func:`run_job` made: images uint8 (B,H,W,3), disparity float32 (B,H,W), the files and record;
    `notes`: sentences the user should read (an input cropped to fit)."""

    model: LoadedModel
    images_uint8: np.ndarray
    depth_unit: np.ndarray
    files: RunFiles
    record: RunRecord
    seconds: float
    notes: list[str] = field(default_factory=list)


# The sizes a mode does not read: the record leaves them out, so it never states a size the run did not use.
UNUSED_SIZES = {
    "joint": ("side",),
    "image_to_depth": ("height", "width"),
    "depth_to_image": ("height", "width"),
}


def record_arguments(request: JointRequest, size_hw: tuple[int, int]) -> dict:
    """The record's ``arguments``: the request without the sizes its mode does not read, the upload's name
    (``input``) and ``size_wh``, the size the run made (after any resize of an input)."""
    arguments = {k: v for k, v in asdict(request).items() if k not in UNUSED_SIZES[request.mode]}
    if request.input_path:
        arguments["input"] = Path(request.input_path).name
    arguments["size_wh"] = [int(size_hw[1]), int(size_hw[0])]
    return arguments


def run_job(
    request: JointRequest,
    settings: Settings,
    folder: Path | None = None,
    *,
    action: str = "cli",
    command: list[str] | None = None,
    progress: Callable[[str], None] | None = None,
    cancel: CancelToken | None = None,
) -> JobResult:
    """The whole job: model, input, run, files and the run record, in ``folder`` (default: a new run folder
    under ``settings.output_dir``). Raises InputError for bad input (a missing or unreadable upload, a joint-
    weights folder that does not load). ``progress`` gets a short text before each stage. ``cancel`` is checked
    before each stage and after every denoising step: a cancelled job raises core.cancel.Cancelled and writes
    nothing."""
    cancel = cancel or CancelToken()
    report = cancel.watch(progress)
    given, notes = {}, []
    if request.mode != "joint":
        what = "an image" if request.mode == "image_to_depth" else "a depth map"
        if not request.input_path:
            raise InputError(f"Upload {what} first.")
        prepare = prepare_image if request.mode == "image_to_depth" else prepare_depth
        name = "image_uint8" if request.mode == "image_to_depth" else "depth_unit"
        given[name] = prepare(request.input_path, settings, request.side, notes=notes)
    report("loading models")
    model = load_model(settings, request.weights)
    report(f"{request.mode.replace('_', ' ')}: {request.steps} steps")
    started = time.perf_counter()
    images, depth = run(model, request, cancel=cancel, **given)
    seconds = time.perf_counter() - started
    report("writing files")
    folder = new_run_folder(settings.output_dir, "joint_depth") if folder is None else Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = write_results(folder, images, depth, request)
    record = RunRecord(
        app="joint_depth",
        action=action,
        command=command,
        arguments=record_arguments(request, images.shape[1:3]),
        settings={
            "sd_model": model.sd_model,
            "joint_weights": model.weights,
            **{name: getattr(settings, name) for name in ("device", "dtype", "low_vram")},
        },
        outputs={path.stem: path.name for path in files.downloads() if path != files.params_json},
        timings_s={"seconds": seconds},
    )
    record.write(files.params_json)
    return JobResult(model, images, depth, files, record, seconds, notes)


# The file of a run that holds its input: the given modality of the first sample, as uploaded (resized).
INPUT_COPY = {"image_to_depth": "image_1.png", "depth_to_image": "depth_1.png"}


def request_from_record(record: RunRecord, folder: str | Path | None = None) -> JointRequest:
    """The request a joint-depth run record redoes. `folder`: where the record was read from; an input that
    is no longer where the record names it (a served app's record names only the upload's file name) is
    taken from the run's own copy there (`INPUT_COPY`), so a run redoes from its downloads."""
    if record.app != "joint_depth":
        raise InputError(f"This is a run record of the {record.app} app, not of the joint-depth app.")
    names = {f.name for f in fields(JointRequest)}
    unknown = sorted(record.arguments.keys() - names - {"input", "size_wh"})
    if unknown:
        raise InputError(f"The joint-depth run record is damaged: unknown arguments {unknown}.")
    request = JointRequest(**{k: v for k, v in record.arguments.items() if k in names})
    copy = None if folder is None else Path(folder) / INPUT_COPY.get(request.mode, "-")
    if copy is not None and copy.is_file() and not Path(request.input_path).is_absolute():
        request = replace(request, input_path=str(copy))
    return request
