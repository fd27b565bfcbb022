"""python -m core.training.joint_lora: fine-tune Stable Diffusion to generate an image and its depth together.

    python -m core.training.joint_lora --pretrained_model stable-diffusion-v1-5/stable-diffusion-v1-5 \\
        --data_dir DATA --output_dir runs/joint --resolution 512 --max_train_steps 20000

``DATA`` is an image + depth folder (:class:`core.data.image_depth.ImageDepthFolder`: ``images/``, ``depth/``,
optional ``metadata.jsonl`` captions; ``python -m core.data.precompute_depth`` fills ``depth/``). The UNet gets
the joint patch (:mod:`core.patches.joint`); what trains is the joint layers (joint attention + zero conv of
every transformer block), the joint LoRAs ``xy_lora`` / ``yx_lora`` and the depth LoRA ``y_lora`` on the
ordinary attention. Every weight of SD itself stays frozen.

The loss. A batch of n pairs is one UNet batch ``[x_1..x_n, y_1..y_n]`` (x: image latents, y: latents of the
depth map replicated to 3 channels). Choices, as the research made them where it said:

- independent noise for x_i and y_i;
- the same timestep for x_i and y_i: every sampling mode of :class:`core.pipelines.joint_sd.JointSDPipeline`
  denoises a pair at one timestep (a given modality is noised to the current timestep);
- the same text condition (the caption) for x_i and y_i; with probability ``--caption_dropout`` a pair's
  caption is replaced by the empty prompt, so both modalities also learn the unconditional half that
  classifier-free guidance uses at sampling time;
- plain MSE between the UNet output and the target of the scheduler's ``prediction_type`` (the noise for
  ``epsilon``, the velocity for ``v_prediction``), averaged over all 2n entries.

Saved weights (every checkpoint and the final ``--output_dir``): ``joint_layers.safetensors`` and
``xy_lora.safetensors``, ``yx_lora.safetensors``, ``y_lora.safetensors`` (diffusers LoRA format), the folder
``JointPatch.load`` and ``JointSDPipeline.from_stock(pipe, joint_weights=FOLDER)`` read.

Validation (every ``--validation_steps`` and at the end, into ``OUTPUT_DIR/validation/step-N/``): joint samples
for the validation prompts (``sample_K.png``, ``depth_K.png`` 16-bit, ``depth_K_color.png``, and the exact
arrays in ``sample_K.npz``), and the depth consistency figure on ``--validation_scenes`` synthetic scenes with
exact depth (:func:`core.eval.joint_depth.evaluate_depth_consistency`) in ``metrics.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from core.config import Settings
from core.errors import InputError
from core.training.common import TrainingTask, add_common_args, check_common_args, script_main
from core.training.sd_lora import diffusion_target, load_sd_for_training, tokenize_captions

logger = logging.getLogger(__name__)

TASK_NAME = "joint_lora"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m core.training.joint_lora",
        description="Train the joint patch and its LoRAs so SD generates an image and its depth map together.",
    )
    add_common_args(parser)
    group = parser.add_argument_group("joint image + depth")
    add = group.add_argument
    add(
        "--pretrained_model",
        type=str,
        default=None,
        help="Stable Diffusion 1.x weights: a hub id (from the local cache when HF_HUB_OFFLINE=1), a folder "
        "written by save_pretrained, or 'tiny' (random test weights). Default: KINEMA_SD_MODEL or SD1.5.",
    )
    add("--data_dir", type=str, required=True, help="Image + depth folder (images/, depth/, metadata.jsonl).")
    add(
        "--stored_depth",
        type=str,
        default="disparity",
        choices=("disparity", "depth"),
        help="What the maps in depth/ hold: disparity (larger = nearer, what estimators give) or depth.",
    )
    add(
        "--random_crop",
        action="store_true",
        help="Crop training images at a random place (fixed per image and --seed) instead of the centre.",
    )
    add("--default_caption", type=str, default="", help="Caption of images the metadata file does not list.")
    add("--joint_lora_rank", type=int, default=8, help="Rank of xy_lora and yx_lora on the joint attention.")
    add(
        "--y_lora_rank", type=int, default=8, help="Rank of y_lora on the ordinary attention (depth entries)."
    )
    add(
        "--caption_dropout",
        type=float,
        default=0.1,
        help="Probability of training a pair on the empty prompt (what classifier-free guidance needs).",
    )
    add(
        "--validation_prompt",
        type=str,
        action="append",
        default=None,
        help="A prompt to render joint samples for at validation (repeat the flag for several). Default: "
        "the captions of the first two training images.",
    )
    add("--validation_inference_steps", type=int, default=25, help="Sampling steps at validation.")
    add("--validation_guidance_scale", type=float, default=7.5, help="Guidance scale at validation.")
    add(
        "--validation_scenes",
        type=int,
        default=2,
        help="Synthetic scenes with exact depth on which validation measures image -> depth (0: none).",
    )
    parser.set_defaults(learning_rate=1e-4)
    return parser


def check_args(args: argparse.Namespace) -> None:
    """Fill in --pretrained_model from the settings; raise InputError, naming the flag, for a value this
    script (or the shared loop) cannot use."""
    if args.pretrained_model is None:
        args.pretrained_model = Settings.from_env().sd_model
    check_common_args(args)
    for name in ("joint_lora_rank", "y_lora_rank", "validation_inference_steps"):
        if getattr(args, name) < 1:
            raise InputError(f"--{name} must be at least 1, got {getattr(args, name)}.")
    if args.validation_scenes < 0:
        raise InputError(f"--validation_scenes must be 0 or more, got {args.validation_scenes}.")
    if not 0 <= args.caption_dropout <= 1:
        raise InputError(f"--caption_dropout must be in [0, 1], got {args.caption_dropout}.")
    if not Path(args.data_dir).is_dir():
        raise InputError(
            f"--data_dir {args.data_dir} is not a folder; give the folder holding images/ and depth/."
        )


def build_task(args: argparse.Namespace, accelerator) -> TrainingTask:
    """The joint LoRA task for :func:`core.training.common.run_training` (see the module docstring)."""
    from core.data.image_depth import ImageDepthFolder
    from core.patches.joint import apply_joint_patch

    # 1. Models: SD frozen, the joint patch and its three LoRAs trained.
    parts, noise_scheduler = load_sd_for_training(args.pretrained_model)
    unet, vae, text_encoder, tokenizer = (
        parts["unet"],
        parts["vae"],
        parts["text_encoder"],
        parts["tokenizer"],
    )
    # Adding the LoRAs freezes every UNet weight, the new joint layers included; those train too.
    patch = apply_joint_patch(
        unet, modalities=2, joint_lora_rank=args.joint_lora_rank, y_lora_rank=args.y_lora_rank
    )
    for param in patch.joint_parameters():
        param.requires_grad_(True)

    # 2. Data.
    dataset = ImageDepthFolder(
        args.data_dir,
        sample_size=args.resolution,
        crop="random" if args.random_crop else "center",
        stored=args.stored_depth,
        default_caption=args.default_caption,
        seed=args.seed,
    )

    empty_ids = tokenize_captions(tokenizer, [""])

    def collate(items: list[dict]) -> dict[str, torch.Tensor]:
        return {
            "pixel_values": torch.stack([item["pixel_values"] for item in items]),
            "depth_values": torch.stack([item["depth_values"] for item in items]),
            "input_ids": tokenize_captions(tokenizer, [item["caption"] for item in items]),
        }

    # 3. The loss over the paired batch [x_1..x_n, y_1..y_n].
    def compute_loss(batch: dict[str, torch.Tensor], models: dict) -> torch.Tensor:
        vae_, text_encoder_, unet_ = models["vae"], models["text_encoder"], models["unet"]
        n = batch["pixel_values"].shape[0]
        pixels = torch.cat([batch["pixel_values"], batch["depth_values"]]).to(vae_.dtype)
        latents = vae_.encode(pixels).latent_dist.sample() * vae_.config.scaling_factor
        noise = torch.randn_like(latents)  # independent for the two entries of a pair
        steps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (n,), device=latents.device)
        timesteps = steps.repeat(2)  # one timestep per pair
        drop = torch.rand(n, device=latents.device) < args.caption_dropout
        input_ids = torch.where(drop[:, None], empty_ids.to(latents.device), batch["input_ids"])
        text = text_encoder_(input_ids)[0]
        return pair_denoising_errors(unet_, patch, noise_scheduler, latents, noise, timesteps, text).mean()

    # 4. Weights: the joint layers and the three LoRAs, nothing of SD.
    def save_weights(models: dict, folder: Path) -> None:
        patch.save(folder)

    def load_weights(models: dict, folder: Path) -> None:
        patch.load(folder)

    # 5. Validation: joint samples and the depth figure, through the real pipeline.
    prompts = args.validation_prompt or [dataset[i]["caption"] for i in range(min(2, len(dataset)))]

    def validate(models: dict, step: int, folder: Path) -> None:
        validation_samples(
            models["vae"],
            models["text_encoder"],
            tokenizer,
            models["unet"],
            parts["scheduler"],
            folder,
            prompts=prompts,
            size=args.resolution,
            num_inference_steps=args.validation_inference_steps,
            guidance_scale=args.validation_guidance_scale,
            seed=args.seed,
            scenes=args.validation_scenes,
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


def pair_denoising_errors(
    unet,
    patch,
    noise_scheduler,
    latents: torch.Tensor,
    noise: torch.Tensor,
    timesteps: torch.Tensor,
    text: torch.Tensor,
) -> torch.Tensor:
    """The trainer's denoising error of every entry of a paired batch: float32 (2n,).

    ``latents``, ``noise`` (2n,4,h,w) and ``timesteps`` (2n,) are laid out ``[x_1..x_n, y_1..y_n]`` (image
    entries, then their depth partners); ``text`` (n,L,D) is each pair's prompt embedding, used for both of its
    entries. Entry i's error is the mean squared difference between the UNet output on the noised latents and
    the scheduler's target. The mean over all entries is the training loss; the conditioning gap
    (:mod:`core.eval.proof_sd`) reads the depth half with true and with shuffled image partners.
    """
    n = latents.shape[0] // 2
    noisy = noise_scheduler.add_noise(latents, noise, timesteps)
    patch.set_batch_layout([0] * n + [1] * n)
    predicted = unet(noisy, timesteps, torch.cat([text, text])).sample
    target = diffusion_target(noise_scheduler, latents, noise, timesteps)
    return F.mse_loss(predicted.float(), target.float(), reduction="none").flatten(1).mean(dim=1)


def validation_samples(
    vae,
    text_encoder,
    tokenizer,
    unet,
    scheduler,
    folder: Path,
    *,
    prompts: Sequence[str],
    size: int,
    num_inference_steps: int,
    guidance_scale: float,
    seed: int,
    scenes: int,
) -> dict:
    """Render joint samples (prompt k with seed ``seed + k``) and the depth figure into ``folder``.

    Writes ``sample_K.png``, ``depth_K.png`` (16-bit disparity), ``depth_K_color.png``, ``sample_K.npz``
    (``image`` float32 (H,W,3) in [0,1], ``depth`` float32 (H,W)) and ``metrics.json`` (prompts, seeds,
    settings, and per row of :func:`~core.eval.joint_depth.evaluate_depth_consistency` its AbsRel and
    delta1). Returns the metrics.
    """
    import PIL.Image

    from core.eval.joint_depth import evaluate_depth_consistency
    from core.imaging import colorize_depth, save_png16, unit_to_uint8
    from core.pipelines.joint_sd import JointSDPipeline

    pipe = JointSDPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        image_encoder=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    settings = {"num_inference_steps": num_inference_steps, "guidance_scale": guidance_scale}
    for k, prompt in enumerate(prompts):
        out = pipe(prompt, height=size, width=size, seed=seed + k, output_type="np", **settings)
        image, depth = out.images[0], out.depth[0]
        np.savez(folder / f"sample_{k}.npz", image=image, depth=depth)
        PIL.Image.fromarray(unit_to_uint8(image)).save(folder / f"sample_{k}.png")
        save_png16(folder / f"depth_{k}.png", depth)
        PIL.Image.fromarray(colorize_depth(depth, disparity=True)).save(folder / f"depth_{k}_color.png")
    metrics: dict = {
        "prompts": list(prompts),
        "seeds": [seed + k for k in range(len(prompts))],
        "size": size,
        **settings,
    }
    if scenes:
        figure = evaluate_depth_consistency(pipe, samples=scenes, size=size, seed=seed, **settings)
        metrics["depth"] = {row: {"absrel": r["absrel"], "delta1": r["delta1"]} for row, r in figure.items()}
        logger.info(
            "Validation image -> depth on %d synthetic scenes: AbsRel %.4f, delta1 %.4f (flat map: %.4f, %.4f).",
            scenes,
            figure["image_to_depth vs truth"]["absrel"],
            figure["image_to_depth vs truth"]["delta1"],
            figure["flat map vs truth"]["absrel"],
            figure["flat map vs truth"]["delta1"],
        )
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


def main(argv: Sequence[str] | None = None) -> int:
    return script_main(build_parser, check_args, build_task, argv)


if __name__ == "__main__":
    raise SystemExit(main())
