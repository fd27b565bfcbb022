"""Loading SD and SVD pipelines from a hub id, a local folder, or the offline ``tiny`` preset.

- :func:`load_pipeline` is the one entry point the apps use: ``load_pipeline("sd", settings)`` or
  ``load_pipeline("svd", settings, pipeline_cls=MyPipeline)``. The stock pipeline of each model is
  loaded once per process and cached; custom pipelines are built from its components (no second load).
- Hub ids load with ``local_files_only`` when ``HF_HUB_OFFLINE`` is set; missing weights raise
  :class:`~core.errors.ModelNotAvailable` with one sentence naming the setting to change.
- ``tiny``: deterministic random-weight tiny components (the sizes of diffusers' own pipeline tests)
  and an offline CLIP tokenizer whose byte-level vocabulary is generated in code.
- :func:`load_controlnet` (SD) and :func:`load_svd_controlnet` (the flow ControlNet for SVD) load the
  optional ControlNets, cached the same way; None when their setting is empty.
- :func:`full_architecture_random`: the real SD1.5 / SVD-XT architectures with random weights, for slow
  tests and benchmarks (no download).
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import torch

from core.config import ENV_PREFIX, Settings
from core.errors import ModelNotAvailable
from core.memory import place_pipeline

ModelKind = Literal["sd", "svd"]
TINY = "tiny"

_SETTING_OF_KIND = {"sd": "sd_model", "svd": "svd_model"}
_NAME_OF_KIND = {"sd": "Stable Diffusion", "svd": "Stable Video Diffusion"}


def hub_offline() -> bool:
    """True when huggingface_hub is told not to reach the network (HF_HUB_OFFLINE=1)."""
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


# -- the offline CLIP tokenizer --------------------------------------------------------------------


def _byte_to_unicode() -> dict[int, str]:
    """The reversible byte -> printable-character table of byte-level BPE vocabularies."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, shifted = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + shifted)
            shifted += 1
    return table


def write_offline_clip_tokenizer(folder: str | Path, model_max_length: int = 77) -> Path:
    """Write a CLIP tokenizer (vocab.json, merges.txt, configs) that needs no download.

    The vocabulary holds every byte symbol, alone and as a word ending (``</w>``), plus CLIP's start and
    end tokens: 514 ids. With no merges every word is spelled out byte by byte, which is all tiny random
    text encoders need. Returns the folder.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    symbols = list(_byte_to_unicode().values())
    vocab = {s: i for i, s in enumerate(symbols)}
    vocab.update({s + "</w>": i + len(symbols) for i, s in enumerate(symbols)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    config = {"tokenizer_class": "CLIPTokenizer", "model_max_length": model_max_length}
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder


def offline_clip_tokenizer(model_max_length: int = 77):
    """A ``CLIPTokenizer`` built from :func:`write_offline_clip_tokenizer` (vocabulary size 514)."""
    from transformers import CLIPTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        return CLIPTokenizer.from_pretrained(write_offline_clip_tokenizer(tmp, model_max_length))


# -- tiny components (diffusers' own pipeline-test sizes) ------------------------------------------


def _text_encoder(tokenizer, **sizes):
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        max_position_embeddings=tokenizer.model_max_length,
        **sizes,
    )
    return CLIPTextModel(config).eval()


def tiny_sd_components(seed: int = 0) -> dict:
    """Components of a tiny SD1.5-shaped pipeline (UNet 32/64 channels, VAE factor 2), deterministic by seed."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(
            block_out_channels=(32, 64),
            layers_per_block=2,
            sample_size=32,
            in_channels=4,
            out_channels=4,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=32,
        )
        vae = AutoencoderKL(
            block_out_channels=(32, 64),
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * 2,
            up_block_types=("UpDecoderBlock2D",) * 2,
            latent_channels=4,
            sample_size=64,
        )
        tokenizer = offline_clip_tokenizer()
        text_encoder = _text_encoder(
            tokenizer,
            hidden_size=32,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=5,
            vocab_size=1000,
        )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,  # as SD1.5 ships it; img2img pipelines warn about and rewrite any other value
    )
    return {
        "unet": unet.eval(),
        "vae": vae.eval(),
        "text_encoder": text_encoder,
        "tokenizer": tokenizer,
        "scheduler": scheduler,
        "safety_checker": None,
        "feature_extractor": None,
        "image_encoder": None,
        "requires_safety_checker": False,
    }


