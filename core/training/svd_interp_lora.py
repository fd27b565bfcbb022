"""python -m core.training.svd_interp_lora: teach SVD to inbetween from a head frame to a tail frame (LoRA).

    python -m core.training.svd_interp_lora --pretrained_model stabilityai/stable-video-diffusion-img2vid-xt \\
        --data_dir PANDA --output_dir runs/interp --resolution 320 --width 512 --num_frames 14 \\
        --max_train_steps 10000 --mixed_precision bf16 --gradient_checkpointing

``PANDA`` is a video folder in the Panda-70M layout (``--data_layout webvid`` for WebVid's; see
:mod:`core.data.video_folder`). Each item is a clip of ``--num_frames`` frames; its first frame is the head
keyframe A and its last the tail keyframe B, and SVD learns to generate the whole clip given both.

The conditioning is the ``svd-lora`` mode of :class:`core.pipelines.svd_interpolate.SVDInterpolatePipeline`,
built by the same code: A and B go through the pipeline's own encoders (CLIP image embedding, noise-augmented
VAE latents at ``--noise_aug_strength``), then :func:`~core.pipelines.svd_interpolate.head_tail_conditioning`
lays them out (A's latents on frames 0..T-2, B's on the last frame; the mean of both CLIP embeddings). With
probability ``--conditioning_dropout`` a clip's conditioning is zeroed, which is exactly the unconditional
half the pipeline's classifier-free guidance uses. The added time ids are ``[fps - 1, motion_bucket_id,
noise_aug_strength]`` in that order (SVD was trained on fps - 1, and the stock pipeline passes it so):
``--fps`` (default 7) and ``--motion_bucket_id`` (default 127), as SVD fine-tuning commonly fixes them, or
with ``--motion_bucket_from_flow`` each clip's own bucket from :func:`core.motion.motion_bucket_from_video`.

The loss is EDM's (Karras et al. 2022) with sigma_data = 1, in the parametrisation diffusers' SVD scheduler
(``EulerDiscreteScheduler``, ``v_prediction``, continuous timesteps) samples with:

- sigma ~ log-normal: ln(sigma) ~ N(``--p_mean`` 0.7, ``--p_std`` 1.6), the values commonly used for SVD
  fine-tuning (EDM's image default is -1.2, 1.2; video at SVD's noise levels wants larger sigmas);
- the noisy latents are ``x = x0 + sigma * noise`` (x0: the clip's VAE latents x scaling factor);
- preconditioning (:func:`edm_preconditioning`): ``c_in = 1 / sqrt(sigma^2 + 1)`` (the scheduler's
  ``scale_model_input``), ``c_noise = 0.25 ln(sigma)`` (its continuous timestep), ``c_skip = 1 / (sigma^2 + 1)``
  and ``c_out = -sigma / sqrt(sigma^2 + 1)`` (its ``v_prediction`` step: x0_hat = c_skip x + c_out F);
- EDM weights the denoising error by 1 / c_out^2, which makes it exactly the plain MSE between the UNet output
  F and ``(x0 - c_skip x) / c_out = (noise - sigma x0) / sqrt(sigma^2 + 1)`` (:func:`v_target`), averaged over
  all frames (the pinned head and tail included: at sampling time they too are x0 + sigma * noise).

What trains: one LoRA adapter ``interp_lora`` on the UNet (``--rank``, alpha = rank, gaussian init, the
attention projections by default; the SVD UNet has no PeftAdapterMixin, :mod:`core.lora` injects it). Saved
weights (every checkpoint and the final ``--output_dir``): ``interp_lora.safetensors``, loaded with
``core.lora.load_lora(pipe.unet, OUTPUT_DIR)``.

Validation (every ``--validation_steps`` and at the end, into ``OUTPUT_DIR/validation/step-N/``): the svd-lora
pipeline inbetweens the first and last frame of training clip ``--validation_clip`` with a CPU generator
seeded ``--seed``: ``sample.mp4``, ``sample.npz`` (``frames`` float32 (T,H,W,3) in [0,1] exactly as generated,
``head`` / ``tail`` / ``truth`` uint8) and ``metrics.json`` (the settings, and the mean absolute error of the
inbetweens against the real clip's frames next to a plain crossfade's).
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

TASK_NAME = "svd_interp_lora"
ADAPTER_NAME = "interp_lora"
P_MEAN, P_STD = 0.7, 1.6


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m core.training.svd_interp_lora",
        description="Train a LoRA so SVD generates the frames between a head and a tail keyframe.",
    )
    add_common_args(parser)
    group = parser.add_argument_group("head + tail interpolation")
    add = group.add_argument
    add(
        "--pretrained_model",
        type=str,
        default=Settings.from_env().svd_model,
        help="Stable Video Diffusion weights: a hub id (from the local cache when HF_HUB_OFFLINE=1), a folder "
        "written by save_pretrained, or 'tiny' (random test weights). Default: KINEMA_SVD_MODEL or SVD-XT.",
    )
    add("--data_dir", type=str, required=True, help="Video folder (Panda-70M or WebVid layout).")
    add(
        "--data_layout",
        type=str,
        default="panda",
        choices=("panda", "webvid"),
        help="Layout of --data_dir: panda (metadata.csv|json|jsonl + videos/) or webvid (results.csv + page dirs).",
    )
    add(
        "--width",
        type=int,
        default=512,
        help="Width of the training clips in pixels; --resolution (default 320) is their height. 320x512 is "
        "a size SVD fine-tuning commonly uses on one GPU; SVD itself was trained at 576x1024.",
    )
    add(
        "--num_frames",
        type=int,
        default=14,
        help="Frames per clip, head and tail included (SVD: 14, XT: 25).",
    )
    add("--sample_stride", type=int, default=1, help="Take every k-th frame of the source videos.")
    add(
        "--random_crop",
        action="store_true",
        help="Crop clips at a random place (fixed per clip and --seed) instead of the centre.",
    )
    add(
        "--fps",
        type=int,
        default=7,
        help="The fps condition (SVD receives fps - 1), in training and validation.",
    )
    add("--motion_bucket_id", type=int, default=127, help="The motion bucket condition, 1-255.")
    add(
        "--motion_bucket_from_flow",
        action="store_true",
        help="Condition each clip on its own motion bucket, estimated from its optical flow (core.motion), "
        "instead of --motion_bucket_id.",
    )
    add(
        "--noise_aug_strength",
        type=float,
        default=0.02,
        help="Noise added to the keyframes before VAE encoding, and its time id (the pipeline's default).",
    )
    add(
        "--conditioning_dropout",
        type=float,
        default=0.1,
        help="Probability of training a clip without its keyframes (zeroed, as the unconditional half of "
        "classifier-free guidance).",
    )
    add("--p_mean", type=float, default=P_MEAN, help="Mean of ln(sigma) of the training noise levels.")
    add(
        "--p_std",
        type=float,
        default=P_STD,
        help="Standard deviation of ln(sigma) of the training noise levels.",
    )
    add("--rank", type=int, default=4, help="LoRA rank (alpha = rank, so the adapter's scale is 1).")
    add(
        "--lora_targets",
        type=str,
        nargs="+",
        default=list(DEFAULT_TARGETS),
        help="UNet modules that get the LoRA, matched as suffixes of their dotted paths. Default: the "
        "attention projections to_k to_q to_v to_out.0 (spatial and temporal).",
    )
    add(
        "--validation_clip", type=int, default=0, help="Index of the training clip inbetweened at validation."
    )
    add("--validation_inference_steps", type=int, default=25, help="Sampling steps at validation.")
    add("--validation_min_guidance_scale", type=float, default=1.0, help="Guidance on the first frame.")
    add("--validation_max_guidance_scale", type=float, default=3.0, help="Guidance on the last frame.")
    parser.set_defaults(learning_rate=1e-4, resolution=320)
    return parser


def check_args(args: argparse.Namespace) -> None:
    """Raise InputError, naming the flag, for a value this script cannot use (and the shared flags')."""
    check_common_args(args)
    at_least = {"num_frames": 3, "sample_stride": 1, "rank": 1, "fps": 1, "validation_inference_steps": 1}
    for name, low in {**at_least, "width": 8, "validation_clip": 0}.items():
        if getattr(args, name) < low:
            raise InputError(f"--{name} must be at least {low}, got {getattr(args, name)}.")
    for name in ("resolution", "width"):
        if getattr(args, name) % 8:
            raise InputError(f"--{name} must be a multiple of 8 (SVD's VAE), got {getattr(args, name)}.")
    if not 1 <= args.motion_bucket_id <= 255:
        raise InputError(f"--motion_bucket_id must be in [1, 255], got {args.motion_bucket_id}.")
    if not 0 <= args.conditioning_dropout <= 1:
        raise InputError(f"--conditioning_dropout must be in [0, 1], got {args.conditioning_dropout}.")
    if args.noise_aug_strength < 0:
        raise InputError(f"--noise_aug_strength must be 0 or more, got {args.noise_aug_strength}.")
    if not args.p_std > 0:
        raise InputError(f"--p_std must be positive, got {args.p_std}.")
    if not Path(args.data_dir).is_dir():
        raise InputError(f"--data_dir {args.data_dir} is not a folder; give the folder holding the videos.")


# -- EDM on SVD's scheduler ---------------------------------------------------------------------------


def sample_sigmas(batch_size: int, p_mean: float, p_std: float, device=None) -> torch.Tensor:
    """Noise levels (B,) float32 with ln(sigma) ~ N(p_mean, p_std), drawn from torch's global RNG."""
    return torch.exp(torch.randn(batch_size, device=device) * p_std + p_mean)


def edm_preconditioning(
    sigmas: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """EDM's (c_skip, c_out, c_in, c_noise) for sigma_data = 1, shaped like ``sigmas``.

    They are what diffusers' ``EulerDiscreteScheduler`` (v_prediction, continuous timesteps) does when
    sampling SVD: the UNet sees ``c_in * x`` at timestep ``c_noise`` and the denoised estimate is
    ``c_skip * x + c_out * F``.
    """
    scale = sigmas**2 + 1
    return 1 / scale, -sigmas / scale.sqrt(), 1 / scale.sqrt(), 0.25 * sigmas.log()


def v_target(latents: torch.Tensor, noise: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """The UNet output that denoises ``latents + sigma * noise`` exactly: (noise - sigma x0) / sqrt(sigma^2 + 1).

    ``sigmas`` broadcasts against the latents (e.g. (B,1,1,1,1) for (B,T,C,h,w)). Equals
    ``(x0 - c_skip x) / c_out`` of :func:`edm_preconditioning`.
    """
    return (noise - sigmas * latents) / (sigmas**2 + 1).sqrt()


def added_time_ids(
    fps: int, motion_bucket_ids: torch.Tensor, noise_aug_strength: float, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """SVD's micro-conditioning (B,3): ``[fps - 1, motion_bucket_id, noise_aug_strength]`` per clip.

    The order is the UNet's; fps goes in minus one, as SVD was trained and as the stock pipeline passes it
    (:meth:`core.pipelines.svd_common.SVDPipelineBase._conditioning` builds the same row for sampling).
    """
    buckets = motion_bucket_ids.to(dtype)
    return torch.stack(
        [torch.full_like(buckets, fps - 1), buckets, torch.full_like(buckets, noise_aug_strength)], dim=1
    )


def clip_motion_bucket(pixel_values: torch.Tensor, fps: float) -> int:
    """The motion bucket of a dataset clip, (T,3,H,W) in [-1,1] at ``fps``, from its DIS optical flow."""
    from core.imaging import from_signed
    from core.motion import motion_bucket_from_video

    return motion_bucket_from_video(from_signed(pixel_values), fps)


# -- the task -----------------------------------------------------------------------------------------


def build_task(args: argparse.Namespace, accelerator) -> TrainingTask:
    """The head+tail interpolation LoRA task for :func:`core.training.common.run_training` (module docstring)."""
    from core.data.video_folder import PandaVideoDataset, WebVidDataset
    from core.imaging import from_signed
    from core.lora import add_lora, load_lora, save_lora
    from core.models import load_components
    from core.pipelines.svd_common import as_pil_rgb, encode_video_latents
    from core.pipelines.svd_interpolate import SVDInterpolatePipeline, head_tail_conditioning

    # 1. Models: SVD frozen, one LoRA on the UNet trained. The pipeline object holds the same modules: its
    #    encoders build the training conditioning, and validation samples with it.
    parts = load_components("svd", args.pretrained_model)
    unet, vae, image_encoder = parts["unet"], parts["vae"], parts["image_encoder"]
    vae.requires_grad_(False)
    image_encoder.requires_grad_(False)
    add_lora(unet, ADAPTER_NAME, rank=args.rank, target_modules=args.lora_targets)  # freezes the UNet
    scheduler_config = parts["scheduler"].config
    parametrisation = (scheduler_config.get("prediction_type"), scheduler_config.get("timestep_type"))
    if parametrisation != ("v_prediction", "continuous"):
        raise InputError(
            f"The scheduler of {args.pretrained_model} is not SVD's (v_prediction, continuous timesteps); "
            "this script trains SVD models."
        )
    pipe = SVDInterpolatePipeline(
        **{name: parts[name] for name in ("vae", "image_encoder", "unet", "scheduler", "feature_extractor")}
    )
    pipe.set_progress_bar_config(disable=True)

    # 2. Data.
    height, width = args.resolution, args.width
    sampling = {
        "sample_size": (height, width),
        "sample_n_frames": args.num_frames,
        "sample_stride": args.sample_stride,
        "crop": "random" if args.random_crop else "center",
        "seed": args.seed,
    }
    layout = PandaVideoDataset if args.data_layout == "panda" else WebVidDataset
    dataset = layout(args.data_dir, **sampling)
    if args.validation_clip >= len(dataset):
        raise InputError(
            f"--validation_clip {args.validation_clip} is past the {len(dataset)} clips of the data."
        )

    def bucket_of(item: dict) -> int:
        if args.motion_bucket_from_flow:
            return clip_motion_bucket(item["pixel_values"], item["fps"])
        return args.motion_bucket_id

    def collate(items: list[dict]) -> dict[str, torch.Tensor]:
        return {
            "pixel_values": torch.stack([item["pixel_values"] for item in items]),
            "motion_bucket_ids": torch.tensor([bucket_of(item) for item in items], dtype=torch.float32),
        }

    # 3. The loss (module docstring).
    def compute_loss(batch: dict[str, torch.Tensor], models: dict) -> torch.Tensor:
        pixels = batch["pixel_values"]  # (B,T,3,H,W) in [-1,1]
        batch_size, num_frames = pixels.shape[:2]
        with torch.no_grad():
            with pipe._vae_upcast():  # an fp16 VAE encodes in fp32 when its config asks, as in the pipeline
                latents = encode_video_latents(vae, pixels.flatten(0, 1), num_frames)
            latents = latents.unflatten(0, (batch_size, num_frames)).float()
            # The keyframes as a user gives them to the pipeline (uint8, exact: the clips came from uint8).
            keyframes = [as_pil_rgb(frame) for frame in from_signed(torch.cat([pixels[:, 0], pixels[:, -1]]))]
            embeddings, condition, _ = pipe._encode_frames(
                keyframes, height, width, args.noise_aug_strength, None, pixels.device, clean=False
            )
        head, tail = slice(0, batch_size), slice(batch_size, None)
        both = head_tail_conditioning(
            condition[head], condition[tail], embeddings[head], embeddings[tail], num_frames
        )
        dropped = torch.rand(batch_size, device=pixels.device) < args.conditioning_dropout
        keep = (~dropped).to(embeddings.dtype)[:, None, None]
        image_embeddings = both.image_embeddings * keep
        image_latents = both.image_latents * keep[..., None, None]

        sigmas = sample_sigmas(batch_size, args.p_mean, args.p_std, pixels.device)
        noise = torch.randn_like(latents)
        sigmas_5d = sigmas[:, None, None, None, None]
        noisy = latents + sigmas_5d * noise
        _, _, c_in, c_noise = edm_preconditioning(sigmas_5d)
        model_input = torch.cat([c_in * noisy, image_latents.to(noisy.dtype)], dim=2)
        time_ids = added_time_ids(args.fps, batch["motion_bucket_ids"], args.noise_aug_strength)
        predicted = models["unet"](
            model_input,
            c_noise.flatten(),
            encoder_hidden_states=image_embeddings,
            added_time_ids=time_ids.to(pixels.device),
            return_dict=False,
        )[0]
        return F.mse_loss(predicted.float(), v_target(latents, noise, sigmas_5d))

    # 4. Weights: the adapter alone.
    def save_weights(models: dict, folder: Path) -> None:
        save_lora(models["unet"], ADAPTER_NAME, folder)

    def load_weights(models: dict, folder: Path) -> None:
        load_lora(models["unet"], folder, ADAPTER_NAME)

    # 5. Validation: the svd-lora pipeline on a training clip's ends.
    def validate(models: dict, step: int, folder: Path) -> None:
        item = dataset[args.validation_clip]
        render_inbetweens(
            pipe,
            from_signed(item["pixel_values"]),
            folder,
            fps=args.fps,
            motion_bucket_id=bucket_of(item),
            noise_aug_strength=args.noise_aug_strength,
            num_inference_steps=args.validation_inference_steps,
            min_guidance_scale=args.validation_min_guidance_scale,
            max_guidance_scale=args.validation_max_guidance_scale,
            seed=args.seed,
        )

    return TrainingTask(
        name=TASK_NAME,
        models={"unet": unet, "vae": vae, "image_encoder": image_encoder},
        dataset=dataset,
        compute_loss=compute_loss,
        save_weights=save_weights,
        load_weights=load_weights,
        collate_fn=collate,
        validate=validate,
    )


def render_inbetweens(
    pipe,
    truth_uint8: np.ndarray,
    folder: Path,
    *,
    fps: int,
    motion_bucket_id: int,
    noise_aug_strength: float,
    num_inference_steps: int,
    min_guidance_scale: float,
    max_guidance_scale: float,
    seed: int,
) -> dict:
    """Inbetween the first and last frame of ``truth_uint8`` (T,H,W,3) with the svd-lora mode; write
    ``sample.mp4``, ``sample.npz`` and ``metrics.json`` into ``folder`` (module docstring); return the metrics."""
    from core.imaging import unit_to_uint8
    from core.video import write_video

    settings = {
        "fps": fps,
        "motion_bucket_id": motion_bucket_id,
        "noise_aug_strength": noise_aug_strength,
        "num_inference_steps": num_inference_steps,
        "min_guidance_scale": min_guidance_scale,
        "max_guidance_scale": max_guidance_scale,
    }
    num_frames = truth_uint8.shape[0]
    head, tail = truth_uint8[0], truth_uint8[-1]
    frames_unit = pipe(
        head,
        tail,
        mode="svd-lora",
        num_frames=num_frames,
        generator=torch.Generator().manual_seed(seed),
        output_type="np",
        **settings,
    ).frames[0]
    write_video(folder / "sample.mp4", unit_to_uint8(frames_unit), fps)
    np.savez(
        folder / "sample.npz", frames=frames_unit.astype(np.float32), head=head, tail=tail, truth=truth_uint8
    )
    truth_unit = truth_uint8.astype(np.float32) / 255
    ramp = np.linspace(0, 1, num_frames, dtype=np.float32)[:, None, None, None]
    crossfade = (1 - ramp) * truth_unit[0] + ramp * truth_unit[-1]
    inner = slice(1, num_frames - 1)
    metrics = {
        "seed": seed,
        "num_frames": num_frames,
        **settings,
        "inbetween_mae": float(np.abs(frames_unit[inner] - truth_unit[inner]).mean()),
        "crossfade_mae": float(np.abs(crossfade[inner] - truth_unit[inner]).mean()),
    }
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


def main(argv: Sequence[str] | None = None) -> int:
    return script_main(build_parser, check_args, build_task, argv)


if __name__ == "__main__":
    raise SystemExit(main())
