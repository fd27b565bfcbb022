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
half the pipeline's classifier-free guidance uses. The flags, the added time ids (``[fps - 1, motion_bucket_id,
noise_aug_strength]``) and the loss (EDM's, with sigma_data = 1, in the parametrisation of diffusers' SVD
scheduler, averaged over all frames, the pinned head and tail included: at sampling time they too are
x0 + sigma * noise) are the ones every SVD script shares: :mod:`core.training.svd_base`.

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
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from core.training.common import TrainingTask, add_common_args, script_main
from core.training.svd_base import (
    ValidationSampling,
    add_svd_video_args,
    added_time_ids,
    check_svd_video_args,
    collate_clips,
    drop_conditioning,
    edm_inputs,
    encode_clip_latents,
    encode_conditioning_frames,
    load_svd_for_training,
    training_pipeline,
    unet_output,
    video_dataset,
)

TASK_NAME = "svd_interp_lora"
ADAPTER_NAME = "interp_lora"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m core.training.svd_interp_lora",
        description="Train a LoRA so SVD generates the frames between a head and a tail keyframe.",
    )
    add_common_args(parser)
    add_svd_video_args(parser, lora=True)
    return parser


def check_args(args: argparse.Namespace) -> None:
    """Raise InputError, naming the flag, for a value this script cannot use (head and tail need 3 frames)."""
    check_svd_video_args(args, min_frames=3)


# -- data ---------------------------------------------------------------------------------------------


def collate_keyframes(args: argparse.Namespace) -> Callable[[list[dict]], dict[str, torch.Tensor]]:
    """``collate_clips``'s batch plus each clip's keyframes ``head_values`` and ``tail_values`` (B,3,H,W) in
    [-1,1]: its first and last frame. The loss reads the keyframes from these keys, not from the clip, so a
    check of how much the LoRA uses its tail can give each clip another clip's tail
    (:mod:`core.eval.proof_svd`)."""
    collate = collate_clips(args)

    def collate_with_keyframes(items: list[dict]) -> dict[str, torch.Tensor]:
        batch = collate(items)
        pixels = batch["pixel_values"]
        return {**batch, "head_values": pixels[:, 0], "tail_values": pixels[:, -1]}

    return collate_with_keyframes


# -- the task -----------------------------------------------------------------------------------------


def build_task(args: argparse.Namespace, accelerator) -> TrainingTask:
    """The head+tail interpolation LoRA task for :func:`core.training.common.run_training` (module docstring)."""
    from core.imaging import from_signed
    from core.lora import add_lora, load_lora, save_lora
    from core.pipelines.svd_interpolate import SVDInterpolatePipeline, head_tail_conditioning

    # 1. Models: SVD frozen, one LoRA on the UNet trained. The pipeline object holds the same modules: its
    #    encoders build the training conditioning, and validation samples with it.
    parts = load_svd_for_training(args.pretrained_model)
    unet, vae, image_encoder = parts["unet"], parts["vae"], parts["image_encoder"]
    add_lora(unet, ADAPTER_NAME, rank=args.rank, target_modules=args.lora_targets)  # freezes the UNet
    pipe = training_pipeline(SVDInterpolatePipeline, parts)

    # 2. Data.
    dataset = video_dataset(args)

    # 3. The loss (module docstring).
    def compute_loss(batch: dict[str, torch.Tensor], models: dict) -> torch.Tensor:
        pixels = batch["pixel_values"]  # (B,T,3,H,W) in [-1,1]
        batch_size, num_frames = pixels.shape[:2]
        latents = encode_clip_latents(pipe, pixels)
        embeddings, condition = encode_conditioning_frames(
            pipe, torch.cat([batch["head_values"], batch["tail_values"]]), args.noise_aug_strength
        )
        head, tail = slice(0, batch_size), slice(batch_size, None)
        both = head_tail_conditioning(
            condition[head], condition[tail], embeddings[head], embeddings[tail], num_frames
        )
        image_embeddings, image_latents = drop_conditioning(
            args.conditioning_dropout, both.image_embeddings, both.image_latents
        )
        edm = edm_inputs(latents, args.p_mean, args.p_std)
        time_ids = added_time_ids(args.fps, batch["motion_bucket_ids"], args.noise_aug_strength)
        return edm.loss(unet_output(models["unet"], edm, image_latents, image_embeddings, time_ids))

    # 4. Weights: the adapter alone.
    def save_weights(models: dict, folder: Path) -> None:
        save_lora(models["unet"], ADAPTER_NAME, folder)

    def load_weights(models: dict, folder: Path) -> None:
        load_lora(models["unet"], folder, ADAPTER_NAME)

    # 5. Validation: the svd-lora pipeline on a training clip's ends.
    def validate(models: dict, step: int, folder: Path) -> None:
        item = dataset[args.validation_clip]
        render_inbetweens(
            pipe, from_signed(item["pixel_values"]), folder, ValidationSampling.from_args(args, item)
        )

    return TrainingTask(
        name=TASK_NAME,
        models={"unet": unet, "vae": vae, "image_encoder": image_encoder},
        dataset=dataset,
        compute_loss=compute_loss,
        save_weights=save_weights,
        load_weights=load_weights,
        collate_fn=collate_keyframes(args),
        validate=validate,
    )


def render_inbetweens(pipe, truth_uint8: np.ndarray, folder: Path, sampling: ValidationSampling) -> dict:
    """Inbetween the first and last frame of ``truth_uint8`` (T,H,W,3) with the svd-lora mode; write
    ``sample.mp4``, ``sample.npz`` and ``metrics.json`` into ``folder`` (module docstring); return the metrics."""
    from core.imaging import unit_to_uint8
    from core.video import write_video

    num_frames = truth_uint8.shape[0]
    head, tail = truth_uint8[0], truth_uint8[-1]
    frames_unit = pipe(
        head, tail, mode="svd-lora", num_frames=num_frames, output_type="np", **sampling.pipeline_kwargs()
    ).frames[0]
    write_video(folder / "sample.mp4", unit_to_uint8(frames_unit), sampling.fps)
    np.savez(
        folder / "sample.npz", frames=frames_unit.astype(np.float32), head=head, tail=tail, truth=truth_uint8
    )
    truth_unit = truth_uint8.astype(np.float32) / 255
    ramp = np.linspace(0, 1, num_frames, dtype=np.float32)[:, None, None, None]
    crossfade = (1 - ramp) * truth_unit[0] + ramp * truth_unit[-1]
    inner = slice(1, num_frames - 1)
    metrics = {
        **sampling.record(),
        "num_frames": num_frames,
        "inbetween_mae": float(np.abs(frames_unit[inner] - truth_unit[inner]).mean()),
        "crossfade_mae": float(np.abs(crossfade[inner] - truth_unit[inner]).mean()),
    }
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


def main(argv: Sequence[str] | None = None) -> int:
    return script_main(build_parser, check_args, build_task, argv)


if __name__ == "__main__":
    raise SystemExit(main())