def _svd_scheduler():
    from diffusers import EulerDiscreteScheduler

    # The scheduler config SVD(-XT) ships with.
    return EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        interpolation_type="linear",
        num_train_timesteps=1000,
        prediction_type="v_prediction",
        sigma_max=700.0,
        sigma_min=0.002,
        steps_offset=1,
        timestep_spacing="leading",
        timestep_type="continuous",
        use_karras_sigmas=True,
    )


def tiny_svd_components(seed: int = 0) -> dict:
    """Components of a tiny SVD-shaped pipeline (spatio-temporal UNet 32/64, VAE factor 2), deterministic."""
    from diffusers import AutoencoderKLTemporalDecoder, UNetSpatioTemporalConditionModel
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNetSpatioTemporalConditionModel(
            block_out_channels=(32, 64),
            layers_per_block=2,
            sample_size=32,
            in_channels=8,
            out_channels=4,
            down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
            up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
            cross_attention_dim=32,
            num_attention_heads=8,
            projection_class_embeddings_input_dim=96,
            addition_time_embed_dim=32,
        )
        vae = AutoencoderKLTemporalDecoder(
            block_out_channels=(32, 64),
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * 2,
            latent_channels=4,
        )
        image_encoder = CLIPVisionModelWithProjection(
            CLIPVisionConfig(
                hidden_size=32,
                projection_dim=32,
                num_hidden_layers=5,
                num_attention_heads=4,
                # diffusers' SVD pipeline feeds the image encoder 224x224 pixels.
                image_size=224,
                intermediate_size=37,
                patch_size=16,
            )
        )
    return {
        "unet": unet.eval(),
        "vae": vae.eval(),
        "image_encoder": image_encoder.eval(),
        "scheduler": _svd_scheduler(),
        "feature_extractor": CLIPImageProcessor(crop_size=224, size=224),
    }


# -- full-size architectures with random weights ---------------------------------------------------

FullKind = Literal["sd15", "svd_xt"]


