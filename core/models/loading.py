"""Every loader: SD, SVD, their ControlNets, SAM, the joint video+flow model, joint-weight folders; missing
weights.

- :func:`load_pipeline` is the one entry point the apps use: ``load_pipeline("sd", settings)`` or
  ``load_pipeline("svd", settings, pipeline_cls=MyPipeline)``. The stock pipeline of each model is
  loaded once per process and cached; custom pipelines are built from its components (no second load).
  Those cached modules are shared: what a run attaches to them goes through :mod:`core.models.state`.
- A model setting holds a hub id, a local folder, or a preset name (:mod:`core.models.presets`, e.g. ``tiny``).
  Hub ids load with ``local_files_only`` when ``HF_HUB_OFFLINE`` is set.
- :func:`load_controlnet` (SD) and :func:`load_svd_controlnet` (the flow ControlNet for SVD) load the
  optional ControlNets, cached the same way; None when their setting is empty.
- :func:`load_sam`: the optional SAM segmenter of the object-aware drags, cached the same way; None if unset.
- :func:`load_svd_joint_flow`: the experimental joint video+flow pipeline, with the joint weights its UNet
  carries while it runs. :func:`find_joint_weights`, :func:`joint_weights_folder`, :func:`check_joint_weights`:
  folders of trained joint weights (joint-depth app).
- Missing weights, for every model setting: :func:`missing_weights`, one sentence shape naming the env
  variable and the flag, what to set it to, and the ``tiny`` preset; every loader and app uses it.
"""

from __future__ import annotations

import functools
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from core.config import ENV_PREFIX, Settings
from core.errors import InputError, ModelNotAvailable
from core.memory import place_pipeline
from core.models.presets import TINY, ModelKind, build_preset, is_preset

if TYPE_CHECKING:
    from core.engines.sam_segment import SamSegmenter
    from core.pipelines.svd_joint_flow import SVDJointFlowPipeline

_SETTING_OF_KIND = {"sd": "sd_model", "svd": "svd_model"}
JOINT_TRAIN_COMMAND = "python -m core.training.joint_lora"
# The rank of the joint and flow LoRAs of the untrained joint video+flow patch ("tiny"): no-ops until trained.
FRESH_JOINT_FLOW_LORA_RANK = 4


def hub_offline() -> bool:
    """True when huggingface_hub is told not to reach the network (HF_HUB_OFFLINE=1)."""
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


# -- missing weights: one sentence for every model setting -----------------------------------------


@dataclass(frozen=True)
class WeightsSetting:
    """How :func:`missing_weights` speaks of one model setting.

    what: the model's name ("Stable Diffusion"). where: what to set it to. tiny: what the ``tiny`` preset gives
    for it. otherwise: a further way out ("leave it empty to ..."), or "".
    """

    what: str
    where: str
    tiny: str = "offline random test weights"
    otherwise: str = ""


_HUB_OR_FOLDER = "a local folder or a hub id in your Hugging Face cache"
WEIGHT_SETTINGS: dict[str, WeightsSetting] = {
    "sd_model": WeightsSetting("Stable Diffusion", _HUB_OR_FOLDER),
    "svd_model": WeightsSetting("Stable Video Diffusion", _HUB_OR_FOLDER),
    "controlnet_model": WeightsSetting(
        "ControlNet", _HUB_OR_FOLDER, otherwise="leave it empty to edit without a ControlNet"
    ),
    "svd_controlnet_model": WeightsSetting(
        "Flow ControlNet",
        "a folder written by core.training.svd_flow_controlnet (save_pretrained)",
        otherwise="leave it empty to go without the ControlNet backend",
    ),
    "svd_joint_flow_model": WeightsSetting(
        "Joint video+flow",
        "a folder written by python -m core.training.svd_joint_flow",
        tiny="an untrained patch on the configured SVD",
    ),
    "sam_model": WeightsSetting(
        "SAM",
        "a folder of SamModel and SamProcessor (save_pretrained) or a hub id in your Hugging Face cache",
        tiny="a random tiny SAM",
        otherwise="leave it empty to segment with GrabCut, without weights",
    ),
}


