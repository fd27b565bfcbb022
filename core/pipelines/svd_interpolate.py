"""SVD inbetweening between a head keyframe A and a tail keyframe B, loops and keyframe chains.

Two modes of :class:`SVDInterpolatePipeline`:

``svd-trf`` (training-free, stock SVD weights): time-reversal fusion. At every step the UNet predicts the
    video twice: conditioned on A over the frames in order, and conditioned on B over the frames in
    reverse order (B's video played backwards ends at B). The second prediction is flipped back and the
    two are blended per frame with a weight that ramps linearly from A's prediction on frame 0 to B's on
    the last frame: ``w_t = 1 - t / (T - 1)``, ``v = w_t v_A + (1 - w_t) flip(v_B)``. Blending the
    v-predictions is the same as blending the denoised estimates (both paths see the same sample at the
    same sigma). Costs two UNet calls per step (each the size of stock SVD's), so about 2x stock.
``svd-lora``: one SVD pass conditioned on head AND tail, for a LoRA fine-tuned to use it (see
    :func:`head_tail_conditioning`; ``python -m core.training.svd_interp_lora`` trains it, and the
    adapter is loaded with ``core.lora.load_lora(pipe.unet, path)``). With stock weights the mode runs,
    but SVD has not learned what the tail frame means. One UNet call per step, as stock.

Noise re-injection (``noise_reinjection``, either mode, meant for svd-trf): the first steps (half, by default)
are each taken again after fresh noise brings the latents back to the step's noise level, so the fused paths
settle into one video before the structure is fixed (time-reversal fusion's remedy for the seam where the
paths disagree). Off by default; each repeat costs one step more.

Refining a guide video (``guide_video`` and ``strength`` below 1, either mode; the keyframe app's ``flow+svd-lora``
refines the flow-propagated frames this way): the guide's latents noised to the sigma ``strength`` selects start the
last steps of the schedule, as the trajectory pipeline's SDEdit does (``svd_common.SVDPipelineBase._guide_start``),
so the motion of the guide survives and the model, conditioned on both keyframes, repaints the details.

In both modes the first and last frames are pinned (``core.pipelines.svd_common.pin_frames``): before the
loop and after every step their latents are replaced by A's and B's clean latents on their own noise
paths, so at sigma 0 they are exactly A's and B's VAE latents and decode to A and B up to the VAE's
round-trip error. :func:`interpolate_keyframes` chains segments over any number of keyframes (and back
to the first for a loop) and writes the keyframes themselves at their positions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from diffusers.pipelines.stable_video_diffusion.pipeline_stable_video_diffusion import (
    StableVideoDiffusionPipelineOutput,
)

from core.config import LIMITS
from core.errors import InputError
from core.imaging import unit_to_uint8
from core.pipelines.svd_common import (
    ImageInput,
    Reinjection,
    SVDPipelineBase,
    as_pil_rgb,
    check_call_options,
    check_guide,
    check_image,
    image_size_hw,
    pin_frames,
)

InterpolationMode = Literal["svd-trf", "svd-lora"]
MODES: tuple[str, ...] = ("svd-trf", "svd-lora")
MAX_REINJECTION = LIMITS["noise_reinjection"].high  # repeats per step: each costs a step more
# How many trailing frames carry the tail's conditioning latents in svd-lora (pipeline and training).
TAIL_CONDITION_FRAMES = 1


@dataclass
class HeadTailConditioning:
    """svd-lora conditioning: ``image_latents`` (B,T,C,h,w) unscaled, ``image_embeddings`` (B,1,D)."""

    image_latents: torch.Tensor
    image_embeddings: torch.Tensor


def head_tail_conditioning(
    head_latents: torch.Tensor,
    tail_latents: torch.Tensor,
    head_embeddings: torch.Tensor,
    tail_embeddings: torch.Tensor,
    num_frames: int,
) -> HeadTailConditioning:
    """How svd-lora gives SVD's UNet both keyframes; the pipeline and the LoRA training both build it here.

    SVD's UNet takes 8 channels per frame: the 4 noisy latent channels, then 4 conditioning channels that
    stock SVD fills with the first frame's latents on every frame. Here frames ``0 .. T-2`` carry the head's
    latents as in stock SVD and the last ``TAIL_CONDITION_FRAMES`` (1) frame carries the tail's latents
    instead, so ``in_channels`` stays 8 and stock weights load; the LoRA learns what the tail means. The
    cross-attention embedding is the mean of the head's and tail's CLIP image embeddings (a single token,
    as stock; the mean keeps it in CLIP's embedding space and tells every frame about both ends).

    Args:
        head_latents, tail_latents: (B,C,h,w) conditioning latents of A and B
            (``svd_common.encode_condition_latents``: noise-augmented, unscaled).
        head_embeddings, tail_embeddings: (B,1,D) CLIP image embeddings of A and B.
        num_frames: T, at least ``TAIL_CONDITION_FRAMES + 1``.
    Returns:
        :class:`HeadTailConditioning`; the UNet input is
        ``torch.cat([scaled_noisy_latents, image_latents], dim=2)`` with ``image_embeddings`` as
        ``encoder_hidden_states``.
    """
    if num_frames < TAIL_CONDITION_FRAMES + 1:
        raise InputError(f"Head-and-tail conditioning needs at least 2 frames, got {num_frames}.")
    if head_latents.shape != tail_latents.shape or head_embeddings.shape != tail_embeddings.shape:
        raise InputError(
            f"Head and tail shapes differ: latents {tuple(head_latents.shape)} vs {tuple(tail_latents.shape)}, "
            f"embeddings {tuple(head_embeddings.shape)} vs {tuple(tail_embeddings.shape)}."
        )
    image_latents = head_latents.unsqueeze(1).repeat(1, num_frames, 1, 1, 1)
    image_latents[:, num_frames - TAIL_CONDITION_FRAMES :] = tail_latents.unsqueeze(1)
    return HeadTailConditioning(image_latents, (head_embeddings + tail_embeddings) / 2)


def fusion_weights(num_frames: int) -> torch.Tensor:
    """svd-trf's per-frame weight of the head (forward) prediction: linear from 1 on frame 0 to 0 on the
    last frame. Returns (T,) float32; the tail (time-reversed) prediction gets ``1 - w``."""
    return torch.linspace(1.0, 0.0, num_frames)


@dataclass
class SVDInterpolatePipelineOutput(StableVideoDiffusionPipelineOutput):
    """``frames``: list of lists of PIL images, or (1,T,H,W,3) float [0,1] numpy ("np"), or (1,T,3,H,W)
    float [0,1] torch ("pt"), or the (1,T,C,h,w) denoising-space latents ("latent")."""


class SVDInterpolatePipeline(SVDPipelineBase):
    r"""Stable Video Diffusion inbetweening from a head frame to a tail frame (modes in the module doc).

    Components (stock SVD, loaded by ``core.models.load_pipeline("svd", settings, pipeline_cls=...)``):
        vae ([`AutoencoderKLTemporalDecoder`]), image_encoder ([`CLIPVisionModelWithProjection`]),
        unet ([`UNetSpatioTemporalConditionModel`], with a head-and-tail LoRA for ``svd-lora``),
        scheduler ([`EulerDiscreteScheduler`]), feature_extractor ([`CLIPImageProcessor`]).

    A == B gives a loop: the video leaves A and comes back to it.
    """

    @staticmethod
    def check_inputs(
        head_image: object,
        tail_image: object,
        mode: object,
        num_frames: object,
        num_inference_steps: object,
        decode_chunk_size: object,
        output_type: object,
        callback_on_step_end_tensor_inputs: object,
        allowed_tensor_inputs: list[str],
        noise_reinjection: object = 0,
        reinjection_steps: object = None,
        guide_video: object = None,
        strength: object = 1.0,
    ) -> None:
        """Raise InputError (a ValueError) naming the offending value; never fixes input."""
        check_image(head_image, "head_image")
        check_image(tail_image, "tail_image")
        if image_size_hw(head_image) != image_size_hw(tail_image):
            raise InputError(
                f"`head_image` is {image_size_hw(head_image)} (H,W) but `tail_image` is "
                f"{image_size_hw(tail_image)}; give both the same size."
            )
        if mode not in MODES:
            raise InputError(f"`mode` must be one of {MODES}, got {mode!r}.")
        if num_frames is not None and (not isinstance(num_frames, int) or num_frames < 2):
            raise InputError(
                f"`num_frames` must be an integer >= 2 (head and tail) or None, got {num_frames!r}."
            )
        check_guide(guide_video, strength, num_frames, image_size_hw(head_image))
        check_call_options(
            num_inference_steps,
            decode_chunk_size,
            output_type,
            callback_on_step_end_tensor_inputs,
            allowed_tensor_inputs,
        )
        if isinstance(noise_reinjection, bool) or not isinstance(noise_reinjection, int):
            raise InputError(
                f"`noise_reinjection` must be a whole number of repeats, got {noise_reinjection!r}."
            )
        if not 0 <= noise_reinjection <= MAX_REINJECTION:
            raise InputError(
                f"`noise_reinjection` must be between 0 and {MAX_REINJECTION}, got {noise_reinjection}."
            )
        if reinjection_steps is not None and (
            isinstance(reinjection_steps, bool)
            or not isinstance(reinjection_steps, int)
            or not 1 <= reinjection_steps <= num_inference_steps
        ):
            raise InputError(
                f"`reinjection_steps` must be a whole number of steps from 1 to {num_inference_steps} or None, "
                f"got {reinjection_steps!r}."
            )

    @torch.no_grad()
    def __call__(
        self,
        head_image: ImageInput,
        tail_image: ImageInput,
        mode: InterpolationMode = "svd-trf",
        num_frames: int | None = None,
        num_inference_steps: int = 25,
        min_guidance_scale: float = 1.0,
        max_guidance_scale: float = 3.0,
        fps: int = 7,
        motion_bucket_id: int = 127,
        noise_aug_strength: float = 0.02,
        decode_chunk_size: int | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        output_type: str = "pil",
        callback_on_step_end: Callable | None = None,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
        return_dict: bool = True,
        noise_reinjection: int = 0,
        reinjection_steps: int | None = None,
        guide_video: np.ndarray | None = None,
        strength: float = 1.0,
    ):
        r"""Generate ``num_frames`` frames from ``head_image`` (frame 0) to ``tail_image`` (frame T-1).

        Args:
            head_image, tail_image: PIL or uint8 (H,W,3), the same size, sides multiples of 8 (of 64 for
                real SVD); the output has their size.
            mode: "svd-trf" or "svd-lora" (see the module doc).
            num_frames: T >= 2, head and tail included; defaults to the UNet's ``num_frames``.
            num_inference_steps, min_guidance_scale, max_guidance_scale, fps, motion_bucket_id,
            noise_aug_strength, decode_chunk_size, generator, output_type ("pil", "np", "pt",
            "latent"), callback_on_step_end, callback_on_step_end_tensor_inputs (default
            ``["latents"]``), return_dict: as in ``StableVideoDiffusionPipeline``. The guidance ramp
            runs from each path's own conditioning frame (in svd-trf, the reversed path's ramp starts
            at the tail).
            noise_reinjection: repeats of each early step with fresh noise in between (0: off; see
                ``SVDPipelineBase._denoise``): each repeat costs one step more, so 2 repeats over the first
                half of the steps cost 2x the steps.
            reinjection_steps: how many early steps get the repeats (default: the first half).
            guide_video: uint8 (T,H,W,3) at the keyframes' size, normally from head to tail (e.g. the flow
                frames between them); None (only with ``strength=1``): start from noise.
            strength: in [0,1]; the share of the schedule that runs from the noised guide
                (``svd_common.steps_for_strength``); 1 (default) starts from pure noise, as stock SVD.

        Returns:
            :class:`SVDInterpolatePipelineOutput`, or its ``frames`` alone when ``return_dict`` is False
            (as the stock SVD pipeline does).
        """
        tensor_inputs = (
            ["latents"] if callback_on_step_end_tensor_inputs is None else callback_on_step_end_tensor_inputs
        )
        # 1. Check inputs
        self.check_inputs(
            head_image,
            tail_image,
            mode,
            num_frames,
            num_inference_steps,
            decode_chunk_size,
            output_type,
            tensor_inputs,
            self._callback_tensor_inputs,
            noise_reinjection,
            reinjection_steps,
            guide_video,
            strength,
        )
        height, width = image_size_hw(head_image)
        if num_frames is None:
            num_frames = self.unet.config.num_frames if guide_video is None else len(guide_video)
        decode_chunk_size = decode_chunk_size or num_frames
        device = self._execution_device
        self._guidance_scale = max_guidance_scale

        # 2. Encode head and tail in one batch (CLIP embeddings, conditioning latents, clean latents)
        embeddings, image_latents, clean_latents = self._encode_frames(
            [as_pil_rgb(head_image), as_pil_rgb(tail_image)],
            height,
            width,
            noise_aug_strength,
            generator,
            device,
            clean=True,
        )
        dtype = embeddings.dtype

        # 3. Conditioning and the model output of one step
        def repeat_frames(latents: torch.Tensor) -> torch.Tensor:
            return latents.unsqueeze(1).repeat(1, num_frames, 1, 1, 1)

        micro = (fps, motion_bucket_id, noise_aug_strength)
        if mode == "svd-trf":
            head = self._conditioning(embeddings[:1], repeat_frames(image_latents[:1]), *micro)
            tail = self._conditioning(embeddings[1:], repeat_frames(image_latents[1:]), *micro)
            head_weight = fusion_weights(num_frames).to(device, dtype)[None, :, None, None, None]

            def model_output_fn(latents: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
                from_head = self._predict(latents, t, head)
                from_tail = self._predict(latents.flip(1), t, tail).flip(1)
                return head_weight * from_head + (1 - head_weight) * from_tail

        else:
            both = head_tail_conditioning(
                image_latents[:1], image_latents[1:], embeddings[:1], embeddings[1:], num_frames
            )
            conditioning = self._conditioning(both.image_embeddings, both.image_latents, *micro)

            def model_output_fn(latents: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
                return self._predict(latents, t, conditioning)

        # 4-5. Timesteps and starting latents: noise as stock SVD (or the noised guide, for its last steps),
        #      with head and tail pinned
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        noise = self._latent_noise(num_frames, height, width, generator, device, dtype)
        latents, first_index, sigma_start = self._guide_start(
            guide_video, strength, num_inference_steps, noise, decode_chunk_size
        )
        ends = [0, num_frames - 1]

        def pin_fn(latents: torch.Tensor, sigma: float) -> torch.Tensor:
            return pin_frames(latents, clean_latents.unsqueeze(0), ends, noise, sigma)

        latents = pin_fn(latents, sigma_start)

        # 6. Per-frame guidance scale
        self._set_guidance_ramp(min_guidance_scale, max_guidance_scale, num_frames, 1, device, dtype)

        # 7. Denoising loop
        reinjection = None
        if noise_reinjection:
            steps = reinjection_steps or -(-num_inference_steps // 2)
            reinjection = Reinjection(noise_reinjection, steps, generator)
        latents = self._denoise(
            latents, first_index, model_output_fn, pin_fn, callback_on_step_end, tensor_inputs, reinjection
        )

        # 8. Decode
        frames = self._output(latents, num_frames, decode_chunk_size, output_type)
        self.maybe_free_model_hooks()
        if not return_dict:
            return frames
        return SVDInterpolatePipelineOutput(frames=frames)


def interpolate_keyframes(
    pipe: SVDInterpolatePipeline,
    keyframes_uint8: np.ndarray,
    frames_between: int,
    mode: InterpolationMode = "svd-trf",
    seed: int = 0,
    loop: bool = False,
    **pipe_kwargs,
) -> np.ndarray:
    """Inbetween a chain of keyframes A -> B -> C ... (and back to A with ``loop``) with the pipeline.

    Segment i runs from keyframe i to keyframe i+1 with ``frames_between + 2`` frames and its own
    generator seeded ``seed + i`` (reproducible, and editing one keyframe changes only its two
    segments). Segments share their seams: the output holds each keyframe once, as given (exact
    pixels), followed by the segment's ``frames_between`` generated frames.

    Args:
        pipe: an :class:`SVDInterpolatePipeline`.
        keyframes_uint8: (K,H,W,3) uint8; K >= 2, or K >= 1 with ``loop``.
        frames_between: generated frames between consecutive keyframes, >= 1.
        mode: "svd-trf" or "svd-lora".
        seed: base seed of the segments' generators.
        loop: add the segment from the last keyframe back to the first; the result then ends just
            before the first keyframe would repeat, so it plays seamlessly on repeat (K = 1 loops
            a single image).
        pipe_kwargs: passed to the pipeline (num_inference_steps, motion_bucket_id, fps, ...).
    Returns:
        uint8 (N,H,W,3) with N = (K-1)(frames_between+1) + 1, or K(frames_between+1) with ``loop``;
        keyframe k sits at index k(frames_between+1).
    """
    if not isinstance(keyframes_uint8, np.ndarray) or keyframes_uint8.dtype != np.uint8:
        raise InputError("Keyframes must be a uint8 numpy array (K,H,W,3).")
    if keyframes_uint8.ndim != 4 or keyframes_uint8.shape[3] != 3:
        raise InputError(f"Keyframes must have shape (K,H,W,3), got {keyframes_uint8.shape}.")
    count = keyframes_uint8.shape[0]
    if count < (1 if loop else 2):
        raise InputError(f"Interpolation needs at least {1 if loop else 2} keyframes, got {count}.")
    if not isinstance(frames_between, int | np.integer) or frames_between < 1:
        raise InputError(f"`frames_between` must be an integer >= 1, got {frames_between!r}.")
    pairs = [(i, i + 1) for i in range(count - 1)] + ([(count - 1, 0)] if loop else [])
    stride = frames_between + 1
    video = np.empty((len(pairs) * stride + (0 if loop else 1), *keyframes_uint8.shape[1:]), np.uint8)
    for segment, (a, b) in enumerate(pairs):
        generator = torch.Generator().manual_seed(seed + segment)
        frames_unit = pipe(
            keyframes_uint8[a],
            keyframes_uint8[b],
            mode=mode,
            num_frames=frames_between + 2,
            generator=generator,
            output_type="np",
            **pipe_kwargs,
        ).frames[0]
        start = segment * stride
        video[start] = keyframes_uint8[a]
        video[start + 1 : start + stride] = unit_to_uint8(frames_unit[1:-1])
    if not loop:
        video[-1] = keyframes_uint8[-1]
    return video
