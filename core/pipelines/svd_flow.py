"""SVD generating optical flow from an image, p(flow | first frame): the research path of SEED_NOTES line 1.

SVD with a LoRA (``flow_lora``, trained by ``python -m core.training.svd_flow_lora``) generates a *flow video*
instead of a video: T frames, each an RGB image that encodes the flow from the previous frame
(:mod:`core.flow.encoding`: signed square root per component; :mod:`core.flow`'s flow-video layout: frame
0 the zero flow, frame t+1 the flow t -> t+1 on frame t's grid, like :func:`core.trajectory.sparse_flow`).
Conditioning is stock SVD's, from the first RGB frame. The VAE decodes the latents to images in [-1,1],
and :func:`core.flow.encoding.decode_flow` turns those into flow in px.

    pipe = SVDFlowPipeline(**load_components("svd", model))
    pipe.load_flow_lora("runs/flow")                       # LoRA + flow_encoding.json (the scale)
    out = pipe(image_uint8, num_frames=14, generator=torch.Generator().manual_seed(0))
    out.flows_px      # (1,T,H,W,2) float32 px, frame 0 exactly zero
    out.frames        # the flow images (as output_type), to look at
    out.flow_colors   # (1,T,H,W,3) uint8 Middlebury colours, saturated at the flow scale

The scale: a flow component of ``scale_px`` maps to the image value +-1. It is stored relative to the frame
width (``FlowEncoding.scale_of_width``), so a LoRA trained at 512 px width with +-16 px generates +-32 px
flow at 1024 px; ``flow_scale_px`` overrides it per call.

Pieces the joint video+flow sampler reuses: :func:`encode_flow_latents` (a flow video -> denoising-space
latents, what training targets and replacement needs), :meth:`SVDFlowPipeline.encode_flow_video` (the same on
the pipeline's device, with its VAE upcast), :meth:`SVDFlowPipeline.decode_flow_video` and
:func:`latent_mask` (a pixel mask such as ``core.trajectory.sparse_flow_mask`` on the latent grid).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.pipelines.stable_video_diffusion.pipeline_stable_video_diffusion import (
    StableVideoDiffusionPipelineOutput,
)

from core.errors import InputError
from core.flow.encoding import FlowEncoding, decode_flow, encode_flow
from core.flow.visualize import render_flow_video
from core.memory import encode_chunk_frames
from core.pipelines.svd_common import (
    ImageInput,
    SVDPipelineBase,
    check_call_options,
    check_image,
    encode_video_latents,
    image_size_hw,
    pin_frames,
)

FLOW_ADAPTER_NAME = "flow_lora"
# +-16 px at 512 px width: consecutive frames of SVD-rate clips rarely move more (DIS flow of 320x512
# clips at stride 1); larger motions clip, smaller ones get the finer steps of the square-root code.
DEFAULT_FLOW_ENCODING = FlowEncoding(1 / 32)


# -- plain functions (shared with training and the joint sampler) -------------------------------------


def encode_flow_latents(
    vae: torch.nn.Module, flow_video_px: np.ndarray | torch.Tensor, scale_px: float, chunk_size: int
) -> torch.Tensor:
    """Flow frames (...,T,H,W,2) in px -> denoising-space latents (...,T,C,H/f,W/f) in the VAE's dtype.

    The frames are encoded as images (:func:`core.flow.encoding.encode_flow`) and then exactly like video
    frames (``svd_common.encode_video_latents``: VAE mode x scaling factor, ``chunk_size`` frames at a
    time), on the device of ``flow_video_px`` (numpy: the CPU). Leading dimensions (e.g. a batch) are kept.
    """
    flows = torch.as_tensor(flow_video_px)
    if flows.ndim < 4:
        raise InputError(f"flow_video_px must have shape (...,T,H,W,2), got {tuple(flows.shape)}.")
    images_signed = encode_flow(flows, scale_px)  # (...,T,H,W,3) float32
    lead = images_signed.shape[:-3]
    frames = images_signed.flatten(0, -4).permute(0, 3, 1, 2)  # (N,3,H,W)
    latents = encode_video_latents(vae, frames, chunk_size)
    return latents.unflatten(0, lead)


def latent_mask(mask_unit: np.ndarray | torch.Tensor, vae_scale_factor: int) -> torch.Tensor:
    """A pixel mask (T,H,W) or (T,H,W,1) in [0,1] -> (T,1,H/f,W/f) float32: the mean over each latent
    cell's f x f pixels (the share of the cell that is known; threshold it for a hard mask)."""
    mask = torch.as_tensor(mask_unit, dtype=torch.float32)
    if mask.ndim == 4 and mask.shape[-1] == 1:
        mask = mask[..., 0]
    if mask.ndim != 3:
        raise InputError(f"The mask must have shape (T,H,W) or (T,H,W,1), got {tuple(mask.shape)}.")
    if mask.shape[1] % vae_scale_factor or mask.shape[2] % vae_scale_factor:
        raise InputError(
            f"The mask is {mask.shape[2]}x{mask.shape[1]}; both sides must be multiples of {vae_scale_factor}."
        )
    return F.avg_pool2d(mask[:, None], vae_scale_factor)


