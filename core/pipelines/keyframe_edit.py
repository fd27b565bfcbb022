"""Consistent SD keyframe editing: img2img over all keyframes at once, shared noise, cross-keyframe attention.

:class:`KeyframeEditPipeline` is diffusers' ``StableDiffusionImg2ImgPipeline`` with three changes:

- all K keyframes are one batch, and every keyframe starts from the same noise: one Gaussian draw for the VAE
  posterior sample and one for the diffusion noise, shared by all keyframes (for K = 1 this is exactly the
  stock pipeline's draw, so the stock output is reproduced bit for bit);
- every self-attention layer of the UNet (and ControlNet) is cross-frame (:mod:`core.patches.cross_frame`):
  each keyframe also attends to an anchor keyframe's tokens (``cross_frame="anchor"``) or to all keyframes'
  (``"all"``); ``"none"`` is plain batched img2img;
- an optional ControlNet (a component, None by default): with ``controlnet_conditioning`` (``"canny"``, or
  condition images such as depth maps) the run goes through diffusers'
  ``StableDiffusionControlNetImg2ImgPipeline`` over the same components, with the same shared noise and
  cross-frame attention.

How consistent the edited keyframes are (warp error along the original flow, for joint editing against
editing each keyframe alone): ``python -m core.eval.keyframe_edit``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import PIL.Image
import torch
from diffusers import (
    ControlNetModel,
    StableDiffusionControlNetImg2ImgPipeline,
    StableDiffusionImg2ImgPipeline,
)
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_img2img import retrieve_latents
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from core.errors import InputError
from core.imaging import pil_to_rgb_uint8, to_unit, unit_to_uint8
from core.patches.cross_frame import CrossFrameMode, check_cross_frame, cross_frame_attention

OUTPUT_TYPES = ("uint8", "np", "pil", "pt", "latent")
Keyframes = np.ndarray | Sequence[PIL.Image.Image]


@dataclass
class KeyframeEditOutput(BaseOutput):
    """``images``: the edited keyframes, uint8 (K,H,W,3) for ``output_type="uint8"`` (float [0,1] for "np",
    a list of PIL images for "pil", a (K,3,H,W) tensor in [0,1] for "pt", latents for "latent").
    ``nsfw_content_detected``: the safety checker's flags, None without one."""

    images: Any
    nsfw_content_detected: list[bool] | None


class _SharedNoise:
    """``prepare_latents`` of diffusers' img2img pipelines with one noise draw shared by the whole batch."""

    def prepare_latents(
        self, image, timestep, batch_size, num_images_per_prompt, dtype, device, generator=None
    ):
        """Noisy latents (K,4,h,w) at ``timestep`` for ``image`` (K,3,H,W) in [-1,1].

        Draw order as in diffusers (posterior sample, then diffusion noise), each of batch size 1 and
        broadcast to the K keyframes.
        """
        image = image.to(device=device, dtype=dtype)
        encoded = self.vae.encode(image)
        if hasattr(encoded, "latent_dist"):
            posterior = encoded.latent_dist
            params = posterior.parameters
            eps = randn_tensor(
                (1, *posterior.mean.shape[1:]), generator=generator, device=params.device, dtype=params.dtype
            )
            init_latents = posterior.mean + posterior.std * eps
        else:  # autoencoders that return latents directly draw nothing
            init_latents = retrieve_latents(encoded, generator=generator)
        init_latents = self.vae.config.scaling_factor * init_latents
        noise = randn_tensor((1, *init_latents.shape[1:]), generator=generator, device=device, dtype=dtype)
        return self.scheduler.add_noise(init_latents, noise.expand_as(init_latents), timestep)


class _ControlNetKeyframeImg2Img(_SharedNoise, StableDiffusionControlNetImg2ImgPipeline):
    """diffusers' ControlNet img2img with shared noise; built per call over KeyframeEditPipeline's modules."""


