"""python -m core.training.svd_flow_controlnet: train a flow ControlNet so SVD follows dragged trajectories.

    accelerate launch -m core.training.svd_flow_controlnet \\
        --pretrained_model stabilityai/stable-video-diffusion-img2vid-xt \\
        --data_dir PANDA --output_dir runs/flow_controlnet --resolution 320 --width 512 --num_frames 14 \\
        --max_train_steps 20000 --learning_rate 1e-5 --mixed_precision bf16 --gradient_checkpointing \\
        --train_batch_size 1 --gradient_accumulation_steps 4 --dataloader_num_workers 8

(``python -m`` instead of ``accelerate launch -m`` for one device; ``--data_layout webvid`` for a WebVid folder,
see :mod:`core.data.video_folder`. SVD-XT's ControlNet has 682M parameters (the UNet 1525M): with AdamW that
is about 11 GB of float32 weights, gradients and optimizer state before activations, so train with bf16,
``--gradient_checkpointing`` and batch 1; GPU memory and speed have not been measured on real weights yet.
576x1024 x 25 frames is SVD-XT's own size.)

What trains: :class:`core.controlnet_svd.SVDFlowControlNet`, a copy of the SVD UNet's encoder built by
``SVDFlowControlNet.from_unet`` (the UNet's weights, zero convs out, so training starts at stock SVD), with
``flow_scale_px = --flow_scale_px`` in its config. The whole of SVD (UNet, VAE, image encoder) is frozen; only
the ControlNet's parameters train, the layers it adds to the encoder copy (:data:`NEW_LAYERS`: the conditioning
embedding and the zero output convs, which start from scratch) at ``--learning_rate`` x ``--new_layers_lr_scale``.

Data, per clip and on the fly (an item is a function of its index, so ``--resume_from_checkpoint`` is exact):
the clip of ``--num_frames`` frames at ``--resolution`` x ``--width`` (:func:`core.training.svd_base.video_dataset`);
its frame-to-frame flow and forward-backward occlusion with ``--flow_method`` (DIS by default,
:func:`core.flow.tracks.video_flow_and_occlusion`, run in the DataLoader workers: flow and tracks take about 1 s per
14-frame 320x512 clip on a 2-core CPU, hidden behind a GPU step with enough ``--dataloader_num_workers``; a dense
flow cache would take ~17 MB per clip, so there is none); between ``--min_tracks`` and ``--max_tracks`` point tracks
(:func:`core.flow.tracks.sample_tracks`: motion-weighted starting points, some anchors, only tracks reliable
through the whole clip; count and points drawn from a generator seeded by (``--seed``, index)); and their
condition :func:`core.controlnet_svd.flow_condition` (sparse frame-to-frame flow / flow_scale_px blurred with
``--flow_sigma_px``, plus a mask), exactly what the drag app builds from a user's trajectories.

The loss: SVD's EDM loss of :mod:`core.training.svd_base` (log-normal sigmas, v-target on the clip's VAE
latents, averaged over all frames) with stock SVD conditioning from the clip's first frame (its CLIP embedding,
and its noise-augmented VAE latents on every frame's extra channels), added time ids ``[fps - 1,
motion_bucket_id, noise_aug_strength]``, and the UNet's prediction taken with the ControlNet's residuals through
:func:`core.controlnet_svd.controlnet_unet_output`, the code the pipeline samples with. With probability
``--conditioning_dropout`` a clip is trained without its conditioning: the flow condition *and* SVD's image
conditioning are zeroed, which is exactly the unconditional half the pipeline's classifier-free guidance runs
(it gives the ControlNet a zero flow there too); ``--min_tracks 0`` adds clips whose image conditioning is kept
with no tracks (an image and no drag).

Saved weights (every ``checkpoint-N/`` and the final ``--output_dir``): the ControlNet's ``save_pretrained``
(``config.json`` + ``diffusion_pytorch_model.safetensors``), so the output folder is a model folder::

    KINEMA_SVD_CONTROLNET_MODEL=runs/flow_controlnet python -m apps drag      # or --svd-controlnet-model
    controlnet = core.models.load_svd_controlnet(settings)                   # in code

Validation (every ``--validation_steps`` and at the end, into ``OUTPUT_DIR/validation/step-N/``): the
``controlnet`` mode of :class:`core.pipelines.svd_trajectory.SVDTrajectoryPipeline` (strength 1, no guide)
renders training clip ``--validation_clip`` from its first frame and its sampled tracks, with a CPU generator
seeded ``--seed``; stock SVD renders the same first frame with the same noise (no flow condition):
``sample.mp4`` (ControlNet | stock side by side), ``sample.npz`` (``frames`` and ``stock_frames`` float32
(T,H,W,3) in [0,1] as generated, ``image`` and ``truth`` uint8, ``tracks_norm`` (M,T,2)) and ``metrics.json``
(the settings, the number of tracks and ObjMC in px, :func:`core.eval.metrics.measure_objmc`, of the ControlNet
sample, of stock SVD and of the real clip, the tracker's floor, against the requested tracks).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from core.errors import InputError
from core.flow import METHODS
from core.training.common import TrainingTask, add_common_args, script_main
from core.training.svd_base import (
    ValidationSampling,
    add_svd_video_args,
    added_time_ids,
    check_flow_sizes,
    check_positive_px,
    check_svd_video_args,
    collate_clips,
    drop_conditioning,
    edm_inputs,
    encode_clip_latents,
    encode_conditioning_frames,
    load_svd_for_training,
    objmc_px,
    training_pipeline,
    unet_input,
    video_dataset,
)

TASK_NAME = "svd_flow_controlnet"
# The layers the ControlNet adds to the UNet's encoder copy (parameter prefixes; --new_layers_lr_scale).
NEW_LAYERS = (
    "controlnet.controlnet_cond_embedding",
    "controlnet.controlnet_down_blocks",
    "controlnet.controlnet_mid_block",
)


def build_parser() -> argparse.ArgumentParser:
    from core.controlnet_svd import DEFAULT_FLOW_SCALE_PX

    parser = argparse.ArgumentParser(
        prog="python -m core.training.svd_flow_controlnet",
        description="Train a flow ControlNet so SVD moves the points of its first frame along given tracks.",
    )
    add_common_args(parser)
    group = add_svd_video_args(parser, lora=False)
    add = group.add_argument
    add("--min_tracks", type=int, default=1, help="Fewest point tracks sampled per clip (0 allowed).")
    add("--max_tracks", type=int, default=8, help="Most point tracks sampled per clip.")
    add(
        "--flow_method",
        type=str,
        default="dis",
        choices=METHODS,
        help="Optical flow the tracks are sampled from (core.flow; raft needs torchvision and its weights).",
    )
    add(
        "--flow_sigma_px",
        type=float,
        default=10.0,
        help="Gaussian spread (px) of each track in the flow condition, as in the drag app.",
    )
    add(
        "--flow_scale_px",
        type=float,
        default=DEFAULT_FLOW_SCALE_PX,
        help="Frame-to-frame displacement (px) that maps to 1 in the condition; stored in the ControlNet's config.",
    )
    add(
        "--new_layers_lr_scale",
        type=float,
        default=1.0,
        help="Learning rate of the layers the ControlNet adds to its copy of the UNet's encoder (the "
        "conditioning embedding and the zero output convs) = --learning_rate x this.",
    )
    parser.set_defaults(learning_rate=1e-5)
    return parser


def check_args(args: argparse.Namespace) -> None:
    """Raise InputError, naming the flag, for a value this script cannot use."""
    check_svd_video_args(args)
    check_flow_sizes(args)
    if args.min_tracks < 0:
        raise InputError(f"--min_tracks must be at least 0, got {args.min_tracks}.")
    if args.max_tracks < max(args.min_tracks, 1):
        raise InputError(
            f"--max_tracks must be at least 1 and at least --min_tracks ({args.min_tracks}), got {args.max_tracks}."
        )
    check_positive_px(args, "flow_sigma_px", "flow_scale_px")
    if not args.new_layers_lr_scale > 0:
        raise InputError(f"--new_layers_lr_scale must be positive, got {args.new_layers_lr_scale}.")


# -- data ---------------------------------------------------------------------------------------------


class FlowTrackClips(Dataset):
    """The clips of :func:`~core.training.svd_base.video_dataset` with sampled tracks and their flow condition.

    Item ``i``: the clip's keys, plus ``tracks_norm`` (M,T,2) float64 in [0,1] and ``flow_condition``
    (T,3,H,W) float32 (module docstring); a function of ``i`` (tracks drawn from a generator seeded by
    (seed, i)).
    """

    def __init__(self, clips: Dataset, args: argparse.Namespace, flow_scale_px: float):
        self.clips = clips
        self.seed = args.seed
        self.min_tracks, self.max_tracks = args.min_tracks, args.max_tracks
        self.flow_method = args.flow_method
        self.sigma_px, self.flow_scale_px = args.flow_sigma_px, flow_scale_px

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> dict:
        from core.controlnet_svd import flow_condition
        from core.flow.tracks import sample_tracks, video_flow_and_occlusion
        from core.imaging import from_signed

        item = self.clips[index]
        frames_uint8 = from_signed(item["pixel_values"])
        flows_px, occluded = video_flow_and_occlusion(frames_uint8, self.flow_method)
        rng = np.random.default_rng((self.seed, index))
        count = int(rng.integers(self.min_tracks, self.max_tracks + 1))
        tracks_norm = sample_tracks(flows_px, count, rng, occluded=occluded)
        height, width = frames_uint8.shape[1:3]
        condition = flow_condition(
            tracks_norm, height, width, sigma_px=self.sigma_px, flow_scale_px=self.flow_scale_px
        )
        return {**item, "tracks_norm": tracks_norm, "flow_condition": torch.from_numpy(condition)}


def collate_flow_clips(args: argparse.Namespace) -> Callable[[list[dict]], dict[str, torch.Tensor]]:
    """``collate_clips``'s batch plus ``flow_condition`` (B,T,3,H,W) float32."""
    collate = collate_clips(args)

    def collate_with_flow(items: list[dict]) -> dict[str, torch.Tensor]:
        return {**collate(items), "flow_condition": torch.stack([item["flow_condition"] for item in items])}

    return collate_with_flow