# -- the pipeline ---------------------------------------------------------------------------------------


@dataclass
class SVDFlowPipelineOutput(StableVideoDiffusionPipelineOutput):
    """``frames``: the flow images as ``output_type`` (list of lists of PIL images, (1,T,H,W,3) float [0,1]
    numpy, (1,T,3,H,W) float [0,1] torch) or the (1,T,C,h,w) denoising-space latents ("latent").
    ``flows_px``: (1,T,H,W,2) float32 px, frame 0 zero (None for "latent"). ``flow_colors``: (1,T,H,W,3)
    uint8, saturated at the flow scale (None for "latent")."""

    flows_px: np.ndarray | None = None
    flow_colors: np.ndarray | None = None


class SVDFlowPipeline(SVDPipelineBase):
    r"""Stable Video Diffusion generating a flow video from an image (module doc).

    Components (stock SVD; ``core.models.load_pipeline("svd", settings, pipeline_cls=...)`` or
    ``SVDFlowPipeline(**core.models.load_components("svd", model))``):
        vae ([`AutoencoderKLTemporalDecoder`]), image_encoder ([`CLIPVisionModelWithProjection`]),
        unet ([`UNetSpatioTemporalConditionModel`] carrying the ``flow_lora`` adapter, see
        :meth:`load_flow_lora`), scheduler ([`EulerDiscreteScheduler`]), feature_extractor ([`CLIPImageProcessor`]).

    ``flow_encoding`` (:class:`~core.flow.encoding.FlowEncoding`) holds the scale; :meth:`load_flow_lora`
    sets it from the LoRA folder, otherwise it is ``DEFAULT_FLOW_ENCODING``. Without a LoRA the pipeline
    runs stock SVD and decodes its video as if it were flow: a baseline, not flow.
    """

    flow_encoding: FlowEncoding = DEFAULT_FLOW_ENCODING

    def load_flow_lora(self, folder: str | Path) -> FlowEncoding:
        """Load ``flow_lora.safetensors`` from ``folder`` into the UNet (new adapter, or onto an existing
        ``flow_lora``) and its ``flow_encoding.json`` as this pipeline's scale; return the encoding.

        The UNet is changed in place. For a UNet shared with other pipelines (``core.models.load_pipeline``
        caches one per model) attach the adapter per run instead: ``core.models.state.attached(pipe.unet,
        LoraWeights(folder, FLOW_ADAPTER_NAME))``, with ``pipe.flow_encoding = FlowEncoding.load(folder)``.
        """
        from core.lora import load_lora

        encoding = FlowEncoding.load(folder)
        load_lora(self.unet, folder, FLOW_ADAPTER_NAME)
        self.flow_encoding = encoding
        return encoding

    @torch.no_grad()
    def encode_flow_video(self, flow_video_px: np.ndarray | torch.Tensor, scale_px: float) -> torch.Tensor:
        """Flow videos (B,T,H,W,2) px -> denoising-space latents (B,T,C,h,w) on the execution device, in the
        UNet's dtype (:func:`encode_flow_latents` with the VAE upcast the pipeline uses)."""
        flows = torch.as_tensor(flow_video_px).to(self._execution_device)
        with self._vae_upcast():
            chunk = encode_chunk_frames(*flows.shape[-3:-1])
            latents = encode_flow_latents(self.vae, flows, scale_px, chunk)
        return latents.to(self.unet.dtype)

    def decode_flow_video(
        self, latents: torch.Tensor, scale_px: float, decode_chunk_size: int
    ) -> tuple[torch.Tensor, np.ndarray]:
        """Latents (B,T,C,h,w) -> (the decoded images (B,3,T,H,W) float32 in about [-1,1], flows
        (B,T,H,W,2) float32 px with frame 0 set to zero, the convention's value)."""
        images_signed = self.decode_latents(latents, latents.shape[1], decode_chunk_size)
        flows_px = decode_flow(images_signed.permute(0, 2, 3, 4, 1), scale_px).cpu().numpy()
        flows_px[:, 0] = 0.0
        return images_signed, flows_px

    @staticmethod
    def check_inputs(
        image: object,
        num_frames: object,
        flow_scale_px: object,
        num_inference_steps: object,
        decode_chunk_size: object,
        output_type: object,
        callback_on_step_end_tensor_inputs: object,
        allowed_tensor_inputs: list[str],
    ) -> None:
        """Raise InputError (a ValueError) naming the offending value; never fixes input."""
        check_image(image, "image")
        if num_frames is not None and (not isinstance(num_frames, int) or num_frames < 2):
            raise InputError(f"`num_frames` must be an integer >= 2 or None, got {num_frames!r}.")
        if flow_scale_px is not None and (
            isinstance(flow_scale_px, bool)
            or not isinstance(flow_scale_px, int | float)
            or not 0 < flow_scale_px < float("inf")
        ):
            raise InputError(
                f"`flow_scale_px` must be a positive number of pixels or None, got {flow_scale_px!r}."
            )
        check_call_options(
            num_inference_steps,
            decode_chunk_size,
            output_type,
            callback_on_step_end_tensor_inputs,
            allowed_tensor_inputs,
        )

    @torch.no_grad()
    def __call__(
        self,
        image: ImageInput,
        num_frames: int | None = None,
        flow_scale_px: float | None = None,
        num_inference_steps: int = 25,
        min_guidance_scale: float = 1.0,
        max_guidance_scale: float = 3.0,
        fps: int = 7,
        motion_bucket_id: int = 127,
        noise_aug_strength: float = 0.02,
        pin_first_frame: bool = True,
        decode_chunk_size: int | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        output_type: str = "np",
        callback_on_step_end: Callable | None = None,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
        return_dict: bool = True,
    ):
        r"""Generate the flow video of ``image``: T flow frames, frame 0 zero.

        Args:
            image: the first RGB frame, PIL or uint8 (H,W,3); sides multiples of 8 (of 64 for real SVD).
            num_frames: T >= 2; defaults to the UNet's ``num_frames``.
            flow_scale_px: the flow component (px) the image value 1 stands for; default
                ``self.flow_encoding.scale_px(width)`` (the LoRA's, relative to the width).
            pin_first_frame: hold frame 0 on the zero flow's latents (before the loop and after every step,
                on its own noise path, as ``svd_common.pin_frames`` does): the convention fixes that frame,
                so the model need not generate it. False runs the stock SVD loop unchanged.
            num_inference_steps, min_guidance_scale, max_guidance_scale, fps, motion_bucket_id,
            noise_aug_strength, decode_chunk_size, generator, output_type ("pil", "np", "pt", "latent"),
            callback_on_step_end, callback_on_step_end_tensor_inputs (default ``["latents"]``): as in
            ``StableVideoDiffusionPipeline``.
            return_dict: False returns the tuple ``(frames, flows_px, flow_colors)``.

        Returns:
            :class:`SVDFlowPipelineOutput`.
        """
        tensor_inputs = (
            ["latents"] if callback_on_step_end_tensor_inputs is None else callback_on_step_end_tensor_inputs
        )
        # 1. Check inputs
        self.check_inputs(
            image,
            num_frames,
            flow_scale_px,
            num_inference_steps,
            decode_chunk_size,
            output_type,
            tensor_inputs,
            self._callback_tensor_inputs,
        )
        height, width = image_size_hw(image)
        num_frames = num_frames or self.unet.config.num_frames
        decode_chunk_size = decode_chunk_size or num_frames
        scale_px = float(flow_scale_px) if flow_scale_px is not None else self.flow_encoding.scale_px(width)
        device = self._execution_device
        self._guidance_scale = max_guidance_scale

        # 2-3. The image's conditioning as stock SVD's (CLIP embedding, conditioning latents over the frames,
        #      batched for guidance)
        conditioning, _ = self._image_conditioning(
            image,
            height,
            width,
            num_frames,
            fps,
            motion_bucket_id,
            noise_aug_strength,
            generator,
            device,
            clean=False,
        )
        dtype = conditioning.image_embeddings.dtype

        # 4. Timesteps
        self.scheduler.set_timesteps(num_inference_steps, device=device)

        # 5. Starting latents: noise as stock SVD, frame 0 optionally pinned on the zero flow
        noise = self._latent_noise(num_frames, height, width, generator, device, dtype)
        latents = noise * self.scheduler.init_noise_sigma
        pin_fn = None
        if pin_first_frame:
            zero_flow = torch.zeros(1, 1, height, width, 2)
            zero_latents = self.encode_flow_video(zero_flow, scale_px).to(dtype)

            def pin_fn(x: torch.Tensor, sigma: float) -> torch.Tensor:
                return pin_frames(x, zero_latents, [0], noise, sigma)

            latents = pin_fn(latents, float(self.scheduler.sigmas[0]))

        # 6. Per-frame guidance scale
        self._set_guidance_ramp(min_guidance_scale, max_guidance_scale, num_frames, 1, device, dtype)

        # 7. Denoising loop
        latents = self._denoise(
            latents,
            0,
            lambda x, t: self._predict(x, t, conditioning),
            pin_fn,
            callback_on_step_end,
            tensor_inputs,
        )

        # 8. Decode: flow images -> flow in px, colours
        flows_px = flow_colors = None
        if output_type == "latent":
            frames = latents
        else:
            images_signed, flows_px = self.decode_flow_video(latents, scale_px, decode_chunk_size)
            frames = self.video_processor.postprocess_video(video=images_signed, output_type=output_type)
            flow_colors = np.stack([render_flow_video(flows, max_magnitude=scale_px) for flows in flows_px])
        self.maybe_free_model_hooks()
        if not return_dict:
            return frames, flows_px, flow_colors
        return SVDFlowPipelineOutput(frames=frames, flows_px=flows_px, flow_colors=flow_colors)
