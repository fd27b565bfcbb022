"""python -m core.training.svd_flow_lora: teach SVD to generate the optical flow of a video from its first frame.

    python -m core.training.svd_flow_lora --pretrained_model stabilityai/stable-video-diffusion-img2vid-xt \\
        --data_dir PANDA --output_dir runs/flow --resolution 320 --width 512 --num_frames 14 \\
        --flow_scale_px 16 --max_train_steps 10000 --mixed_precision bf16 --gradient_checkpointing

p(flow | first frame), the first step of the research path (SEED_NOTES, line 1). ``PANDA`` is a video folder in
the Panda-70M layout (``--data_layout webvid`` for WebVid's; see :mod:`core.data.video_folder`). For each clip of
``--num_frames`` frames:

- the target is its *flow video*: DIS flow (``--flow_method``) between consecutive frames, laid out as
  :func:`core.flow.flows_to_video` (frame 0 zero, frame t+1 the flow t -> t+1), encoded as RGB images
  (:mod:`core.flow.encoding`, components clipped at +-``--flow_scale_px`` at ``--width``) and then as SVD's
  VAE latents (:func:`core.pipelines.svd_flow.encode_flow_latents`);
- the conditioning is the clip's first RGB frame, exactly as stock SVD and the :class:`SVDFlowPipeline` build it
  (CLIP embedding and noise-augmented VAE latents on every frame, zeroed with probability
  ``--conditioning_dropout``);
- the flags, the added time ids (``[fps - 1, motion_bucket_id, noise_aug_strength]``) and the loss (EDM's with
  sigma_data = 1 in the parametrisation of diffusers' SVD scheduler, averaged over all frames) are the ones
  every SVD script shares: :mod:`core.training.svd_base`.

What trains: one LoRA adapter ``flow_lora`` on the UNet (``--rank``, alpha = rank, gaussian init, the attention
projections by default). Saved (every checkpoint and the final ``--output_dir``): ``flow_lora.safetensors`` and
``flow_encoding.json`` (the scale, relative to the width); ``SVDFlowPipeline.load_flow_lora(OUTPUT_DIR)`` loads
both.

Validation (every ``--validation_steps`` and at the end, into ``OUTPUT_DIR/validation/step-N/``): the pipeline
generates the flow of training clip ``--validation_clip`` from its first frame (CPU generator seeded ``--seed``):
``flow.mp4`` (Middlebury colours saturated at the flow scale: generated | the clip's DIS flow), ``sample.npz``
(``flows_px`` (T,H,W,2) float32 exactly as generated, ``truth_px`` the DIS flow video, ``first_frame`` uint8)
and ``metrics.json``: the settings; ``epe_px``, the mean end-point error of frames 1..T-1 against the DIS flow;
``zero_flow_epe_px``, the same for a zero-flow guess (the baseline to beat); ``encoding_floor_epe_px``, the
DIS flow's own error after encoding (what the scale's clipping costs); ``clipped_fraction`` of its components.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from core.flow.estimate import METHODS
from core.training.common import TrainingTask, add_common_args, script_main
from core.training.svd_base import (
    ValidationSampling,
    add_svd_video_args,
    added_time_ids,
    check_positive_px,
    check_svd_video_args,
    collate_clips,
    drop_conditioning,
    edm_inputs,
    encode_conditioning_frames,
    load_svd_for_training,
    training_pipeline,
    unet_output,
    video_dataset,
)

TASK_NAME = "svd_flow_lora"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m core.training.svd_flow_lora",
        description="Train a LoRA so SVD generates a video's optical flow (encoded as images) from its first frame.",
    )
    add_common_args(parser)
    group = add_svd_video_args(parser, lora=True)
    group.add_argument(
        "--flow_scale_px",
        type=float,
        default=16.0,
        help="Flow component (px, at --width) encoded as the image value 1; larger components clip. Stored "
        "relative to the width in flow_encoding.json, so the LoRA scales with the resolution it runs at.",
    )
    group.add_argument(
        "--flow_method",
        type=str,
        default="dis",
        choices=METHODS,
        help="Optical flow estimator of the training targets (core.flow; raft needs torchvision).",
    )
    return parser


def check_args(args: argparse.Namespace) -> None:
    """Raise InputError, naming the flag, for a value this script cannot use."""
    check_svd_video_args(args)
    check_positive_px(args, "flow_scale_px")


# -- data -----------------------------------------------------------------------------------------------


def clip_flow_video(pixels_signed: torch.Tensor, method: str) -> np.ndarray:
    """A clip (T,3,H,W) in [-1,1] -> its flow video (T,H,W,2) float32 px (frame 0 zero, frame t+1: t -> t+1)."""
    from core.flow import flows_to_video
    from core.flow.estimate import estimate_video_flow
    from core.imaging import from_signed

    return flows_to_video(estimate_video_flow(from_signed(pixels_signed), method))


def collate_clips_with_flow(args: argparse.Namespace) -> Callable[[list[dict]], dict[str, torch.Tensor]]:
    """``collate_clips`` plus ``flows_px`` (B,T,H,W,2) float32: each clip's flow video (estimated here, so
    ``--dataloader_num_workers`` spreads the flow estimation over processes)."""
    collate_base = collate_clips(args)

    def collate(items: list[dict]) -> dict[str, torch.Tensor]:
        batch = collate_base(items)
        flows = [clip_flow_video(item["pixel_values"], args.flow_method) for item in items]
        batch["flows_px"] = torch.from_numpy(np.stack(flows))
        return batch

    return collate


# -- the task -----------------------------------------------------------------------------------------


def build_task(args: argparse.Namespace, accelerator) -> TrainingTask:
    """The flow LoRA task for :func:`core.training.common.run_training` (module docstring)."""
    from core.flow.encoding import FlowEncoding
    from core.imaging import from_signed
    from core.lora import add_lora, load_lora, save_lora
    from core.pipelines.svd_flow import FLOW_ADAPTER_NAME, SVDFlowPipeline

    # 1. Models: SVD frozen, one LoRA on the UNet trained. The pipeline object holds the same modules: its
    #    encoders build the training conditioning and targets, and validation samples with it.
    parts = load_svd_for_training(args.pretrained_model)
    unet, vae, image_encoder = parts["unet"], parts["vae"], parts["image_encoder"]
    add_lora(unet, FLOW_ADAPTER_NAME, rank=args.rank, target_modules=args.lora_targets)  # freezes the UNet
    pipe = training_pipeline(SVDFlowPipeline, parts)
    encoding = FlowEncoding.from_scale_px(args.flow_scale_px, args.width)
    pipe.flow_encoding = encoding

    # 2. Data.
    dataset = video_dataset(args)

    # 3. The loss (module docstring).
    def compute_loss(batch: dict[str, torch.Tensor], models: dict) -> torch.Tensor:
        pixels = batch["pixel_values"]  # (B,T,3,H,W) in [-1,1]
        latents = pipe.encode_flow_video(batch["flows_px"], args.flow_scale_px).float()
        embeddings, condition = encode_conditioning_frames(pipe, pixels[:, 0], args.noise_aug_strength)
        embeddings, condition = drop_conditioning(args.conditioning_dropout, embeddings, condition)
        edm = edm_inputs(latents, args.p_mean, args.p_std)
        time_ids = added_time_ids(args.fps, batch["motion_bucket_ids"], args.noise_aug_strength)
        return edm.loss(unet_output(models["unet"], edm, condition, embeddings, time_ids))

    # 4. Weights: the adapter and the scale it was trained with.
    def save_weights(models: dict, folder: Path) -> None:
        save_lora(models["unet"], FLOW_ADAPTER_NAME, folder)
        encoding.save(folder, width=args.width)

    def load_weights(models: dict, folder: Path) -> None:
        load_lora(models["unet"], folder, FLOW_ADAPTER_NAME)

    # 5. Validation: the flow pipeline on a training clip's first frame.
    def validate(models: dict, step: int, folder: Path) -> None:
        item = dataset[args.validation_clip]
        render_flow_sample(
            pipe,
            from_signed(item["pixel_values"]),
            clip_flow_video(item["pixel_values"], args.flow_method),
            folder,
            ValidationSampling.from_args(args, item),
            flow_scale_px=args.flow_scale_px,
        )

    return TrainingTask(
        name=TASK_NAME,
        models={"unet": unet, "vae": vae, "image_encoder": image_encoder},
        dataset=dataset,
        compute_loss=compute_loss,
        save_weights=save_weights,
        load_weights=load_weights,
        collate_fn=collate_clips_with_flow(args),
        validate=validate,
    )


def mean_epe(flows_px: np.ndarray, truth_px: np.ndarray) -> float:
    """Mean end-point error (px) over frames 1..T-1 (frame 0 is zero by the convention) and all pixels."""
    return float(np.linalg.norm(flows_px[1:] - truth_px[1:], axis=-1).mean())


def render_flow_sample(
    pipe,
    clip_uint8: np.ndarray,
    truth_px: np.ndarray,
    folder: Path,
    sampling: ValidationSampling,
    *,
    flow_scale_px: float,
) -> dict:
    """Generate the flow video of ``clip_uint8`` (T,H,W,3) from its first frame and compare it with its flow
    video ``truth_px`` (T,H,W,2); write ``flow.mp4``, ``sample.npz`` and ``metrics.json`` into ``folder``
    (module docstring) and return the metrics."""
    from core.flow.encoding import decode_flow, encode_flow
    from core.flow.visualize import render_flow_video
    from core.video import write_video

    num_frames = clip_uint8.shape[0]
    out = pipe(
        clip_uint8[0],
        num_frames=num_frames,
        flow_scale_px=flow_scale_px,
        output_type="np",
        **sampling.pipeline_kwargs(),
    )
    flows_px = out.flows_px[0]
    truth_colors = render_flow_video(truth_px, max_magnitude=flow_scale_px)
    write_video(folder / "flow.mp4", np.concatenate([out.flow_colors[0], truth_colors], axis=2), sampling.fps)
    np.savez(folder / "sample.npz", flows_px=flows_px, truth_px=truth_px, first_frame=clip_uint8[0])
    encoded_truth = decode_flow(encode_flow(truth_px, flow_scale_px), flow_scale_px)
    metrics = {
        **sampling.record(),
        "num_frames": num_frames,
        "flow_scale_px": flow_scale_px,
        "epe_px": mean_epe(flows_px, truth_px),
        "zero_flow_epe_px": mean_epe(np.zeros_like(truth_px), truth_px),
        "encoding_floor_epe_px": mean_epe(encoded_truth, truth_px),
        "clipped_fraction": float((np.abs(truth_px[1:]) > flow_scale_px).mean()),
        "truth_max_px": float(np.abs(truth_px).max()),
    }
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


def main(argv: Sequence[str] | None = None) -> int:
    return script_main(build_parser, check_args, build_task, argv)


if __name__ == "__main__":
    raise SystemExit(main())