class KeyframeEditPipeline(_SharedNoise, StableDiffusionImg2ImgPipeline):
    """Edit K keyframes of a video consistently with Stable Diffusion img2img (see the module docstring).

    Components: those of ``StableDiffusionImg2ImgPipeline`` (``vae``, ``text_encoder``, ``tokenizer``,
    ``unet``, ``scheduler``, optional ``safety_checker``, ``feature_extractor``, ``image_encoder``) and an
    optional ``controlnet`` (a ``ControlNetModel`` matching the UNet, e.g. canny or depth), used only when a
    call gives ``controlnet_conditioning``.
    """

    model_cpu_offload_seq = "text_encoder->image_encoder->unet->controlnet->vae"
    _optional_components = ["safety_checker", "feature_extractor", "image_encoder", "controlnet"]

    def __init__(
        self,
        vae,
        text_encoder,
        tokenizer,
        unet,
        scheduler,
        safety_checker=None,
        feature_extractor=None,
        image_encoder=None,
        controlnet: ControlNetModel | None = None,
        requires_safety_checker: bool = False,
    ):
        super().__init__(
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            unet=unet,
            scheduler=scheduler,
            safety_checker=safety_checker,
            feature_extractor=feature_extractor,
            image_encoder=image_encoder,
            requires_safety_checker=requires_safety_checker,
        )
        self.register_modules(controlnet=controlnet)

    # -- inputs ----------------------------------------------------------------------------------------

    def check_keyframe_inputs(
        self,
        prompt: str | None,
        keyframes: Keyframes,
        strength: float,
        guidance_scale: float,
        num_inference_steps: int,
        generator: torch.Generator | None,
        seed: int | None,
        cross_frame: str,
        anchor_index: int,
        prompts: Sequence[str] | None,
        controlnet_conditioning: str | np.ndarray | Sequence[PIL.Image.Image] | None,
        output_type: str,
    ) -> tuple[np.ndarray, list[str], np.ndarray | None]:
        """Validate a call; return the keyframes uint8 (K,H,W,3), one prompt per keyframe and the ControlNet
        condition images uint8 (K,H,W,3) (None without ControlNet). Raises InputError naming the bad value."""
        keyframes_uint8 = _as_frames_uint8(keyframes, "keyframes")
        count, height, width = keyframes_uint8.shape[:3]
        multiple = self.vae_scale_factor
        if height % multiple or width % multiple:
            raise InputError(
                f"Keyframes of {width}x{height} px cannot be encoded: both sides must be multiples of "
                f"{multiple} (resize them with core.imaging.resize_to_multiple)."
            )
        check_cross_frame(count, cross_frame, anchor_index)
        if prompts is None:
            if not isinstance(prompt, str):
                raise InputError(f"prompt must be a string, got {type(prompt).__name__}.")
            prompt_list = [prompt] * count
        else:
            prompt_list = list(prompts) if not isinstance(prompts, str) else [prompts]
            if len(prompt_list) != count or not all(isinstance(p, str) for p in prompt_list):
                raise InputError(
                    f"prompts must be {count} strings, one per keyframe, got {len(prompt_list)} entries."
                )
        if isinstance(strength, bool) or not isinstance(strength, int | float) or not 0 < strength <= 1:
            raise InputError(f"strength must be a number in (0, 1], got {strength!r}.")
        if (
            isinstance(num_inference_steps, bool)
            or not isinstance(num_inference_steps, int)
            or num_inference_steps < 1
        ):
            raise InputError(f"num_inference_steps must be a positive integer, got {num_inference_steps!r}.")
        if int(num_inference_steps * strength) < 1:
            raise InputError(
                f"strength {strength} x {num_inference_steps} steps leaves no denoising step: raise the "
                f"strength to at least {1 / num_inference_steps:.3g} or the number of steps."
            )
        if (
            isinstance(guidance_scale, bool)
            or not isinstance(guidance_scale, int | float)
            or not (math.isfinite(guidance_scale) and guidance_scale >= 0)
        ):
            raise InputError(f"guidance_scale must be a finite number >= 0, got {guidance_scale!r}.")
        if generator is not None and seed is not None:
            raise InputError("Give either a seed or a generator, not both.")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise InputError(
                "generator must be one torch.Generator (shared by the keyframes), "
                f"got {type(generator).__name__}."
            )
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise InputError(f"seed must be an integer, got {seed!r}.")
        if output_type not in OUTPUT_TYPES:
            raise InputError(f"output_type must be one of {', '.join(OUTPUT_TYPES)}, got {output_type!r}.")
        if controlnet_conditioning is None:
            return keyframes_uint8, prompt_list, None
        if self.controlnet is None:
            raise InputError(
                "ControlNet conditioning was given but the pipeline has no ControlNet: load one first."
            )
        if isinstance(controlnet_conditioning, str):
            if controlnet_conditioning != "canny":
                raise InputError(
                    "controlnet_conditioning must be 'canny' or condition images, "
                    f"got {controlnet_conditioning!r}."
                )
            return keyframes_uint8, prompt_list, canny_conditions(keyframes_uint8)
        condition_uint8 = _as_frames_uint8(controlnet_conditioning, "controlnet_conditioning", grey_ok=True)
        if condition_uint8.shape != keyframes_uint8.shape:
            raise InputError(
                f"The ControlNet condition images are {condition_uint8.shape[:3]} (K,H,W) but the keyframes "
                f"are {keyframes_uint8.shape[:3]}: give one condition image per keyframe, of the keyframes' "
                "size."
            )
        return keyframes_uint8, prompt_list, condition_uint8

    # -- the call --------------------------------------------------------------------------------------

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | None = None,
        keyframes: Keyframes | None = None,
        strength: float = 0.6,
        guidance_scale: float = 7.5,
        num_inference_steps: int = 30,
        generator: torch.Generator | None = None,
        seed: int | None = None,
        cross_frame: CrossFrameMode = "anchor",
        anchor_index: int = 0,
        prompts: Sequence[str] | None = None,
        negative_prompt: str | None = None,
        controlnet_conditioning: str | np.ndarray | Sequence[PIL.Image.Image] | None = None,
        controlnet_conditioning_scale: float = 1.0,
        callback_on_step_end: Callable | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
        output_type: str = "uint8",
        return_dict: bool = True,
    ) -> KeyframeEditOutput | tuple:
        """Edit ``keyframes`` toward ``prompt`` (or per-keyframe ``prompts``) in one consistent batch.

        Args:
            prompt: the edit, e.g. "a watercolour painting"; ``prompts`` (K strings) overrides it per
                keyframe.
            keyframes: uint8 (K,H,W,3) in [0,255] or K PIL images, H and W multiples of the VAE factor
                (8 for SD).
            strength: in (0, 1], how far from the keyframes the edit may go (fraction of the schedule re-run).
            guidance_scale: classifier-free guidance weight; above 1 the batch is doubled (uncond | cond).
            num_inference_steps: steps of the full schedule; ``int(steps * strength)`` of them run.
            generator / seed: one torch.Generator, or an integer seed (a CPU generator); not both.
            cross_frame: "anchor" (each keyframe also attends to keyframe ``anchor_index``), "all", or "none".
            negative_prompt: one string for every keyframe.
            controlnet_conditioning: "canny" (edges of the keyframes, :func:`canny_conditions`) or condition
                images uint8 (K,H,W,3) / (K,H,W) (e.g. depth rendered by core.imaging.colorize_depth with
                colormap="gray"); needs the ``controlnet`` component.
            controlnet_conditioning_scale: weight of the ControlNet residuals.
            callback_on_step_end: diffusers' step callback ``(pipeline, step, timestep, tensors) -> dict``;
                in the ControlNet path ``pipeline`` is the ControlNet img2img pipeline running the steps.
            output_type: "uint8" (numpy (K,H,W,3)), or diffusers' "np", "pil", "pt", "latent".

        Returns:
            :class:`KeyframeEditOutput`, or ``(images, nsfw_content_detected)`` when ``return_dict`` is False.
        """
        # 1. Check inputs
        keyframes_uint8, prompt_list, condition_uint8 = self.check_keyframe_inputs(
            prompt,
            keyframes,
            strength,
            guidance_scale,
            num_inference_steps,
            generator,
            seed,
            cross_frame,
            anchor_index,
            prompts,
            controlnet_conditioning,
            output_type,
        )
        count = keyframes_uint8.shape[0]

        # 2. Randomness: one generator, shared by the keyframes (see _SharedNoise.prepare_latents)
        if seed is not None:
            generator = torch.Generator("cpu").manual_seed(seed)

        # 3. Arguments of the diffusers img2img call; images in [0,1] (its image processor makes them [-1,1])
        arguments = {
            "prompt": prompt_list,
            "image": to_unit(keyframes_uint8),
            "strength": float(strength),
            "num_inference_steps": num_inference_steps,
            "guidance_scale": float(guidance_scale),
            "negative_prompt": None if negative_prompt is None else [negative_prompt] * count,
            "generator": generator,
            "output_type": "np" if output_type == "uint8" else output_type,
            "return_dict": False,
            "callback_on_step_end": callback_on_step_end,
            "callback_on_step_end_tensor_inputs": list(callback_on_step_end_tensor_inputs),
        }

        # 4. Denoise with cross-frame attention in the UNet (and ControlNet)
        controlnet = self.controlnet if condition_uint8 is not None else None
        with cross_frame_attention([self.unet, controlnet], count, cross_frame, anchor_index):
            if controlnet is None:
                images, nsfw = super().__call__(**arguments)
            else:
                images, nsfw = self._controlnet_pipeline()(
                    control_image=to_unit(condition_uint8),
                    controlnet_conditioning_scale=float(controlnet_conditioning_scale),
                    **arguments,
                )
                self.maybe_free_model_hooks()

        # 5. Outputs
        if output_type == "uint8":
            images = unit_to_uint8(images)
        if not return_dict:
            return images, nsfw
        return KeyframeEditOutput(images=images, nsfw_content_detected=nsfw)

    def _controlnet_pipeline(self) -> _ControlNetKeyframeImg2Img:
        """diffusers' ControlNet img2img over this pipeline's modules (shared, not copied; cheap to build)."""
        components = {k: v for k, v in self.components.items() if k != "controlnet"}
        pipeline = _ControlNetKeyframeImg2Img(
            controlnet=self.controlnet, **components, requires_safety_checker=False
        )
        pipeline.set_progress_bar_config(**getattr(self, "_progress_bar_config", {}))
        return pipeline


