"""python -m core.training.svd_joint_flow: teach SVD to generate a video and its optical flow together (research).

    python -m core.training.svd_joint_flow --pretrained_model stabilityai/stable-video-diffusion-img2vid-xt \\
        --data_dir PANDA --output_dir runs/joint_flow --resolution 320 --width 512 --num_frames 14 \\
        --init_y_lora runs/flow --max_train_steps 10000 --mixed_precision bf16 --gradient_checkpointing

p(video, flow | first frame), the second step of the research path (SEED_NOTES, line 1; the first is
``core.training.svd_flow_lora``). It did not give trajectory control in the original work, and the pipeline it
trains (:mod:`core.pipelines.svd_joint_flow`) is the drag app's experimental backend. ``PANDA`` is a video folder
in the Panda-70M layout (``--data_layout webvid`` for WebVid's; see :mod:`core.data.video_folder`).

What trains: the joint patch (:mod:`core.patches.joint`) on SVD's UNet, two modalities (x = video, y = flow):
the joint layers of every spatial transformer block (joint attention + zero conv), the joint LoRAs ``xy_lora`` /
``yx_lora`` (``--joint_lora_rank``) and the flow entries' LoRA ``y_lora`` on the ordinary attention, spatial and
temporal (``--y_lora_rank``). ``--init_y_lora FOLDER`` starts ``y_lora`` from a flow LoRA written by
``svd_flow_lora`` (its attention targets, the default ones, are exactly ``y_lora``'s; ``--y_lora_rank`` must be
its rank), so the flow entries start as p(flow | image), and the flow scale then defaults to that LoRA's. All of
SVD itself stays frozen.

Per clip of ``--num_frames`` frames:

- x: the clip's VAE latents; y: the latents of its flow video (DIS flow between consecutive frames, ``--flow_method``,
  a flow video in :mod:`core.flow`'s layout (frame 0 zero, frame t+1 the flow t -> t+1), encoded as images at ``--flow_scale_px``:
  :func:`core.training.svd_flow_lora.collate_clips_with_flow` and the pipeline's ``encode_flow_video``);
- both get the clip's first frame as stock SVD conditioning (CLIP embedding and noise-augmented VAE latents on
  every frame, :func:`~core.training.svd_base.encode_conditioning_frames`), the same added time ids ``[fps - 1,
  motion_bucket_id, noise_aug_strength]``, and are dropped together with probability ``--conditioning_dropout``
  (the unconditional half of the pipeline's guidance holds video and flow with zeroed conditioning);
- one UNet batch ``[x_1..x_B, y_1..y_B]`` with the patch's layout ``[0]*B + [1]*B``;
- one noise level per clip, shared by x_i and y_i (log-normal, ``--p_mean`` / ``--p_std``), with independent
  noise: the sampler moves the pair along one schedule, and replacement puts known flow at the video's own
  sigma, so the model only ever needs pairs at equal sigma;
- EDM's loss of :mod:`core.training.svd_base` (v-target, sigma_data = 1) on both halves, averaged over all 2B
  entries and frames: video and flow weigh the same.

Saved (every checkpoint and the final ``--output_dir``): ``JointPatch.save`` (``joint_layers.safetensors``,
``xy_lora``/``yx_lora``/``y_lora.safetensors``) and ``flow_encoding.json``, so the folder is a model for the app::

    KINEMA_SVD_JOINT_FLOW_MODEL=runs/joint_flow python -m apps drag     # or --svd-joint-flow-model
    pipe = core.models.load_svd_joint_flow(settings)                    # in code; it runs inside
    with core.models.state.attached(pipe.unet, pipe.joint_weights): ...  # the patch's lifetime

Validation (every ``--validation_steps`` and at the end, into ``OUTPUT_DIR/validation/step-N/``): tracks sampled
from training clip ``--validation_clip``'s DIS flow (:func:`core.flow.tracks.sample_tracks`, ``--validation_tracks``
of them, generator seeded (``--seed``, clip)); the pipeline renders the clip's first frame with those tracks and,
as the baseline, without them (free joint sampling), both with a CPU generator seeded ``--seed``:
``sample.mp4`` (with tracks | without), ``flow.mp4`` (generated flow | the clip's DIS flow, colours saturated at
the flow scale), ``sample.npz`` (``frames``, ``free_frames`` float32 (T,H,W,3) in [0,1] and ``flows_px``
(T,H,W,2) as generated, ``truth`` uint8, ``tracks_norm`` (M,T,2)) and ``metrics.json`` (the settings, the
number of tracks, and ObjMC in px, :func:`core.eval.metrics.measure_objmc`, of the sample with tracks, of the free
sample and of the real clip, the tracker's floor).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from core.errors import InputError
from core.flow.estimate import METHODS
from core.training.common import TrainingTask, add_common_args, script_main
from core.training.svd_base import (
    ValidationSampling,
    add_svd_video_args,
    added_time_ids,
    check_flow_sizes,
    check_positive_px,
    check_svd_video_args,
    drop_conditioning,
    edm_inputs,
    encode_clip_latents,
    encode_conditioning_frames,
    load_svd_for_training,
    objmc_px,
    sample_sigmas,
    training_pipeline,
    unet_output,
    video_dataset,
)

TASK_NAME = "svd_joint_flow"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m core.training.svd_joint_flow",
        description="Train the joint patch so SVD generates a video and its optical flow together (research).",
    )
    add_common_args(parser)
    group = add_svd_video_args(parser, lora=False)
    add = group.add_argument
    add("--joint_lora_rank", type=int, default=8, help="Rank of xy_lora and yx_lora on the joint attention.")
    add(
        "--y_lora_rank",
        type=int,
        default=4,
        help="Rank of y_lora, the flow entries' LoRA on the ordinary attention (with --init_y_lora: its rank).",
    )
    add(
        "--init_y_lora",
        type=str,
        default=None,
        help="Folder written by core.training.svd_flow_lora: start y_lora from its flow_lora (same --y_lora_rank) "
        "and use its flow scale.",
    )
    add(
        "--flow_scale_px",
        type=float,
        default=None,
        help="Flow component (px, at --width) encoded as the image value 1; larger components clip. Default: "
        "the --init_y_lora folder's scale, else 1/32 of --width (16 px at 512).",
    )
    add(
        "--flow_method",
        type=str,
        default="dis",
        choices=METHODS,
        help="Optical flow estimator of the flow videos and validation tracks (core.flow; raft needs torchvision).",
    )
    add("--validation_tracks", type=int, default=5, help="Point tracks sampled from the validation clip.")
    add(
        "--validation_sigma_px",
        type=float,
        default=10.0,
        help="Gaussian spread (px) of each validation track, the pipeline's sigma_px.",
    )
    return parser


def check_args(args: argparse.Namespace) -> None:
    """Raise InputError, naming the flag, for a value this script cannot use."""
    check_svd_video_args(args)
    check_flow_sizes(args)
    for name in ("joint_lora_rank", "y_lora_rank", "validation_tracks"):
        if getattr(args, name) < 1:
            raise InputError(f"--{name} must be at least 1, got {getattr(args, name)}.")
    check_positive_px(args, "flow_scale_px", "validation_sigma_px")
    if args.init_y_lora is not None and not Path(args.init_y_lora).is_dir():
        raise InputError(
            f"--init_y_lora {args.init_y_lora} is not a folder; give an output folder of core.training.svd_flow_lora."
        )


def flow_encoding_of(args: argparse.Namespace):
    """The :class:`~core.flow.encoding.FlowEncoding` to train with: ``--flow_scale_px`` at ``--width``, else the
    ``--init_y_lora`` folder's, else ``svd_flow.DEFAULT_FLOW_ENCODING``. Raises InputError when an explicit scale
    contradicts the flow LoRA's (it learned that one)."""
    from core.flow.encoding import FlowEncoding
    from core.pipelines.svd_flow import DEFAULT_FLOW_ENCODING

    initial = FlowEncoding.load(args.init_y_lora) if args.init_y_lora else None
    if args.flow_scale_px is None:
        return initial or DEFAULT_FLOW_ENCODING
    chosen = FlowEncoding.from_scale_px(args.flow_scale_px, args.width)
    if initial is not None and not np.isclose(chosen.scale_of_width, initial.scale_of_width):
        raise InputError(
            f"--flow_scale_px {args.flow_scale_px} at --width {args.width} differs from the scale the flow LoRA "
            f"of --init_y_lora was trained with ({initial.scale_px(args.width):g} px at that width): drop the flag."
        )
    return chosen


