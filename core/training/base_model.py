"""python -m core.training.base_model: SD and SVD base models trained FROM SCRATCH, on the shared loop.

Three kinds, each a real diffusers architecture, sized by flags (mini defaults) or a ``--config`` JSON of the
diffusers config (a file or an inline object; it overrides the size flags)::

    # 1. the image VAE (AutoencoderKL): reconstruction MSE + --kl_weight x KL, on images (+ clip frames)
    python -m core.training.base_model --kind vae --data_dir IMAGES --extra_clip_dir CLIPS --output_dir VAE
    # 2. SVD's VAE (AutoencoderKLTemporalDecoder): the image VAE's encoder, frozen, and a temporal decoder
    #    trained on clips, so SD and SVD share one latent space (and one scaling factor)
    python -m core.training.base_model --kind vae --temporal --init_vae VAE --data_dir CLIPS --output_dir TVAE
    # 1b. the image VAE's decoder fine-tuned on, its encoder frozen (the latents stay: SD trains on VAE's)
    python -m core.training.base_model --kind vae --init_vae VAE --data_dir IMAGES --output_dir VAE_FT
    # 3. SD: UNet2DConditionModel + CLIPTextModel, text -> image, the VAE frozen
    python -m core.training.base_model --kind sd --vae VAE --data_dir IMAGES --output_dir SD
    # 4. SVD: UNetSpatioTemporalConditionModel, first frame -> clip, the temporal VAE frozen
    python -m core.training.base_model --kind svd --vae TVAE --data_dir CLIPS --output_dir SVD

Data: ``--data_dir`` is an image folder with captions (:class:`core.data.image_folder.ImageCaptionFolder`) for
``sd`` and ``vae``, a clip folder (:func:`core.training.svd_base.video_dataset`) for ``svd`` and ``vae
--temporal``. The image VAE also learns the frames of ``--extra_clip_dir`` clips when given.

Losses:

- vae: ``MSE(decode(z), x) + kl_weight * KL(q(z|x) || N(0, I))`` (summed over latent elements, mean over the
  batch) with z sampled from the posterior. The saved config's ``scaling_factor`` is 1 / std of the latent
  means of the first :data:`SCALING_ITEMS` training items, as SD's is. The temporal VAE and the decoder
  fine-tune (``--init_vae``, :mod:`core.training.base_vae`) keep it and learn ``MSE(decode(z), x)`` alone: their
  encoder is frozen.
- sd: epsilon prediction at uniform DDPM timesteps of SD1.5's schedule (:func:`core.models.presets.sd_scheduler`),
  the text encoder trained with the UNet; ``--caption_dropout`` of captions become "" (classifier-free
  guidance's unconditional half). The tokenizer is the offline byte-level CLIP tokenizer.
- svd: SVD's EDM loss and conditioning exactly as the control trainers (:mod:`core.training.svd_base`). The
  CLIP image encoder is random and frozen (``--image_encoder_config`` sizes it): the first frame also enters
  as concatenated latents, and the fixed random projection still carries its content.

Saved (``--output_dir``): vae: a VAE folder (``save_pretrained``: config.json + safetensors). sd / svd: the
whole ``StableDiffusionPipeline`` (no safety checker) / ``StableVideoDiffusionPipeline`` folder, written when
the run starts (frozen parts, configs) and its trained modules rewritten at the end, so
``core.models.load_components("sd" | "svd", OUTPUT_DIR)`` loads it. Checkpoints hold only the trained modules.
"""

from __future__ import annotations

import argparse
import functools
import json
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import ConcatDataset, Dataset

from core.errors import InputError
from core.training.base_vae import decoder_fine_tune_from, load_vae, svd_vae, temporal_vae_from
from core.training.common import TrainingTask, add_common_args, check_common_args, script_main
from core.training.svd_base import P_MEAN, P_STD