def missing_weights(setting: str, model: str, why: str) -> ModelNotAvailable:
    """The error for weights that cannot be used: one sentence naming the setting, its env variable and flag,
    what to set it to, and the ``tiny`` preset, e.g. "Stable Diffusion weights 'x' are not available (no
    model_index.json in that folder): set KINEMA_SD_MODEL (or --sd-model) to ..., or to 'tiny' for offline
    random test weights."

    ``setting``: a Settings field of :data:`WEIGHT_SETTINGS`; ``model``: its value ("" when empty: then the
    setting's further way out, "leave it empty ...", is not offered); ``why``: what went wrong, briefly.
    """
    spoken = WEIGHT_SETTINGS[setting]
    named = f" '{model}'" if model else ""
    otherwise = f", or {spoken.otherwise}" if spoken.otherwise and model else ""
    return ModelNotAvailable(
        f"{spoken.what} weights{named} are not available ({why}): set {ENV_PREFIX}{setting.upper()} (or "
        f"--{setting.replace('_', '-')}) to {spoken.where}, or to '{TINY}' for {spoken.tiny}{otherwise}."
    )


# -- loading ---------------------------------------------------------------------------------------


def names_local_path(model: str) -> bool:
    """Whether a model setting names a local path rather than a hub id (``owner/name``)."""
    return Path(model).expanduser().exists() or model.startswith((".", "/", "~")) or model.count("/") > 1


def _stock_class(kind: ModelKind):
    from diffusers import StableDiffusionPipeline, StableVideoDiffusionPipeline

    return {"sd": StableDiffusionPipeline, "svd": StableVideoDiffusionPipeline}[kind]


def load_components(kind: ModelKind, model: str, torch_dtype: torch.dtype = torch.float32) -> dict:
    """Components of the stock ``kind`` pipeline from a hub id, a local folder, or ``tiny``.

    Raises ModelNotAvailable when the weights cannot be found (offline and not cached, a wrong path).
    """
    if is_preset(model):
        built = build_preset(model, kind)
        for value in built.values():
            if isinstance(value, torch.nn.Module) and torch_dtype != torch.float32:
                value.to(torch_dtype)
        return built
    local = Path(model).expanduser()
    looks_local = names_local_path(model)
    if looks_local and not (local / "model_index.json").is_file():
        raise missing_weights(_SETTING_OF_KIND[kind], model, "no model_index.json in that folder")
    kwargs: dict = {"dtype": torch_dtype}
    if kind == "sd":
        # Users bring their own SD weights; the safety checker is theirs to add back.
        kwargs.update(safety_checker=None, requires_safety_checker=False)
    if torch_dtype == torch.float16 and not looks_local:
        kwargs["variant"] = "fp16"
    try:
        pipe = _from_pretrained(kind, str(local) if looks_local else model, kwargs)
    except (OSError, ValueError) as err:
        why = (
            "offline and not in the cache" if hub_offline() else f"{type(err).__name__}: {err}".split("\n")[0]
        )
        raise missing_weights(_SETTING_OF_KIND[kind], model, why) from err
    components = dict(pipe.components)
    if kind == "sd":
        components["requires_safety_checker"] = False
    return components


def _from_pretrained(kind: ModelKind, source: str, kwargs: dict):
    cls = _stock_class(kind)
    kwargs = {**kwargs, "local_files_only": hub_offline() or Path(source).exists()}
    try:
        return cls.from_pretrained(source, **kwargs)
    except (OSError, ValueError):
        if "variant" not in kwargs:
            raise
        # Not every repository ships an fp16 variant; the full-precision files cast down work too.
        kwargs.pop("variant")
        return cls.from_pretrained(source, **kwargs)


@functools.lru_cache(maxsize=4)
def _cached_components(kind: ModelKind, model: str, torch_dtype: torch.dtype) -> dict:
    return load_components(kind, model, torch_dtype)