def _init_y_lora(unet: torch.nn.Module, folder: str) -> None:
    """Load the flow LoRA of a ``svd_flow_lora`` folder onto the patch's ``y_lora``."""
    from core.lora import load_lora
    from core.pipelines.svd_flow import FLOW_ADAPTER_NAME

    try:
        load_lora(unet, Path(folder) / f"{FLOW_ADAPTER_NAME}.safetensors", name="y_lora")
    except InputError as err:
        raise InputError(
            f"--init_y_lora: {err} Pass --y_lora_rank equal to the flow LoRA's --rank, and train it on the "
            "default attention targets."
        ) from err


# -- the task -----------------------------------------------------------------------------------------


def joint_flow_pipeline(args: argparse.Namespace):
    """The pipeline whose modules train: SVD frozen, the joint patch on its UNet with ``y_lora`` started from
    ``--init_y_lora`` (module docstring), the patch's parameters trainable, and the flow encoding set
    (:func:`flow_encoding_of`). Its encoders build the training inputs; validation samples with it."""
    from core.patches.joint import apply_joint_patch
    from core.pipelines.svd_joint_flow import SVDJointFlowPipeline

    encoding = flow_encoding_of(args)
    parts = load_svd_for_training(args.pretrained_model)
    unet = parts["unet"]
    # Adding the LoRAs freezes every UNet weight, the new joint layers included; those train too.
    patch = apply_joint_patch(
        unet, modalities=2, joint_lora_rank=args.joint_lora_rank, y_lora_rank=args.y_lora_rank
    )
    if args.init_y_lora:
        _init_y_lora(unet, args.init_y_lora)
    for param in patch.joint_parameters():
        param.requires_grad_(True)
    pipe = training_pipeline(SVDJointFlowPipeline, parts)
    pipe.flow_encoding = encoding
    return pipe