KINDS = ("vae", "sd", "svd")
# Training items whose latents set the VAE's scaling factor.
SCALING_ITEMS = 64
# Subfolder of each trained module in a checkpoint and in --output_dir ("" = the folder itself).
TRAINED_FOLDERS = {
    "vae": {"vae": ""},
    "sd": {"unet": "unet", "text_encoder": "text_encoder"},
    "svd": {"unet": "unet"},
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m core.training.base_model",
        description="Train an SD or SVD base model (VAE, text-to-image, image-to-video) from scratch.",
    )
    add_common_args(parser)
    group = parser.add_argument_group("base model")
    add = group.add_argument
    add("--kind", type=str, required=True, choices=KINDS, help="What to train: vae, sd or svd.")
    add(
        "--data_dir",
        type=str,
        required=True,
        help="sd, vae: image folder with captions (metadata.jsonl). svd, vae --temporal: clip folder.",
    )
    add(
        "--data_layout",
        type=str,
        default="panda",
        choices=("panda", "webvid"),
        help="Layout of clip folders.",
    )
    add("--extra_clip_dir", type=str, default=None, help="vae: also learn the frames of these clips.")
    add(
        "--cached_clips",
        type=int,
        default=256,
        help="vae --extra_clip_dir: decoded clips kept in memory (all of them makes every epoch after the first "
        "decode-free; a 64 px 8-frame clip takes 0.4 MB).",
    )
    add("--temporal", action="store_true", help="vae: train SVD's temporal decoder on --init_vae's encoder.")
    add(
        "--init_vae",
        type=str,
        default=None,
        help="vae: a trained image VAE folder whose encoder to keep, frozen; its decoder trains on (or, with "
        "--temporal, a temporal decoder starting from it).",
    )
    add(
        "--vae",
        type=str,
        default=None,
        help="sd: the image VAE folder. svd: the temporal VAE folder, or the image VAE it shares its encoder with "
        "(then put the trained temporal VAE into OUTPUT_DIR/vae before sampling).",
    )
    add(
        "--block_out_channels",
        type=int,
        nargs="+",
        default=None,
        help="Channels per resolution level of the trained VAE or UNet (mini: VAE 32 64 64, UNets 32 64).",
    )
    add("--layers_per_block", type=int, default=None, help="Layers per level (mini: VAE 1, UNets 2).")
    add("--latent_channels", type=int, default=4, help="vae: latent channels.")
    add(
        "--config",
        type=str,
        default=None,
        help="The trained VAE's / UNet's diffusers config as a JSON file or object; overrides the size flags.",
    )
    add(
        "--encoder_config",
        type=str,
        default=None,
        help="sd: the CLIPTextConfig, svd: the CLIPVisionConfig fields, as a JSON file or object (mini sizes "
        "otherwise).",
    )
    add("--kl_weight", type=float, default=1e-6, help="vae: weight of the KL term.")
    add(
        "--caption_dropout", type=float, default=0.1, help="sd: probability of training on the empty caption."
    )
    add("--caption_column", type=str, default="text", help="sd: the metadata column of the captions.")
    add("--width", type=int, default=None, help="Clip width in pixels (default: --resolution).")
    add("--num_frames", type=int, default=8, help="Frames per training clip.")
    add("--fps", type=int, default=8, help="svd: the fps condition (SVD receives fps - 1).")
    add("--motion_bucket_id", type=int, default=127, help="svd: the motion bucket condition, 1-255.")
    add("--noise_aug_strength", type=float, default=0.02, help="svd: noise on the conditioning frame.")
    add("--conditioning_dropout", type=float, default=0.1, help="svd: chance of dropping the first frame.")
    add("--p_mean", type=float, default=P_MEAN, help="svd: mean of ln(sigma) of the training noise levels.")
    add("--p_std", type=float, default=P_STD, help="svd: standard deviation of ln(sigma).")
    # What core.training.svd_base's clip helpers read and this script does not vary.
    parser.set_defaults(
        resolution=64,
        learning_rate=1e-3,
        sample_stride=1,
        random_crop=False,
        validation_clip=0,
        motion_bucket_from_flow=False,
    )
    return parser


def read_json_option(value: str | None, flag: str) -> dict:
    """``--config``-style value -> dict: a JSON file path or an inline JSON object; {} for None."""
    if value is None:
        return {}
    path = Path(value).expanduser()
    try:
        parsed = json.loads(path.read_text() if path.is_file() else value)
    except json.JSONDecodeError as err:
        raise InputError(
            f"--{flag} must be a JSON object or a JSON file, got {value!r} ({err.msg})."
        ) from err
    if not isinstance(parsed, dict):
        raise InputError(f"--{flag} must be a JSON object, got {type(parsed).__name__}.")
    return parsed