# -- the task -----------------------------------------------------------------------------------------


def build_task(args: argparse.Namespace, accelerator) -> TrainingTask:
    """The flow ControlNet task for :func:`core.training.common.run_training` (module docstring)."""
    from core.controlnet_svd import SVDFlowControlNet, controlnet_unet_output
    from core.pipelines.svd_trajectory import SVDTrajectoryPipeline

    # 1. Models: SVD frozen; the ControlNet, from the UNet's encoder, trains. The pipeline holds the same
    #    modules: its encoders build the training conditioning, and validation samples with it.
    parts = load_svd_for_training(args.pretrained_model)
    unet = parts["unet"].requires_grad_(False)
    pipe = training_pipeline(SVDTrajectoryPipeline, parts)
    controlnet = SVDFlowControlNet.from_unet(
        unet, flow_scale_px=args.flow_scale_px, vae_scale_factor=pipe.vae_scale_factor
    )
    pipe.register_modules(controlnet=controlnet)

    # 2. Data.
    dataset = FlowTrackClips(video_dataset(args), args, controlnet.config.flow_scale_px)

    # 3. The loss (module docstring).
    def compute_loss(batch: dict[str, torch.Tensor], models: dict) -> torch.Tensor:
        pixels = batch["pixel_values"]  # (B,T,3,H,W) in [-1,1]
        latents = encode_clip_latents(pipe, pixels)
        embeddings, condition = encode_conditioning_frames(pipe, pixels[:, 0], args.noise_aug_strength)
        embeddings, condition, flow = drop_conditioning(
            args.conditioning_dropout, embeddings, condition, batch["flow_condition"]
        )
        edm = edm_inputs(latents, args.p_mean, args.p_std)
        time_ids = added_time_ids(args.fps, batch["motion_bucket_ids"], args.noise_aug_strength)
        predicted = controlnet_unet_output(
            models["unet"],
            models["controlnet"],
            unet_input(edm, condition),
            edm.timesteps,
            embeddings,
            time_ids,
            flow,
        )
        return edm.loss(predicted)

    # 4. Weights: the ControlNet as a model folder; loaded into the existing parameters (the optimizer's).
    def save_weights(models: dict, folder: Path) -> None:
        models["controlnet"].save_pretrained(folder)

    def load_weights(models: dict, folder: Path) -> None:
        saved = SVDFlowControlNet.from_pretrained(str(folder), local_files_only=True)
        models["controlnet"].load_state_dict(saved.state_dict())

    # 5. Validation: the ControlNet mode on a training clip's first frame and tracks, and stock SVD beside it.
    def validate(models: dict, step: int, folder: Path) -> None:
        from core.imaging import from_signed

        item = dataset[args.validation_clip]
        render_validation(
            pipe,
            from_signed(item["pixel_values"]),
            item["tracks_norm"],
            folder,
            ValidationSampling.from_args(args, item),
            flow_sigma_px=args.flow_sigma_px,
        )

    return TrainingTask(
        name=TASK_NAME,
        models={
            "controlnet": controlnet,
            "unet": unet,
            "vae": parts["vae"],
            "image_encoder": parts["image_encoder"],
        },
        dataset=dataset,
        compute_loss=compute_loss,
        save_weights=save_weights,
        load_weights=load_weights,
        collate_fn=collate_flow_clips(args),
        validate=validate,
        learning_rate_scales=dict.fromkeys(NEW_LAYERS, args.new_layers_lr_scale),
    )


