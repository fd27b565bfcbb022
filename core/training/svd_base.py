"""What every SVD training script shares: flags, the frozen SVD, clip data, conditioning and EDM's loss.

The scripts (``svd_interp_lora``, ``svd_flow_controlnet``, ``svd_flow_lora``, ``svd_joint_flow``) train
different weights on the same thing: video clips from a Panda-70M or WebVid folder, SVD's VAE latents of
those clips as the sample, SVD's own image conditioning, and the EDM loss on SVD's scheduler::

    parser = argparse.ArgumentParser(...)
    add_common_args(parser)                      # core.training.common: the loop's flags
    add_svd_video_args(parser, lora=True)        # this module: model, data, conditioning, noise levels
    ...
    parts = load_svd_for_training(args.pretrained_model)
    pipe = training_pipeline(SVDFlowPipeline, parts)  # its encoders condition training; validation samples
    dataset = video_dataset(args)
    # in compute_loss:
    latents = encode_clip_latents(pipe, pixels)                       # (B,T,4,h,w), no gradient
    embeddings, condition = encode_conditioning_frames(pipe, pixels[:, 0], args.noise_aug_strength)
    embeddings, condition = drop_conditioning(args.conditioning_dropout, embeddings, condition)
    edm = edm_inputs(latents, args.p_mean, args.p_std)
    time_ids = added_time_ids(args.fps, batch["motion_bucket_ids"], args.noise_aug_strength)
    loss = edm.loss(unet_output(unet, edm, condition, embeddings, time_ids))
    # in validate:
    sampling = ValidationSampling.from_args(args, item)
    frames = pipe(image, **sampling.pipeline_kwargs(), ...)          # metrics.json: sampling.record()

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
  all frames.

The added time ids are ``[fps - 1, motion_bucket_id, noise_aug_strength]`` in that order (SVD was trained on
fps - 1, and the stock pipeline passes it so): ``--fps`` (default 7) and ``--motion_bucket_id`` (default 127),
as SVD fine-tuning commonly fixes them, or with ``--motion_bucket_from_flow`` each clip's own bucket from
:func:`core.motion.motion_bucket_from_video`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from core.config import Settings
from core.errors import InputError
from core.lora import DEFAULT_TARGETS
from core.training.common import check_common_args

P_MEAN, P_STD = 0.7, 1.6
# The components of every SVD pipeline, as load_svd_for_training returns them.
PIPELINE_COMPONENTS = ("vae", "image_encoder", "unet", "scheduler", "feature_extractor")


# -- flags --------------------------------------------------------------------------------------------


def add_svd_video_args(parser: argparse.ArgumentParser, *, lora: bool) -> argparse._ArgumentGroup:
    """Add the flags every SVD script takes (model, clips, conditioning, noise levels, validation sampling)
    and, with ``lora``, ``--rank`` and ``--lora_targets``. Sets the defaults learning rate 1e-4 and height
    (``--resolution``) 320. Returns the group so a script can add its own flags next to them."""
    group = parser.add_argument_group("SVD video training")
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
    add("--num_frames", type=int, default=14, help="Frames per clip (SVD: 14, XT: 25).")
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
        help="Noise added to the conditioning frames before VAE encoding, and its time id (the pipelines' default).",
    )
    add(
        "--conditioning_dropout",
        type=float,
        default=0.1,
        help="Probability of training a clip without its conditioning (zeroed, as the unconditional half of "
        "classifier-free guidance).",
    )
    add("--p_mean", type=float, default=P_MEAN, help="Mean of ln(sigma) of the training noise levels.")
    add(
        "--p_std",
        type=float,
        default=P_STD,
        help="Standard deviation of ln(sigma) of the training noise levels.",
    )
    if lora:
        add("--rank", type=int, default=4, help="LoRA rank (alpha = rank, so the adapter's scale is 1).")
        add(
            "--lora_targets",
            type=str,
            nargs="+",
            default=list(DEFAULT_TARGETS),
            help="UNet modules that get the LoRA, matched as suffixes of their dotted paths. Default: the "
            "attention projections to_k to_q to_v to_out.0 (spatial and temporal).",
        )
    add("--validation_clip", type=int, default=0, help="Index of the training clip used at validation.")
    add("--validation_inference_steps", type=int, default=25, help="Sampling steps at validation.")
    add("--validation_min_guidance_scale", type=float, default=1.0, help="Guidance on the first frame.")
    add("--validation_max_guidance_scale", type=float, default=3.0, help="Guidance on the last frame.")
    parser.set_defaults(learning_rate=1e-4, resolution=320)
    return group


def check_svd_video_args(args: argparse.Namespace, *, min_frames: int = 2) -> None:
    """Raise InputError, naming the flag, for a value the SVD scripts cannot use (and the loop's flags')."""
    check_common_args(args)
    at_least = {"num_frames": min_frames, "sample_stride": 1, "fps": 1, "validation_inference_steps": 1}
    if hasattr(args, "rank"):
        at_least["rank"] = 1
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


def check_flow_sizes(args: argparse.Namespace) -> None:
    """Raise InputError when ``--resolution`` or ``--width`` is below the side optical flow needs (for the
    scripts that estimate flow on their clips)."""
    from core.flow.estimate import MIN_SIDE_PX

    for name in ("resolution", "width"):
        if getattr(args, name) < MIN_SIDE_PX:
            raise InputError(
                f"--{name} must be at least {MIN_SIDE_PX} for optical flow, got {getattr(args, name)}."
            )


def check_positive_px(args: argparse.Namespace, *names: str) -> None:
    """Raise InputError, naming the flag, when one of the pixel-length flags ``names`` is set (not None) to
    anything but a positive finite number."""
    for name in names:
        value = getattr(args, name)
        if value is not None and not 0 < value < float("inf"):
            raise InputError(f"--{name} must be a positive number of pixels, got {value}.")


# -- model and data -----------------------------------------------------------------------------------


def load_svd_for_training(model: str) -> dict:
    """SVD's components (``core.models.load_components``) with the VAE and image encoder frozen.

    Raises InputError when the scheduler is not SVD's parametrisation (v_prediction, continuous timesteps),
    which the EDM loss here assumes; ModelNotAvailable when the weights are missing.
    """
    from core.models import load_components

    parts = load_components("svd", model)
    parts["vae"].requires_grad_(False)
    parts["image_encoder"].requires_grad_(False)
    config = parts["scheduler"].config
    if (config.get("prediction_type"), config.get("timestep_type")) != ("v_prediction", "continuous"):
        raise InputError(
            f"The scheduler of {model} is not SVD's (v_prediction, continuous timesteps); "
            "these scripts train SVD models."
        )
    return parts


def training_pipeline(pipeline_class: type, parts: dict):
    """A ``pipeline_class`` (an SVD pipeline) over the modules of :func:`load_svd_for_training`, progress bar off.

    It holds the very modules that train: its encoders build the training conditioning (and targets), and
    validation samples with it.
    """
    pipe = pipeline_class(**{name: parts[name] for name in PIPELINE_COMPONENTS})
    pipe.set_progress_bar_config(disable=True)
    return pipe


def video_dataset(args: argparse.Namespace) -> Dataset:
    """The clips of ``--data_dir``: items with ``pixel_values`` (T,3,H,W) in [-1,1] at ``--resolution`` x
    ``--width``, ``fps`` and the dataset's other keys (:mod:`core.data.video_folder`). Raises InputError when
    ``--validation_clip`` is past the clips."""
    from core.data.video_folder import PandaVideoDataset, WebVidDataset

    layout = PandaVideoDataset if args.data_layout == "panda" else WebVidDataset
    dataset = layout(
        args.data_dir,
        sample_size=(args.resolution, args.width),
        sample_n_frames=args.num_frames,
        sample_stride=args.sample_stride,
        crop="random" if args.random_crop else "center",
        seed=args.seed,
    )
    if args.validation_clip >= len(dataset):
        raise InputError(
            f"--validation_clip {args.validation_clip} is past the {len(dataset)} clips of the data."
        )
    return dataset


def motion_bucket(args: argparse.Namespace, item: dict) -> int:
    """The motion bucket a clip is conditioned on: its own from DIS flow with ``--motion_bucket_from_flow``,
    else ``--motion_bucket_id``."""
    if not args.motion_bucket_from_flow:
        return args.motion_bucket_id
    from core.imaging import from_signed
    from core.motion import motion_bucket_from_video

    return motion_bucket_from_video(from_signed(item["pixel_values"]), item["fps"])


def collate_clips(args: argparse.Namespace) -> Callable[[list[dict]], dict[str, torch.Tensor]]:
    """A collate function: ``pixel_values`` (B,T,3,H,W) and ``motion_bucket_ids`` (B,) float32."""

    def collate(items: list[dict]) -> dict[str, torch.Tensor]:
        return {
            "pixel_values": torch.stack([item["pixel_values"] for item in items]),
            "motion_bucket_ids": torch.tensor(
                [motion_bucket(args, item) for item in items], dtype=torch.float32
            ),
        }

    return collate


# -- conditioning ---------------------------------------------------------------------------------------


@torch.no_grad()
def encode_clip_latents(pipe, pixels_signed: torch.Tensor) -> torch.Tensor:
    """Clips (B,T,3,H,W) in [-1,1] -> denoising-space latents (B,T,C,h,w) float32, without gradient.

    ``pipe`` is an SVD pipeline over the training modules (an fp16 VAE encodes in fp32 when its config asks,
    as in the pipelines).
    """
    from core.pipelines.svd_common import encode_video_latents

    batch_size, num_frames = pixels_signed.shape[:2]
    with pipe._vae_upcast():
        latents = encode_video_latents(pipe.vae, pixels_signed.flatten(0, 1), num_frames)
    return latents.unflatten(0, (batch_size, num_frames)).float()


@torch.no_grad()
def encode_conditioning_frames(
    pipe, frames_signed: torch.Tensor, noise_aug_strength: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Frames (N,3,H,W) in [-1,1] -> SVD's conditioning as a pipeline builds it from a user's image:
    CLIP embeddings (N,1,D) and noise-augmented VAE latents (N,C,h,w), unscaled.

    The frames go through the pipeline's own encoders as uint8 pictures (exact: clips come from uint8), so
    training sees bit for bit what sampling sees.
    """
    from core.imaging import from_signed
    from core.pipelines.svd_common import as_pil_rgb

    height, width = frames_signed.shape[-2:]
    pictures = [as_pil_rgb(frame) for frame in from_signed(frames_signed)]
    embeddings, latents, _ = pipe._encode_frames(
        pictures, height, width, noise_aug_strength, None, frames_signed.device, clean=False
    )
    return embeddings, latents