def load_pipeline(kind: ModelKind, settings: Settings | None = None, pipeline_cls=None):
    """A ready pipeline of ``kind`` ("sd" or "svd") on the configured device, dtype and offload mode.

    Weights load once per process (cached by model and dtype); every call returns a new pipeline object
    over the shared modules, built with ``pipeline_cls`` (default: diffusers' stock pipeline) so custom
    pipelines that take the stock components reuse the loaded weights.
    """
    settings = settings or Settings.from_env()
    model = getattr(settings, _SETTING_OF_KIND[kind])
    dtype = settings.resolved_dtype()
    components = _cached_components(kind, model, dtype)
    cls = pipeline_cls or _stock_class(kind)
    accepted = set(cls._get_signature_keys(cls)[0]) | set(cls._get_signature_keys(cls)[1])
    pipe = cls(**{k: v for k, v in components.items() if k in accepted})
    place_pipeline(pipe, settings)
    pipe.set_progress_bar_config(disable=None)
    return pipe


@functools.lru_cache(maxsize=2)
def _cached_controlnet(model: str, torch_dtype: torch.dtype):
    from diffusers import ControlNetModel

    if is_preset(model):
        return build_preset(model, "controlnet").to(torch_dtype)
    local = Path(model).expanduser()
    try:
        return ControlNetModel.from_pretrained(
            str(local) if local.exists() else model,
            dtype=torch_dtype,
            local_files_only=hub_offline() or local.exists(),
        ).eval()
    except (OSError, ValueError) as err:
        raise missing_weights("controlnet_model", model, type(err).__name__) from err


def load_controlnet(settings: Settings | None = None):
    """The configured ControlNet (``Settings.controlnet_model``) on the device, or None when unset."""
    settings = settings or Settings.from_env()
    if not settings.controlnet_model:
        return None
    model = _cached_controlnet(settings.controlnet_model, settings.resolved_dtype())
    return model.to(settings.resolved_device())


@functools.lru_cache(maxsize=2)
def _cached_svd_controlnet(model: str, torch_dtype: torch.dtype):
    from core.controlnet_svd import SVDFlowControlNet

    if is_preset(model):
        return build_preset(model, "svd_controlnet").to(torch_dtype)
    local = Path(model).expanduser()
    config_file = local / "config.json"
    why = "no config.json in that folder"
    if config_file.is_file():
        try:
            class_name = json.loads(config_file.read_text()).get("_class_name")
            why = f"the folder holds a {class_name}, not an SVDFlowControlNet"
        except (OSError, ValueError, AttributeError):
            class_name, why = None, "its config.json is not a model config"
        if class_name == SVDFlowControlNet.__name__:
            try:
                return SVDFlowControlNet.from_pretrained(
                    str(local), dtype=torch_dtype, local_files_only=True
                ).eval()
            except (OSError, ValueError, RuntimeError) as err:
                why = f"{type(err).__name__}: {err}".split("\n")[0]
    raise missing_weights("svd_controlnet_model", model, why)


def load_svd_controlnet(settings: Settings | None = None):
    """The configured flow ControlNet for SVD (``Settings.svd_controlnet_model``) on the device, or None.

    ``""``: None. ``tiny``: ``SVDFlowControlNet.from_unet`` of the tiny SVD UNet (zero convs, so the tiny
    pipeline's output is unchanged). A folder written by ``save_pretrained``: its weights. Anything else
    raises ModelNotAvailable naming KINEMA_SVD_CONTROLNET_MODEL.
    """
    settings = settings or Settings.from_env()
    if not settings.svd_controlnet_model:
        return None
    model = _cached_svd_controlnet(settings.svd_controlnet_model, settings.resolved_dtype())
    return model.to(settings.resolved_device())


# -- the learned segmenter ----------------------------------------------------------------------------


_SAM_PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")