def render_validation(
    pipe,
    truth_uint8: np.ndarray,
    tracks_norm: np.ndarray,
    folder: Path,
    sampling: ValidationSampling,
    *,
    flow_sigma_px: float,
) -> dict:
    """Render ``truth_uint8``'s (T,H,W,3) first frame along ``tracks_norm`` (M,T,2) with ``pipe.controlnet``
    and without it; write ``sample.mp4``, ``sample.npz`` and ``metrics.json`` into ``folder`` (module
    docstring); return the metrics."""
    from core.controlnet_svd import flow_condition
    from core.imaging import unit_to_uint8
    from core.trajectory import tracks_to_px
    from core.video import write_video

    num_frames, height, width = truth_uint8.shape[:3]
    image = truth_uint8[0]
    condition = flow_condition(
        tracks_norm, height, width, sigma_px=flow_sigma_px, flow_scale_px=pipe.controlnet.config.flow_scale_px
    )

    def render(**control) -> np.ndarray:
        return pipe(
            image,
            strength=1.0,
            num_frames=num_frames,
            output_type="np",
            **sampling.pipeline_kwargs(),
            **control,
        ).frames[0]

    frames_unit = render(flow_condition=condition, controlnet_conditioning_scale=1.0)
    stock_unit = render()
    frames_uint8, stock_uint8 = unit_to_uint8(frames_unit), unit_to_uint8(stock_unit)
    write_video(folder / "sample.mp4", np.concatenate([frames_uint8, stock_uint8], axis=2), sampling.fps)
    np.savez(
        folder / "sample.npz",
        frames=frames_unit.astype(np.float32),
        stock_frames=stock_unit.astype(np.float32),
        image=image,
        truth=truth_uint8,
        tracks_norm=tracks_norm,
    )
    tracks_px = tracks_to_px(tracks_norm, height, width)
    metrics = {
        **sampling.record(),
        "num_frames": num_frames,
        "flow_sigma_px": flow_sigma_px,
        "flow_scale_px": pipe.controlnet.config.flow_scale_px,
        "controlnet_conditioning_scale": 1.0,
        "num_tracks": len(tracks_norm),
        "objmc_px": objmc_px(frames_uint8, tracks_px),
        "stock_objmc_px": objmc_px(stock_uint8, tracks_px),
        "truth_objmc_px": objmc_px(truth_uint8, tracks_px),
    }
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


def main(argv: Sequence[str] | None = None) -> int:
    return script_main(build_parser, check_args, build_task, argv)


if __name__ == "__main__":
    raise SystemExit(main())