def drop_conditioning(dropout: float, *conditions: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Zero each clip's conditioning with probability ``dropout``, as the unconditional half of
    classifier-free guidance.

    ``conditions``: tensors (B,...) of one batch (embeddings, conditioning latents, a flow condition). One 0/1
    draw per clip from torch's global RNG (``torch.rand(B)``) multiplies all of them, so a dropped clip loses
    every conditioning together. Returns them in the same order, dtypes and shapes.
    """
    first = conditions[0]
    keep = torch.rand(first.shape[0], device=first.device) >= dropout
    return tuple(c * keep.reshape(-1, *([1] * (c.ndim - 1))).to(c.dtype) for c in conditions)


# -- EDM on SVD's scheduler -------------------------------------------------------------------------------


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


@dataclass
class EDMInputs:
    """One noised training batch: ``model_input`` = c_in x (B,T,C,h,w) for the UNet's first channels,
    ``timesteps`` (B,) = c_noise, ``target`` (B,T,C,h,w) float32 = :func:`v_target`, ``sigmas`` (B,)."""

    model_input: torch.Tensor
    timesteps: torch.Tensor
    target: torch.Tensor
    sigmas: torch.Tensor

    def loss(self, predicted: torch.Tensor) -> torch.Tensor:
        """EDM's loss of the UNet output F (B,T,C,h,w): the plain MSE against ``target`` in float32 (module doc)."""
        return F.mse_loss(predicted.float(), self.target)


def edm_inputs(
    latents: torch.Tensor, p_mean: float, p_std: float, sigmas: torch.Tensor | None = None
) -> EDMInputs:
    """Noise clean latents (B,T,C,h,w) at sigmas drawn by :func:`sample_sigmas` (or the given (B,) ones)
    with noise from torch's global RNG (sigmas first, then the noise), and precondition them (module doc)."""
    if sigmas is None:
        sigmas = sample_sigmas(latents.shape[0], p_mean, p_std, latents.device)
    noise = torch.randn_like(latents)
    sigmas_5d = sigmas.reshape(-1, *([1] * (latents.ndim - 1)))
    _, _, c_in, c_noise = edm_preconditioning(sigmas_5d)
    return EDMInputs(
        model_input=c_in * (latents + sigmas_5d * noise),
        timesteps=c_noise.flatten(),
        target=v_target(latents, noise, sigmas_5d).float(),
        sigmas=sigmas,
    )


def unet_input(edm: EDMInputs, condition_latents: torch.Tensor) -> torch.Tensor:
    """The UNet's sample (B,T,2C,h,w): ``edm.model_input`` and, on the extra channels in its dtype, the
    conditioning latents: one frame's (B,C,h,w) on every frame, or per frame (B,T,C,h,w)."""
    if condition_latents.ndim == 4:
        condition_latents = condition_latents.unsqueeze(1).expand(-1, edm.model_input.shape[1], -1, -1, -1)
    return torch.cat([edm.model_input, condition_latents.to(edm.model_input.dtype)], dim=2)


def unet_output(
    unet, edm: EDMInputs, condition_latents: torch.Tensor, embeddings: torch.Tensor, time_ids: torch.Tensor
) -> torch.Tensor:
    """SVD's UNet output F (B,T,C,h,w) on one noised batch: :func:`unet_input` at ``edm.timesteps``, with the
    CLIP embeddings (B,1,D) and :func:`added_time_ids` (B,3); ``edm.loss(F)`` is the training loss."""
    return unet(
        unet_input(edm, condition_latents),
        edm.timesteps,
        encoder_hidden_states=embeddings,
        added_time_ids=time_ids,
        return_dict=False,
    )[0]


# -- validation -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ValidationSampling:
    """How validation samples a training clip: the SVD pipelines' sampling options from the flags, the clip's
    own motion bucket (:func:`motion_bucket`) and the seed of a CPU generator made fresh for every render (so
    a render with and one without a control start from the same noise)."""

    seed: int
    fps: int
    motion_bucket_id: int
    noise_aug_strength: float
    num_inference_steps: int
    min_guidance_scale: float
    max_guidance_scale: float

    @classmethod
    def from_args(cls, args: argparse.Namespace, item: dict) -> ValidationSampling:
        """The options of ``--seed``, ``--fps``, ``--noise_aug_strength`` and ``--validation_*`` for a clip
        ``item`` of :func:`video_dataset`."""
        return cls(
            seed=args.seed,
            fps=args.fps,
            motion_bucket_id=motion_bucket(args, item),
            noise_aug_strength=args.noise_aug_strength,
            num_inference_steps=args.validation_inference_steps,
            min_guidance_scale=args.validation_min_guidance_scale,
            max_guidance_scale=args.validation_max_guidance_scale,
        )

    def pipeline_kwargs(self) -> dict:
        """Keyword arguments of an SVD pipeline call: the options, and ``generator``, a new CPU generator
        seeded ``seed``."""
        options = {field.name: getattr(self, field.name) for field in fields(self) if field.name != "seed"}
        return {**options, "generator": torch.Generator().manual_seed(self.seed)}

    def record(self) -> dict:
        """The options as ``metrics.json`` records them (the seed in place of the generator)."""
        return asdict(self)


def objmc_px(frames_uint8: np.ndarray, tracks_px: np.ndarray) -> float | None:
    """ObjMC in px (:func:`core.eval.metrics.measure_objmc`) of a video (T,H,W,3) uint8 against requested tracks
    (M,T,2) px; None without tracks."""
    from core.eval.metrics import measure_objmc

    return measure_objmc(frames_uint8, tracks_px)[0].mean_px if len(tracks_px) else None