# -- inputs ------------------------------------------------------------------------------------------


def _as_frames_uint8(frames: Keyframes, name: str, grey_ok: bool = False) -> np.ndarray:
    """uint8 (K,H,W,3) from an array (K,H,W,3) (or (K,H,W) when ``grey_ok``) or K PIL images of one size."""
    if isinstance(frames, list | tuple) and frames and all(isinstance(f, PIL.Image.Image) for f in frames):
        sizes = {f.size for f in frames}
        if len(sizes) > 1:
            raise InputError(f"The {name} images must all have one size, got {sorted(sizes)}.")
        return np.stack([pil_to_rgb_uint8(f) for f in frames])
    if not isinstance(frames, np.ndarray):
        raise InputError(
            f"{name} must be a uint8 array (K,H,W,3) or a list of PIL images, got {type(frames).__name__}."
        )
    if grey_ok and frames.ndim == 3:
        frames = np.repeat(frames[..., None], 3, axis=3)
    if frames.ndim != 4 or frames.shape[3] != 3 or frames.shape[0] < 1 or frames.size == 0:
        raise InputError(f"{name} must have shape (K,H,W,3) with K >= 1, got {frames.shape}.")
    if frames.dtype != np.uint8:
        raise InputError(f"{name} must be uint8 pixels in [0,255], got dtype {frames.dtype}.")
    return frames


def canny_conditions(
    keyframes_uint8: np.ndarray, low_threshold: int = 100, high_threshold: int = 200
) -> np.ndarray:
    """Canny edges of each keyframe: uint8 (K,H,W,3), 255 on edges, 0 elsewhere (canny ControlNets' input).

    ``keyframes_uint8``: (K,H,W,3) uint8 RGB; thresholds are cv2.Canny's hysteresis thresholds on grey levels.
    """
    keyframes_uint8 = _as_frames_uint8(keyframes_uint8, "keyframes")
    edges = [
        cv2.Canny(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), low_threshold, high_threshold)
        for frame in keyframes_uint8
    ]
    return np.repeat(np.stack(edges)[..., None], 3, axis=3)
