"""python -m core.training.sd_lora: a text-to-image LoRA for Stable Diffusion on a folder of captioned images.

    python -m core.training.sd_lora --pretrained_model stable-diffusion-v1-5/stable-diffusion-v1-5 \\
        --data_dir DATA --output_dir runs/style --resolution 512 --max_train_steps 5000

``DATA`` is an image folder with captions (:class:`core.data.image_folder.ImageCaptionFolder`: a
``metadata.jsonl`` / ``metadata.csv`` with ``file_name`` and ``--caption_column``, or just ``images/``).

What trains: one LoRA adapter on the UNet's attention projections, as SEED_NOTES sets them (rank ``--rank``,
alpha = rank, gaussian init, ``to_k``, ``to_q``, ``to_v``, ``to_out.0``; ``--lora_targets`` changes the
modules). The UNet, VAE and text encoder stay frozen. The loss is the MSE between the UNet output and the
target of the scheduler's ``prediction_type`` (the noise for ``epsilon``, the velocity for ``v_prediction``)
at uniform random DDPM timesteps, as in diffusers' text-to-image LoRA example.

Saved weights (every checkpoint and the final ``--output_dir``): ``pytorch_lora_weights.safetensors``, written
by :func:`core.lora.save_lora` in diffusers' LoRA format, so both of these load it::

    pipe.load_lora_weights(OUTPUT_DIR)             # diffusers' StableDiffusionPipeline
    core.lora.load_lora(pipe.unet, OUTPUT_DIR)     # our loader (adapter name from the file)

Validation (every ``--validation_steps`` and at the end, into ``OUTPUT_DIR/validation/step-N/``): the real
``StableDiffusionPipeline`` with the LoRA renders each validation prompt k with seed ``--seed + k``:
``sample_K.png`` and the exact float image in ``sample_K.npy`` ((H,W,3) in [0,1]), and ``prompts.json``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from core.config import Settings
from core.errors import InputError
from core.lora import DEFAULT_TARGETS
from core.training.common import TrainingTask, add_common_args, check_common_args, script_main

TASK_NAME = "sd_lora"
ADAPTER_NAME = "sd_lora"
# diffusers' default LoRA file name: load_lora_weights(folder) finds it without a weight_name.
WEIGHTS_NAME = "pytorch_lora_weights.safetensors"
PREDICTION_TYPES = ("epsilon", "v_prediction")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m core.training.sd_lora",
        description="Train a text-to-image LoRA for Stable Diffusion on a folder of captioned images.",
    )
    add_common_args(parser)
    group = parser.add_argument_group("text-to-image LoRA")
    add = group.add_argument
    add(
        "--pretrained_model",
        type=str,
        default=Settings.from_env().sd_model,
        help="Stable Diffusion 1.x/2.x weights: a hub id (from the local cache when HF_HUB_OFFLINE=1), a "
        "folder written by save_pretrained, or 'tiny' (random test weights). Default: KINEMA_SD_MODEL or SD1.5.",
    )
    add(
        "--data_dir",
        type=str,
        required=True,
        help="Image folder: metadata.jsonl or metadata.csv (file_name + caption) and the images it names, "
        "or images/ alone (every image gets --default_caption).",
    )
    add("--caption_column", type=str, default="text", help="The metadata column that holds the captions.")
    add("--default_caption", type=str, default="", help="Caption of images the metadata gives none.")
    add(
        "--random_crop",
        action="store_true",
        help="Crop training images at a random place (fixed per image and --seed) instead of the centre.",
    )
    add("--rank", type=int, default=4, help="LoRA rank (alpha = rank, so the adapter's scale is 1).")
    add(
        "--lora_targets",
        type=str,
        nargs="+",
        default=list(DEFAULT_TARGETS),
        help="UNet modules that get the LoRA, matched as suffixes of their dotted paths. Default: the "
        "attention projections to_k to_q to_v to_out.0.",
    )
    add(
        "--validation_prompt",
        type=str,
        action="append",
        default=None,
        help="A prompt to render at validation (repeat the flag for several). Default: the caption of the "
        "first training image.",
    )
    add("--validation_inference_steps", type=int, default=25, help="Sampling steps at validation.")
    add("--validation_guidance_scale", type=float, default=7.5, help="Guidance scale at validation.")
    parser.set_defaults(learning_rate=1e-4)
    return parser


def check_args(args: argparse.Namespace) -> None:
    """Raise InputError, naming the flag, for a value this script cannot use (and the shared flags')."""
    check_common_args(args)
    for name in ("rank", "validation_inference_steps"):
        if getattr(args, name) < 1:
            raise InputError(f"--{name} must be at least 1, got {getattr(args, name)}.")
    if not Path(args.data_dir).is_dir():
        raise InputError(f"--data_dir {args.data_dir} is not a folder; give the folder holding the images.")


def tokenize_captions(tokenizer, captions: Sequence[str]) -> torch.Tensor:
    """Token ids (N, model_max_length) int64 of ``captions``, padded and truncated as the SD pipeline does."""
    return tokenizer(
        list(captions),
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids


def diffusion_target(noise_scheduler, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor):
    """What the UNet must predict for ``noise_scheduler.add_noise(latents, noise, timesteps)``: the noise
    (``epsilon``) or the velocity (``v_prediction``). Raises InputError for other prediction types."""
    prediction_type = noise_scheduler.config.prediction_type
    if prediction_type == "epsilon":
        return noise
    if prediction_type == "v_prediction":
        return noise_scheduler.get_velocity(latents, noise, timesteps)
    raise InputError(
        f"The scheduler predicts '{prediction_type}'; training supports {' or '.join(PREDICTION_TYPES)}."
    )


def load_sd_for_training(model: str):
    """SD's components (``core.models.load_components``) with the VAE and text encoder frozen, and a
    ``DDPMScheduler`` from its scheduler's config for noising. Raises InputError when it predicts something
    other than ``PREDICTION_TYPES``; ModelNotAvailable when the weights are missing.

    Returns:
        (components dict, noise scheduler).
    """
    from diffusers import DDPMScheduler

    from core.models import load_components

    parts = load_components("sd", model)
    parts["vae"].requires_grad_(False)
    parts["text_encoder"].requires_grad_(False)
    noise_scheduler = DDPMScheduler.from_config(parts["scheduler"].config)
    prediction_type = noise_scheduler.config.prediction_type
    if prediction_type not in PREDICTION_TYPES:
        raise InputError(
            f"The scheduler of {model} predicts '{prediction_type}'; this script trains "
            f"{' or '.join(PREDICTION_TYPES)} models."
        )
    return parts, noise_scheduler


def build_task(args: argparse.Namespace, accelerator) -> TrainingTask:
    """The text-to-image LoRA task for :func:`core.training.common.run_training` (see the module docstring)."""
    from core.data.image_folder import ImageCaptionFolder
    from core.lora import add_lora, load_lora, save_lora

    # 1. Models: SD frozen, one LoRA on the UNet trained.
    parts, noise_scheduler = load_sd_for_training(args.pretrained_model)
    unet, vae, text_encoder, tokenizer = (
        parts["unet"],
        parts["vae"],
        parts["text_encoder"],
        parts["tokenizer"],
    )
    add_lora(unet, ADAPTER_NAME, rank=args.rank, target_modules=args.lora_targets)  # freezes the UNet

    # 2. Data.
    dataset = ImageCaptionFolder(
        args.data_dir,
        sample_size=args.resolution,
        caption_column=args.caption_column,
        crop="random" if args.random_crop else "center",
        default_caption=args.default_caption,
        seed=args.seed,
    )

    def collate(items: list[dict]) -> dict[str, torch.Tensor]:
        return {
            "pixel_values": torch.stack([item["pixel_values"] for item in items]),
            "input_ids": tokenize_captions(tokenizer, [item["caption"] for item in items]),
        }

    # 3. The loss.
    def compute_loss(batch: dict[str, torch.Tensor], models: dict) -> torch.Tensor:
        vae_, text_encoder_, unet_ = models["vae"], models["text_encoder"], models["unet"]
        latents = vae_.encode(batch["pixel_values"].to(vae_.dtype)).latent_dist.sample()
        latents = latents * vae_.config.scaling_factor
        noise = torch.randn_like(latents)
        timesteps = torch.randint(
            0, noise_scheduler.config.num_train_timesteps, (latents.shape[0],), device=latents.device
        )
        noisy = noise_scheduler.add_noise(latents, noise, timesteps)
        text = text_encoder_(batch["input_ids"])[0]
        predicted = unet_(noisy, timesteps, text).sample
        target = diffusion_target(noise_scheduler, latents, noise, timesteps)
        return F.mse_loss(predicted.float(), target.float())

    # 4. Weights: the adapter alone, in the file diffusers' loader looks for.
    def save_weights(models: dict, folder: Path) -> None:
        save_lora(models["unet"], ADAPTER_NAME, folder / WEIGHTS_NAME)

    def load_weights(models: dict, folder: Path) -> None:
        load_lora(models["unet"], folder / WEIGHTS_NAME, ADAPTER_NAME)

    # 5. Validation with the real pipeline.
    prompts = args.validation_prompt or dataset.captions[:1]

    def validate(models: dict, step: int, folder: Path) -> None:
        from diffusers import StableDiffusionPipeline

        pipe = StableDiffusionPipeline(**{**parts, **models})
        pipe.set_progress_bar_config(disable=True)
        render_samples(
            pipe,
            folder,
            prompts=prompts,
            size=args.resolution,
            num_inference_steps=args.validation_inference_steps,
            guidance_scale=args.validation_guidance_scale,
            seed=args.seed,
        )

    return TrainingTask(
        name=TASK_NAME,
        models={"unet": unet, "vae": vae, "text_encoder": text_encoder},
        dataset=dataset,
        compute_loss=compute_loss,
        save_weights=save_weights,
        load_weights=load_weights,
        collate_fn=collate,
        validate=validate,
    )


def render_samples(
    pipe,
    folder: Path,
    *,
    prompts: Sequence[str],
    size: int,
    num_inference_steps: int,
    guidance_scale: float,
    seed: int,
) -> list[np.ndarray]:
    """Render prompt k with a CPU generator seeded ``seed + k`` into ``folder``; return the images.

    Writes ``sample_K.png``, ``sample_K.npy`` (float32 (H,W,3) in [0,1], exact) and ``prompts.json``
    (prompts, seeds, settings), so a test or a user can reproduce any sample from the saved LoRA.
    """
    import PIL.Image

    from core.imaging import unit_to_uint8

    settings = {"size": size, "num_inference_steps": num_inference_steps, "guidance_scale": guidance_scale}
    images = []
    for k, prompt in enumerate(prompts):
        image = pipe(
            prompt,
            height=size,
            width=size,
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            generator=torch.Generator().manual_seed(seed + k),
            output_type="np",
        ).images[0]
        np.save(folder / f"sample_{k}.npy", image.astype(np.float32))
        PIL.Image.fromarray(unit_to_uint8(image)).save(folder / f"sample_{k}.png")
        images.append(image)
    record = {"prompts": list(prompts), "seeds": [seed + k for k in range(len(prompts))], **settings}
    (folder / "prompts.json").write_text(json.dumps(record, indent=2))
    return images


def main(argv: Sequence[str] | None = None) -> int:
    return script_main(build_parser, check_args, build_task, argv)


if __name__ == "__main__":
    raise SystemExit(main())