def video_and_flow_losses(
    pipe, unet: torch.nn.Module, batch: dict[str, torch.Tensor], args: argparse.Namespace
) -> tuple[torch.Tensor, torch.Tensor]:
    """EDM's losses of the video entries and of the flow entries of one batch ``[x_1..x_B, y_1..y_B]``
    (module docstring); the training loss is their mean (both halves have the same size).

    ``pipe``: :func:`joint_flow_pipeline`'s (its encoders and patch); ``unet``: its UNet, as the loop wraps it.
    ``batch``: :func:`core.training.svd_flow_lora.collate_clips_with_flow`'s; the video entries get the
    clips of ``pixel_values``, the flow entries the flow videos of ``flows_px``.
    """
    from core.patches.joint import joint_patch_of
    from core.pipelines.svd_joint_flow import FLOW, VIDEO

    pixels = batch["pixel_values"]  # (B,T,3,H,W) in [-1,1]
    batch_size = pixels.shape[0]
    video_latents = encode_clip_latents(pipe, pixels)
    flow_latents = pipe.encode_flow_video(batch["flows_px"]).float()
    embeddings, condition = encode_conditioning_frames(pipe, pixels[:, 0], args.noise_aug_strength)
    embeddings, condition = drop_conditioning(args.conditioning_dropout, embeddings, condition)

    sigmas = sample_sigmas(batch_size, args.p_mean, args.p_std, pixels.device)
    edm = edm_inputs(torch.cat([video_latents, flow_latents]), args.p_mean, args.p_std, sigmas.repeat(2))
    time_ids = added_time_ids(args.fps, batch["motion_bucket_ids"], args.noise_aug_strength)
    # x_i and y_i share clip i's conditioning.
    condition, embeddings = condition.repeat(2, 1, 1, 1), embeddings.repeat(2, 1, 1)
    joint_patch_of(pipe.unet).set_batch_layout([VIDEO] * batch_size + [FLOW] * batch_size)
    predicted = unet_output(unet, edm, condition, embeddings, time_ids.repeat(2, 1)).float()
    errors = (predicted - edm.target) ** 2
    return errors[:batch_size].mean(), errors[batch_size:].mean()