@functools.lru_cache(maxsize=1)
def _cached_sam(model: str, torch_dtype: torch.dtype) -> SamSegmenter:
    from transformers import AutoConfig, SamModel, SamProcessor

    from core.engines.sam_segment import SamSegmenter

    if is_preset(model):
        built = build_preset(model, "sam")
        return SamSegmenter(built["model"].to(torch_dtype), built["processor"])
    local = Path(model).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise missing_weights("sam_model", model, "no config.json in that folder")
        if not any((local / name).is_file() for name in _SAM_PROCESSOR_FILES):
            raise missing_weights(
                "sam_model", model, f"no {' or '.join(_SAM_PROCESSOR_FILES)} in that folder"
            )
    elif names_local_path(model):
        raise missing_weights("sam_model", model, "no such folder")
    source, local_only = (str(local), True) if local.is_dir() else (model, hub_offline())
    try:
        config = AutoConfig.from_pretrained(source, local_files_only=local_only)
        if config.model_type == "sam":  # another model would load into SamModel as random weights
            sam, info = SamModel.from_pretrained(
                source,
                config=config,
                dtype=torch_dtype,
                local_files_only=local_only,
                output_loading_info=True,
            )
            processor = SamProcessor.from_pretrained(source, local_files_only=local_only)
    except (OSError, ValueError) as err:
        offline = hub_offline() and not local.is_dir()
        why = "offline and not in the cache" if offline else f"{type(err).__name__}: {err}".split("\n")[0]
        raise missing_weights("sam_model", model, why) from err
    if config.model_type != "sam":
        raise missing_weights("sam_model", model, f"it holds a {config.model_type} model, not SAM")
    if info["missing_keys"]:
        raise missing_weights(
            "sam_model", model, f"its weights lack {len(info['missing_keys'])} of SAM's tensors"
        )
    return SamSegmenter(sam.eval(), processor)


def load_sam(settings: Settings | None = None) -> SamSegmenter | None:
    """The configured SAM segmenter (``Settings.sam_model``) on the device, or None when the setting is empty.

    ``tiny``: :func:`core.models.presets.tiny_sam`. A folder or hub id: its ``SamModel`` and ``SamProcessor``
    (the folder needs the processor's config beside the weights). Anything else, a folder of another model or
    with missing weights included, raises ModelNotAvailable naming KINEMA_SAM_MODEL. Loaded once per process
    (one segmenter: its last image embedding is shared too).
    """
    settings = settings or Settings.from_env()
    if not settings.sam_model:
        return None
    segmenter = _cached_sam(settings.sam_model, settings.resolved_dtype())
    segmenter.model.to(settings.resolved_device())
    return segmenter


# -- the joint video+flow model ---------------------------------------------------------------------


def load_svd_joint_flow(settings: Settings | None = None) -> SVDJointFlowPipeline:
    """The experimental joint video+flow pipeline of ``Settings.svd_joint_flow_model``, over the cached SVD.

    SVD comes from ``Settings.svd_model`` through :func:`load_pipeline` (the cached modules, device and offload
    mode every SVD pipeline shares). The pipeline's ``joint_weights`` is what its UNet must carry while it runs
    (``with core.models.state.attached(pipe.unet, pipe.joint_weights): pipe(...)``):

    - ``"tiny"``: the untrained two-modality patch with joint and flow LoRAs of rank
      :data:`FRESH_JOINT_FLOW_LORA_RANK` (zero-initialised: the video is stock SVD's), at the default flow scale;
    - a folder written by ``python -m core.training.svd_joint_flow``: its joint layers and LoRAs, and its
      ``flow_encoding.json`` (set as ``pipe.flow_encoding``).

    Raises ModelNotAvailable (:func:`missing_weights`) for an empty setting, a missing folder, or a folder
    without (fitting) joint weights or flow encoding; a folder is checked against the UNet once per process.
    """
    from core.models.state import JointWeights
    from core.pipelines.svd_joint_flow import SVDJointFlowPipeline

    settings = settings or Settings.from_env()
    source = settings.svd_joint_flow_model
    if source == TINY:
        pipe = load_pipeline("svd", settings, pipeline_cls=SVDJointFlowPipeline)
        pipe.joint_weights = JointWeights(fresh_lora_rank=FRESH_JOINT_FLOW_LORA_RANK)
        return pipe
    flow_encoding = _joint_flow_encoding(source, settings.svd_model, settings.resolved_dtype())
    pipe = load_pipeline("svd", settings, pipeline_cls=SVDJointFlowPipeline)
    pipe.flow_encoding = flow_encoding
    pipe.joint_weights = JointWeights(str(Path(source).expanduser()))
    return pipe


