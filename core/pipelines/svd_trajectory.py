"""SVD video from a first frame, steered by a guide video (SDEdit) and/or a flow ControlNet: drag-to-video.

Two ways to make SVD follow the user's trajectories, usable alone or together:

- **Guide video (training-free).** The guide is usually ``core.engines.warp``'s animation of the image
  along the trajectories: it has the right motion and wrong details (stretched texture, holes). The
  pipeline encodes it with the VAE, noises it to the sigma that ``strength`` selects on SVD's
  Euler/Karras schedule, and runs the remaining steps of stock SVD conditioned on the first frame, so
  SVD repaints details while the coarse motion of the guide survives.
- **Flow ControlNet (trained).** With a ``controlnet`` (:class:`core.controlnet_svd.SVDFlowControlNet`,
  ``core.models.load_svd_controlnet``) and a ``flow_condition`` (``core.controlnet_svd.flow_condition``
  of the trajectories: sparse frame-to-frame flow and a mask), every UNet prediction adds the
  ControlNet's residuals, so the model itself moves the dragged points. ``strength=1`` without a guide is
  the pure ControlNet mode; a lower strength with a guide combines both.

    pipe = load_pipeline("svd", settings, pipeline_cls=SVDTrajectoryPipeline)
    frames = pipe(image_uint8, guide_uint8, strength=0.4, motion_bucket_id=suggested,
                  output_type="np").frames[0]          # (T,H,W,3) float in [0,1]

    pipe.register_modules(controlnet=load_svd_controlnet(settings))
    cond = flow_condition(trajectories.tracks_norm(14), h, w, flow_scale_px=pipe.controlnet.config.flow_scale_px)
    frames = pipe(image_uint8, strength=1.0, flow_condition=cond, output_type="np").frames[0]
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from diffusers import AutoencoderKLTemporalDecoder, EulerDiscreteScheduler, UNetSpatioTemporalConditionModel
from diffusers.pipelines.stable_video_diffusion.pipeline_stable_video_diffusion import (
    StableVideoDiffusionPipelineOutput,
)
from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

from core.controlnet_svd import SVDFlowControlNet, controlnet_attached
from core.errors import InputError
from core.pipelines.svd_common import (
    ImageInput,
    SVDPipelineBase,
    check_call_options,
    check_guide,
    check_image,
    image_size_hw,
    pin_frames,
)


@dataclass
class SVDTrajectoryPipelineOutput(StableVideoDiffusionPipelineOutput):
    """``frames``: list of lists of PIL images, or (1,T,H,W,3) float [0,1] numpy ("np"), or (1,T,3,H,W)
    float [0,1] torch ("pt"), or the (1,T,C,h,w) denoising-space latents ("latent")."""


def _check_flow_condition(
    flow_condition: object,
    conditioning_channels: int | None,
    num_frames: int | None,
    image_hw: tuple[int, int],
) -> None:
    """Raise InputError unless ``flow_condition`` is finite float (T,C,H,W) for this ControlNet and image."""
    if conditioning_channels is None:
        raise InputError(
            "`flow_condition` needs a flow ControlNet, and this pipeline has none: set "
            "KINEMA_SVD_CONTROLNET_MODEL (or --svd-controlnet-model), or build the pipeline with `controlnet=`."
        )
    if not isinstance(flow_condition, np.ndarray | torch.Tensor):
        raise InputError(
            f"`flow_condition` must be a numpy array or torch tensor, got {type(flow_condition).__name__}."
        )
    shape = tuple(flow_condition.shape)
    if len(shape) != 4 or shape[0] < 1 or shape[1] != conditioning_channels or shape[2:] != image_hw:
        raise InputError(
            f"`flow_condition` must be (T,{conditioning_channels},H,W) at the image's size {image_hw} (H,W), "
            f"got shape {shape}."
        )
    values = torch.as_tensor(flow_condition)
    if not values.is_floating_point():
        raise InputError(f"`flow_condition` must hold floats, got dtype {flow_condition.dtype}.")
    if not torch.isfinite(values).all():
        raise InputError("`flow_condition` contains NaN or infinite values.")
    if num_frames is not None and num_frames != shape[0]:
        raise InputError(f"`num_frames` is {num_frames} but `flow_condition` has {shape[0]} frames.")


class SVDTrajectoryPipeline(SVDPipelineBase):
    r"""Stable Video Diffusion from a first frame, started from a noised guide video (SDEdit) and/or
    steered by a flow ControlNet.

    Components (stock SVD, loaded by ``core.models.load_pipeline("svd", settings, pipeline_cls=...)``):
        vae ([`AutoencoderKLTemporalDecoder`]), image_encoder ([`CLIPVisionModelWithProjection`]),
        unet ([`UNetSpatioTemporalConditionModel`]), scheduler ([`EulerDiscreteScheduler`]),
        feature_extractor ([`CLIPImageProcessor`]); optional: controlnet
        ([`core.controlnet_svd.SVDFlowControlNet`], ``core.models.load_svd_controlnet``), None by default.

    How a call runs:
        - The first frame conditions SVD as usual: CLIP embedding + noise-augmented VAE latents on every
          frame's 4 extra channels.
        - ``strength`` in [0,1] picks where the loop starts: ``n = svd_common.steps_for_strength(steps, strength)``
          Euler steps run, from schedule index ``steps - n``; the starting latents are the guide's VAE
          latents plus ``sigma_start`` x unit noise. ``strength=1`` starts from pure noise exactly as stock
          SVD does (the guide is not used and may be None); ``strength=0`` runs no step: the output is
          the guide through the VAE (encode, decode).
        - ``fix_first_frame`` (default) keeps frame 0 on the input image: before the loop and after every
          step, frame 0's latent is replaced by ``clean + sigma * noise0`` (the clean image latent on its
          own Euler path, with the same unit noise throughout, see ``pin_frames``). At the final sigma 0 it
          is the clean latent, so frame 0 decodes to the image up to the VAE's round-trip error (and the
          temporal decoder's mixing of neighbouring frames).
        - ControlNet mode: with a ``controlnet`` and a ``flow_condition`` (T,3,H,W) (see
          ``core.controlnet_svd.flow_condition``), every UNet call first runs the ControlNet on the same
          inputs and adds its residuals, times ``controlnet_conditioning_scale``, to the UNet's skips and
          mid block. With classifier-free guidance the unconditional half gets a zero flow condition
          (no tracks), as it gets zero image conditioning: guidance then pushes along the difference
          the tracks make, amplified like the image conditioning (train with flow dropout to zeros so
          the ControlNet knows the unconditional case). The mode works with any ``strength``: 1 without
          a guide is the pure ControlNet mode; below 1 it refines the warp guide under the ControlNet.
          An untrained ControlNet (zero convs) or a scale of 0 gives exactly the output without it. A
          ``controlnet`` without ``flow_condition`` is not run.
        - Costs one UNet call per step run (batch 2 with guidance, as stock), plus one ControlNet call
          (same batch) per step in ControlNet mode, plus one VAE encode of the guide (in chunks of
          at most ``decode_chunk_size`` frames that ``core.memory.encode_chunk_frames`` allows).
    """

    _optional_components = ["controlnet"]

    def __init__(
        self,
        vae: AutoencoderKLTemporalDecoder,
        image_encoder: CLIPVisionModelWithProjection,
        unet: UNetSpatioTemporalConditionModel,
        scheduler: EulerDiscreteScheduler,
        feature_extractor: CLIPImageProcessor,
        controlnet: SVDFlowControlNet | None = None,
    ):
        super().__init__(vae, image_encoder, unet, scheduler, feature_extractor)
        # Not in model_cpu_offload_seq: it runs once per step beside the UNet, so with model offload it
        # gets its own hook and stays on the device for the whole call (as diffusers does ControlNets).
        self.register_modules(controlnet=controlnet)

    @staticmethod
    def check_inputs(
        image: object,
        guide_video: object,
        strength: object,
        num_frames: object,
        num_inference_steps: object,
        decode_chunk_size: object,
        output_type: object,
        callback_on_step_end_tensor_inputs: object,
        allowed_tensor_inputs: list[str],
        flow_condition: object = None,
        conditioning_channels: int | None = None,
        controlnet_conditioning_scale: object = 1.0,
    ) -> None:
        """Raise InputError (a ValueError) naming the offending value; never fixes input.

        ``conditioning_channels``: the pipeline's ControlNet's (None without one).
        """
        check_image(image, "image")
        if num_frames is not None and (not isinstance(num_frames, int) or num_frames < 1):
            raise InputError(f"`num_frames` must be a positive integer or None, got {num_frames!r}.")
        if (
            isinstance(controlnet_conditioning_scale, bool)
            or not isinstance(controlnet_conditioning_scale, int | float)
            or not 0.0 <= controlnet_conditioning_scale < math.inf
        ):
            raise InputError(
                "`controlnet_conditioning_scale` must be a finite number >= 0, "
                f"got {controlnet_conditioning_scale!r}."
            )
        if flow_condition is not None:
            _check_flow_condition(flow_condition, conditioning_channels, num_frames, image_size_hw(image))
        check_guide(guide_video, strength, num_frames, image_size_hw(image))
        if flow_condition is not None and guide_video is not None and len(flow_condition) != len(guide_video):
            raise InputError(
                f"`flow_condition` has {len(flow_condition)} frames but `guide_video` has {len(guide_video)}."
            )
        check_call_options(
            num_inference_steps,
            decode_chunk_size,
            output_type,
            callback_on_step_end_tensor_inputs,
            allowed_tensor_inputs,
        )

    def _flow_control(
        self,
        flow_condition: np.ndarray | torch.Tensor | None,
        scale: float,
        device: torch.device,
        dtype: torch.dtype,
    ) -> contextlib.AbstractContextManager:
        """The ControlNet attached to the UNet for the loop (a no-op without ``flow_condition``).

        The condition is batched like the UNet's input: [zeros, flow] with guidance (the unconditional
        half sees no tracks, see the class doc), [flow] without.
        """
        if flow_condition is None:
            return contextlib.nullcontext()
        cond = torch.as_tensor(flow_condition).to(device=device, dtype=dtype).unsqueeze(0)
        if self.do_classifier_free_guidance:
            cond = torch.cat([torch.zeros_like(cond), cond])
        return controlnet_attached(self.unet, self.controlnet, cond, scale)

    @torch.no_grad()
    def __call__(
        self,
        image: ImageInput,
        guide_video: np.ndarray | None = None,
        strength: float = 0.4,
        num_frames: int | None = None,
        num_inference_steps: int = 25,
        min_guidance_scale: float = 1.0,
        max_guidance_scale: float = 3.0,
        fps: int = 7,
        motion_bucket_id: int = 127,
        noise_aug_strength: float = 0.02,
        fix_first_frame: bool = True,
        decode_chunk_size: int | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        output_type: str = "pil",
        callback_on_step_end: Callable | None = None,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
        return_dict: bool = True,
        flow_condition: np.ndarray | torch.Tensor | None = None,
        controlnet_conditioning_scale: float = 1.0,
    ):
        r"""Generate a video that starts at ``image`` and follows ``guide_video`` and/or ``flow_condition``.

        Args:
            image: the first frame, PIL or uint8 (H,W,3); sides multiples of 8 (of 64 for real SVD).
            guide_video: uint8 (T,H,W,3) at the image's size, frame 0 normally the image; None only
                with ``strength=1``.
            strength: in [0,1]; the share of the schedule that runs (see ``svd_common.steps_for_strength``).
                SVD's Karras schedule spends most steps at high sigma: with 25 steps the start sigma
                is 0.16 / 1.3 / 3.9 / 15.6 / 98 / 700 at strength 0.2 / 0.3 / 0.4 / 0.5 / 0.7 / 1,
                against latents of standard deviation about 1, so the guide's layout survives only
                at low strengths (default 0.4).
            num_frames: defaults to the guide's length, else the flow condition's, else the UNet's
                ``num_frames``.
            num_inference_steps, min_guidance_scale, max_guidance_scale, fps, motion_bucket_id,
            noise_aug_strength, decode_chunk_size, generator, output_type ("pil", "np", "pt",
            "latent"), callback_on_step_end, callback_on_step_end_tensor_inputs (default
            ``["latents"]``), return_dict: as in ``StableVideoDiffusionPipeline``. ``motion_bucket_id``
            is the caller's (``core.motion.suggest_motion_bucket`` derives one from trajectories).
            fix_first_frame: hold frame 0 on ``image`` (see the class doc); False leaves it free.
            flow_condition: (T,C,H,W) float at the image's size, ``core.controlnet_svd.flow_condition``
                of the trajectories (C = the ControlNet's ``conditioning_channels``, 3); needs a
                ``controlnet``. None: no ControlNet.
            controlnet_conditioning_scale: >= 0, multiplies the ControlNet's residuals (0: as without).

        Returns:
            :class:`SVDTrajectoryPipelineOutput`, or its ``frames`` alone when ``return_dict`` is False
            (as the stock SVD pipeline does).
        """
        tensor_inputs = (
            ["latents"] if callback_on_step_end_tensor_inputs is None else callback_on_step_end_tensor_inputs
        )
        # 1. Check inputs
        self.check_inputs(
            image,
            guide_video,
            strength,
            num_frames,
            num_inference_steps,
            decode_chunk_size,
            output_type,
            tensor_inputs,
            self._callback_tensor_inputs,
            flow_condition,
            None if self.controlnet is None else self.controlnet.config.conditioning_channels,
            controlnet_conditioning_scale,
        )
        height, width = image_size_hw(image)
        if num_frames is None:
            if guide_video is not None:
                num_frames = guide_video.shape[0]
            elif flow_condition is not None:
                num_frames = len(flow_condition)
            else:
                num_frames = self.unet.config.num_frames
        decode_chunk_size = decode_chunk_size or num_frames
        device = self._execution_device
        self._guidance_scale = max_guidance_scale

        # 2-3. The first frame's conditioning (CLIP embedding, conditioning latents over the frames, batched
        #      for guidance) and its clean latents
        conditioning, clean_first = self._image_conditioning(
            image,
            height,
            width,
            num_frames,
            fps,
            motion_bucket_id,
            noise_aug_strength,
            generator,
            device,
            clean=fix_first_frame,
        )
        dtype = conditioning.image_embeddings.dtype

        # 4-5. Timesteps and starting latents: the last steps_for_strength(...) steps of the schedule, from
        #      guide + sigma_start * noise (pure noise at strength 1, as stock SVD)
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        noise = self._latent_noise(num_frames, height, width, generator, device, dtype)
        latents, first_index, sigma_start = self._guide_start(
            guide_video, strength, num_inference_steps, noise, decode_chunk_size
        )

        pin_fn = None
        if fix_first_frame:

            def pin_fn(x: torch.Tensor, sigma: float) -> torch.Tensor:
                return pin_frames(x, clean_first.unsqueeze(1), [0], noise, sigma)

            latents = pin_fn(latents, sigma_start)

        # 6. Per-frame guidance scale
        self._set_guidance_ramp(min_guidance_scale, max_guidance_scale, num_frames, 1, device, dtype)

        # 7. Denoising loop (under the ControlNet in ControlNet mode)
        with self._flow_control(flow_condition, controlnet_conditioning_scale, device, dtype):
            latents = self._denoise(
                latents,
                first_index,
                lambda x, t: self._predict(x, t, conditioning),
                pin_fn,
                callback_on_step_end,
                tensor_inputs,
            )

        # 8. Decode
        frames = self._output(latents, num_frames, decode_chunk_size, output_type)
        self.maybe_free_model_hooks()
        if not return_dict:
            return frames
        return SVDTrajectoryPipelineOutput(frames=frames)