def check_args(args: argparse.Namespace) -> None:
    """Raise InputError, naming the flag, for a value this script cannot use (and the shared flags')."""
    check_common_args(args)
    args.width = args.width or args.resolution
    if not Path(args.data_dir).is_dir():
        raise InputError(f"--data_dir {args.data_dir} is not a folder.")
    for name in ("resolution", "width"):
        if getattr(args, name) % 8:
            raise InputError(f"--{name} must be a multiple of 8, got {getattr(args, name)}.")
    if args.kind == "vae" and args.temporal and not args.init_vae:
        raise InputError("--temporal needs --init_vae: the image VAE whose encoder SVD's VAE shares.")
    if args.kind in ("sd", "svd") and not args.vae:
        raise InputError(f"--kind {args.kind} needs --vae: the trained VAE folder it encodes with.")
    for name in ("vae", "init_vae", "extra_clip_dir"):
        if getattr(args, name) and not Path(getattr(args, name)).is_dir():
            raise InputError(f"--{name} {getattr(args, name)} is not a folder.")
    for name in ("caption_dropout", "conditioning_dropout"):
        if not 0 <= getattr(args, name) <= 1:
            raise InputError(f"--{name} must be in [0, 1], got {getattr(args, name)}.")
    for name in ("kl_weight", "noise_aug_strength"):
        if getattr(args, name) < 0:
            raise InputError(f"--{name} must be 0 or more, got {getattr(args, name)}.")
    for name in ("latent_channels", "num_frames", "fps", "layers_per_block", "cached_clips"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise InputError(f"--{name} must be at least 1, got {getattr(args, name)}.")
    if args.block_out_channels is not None and min(args.block_out_channels) < 1:
        raise InputError(f"--block_out_channels must be positive, got {args.block_out_channels}.")
    if not 1 <= args.motion_bucket_id <= 255:
        raise InputError(f"--motion_bucket_id must be in [1, 255], got {args.motion_bucket_id}.")
    read_json_option(args.config, "config")
    read_json_option(args.encoder_config, "encoder_config")


# -- architectures ------------------------------------------------------------------------------------


def _sizes(args: argparse.Namespace, channels: tuple[int, ...], layers: int) -> tuple[tuple[int, ...], int]:
    return tuple(args.block_out_channels or channels), args.layers_per_block or layers


def vae_config(args: argparse.Namespace) -> dict:
    """AutoencoderKL's config: 2^(levels-1) compression (mini: 32 64 64 channels, factor 4), then --config."""
    channels, layers = _sizes(args, (32, 64, 64), 1)
    config = {
        "in_channels": 3,
        "out_channels": 3,
        "down_block_types": ["DownEncoderBlock2D"] * len(channels),
        "up_block_types": ["UpDecoderBlock2D"] * len(channels),
        "block_out_channels": list(channels),
        "layers_per_block": layers,
        "latent_channels": args.latent_channels,
        "sample_size": args.resolution,
    }
    return {**config, **read_json_option(args.config, "config")}


def _latent_side(args: argparse.Namespace, vae) -> int:
    return args.resolution // 2 ** (len(vae.config.block_out_channels) - 1)


def sd_unet(args: argparse.Namespace, vae, cross_attention_dim: int):
    """UNet2DConditionModel, SD1.5's block layout at mini size (32 64, 2 layers), then --config."""
    from diffusers import UNet2DConditionModel

    channels, layers = _sizes(args, (32, 64), 2)
    config = {
        "sample_size": _latent_side(args, vae),
        "in_channels": vae.config.latent_channels,
        "out_channels": vae.config.latent_channels,
        "block_out_channels": list(channels),
        "layers_per_block": layers,
        "down_block_types": ["CrossAttnDownBlock2D"] * (len(channels) - 1) + ["DownBlock2D"],
        "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * (len(channels) - 1),
        "cross_attention_dim": cross_attention_dim,
        "attention_head_dim": 8,
        "norm_num_groups": min(32, min(channels)),
    }
    return UNet2DConditionModel(**{**config, **read_json_option(args.config, "config")})


def svd_unet(args: argparse.Namespace, vae, cross_attention_dim: int):
    """UNetSpatioTemporalConditionModel, SVD's block layout at mini size (32 64, 2 layers), then --config."""
    from diffusers import UNetSpatioTemporalConditionModel

    channels, layers = _sizes(args, (32, 64), 2)
    time_embed = 32
    config = {
        "sample_size": _latent_side(args, vae),
        "in_channels": 2 * vae.config.latent_channels,
        "out_channels": vae.config.latent_channels,
        "block_out_channels": list(channels),
        "layers_per_block": layers,
        "down_block_types": ["CrossAttnDownBlockSpatioTemporal"] * (len(channels) - 1)
        + ["DownBlockSpatioTemporal"],
        "up_block_types": ["UpBlockSpatioTemporal"]
        + ["CrossAttnUpBlockSpatioTemporal"] * (len(channels) - 1),
        "cross_attention_dim": cross_attention_dim,
        "num_attention_heads": [max(1, c // 16) for c in channels],
        "addition_time_embed_dim": time_embed,
        "projection_class_embeddings_input_dim": 3 * time_embed,
    }
    return UNetSpatioTemporalConditionModel(**{**config, **read_json_option(args.config, "config")})


def text_encoder_for(tokenizer, args: argparse.Namespace):
    """A fresh CLIPTextModel sized for the offline tokenizer (mini: 64 wide, 2 layers), then --encoder_config."""
    from core.models.presets import clip_text_encoder

    sizes = {"hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4, "num_hidden_layers": 2}
    sizes["vocab_size"] = len(tokenizer)
    return clip_text_encoder(
        tokenizer, **{**sizes, **read_json_option(args.encoder_config, "encoder_config")}
    )


def image_encoder_for(args: argparse.Namespace):
    """A random CLIPVisionModelWithProjection (mini: 32 wide, 2 layers, 224 px input as SVD's pipeline feeds
    it), frozen; then --encoder_config."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    sizes = {
        "hidden_size": 32,
        "projection_dim": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": 64,
        "image_size": 224,
        "patch_size": 32,
    }
    config = CLIPVisionConfig(**{**sizes, **read_json_option(args.encoder_config, "encoder_config")})
    return CLIPVisionModelWithProjection(config).requires_grad_(False).eval()


# -- data ---------------------------------------------------------------------------------------------


class ClipFrames(Dataset):
    """Every frame of a clip dataset as an image item: ``pixel_values`` (3,H,W) in [-1,1].

    The last ``cached_clips`` decoded clips stay in memory: a shuffled epoch asks for each clip once per
    frame, and decoding a clip costs far more than one training image.
    """

    def __init__(self, clips: Dataset, num_frames: int, cached_clips: int = 256):
        self.clips, self.num_frames = clips, num_frames
        self._clip_pixels = functools.lru_cache(maxsize=cached_clips)(lambda i: self.clips[i]["pixel_values"])

    def __len__(self) -> int:
        return len(self.clips) * self.num_frames

    def __getitem__(self, index: int) -> dict:
        clip, frame = divmod(index, self.num_frames)
        return {"pixel_values": self._clip_pixels(clip)[frame]}


def _clips(args: argparse.Namespace, folder: str) -> Dataset:
    from core.training.svd_base import video_dataset

    return video_dataset(argparse.Namespace(**{**vars(args), "data_dir": folder}))


def _images(args: argparse.Namespace) -> Dataset:
    from core.data.image_folder import ImageCaptionFolder

    return ImageCaptionFolder(
        args.data_dir, sample_size=args.resolution, caption_column=args.caption_column, seed=args.seed
    )


def _stack_pixels(items: list[dict]) -> dict[str, torch.Tensor]:
    return {"pixel_values": torch.stack([item["pixel_values"] for item in items])}


@torch.no_grad()
def measured_scaling_factor(vae, dataset: Dataset, n_items: int = SCALING_ITEMS) -> float:
    """1 / std of the latent means of the first ``n_items`` items of ``dataset`` (SD's convention)."""
    pixels = torch.stack([dataset[i]["pixel_values"] for i in range(min(n_items, len(dataset)))])
    latents = vae.encode(pixels.to(vae.device, vae.dtype)).latent_dist.mode()
    return float(1.0 / latents.float().std())


# -- the tasks ----------------------------------------------------------------------------------------


def _save_trained(kind: str):
    def save_weights(models: dict, folder: Path) -> None:
        for name, sub in TRAINED_FOLDERS[kind].items():
            models[name].save_pretrained(folder / sub)

    return save_weights


def _load_trained(kind: str):
    from safetensors.torch import load_file

    def load_weights(models: dict, folder: Path) -> None:
        for name, sub in TRAINED_FOLDERS[kind].items():
            (file,) = (folder / sub).glob("*.safetensors")
            models[name].load_state_dict(load_file(file))

    return load_weights


def vae_task(args: argparse.Namespace) -> TrainingTask:
    """The image VAE (reconstruction + KL) or, with ``--temporal``, SVD's temporal decoder on clips."""
    from diffusers import AutoencoderKL

    if args.temporal:
        vae = temporal_vae_from(load_vae(args.init_vae), f"--init_vae {args.init_vae}")
        dataset = _clips(args, args.data_dir)
        collate = _stack_pixels
    else:
        vae = (
            decoder_fine_tune_from(load_vae(args.init_vae))
            if args.init_vae
            else AutoencoderKL(**vae_config(args))
        )
        dataset = _images(args)
        if args.extra_clip_dir:
            dataset = ConcatDataset(
                [dataset, ClipFrames(_clips(args, args.extra_clip_dir), args.num_frames, args.cached_clips)]
            )
        collate = _stack_pixels

    def compute_loss(batch: dict, models: dict) -> torch.Tensor:
        vae_ = models["vae"]
        pixels = batch["pixel_values"]
        if (
            args.init_vae
        ):  # the frozen encoder (per frame of each (B,T,3,H,W) clip when temporal), the decoder
            frames = pixels.flatten(0, 1) if args.temporal else pixels
            with torch.no_grad():
                latents = vae_.encode(frames).latent_dist.sample()
            clip = {"num_frames": pixels.shape[1]} if args.temporal else {}
            return F.mse_loss(vae_.decode(latents, **clip).sample.float(), frames.float())
        posterior = vae_.encode(pixels).latent_dist
        decoded = vae_.decode(posterior.sample()).sample
        return F.mse_loss(decoded.float(), pixels.float()) + args.kl_weight * posterior.kl().mean()

    save_trained = _save_trained("vae")

    def save_weights(models: dict, folder: Path) -> None:
        if not args.init_vae:  # a frozen encoder keeps its scaling factor
            models["vae"].register_to_config(scaling_factor=measured_scaling_factor(models["vae"], dataset))
        save_trained(models, folder)

    return TrainingTask(
        name="base_vae_temporal" if args.temporal else "base_vae_decoder" if args.init_vae else "base_vae",
        models={"vae": vae},
        dataset=dataset,
        compute_loss=compute_loss,
        save_weights=save_weights,
        load_weights=_load_trained("vae"),
        collate_fn=collate,
    )


def sd_task(args: argparse.Namespace, accelerator) -> TrainingTask:
    """Text -> image: a fresh UNet and text encoder over the frozen ``--vae``; writes the SD pipeline folder."""
    from diffusers import DDPMScheduler, StableDiffusionPipeline

    from core.models.presets import offline_clip_tokenizer, sd_scheduler
    from core.training.sd_lora import tokenize_captions

    vae = load_vae(args.vae)
    tokenizer = offline_clip_tokenizer()
    text_encoder = text_encoder_for(tokenizer, args).train()
    unet = sd_unet(args, vae, text_encoder.config.hidden_size)
    scheduler = sd_scheduler()
    noise_scheduler = DDPMScheduler.from_config(scheduler.config)
    if accelerator.is_main_process:
        StableDiffusionPipeline(
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            unet=unet,
            scheduler=scheduler,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        ).save_pretrained(args.output_dir)
    dataset = _images(args)
    empty_ids = tokenize_captions(tokenizer, [""])

    def collate(items: list[dict]) -> dict[str, torch.Tensor]:
        return {
            "pixel_values": torch.stack([item["pixel_values"] for item in items]),
            "input_ids": tokenize_captions(tokenizer, [item["caption"] for item in items]),
        }

    def compute_loss(batch: dict, models: dict) -> torch.Tensor:
        vae_, text_encoder_, unet_ = models["vae"], models["text_encoder"], models["unet"]
        with torch.no_grad():
            latents = vae_.encode(batch["pixel_values"].to(vae_.dtype)).latent_dist.sample()
        latents = latents.float() * vae_.config.scaling_factor
        noise = torch.randn_like(latents)
        timesteps = torch.randint(
            0, noise_scheduler.config.num_train_timesteps, (latents.shape[0],), device=latents.device
        )
        keep = (torch.rand(latents.shape[0], device=latents.device) >= args.caption_dropout)[:, None]
        input_ids = torch.where(keep, batch["input_ids"], empty_ids.to(latents.device))
        predicted = unet_(
            noise_scheduler.add_noise(latents, noise, timesteps), timesteps, text_encoder_(input_ids)[0]
        )
        return F.mse_loss(predicted.sample.float(), noise)

    return TrainingTask(
        name="base_sd",
        models={"unet": unet, "text_encoder": text_encoder, "vae": vae},
        dataset=dataset,
        compute_loss=compute_loss,
        save_weights=_save_trained("sd"),
        load_weights=_load_trained("sd"),
        collate_fn=collate,
    )


def svd_task(args: argparse.Namespace, accelerator) -> TrainingTask:
    """First frame -> clip: a fresh spatio-temporal UNet, SVD's EDM loss and conditioning (svd_base) over the
    frozen temporal ``--vae`` and a random frozen image encoder; writes the SVD pipeline folder."""
    from diffusers import StableVideoDiffusionPipeline
    from transformers import CLIPImageProcessor

    from core.models.presets import svd_scheduler
    from core.pipelines.svd_common import SVDPipelineBase
    from core.training import svd_base

    vae = svd_vae(args.vae)
    image_encoder = image_encoder_for(args)
    unet = svd_unet(args, vae, image_encoder.config.projection_dim)
    size = image_encoder.config.image_size
    parts = {
        "vae": vae,
        "image_encoder": image_encoder,
        "unet": unet,
        "scheduler": svd_scheduler(),
        "feature_extractor": CLIPImageProcessor(crop_size=size, size=size),
    }
    if accelerator.is_main_process:
        StableVideoDiffusionPipeline(**parts).save_pretrained(args.output_dir)
    pipe = svd_base.training_pipeline(SVDPipelineBase, parts)

    def compute_loss(batch: dict, models: dict) -> torch.Tensor:
        pixels = batch["pixel_values"]
        latents = svd_base.encode_clip_latents(pipe, pixels)
        embeddings, condition = svd_base.encode_conditioning_frames(
            pipe, pixels[:, 0], args.noise_aug_strength
        )
        embeddings, condition = svd_base.drop_conditioning(args.conditioning_dropout, embeddings, condition)
        edm = svd_base.edm_inputs(latents, args.p_mean, args.p_std)
        time_ids = svd_base.added_time_ids(args.fps, batch["motion_bucket_ids"], args.noise_aug_strength)
        return edm.loss(svd_base.unet_output(models["unet"], edm, condition, embeddings, time_ids))

    return TrainingTask(
        name="base_svd",
        models={"unet": unet, "vae": vae, "image_encoder": image_encoder},
        dataset=_clips(args, args.data_dir),
        compute_loss=compute_loss,
        save_weights=_save_trained("svd"),
        load_weights=_load_trained("svd"),
        collate_fn=svd_base.collate_clips(args),
    )


def build_task(args: argparse.Namespace, accelerator) -> TrainingTask:
    """The ``--kind`` task for :func:`core.training.common.run_training` (module docstring)."""
    if args.kind == "vae":
        return vae_task(args)
    return sd_task(args, accelerator) if args.kind == "sd" else svd_task(args, accelerator)


def main(argv: Sequence[str] | None = None) -> int:
    return script_main(build_parser, check_args, build_task, argv)


if __name__ == "__main__":
    raise SystemExit(main())