def _joint_flow_encoding(source: str, svd_model: str, torch_dtype: torch.dtype):
    """The flow encoding of a joint video+flow folder whose joint weights fit the SVD UNet; ModelNotAvailable."""
    from core.flow.encoding import FLOW_ENCODING_FILE, FlowEncoding
    from core.patches.joint import JOINT_FILE

    setting = "svd_joint_flow_model"
    if not source:
        raise missing_weights(setting, source, "the setting is empty")
    folder = Path(source).expanduser()
    if not folder.is_dir():
        raise missing_weights(setting, source, "no such folder")
    missing = [name for name in (JOINT_FILE, FLOW_ENCODING_FILE) if not (folder / name).is_file()]
    if missing:
        raise missing_weights(setting, source, f"no {' or '.join(missing)} in that folder")
    try:
        check_joint_weights(str(folder), "svd", svd_model, torch_dtype)
        return FlowEncoding.load(folder)
    except InputError as err:
        raise missing_weights(setting, source, str(err).rstrip(".")) from err


# -- joint-weight folders (joint-depth app) ------------------------------------------------------------


def _natural_key(path: Path) -> list:
    """Sort key that orders checkpoint-900 before checkpoint-1000."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(path))]


def find_joint_weights(root: str | Path) -> list[Path]:
    """Folders holding trained joint weights (``joint_layers.safetensors``): ``root`` itself, then its
    sub-folders and their sub-folders (a training run and its ``checkpoint-N`` folders), in natural order.

    ``root`` may also be the ``joint_layers.safetensors`` file itself; an empty or missing root gives [].
    """
    from core.patches.joint import JOINT_FILE

    if not str(root):
        return []
    root = Path(root).expanduser()
    if root.is_file():
        return [root.parent] if root.name == JOINT_FILE else []
    if not root.is_dir():
        return []
    found = [root] if (root / JOINT_FILE).is_file() else []
    for pattern in (f"*/{JOINT_FILE}", f"*/*/{JOINT_FILE}"):
        found += sorted((file.parent for file in root.glob(pattern)), key=_natural_key)
    return found


def joint_weights_folder(weights: str | None) -> str:
    """A joint-weights choice (a folder or its ``joint_layers.safetensors``) -> the folder ("" for none).

    Raises InputError for a folder without joint weights.
    """
    from core.patches.joint import JOINT_FILE

    weights = (weights or "").strip()
    if not weights:
        return ""
    folder = Path(weights).expanduser()
    if folder.is_file() and folder.name == JOINT_FILE:
        folder = folder.parent
    if not (folder / JOINT_FILE).is_file():
        raise InputError(
            f"The joint-weights folder {weights} holds no {JOINT_FILE}: pick a folder written by "
            f"{JOINT_TRAIN_COMMAND} (its output folder or a checkpoint-N folder), or none."
        )
    return str(folder)


@functools.lru_cache(maxsize=8)
def check_joint_weights(
    folder: str, kind: ModelKind, model: str, torch_dtype: torch.dtype = torch.float32, modalities: int = 2
) -> None:
    """Raise InputError unless the joint weights of ``folder`` (``JointPatch.save``) load onto the UNet of the
    ``kind`` model ``model`` (the cached one; nothing stays attached). Checked once per process per folder."""
    from core.models.state import JointWeights, attached

    with attached(_cached_components(kind, model, torch_dtype)["unet"], JointWeights(folder, modalities)):
        pass


def clear_cache() -> None:
    """Forget loaded weights (tests; switching models in a long-running app)."""
    _cached_components.cache_clear()
    _cached_controlnet.cache_clear()
    _cached_svd_controlnet.cache_clear()
    _cached_sam.cache_clear()
    check_joint_weights.cache_clear()