def build_task(args: argparse.Namespace, accelerator) -> TrainingTask:
    """The joint video+flow task for :func:`core.training.common.run_training` (module docstring)."""
    from core.imaging import from_signed
    from core.patches.joint import joint_patch_of
    from core.training.svd_flow_lora import collate_clips_with_flow

    # 1. Models: SVD frozen, the joint patch trained (joint_flow_pipeline).
    pipe = joint_flow_pipeline(args)
    unet, encoding = pipe.unet, pipe.flow_encoding
    patch = joint_patch_of(unet)

    # 2. Data: clips and their DIS flow videos.
    dataset = video_dataset(args)

    # 3. The loss over [x_1..x_B, y_1..y_B] (module docstring): both halves weigh the same.
    def compute_loss(batch: dict[str, torch.Tensor], models: dict) -> torch.Tensor:
        return torch.stack(video_and_flow_losses(pipe, models["unet"], batch, args)).mean()

    # 4. Weights: the patch (joint layers and LoRAs) and the flow scale.
    def save_weights(models: dict, folder: Path) -> None:
        patch.save(folder)
        encoding.save(folder, width=args.width)

    def load_weights(models: dict, folder: Path) -> None:
        patch.load(folder)

    # 5. Validation: the pipeline on a training clip's first frame, with tracks sampled from the clip and without.
    def validate(models: dict, step: int, folder: Path) -> None:
        from core.flow.tracks import sample_tracks, video_flow_and_occlusion

        item = dataset[args.validation_clip]
        clip_uint8 = from_signed(item["pixel_values"])
        flows_px, occluded = video_flow_and_occlusion(clip_uint8, args.flow_method)
        rng = np.random.default_rng((args.seed, args.validation_clip))
        tracks_norm = sample_tracks(flows_px, args.validation_tracks, rng, occluded=occluded)
        render_validation(
            pipe,
            clip_uint8,
            flows_px,
            tracks_norm,
            folder,
            ValidationSampling.from_args(args, item),
            sigma_px=args.validation_sigma_px,
        )

    return TrainingTask(
        name=TASK_NAME,
        models={"unet": unet, "vae": pipe.vae, "image_encoder": pipe.image_encoder},
        dataset=dataset,
        compute_loss=compute_loss,
        save_weights=save_weights,
        load_weights=load_weights,
        collate_fn=collate_clips_with_flow(args),
        validate=validate,
    )


def render_validation(
    pipe,
    truth_uint8: np.ndarray,
    flows_px: np.ndarray,
    tracks_norm: np.ndarray,
    folder: Path,
    sampling: ValidationSampling,
    *,
    sigma_px: float,
) -> dict:
    """Render ``truth_uint8``'s (T,H,W,3) first frame with ``tracks_norm`` (M,T,2) and without; write
    ``sample.mp4``, ``flow.mp4``, ``sample.npz`` and ``metrics.json`` into ``folder`` (module docstring; ``flows_px``
    (T-1,H,W,2) is the clip's DIS flow, shown beside the generated one); return the metrics."""
    from core.flow import flows_to_video
    from core.flow.visualize import render_flow_video
    from core.imaging import unit_to_uint8
    from core.trajectory import tracks_to_px
    from core.video import write_video

    num_frames, height, width = truth_uint8.shape[:3]

    def render(tracks: np.ndarray | None):
        return pipe(
            truth_uint8[0],
            tracks,
            num_frames=num_frames,
            sigma_px=sigma_px,
            output_type="np",
            **sampling.pipeline_kwargs(),
        )

    guided, free = render(tracks_norm), render(None)
    frames_uint8, free_uint8 = unit_to_uint8(guided.frames[0]), unit_to_uint8(free.frames[0])
    write_video(folder / "sample.mp4", np.concatenate([frames_uint8, free_uint8], axis=2), sampling.fps)
    scale_px = pipe.flow_encoding.scale_px(width)
    colours = [
        render_flow_video(f, max_magnitude=scale_px) for f in (guided.flows_px[0], flows_to_video(flows_px))
    ]
    write_video(folder / "flow.mp4", np.concatenate(colours, axis=2), sampling.fps)
    np.savez(
        folder / "sample.npz",
        frames=guided.frames[0].astype(np.float32),
        free_frames=free.frames[0].astype(np.float32),
        flows_px=guided.flows_px[0],
        truth=truth_uint8,
        tracks_norm=tracks_norm,
    )
    tracks_px = tracks_to_px(tracks_norm, height, width)
    metrics = {
        **sampling.record(),
        "num_frames": num_frames,
        "sigma_px": sigma_px,
        "flow_scale_px": scale_px,
        "num_tracks": len(tracks_norm),
        "objmc_px": objmc_px(frames_uint8, tracks_px),
        "free_objmc_px": objmc_px(free_uint8, tracks_px),
        "truth_objmc_px": objmc_px(truth_uint8, tracks_px),
    }
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


def main(argv: Sequence[str] | None = None) -> int:
    return script_main(build_parser, check_args, build_task, argv)


if __name__ == "__main__":
    raise SystemExit(main())