def full_architecture_random(kind: FullKind, components: Iterable[str] | None = None, seed: int = 0) -> dict:
    """The real SD1.5 (``sd15``) or SVD-XT (``svd_xt``) architecture with random weights, no download.

    ``components`` picks a subset (e.g. ``("unet",)``): the full SVD image encoder alone is a 630M
    parameter ViT-H, so build only what a test needs. Returns a dict of components.
    """
    from diffusers import (
        AutoencoderKL,
        AutoencoderKLTemporalDecoder,
        PNDMScheduler,
        UNet2DConditionModel,
        UNetSpatioTemporalConditionModel,
    )
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    wide = (128, 256, 512, 512)
    if kind == "sd15":
        builders = {
            "unet": lambda: UNet2DConditionModel(
                sample_size=64,
                block_out_channels=(320, 640, 1280, 1280),
                down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
                cross_attention_dim=768,
                attention_head_dim=8,
            ),
            "vae": lambda: AutoencoderKL(
                block_out_channels=wide,
                down_block_types=("DownEncoderBlock2D",) * 4,
                up_block_types=("UpDecoderBlock2D",) * 4,
                layers_per_block=2,
                latent_channels=4,
                sample_size=512,
            ),
            "tokenizer": offline_clip_tokenizer,
            "text_encoder": lambda: _text_encoder(
                offline_clip_tokenizer(),
                vocab_size=49408,
                hidden_size=768,
                intermediate_size=3072,
                num_hidden_layers=12,
                num_attention_heads=12,
                hidden_act="quick_gelu",
                projection_dim=768,
            ),
            "scheduler": lambda: PNDMScheduler(
                beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", skip_prk_steps=True
            ),
        }
    elif kind == "svd_xt":
        builders = {
            # The library defaults are SVD's UNet; SVD-XT is trained for 25 frames at 576x1024.
            "unet": lambda: UNetSpatioTemporalConditionModel(sample_size=96, num_frames=25),
            "vae": lambda: AutoencoderKLTemporalDecoder(
                block_out_channels=wide,
                down_block_types=("DownEncoderBlock2D",) * 4,
                layers_per_block=2,
                latent_channels=4,
                sample_size=768,
            ),
            "image_encoder": lambda: CLIPVisionModelWithProjection(
                CLIPVisionConfig(
                    hidden_size=1280,
                    intermediate_size=5120,
                    num_hidden_layers=32,
                    num_attention_heads=16,
                    patch_size=14,
                    image_size=224,
                    projection_dim=1024,
                )
            ),
            "scheduler": _svd_scheduler,
            "feature_extractor": CLIPImageProcessor,
        }
    else:
        raise ValueError(f"kind must be 'sd15' or 'svd_xt', got {kind!r}")
    wanted = list(builders) if components is None else list(components)
    unknown = set(wanted) - set(builders)
    if unknown:
        raise ValueError(f"unknown components {sorted(unknown)} for {kind}; choose from {list(builders)}")
    built = {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for name in wanted:
            module = builders[name]()
            built[name] = module.eval() if isinstance(module, torch.nn.Module) else module
    return built


# -- loading ---------------------------------------------------------------------------------------


def _stock_class(kind: ModelKind):
    from diffusers import StableDiffusionPipeline, StableVideoDiffusionPipeline

    return {"sd": StableDiffusionPipeline, "svd": StableVideoDiffusionPipeline}[kind]


def _missing(kind: ModelKind, model: str, why: str) -> ModelNotAvailable:
    setting = _SETTING_OF_KIND[kind]
    return ModelNotAvailable(
        f"{_NAME_OF_KIND[kind]} weights '{model}' are not available ({why}): set "
        f"{ENV_PREFIX}{setting.upper()} (or --{setting.replace('_', '-')}) to a local folder or a hub id "
        f"in your Hugging Face cache, or to '{TINY}' for offline random test weights."
    )


def load_components(kind: ModelKind, model: str, torch_dtype: torch.dtype = torch.float32) -> dict:
    """Components of the stock ``kind`` pipeline from a hub id, a local folder, or ``tiny``.

    Raises ModelNotAvailable when the weights cannot be found (offline and not cached, a wrong path).
    """
    if model == TINY:
        built = tiny_sd_components() if kind == "sd" else tiny_svd_components()
        for value in built.values():
            if isinstance(value, torch.nn.Module) and torch_dtype != torch.float32:
                value.to(torch_dtype)
        return built
    local = Path(model).expanduser()
    looks_local = local.exists() or model.startswith((".", "/", "~")) or model.count("/") > 1
    if looks_local and not (local / "model_index.json").is_file():
        raise _missing(kind, model, "no model_index.json in that folder")
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
        raise _missing(kind, model, why) from err
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

    if model == TINY:
        # A ControlNet shaped like the tiny SD UNet (zero-initialised outputs, like a fresh one).
        return ControlNetModel.from_unet(tiny_sd_components()["unet"]).to(torch_dtype).eval()
    local = Path(model).expanduser()
    try:
        return ControlNetModel.from_pretrained(
            str(local) if local.exists() else model,
            dtype=torch_dtype,
            local_files_only=hub_offline() or local.exists(),
        ).eval()
    except (OSError, ValueError) as err:
        raise ModelNotAvailable(
            f"ControlNet weights '{model}' are not available ({type(err).__name__}): set "
            f"{ENV_PREFIX}CONTROLNET_MODEL (or --controlnet-model) to a local folder or a cached hub id, "
            "or leave it empty to edit without a ControlNet."
        ) from err


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

    if model == TINY:
        # Shaped like the tiny SVD UNet and VAE, zero convs: the tiny SVD pipeline's output unchanged.
        tiny = tiny_svd_components()
        vae_scale_factor = 2 ** (len(tiny["vae"].config.block_out_channels) - 1)
        controlnet = SVDFlowControlNet.from_unet(tiny["unet"], vae_scale_factor=vae_scale_factor)
        return controlnet.to(torch_dtype).eval()
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
    raise ModelNotAvailable(
        f"Flow ControlNet weights '{model}' are not available ({why}): set {ENV_PREFIX}SVD_CONTROLNET_MODEL "
        "(or --svd-controlnet-model) to a folder written by core.training.svd_flow_controlnet "
        f"(save_pretrained), to '{TINY}' for offline random test weights, or leave it empty to go without "
        "the ControlNet backend."
    )


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


def clear_cache() -> None:
    """Forget loaded weights (tests; switching models in a long-running app)."""
    _cached_components.cache_clear()
    _cached_controlnet.cache_clear()
    _cached_svd_controlnet.cache_clear()
