"""Joint image + depth generation with Stable Diffusion and the joint patch (:mod:`core.patches.joint`).

:class:`JointSDPipeline` is diffusers' ``StableDiffusionPipeline`` whose UNet carries the joint patch: one
batch holds the image latents ``x_1..x_n`` and the depth latents ``y_1..y_n`` of n samples, every x_i attends
to its y_i and back, and the depth entries get their own LoRA. Three modes:

- ``joint``: image and depth both from noise;
- ``image_to_depth``: the image is given. Before every UNet call its latents (the VAE posterior mean) are
  put in place of the image half, noised to the current timestep with one fixed noise draw (the draw the
  image half would have started from), so the depth is denoised against the given image;
- ``depth_to_image``: the same with the depth given.

``keep_given_clean_steps`` (default 1): in the last N steps the given modality enters the UNet clean (its
latents without noise) and the output keeps it clean, so the returned given modality is the input after one
VAE round trip; 0 noises it at every step and returns it as the last step leaves it.

Depth convention: the VAE encodes a disparity map replicated to 3 channels in [-1,1] (near = +1, as
:class:`core.data.image_depth.ImageDepthFolder` feeds training); the pipeline decodes the depth latents, takes
the mean of the 3 channels in float32 and returns disparity in [0,1] (near = 1), float32 (B,H,W).

Batch layout: latents are ``[x_1..x_n, y_1..y_n]`` and, with classifier-free guidance, the UNet gets
``[x.., y.. | x.., y..]`` (unconditional half first) with every sample's prompt embedding used for both of
its entries; the patch's layout is set to match before the loop. Noise is drawn image half first, so the
image half of a ``joint`` call with zero-initialised joint layers and LoRAs (a freshly patched UNet) is the
stock pipeline's image for the same seed. Between calls the patch is left "parked" (no pairing, every
adapter masked off), so other pipelines sharing the UNet (e.g. through :func:`core.models.load_pipeline`'s
cache) compute exactly what the stock UNet computes.

How consistent the generated depth is (scale-and-shift-invariant AbsRel and delta1 on synthetic scenes with
exact depth): ``python -m core.eval.joint_depth``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import PIL.Image
import torch
from diffusers import StableDiffusionPipeline
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import retrieve_timesteps
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_img2img import retrieve_latents
from diffusers.utils import BaseOutput

from core.data.image_depth import normalize_disparity
from core.errors import InputError
from core.imaging import pil_to_rgb_uint8, signed_to_unit, to_signed, unit_to_signed, unit_to_uint8
from core.patches.joint import JointPatch, apply_joint_patch, joint_patch_of
from core.precision import decode_finite

Mode = Literal["joint", "image_to_depth", "depth_to_image"]
MODES: tuple[str, ...] = ("joint", "image_to_depth", "depth_to_image")
OUTPUT_TYPES: tuple[str, ...] = ("uint8", "np", "pil", "latent")
IMAGE, DEPTH = 0, 1  # modality index of each half of the batch
_INPUTS_OF_MODE = {"joint": (), "image_to_depth": ("image",), "depth_to_image": ("depth",)}

GivenImage = np.ndarray | PIL.Image.Image | Sequence[PIL.Image.Image]
GivenDepth = np.ndarray | torch.Tensor


@dataclass
class JointSDOutput(BaseOutput):
    """Output of :class:`JointSDPipeline`.

    ``images``: uint8 (B,H,W,3) for ``output_type="uint8"``, float32 (B,H,W,3) in [0,1] for "np", B PIL
    images for "pil", image latents (B,4,h,w) for "latent".
    ``depth``: float32 (B,H,W) disparity in [0,1], near = 1 (depth latents (B,4,h,w) for "latent").
    ``nsfw_content_detected``: the safety checker's flags for the images, None without one.
    """

    images: Any
    depth: Any
    nsfw_content_detected: list[bool] | None


class JointSDPipeline(StableDiffusionPipeline):
    """Generate an image and its depth map together, or one from the other (see the module docstring).

    Components: those of ``StableDiffusionPipeline`` (``vae``, ``text_encoder``, ``tokenizer``, ``unet``,
    ``scheduler``, optional ``safety_checker``, ``feature_extractor``, ``image_encoder``); the UNet must
    carry the joint patch with two modalities: build with :meth:`from_stock`, or call
    :meth:`load_joint_weights` on a pipeline made from stock components.
    """

    model_cpu_offload_seq = "text_encoder->image_encoder->unet->vae"
    _callback_tensor_inputs = ["latents", "prompt_embeds", "negative_prompt_embeds"]

    # -- the patch -------------------------------------------------------------------------------------

    @classmethod
    def from_stock(
        cls, pipe: StableDiffusionPipeline, joint_weights: str | Path | None = None
    ) -> JointSDPipeline:
        """A joint pipeline over ``pipe``'s modules (shared, not copied), its UNet patched when it is not yet.

        ``joint_weights``: a folder written by ``JointPatch.save`` (e.g. by ``python -m
        core.training.joint_lora``) to load; None keeps the patch as it is (a fresh patch starts as the stock
        model). ``pipe`` keeps computing its stock output: the patch is parked between joint calls.
        """
        accepted = set(cls._get_signature_keys(cls)[0]) | set(cls._get_signature_keys(cls)[1])
        components = {k: v for k, v in pipe.components.items() if k in accepted}
        requires = bool(getattr(pipe.config, "requires_safety_checker", False))
        pipeline = cls(**{**components, "requires_safety_checker": requires})
        pipeline.set_progress_bar_config(**getattr(pipe, "_progress_bar_config", {}))
        if joint_weights is not None:
            pipeline.load_joint_weights(joint_weights)
        else:
            pipeline._ensure_patch()
        return pipeline

    def load_joint_weights(self, folder: str | Path) -> JointPatch:
        """Load a ``JointPatch.save`` folder (joint layers + LoRAs) into the UNet, patching it first if needed.

        Raises InputError for a folder without joint weights or weights of another model.
        """
        patch = self._ensure_patch()
        patch.load(folder)
        patch.park()
        return patch

    @property
    def joint_patch(self) -> JointPatch | None:
        """The joint patch on the UNet (None until :meth:`from_stock` / :meth:`load_joint_weights`)."""
        return joint_patch_of(self.unet)

    def _ensure_patch(self) -> JointPatch:
        patch = joint_patch_of(self.unet)
        if patch is None:
            patch = apply_joint_patch(self.unet, modalities=2)
        elif patch.modalities != 2:
            raise InputError(
                f"The UNet carries a joint patch for {patch.modalities} modalities; this needs 2."
            )
        patch.park()
        return patch

    # -- inputs ----------------------------------------------------------------------------------------

    def check_joint_inputs(
        self,
        mode: str | None,
        image: GivenImage | None,
        depth: GivenDepth | None,
        height: int | None,
        width: int | None,
        num_inference_steps: int,
        guidance_scale: float,
        keep_given_clean_steps: int,
        normalize_given_depth: bool,
        generator: torch.Generator | list[torch.Generator] | None,
        seed: int | None,
        output_type: str,
    ) -> tuple[Mode, torch.Tensor | None, int, int]:
        """Validate a call's joint arguments; return the mode, the given modality as float32 (G,3,H,W) in
        [-1,1] (None in ``joint`` mode), and the output height and width. Raises InputError."""
        given_names = tuple(name for name, value in (("image", image), ("depth", depth)) if value is not None)
        if mode is None:
            if len(given_names) > 1:
                raise InputError("Give an image (-> depth) or a depth map (-> image), not both.")
            mode = next(m for m, names in _INPUTS_OF_MODE.items() if names == given_names)
        if mode not in MODES:
            raise InputError(f"mode must be one of {', '.join(MODES)}, got {mode!r}.")
        if given_names != _INPUTS_OF_MODE[mode]:
            raise InputError(
                f"mode '{mode}' takes {' and '.join(_INPUTS_OF_MODE[mode]) or 'neither image nor depth'}, "
                f"got {' and '.join(given_names) or 'neither'}."
            )
        if image is not None:
            given = _given_image_signed(image)
        elif depth is not None:
            given = _given_depth_signed(depth, normalize_given_depth)
        else:
            given = None
        if given is not None:
            given_hw = tuple(given.shape[-2:])
            if (height is not None and height != given_hw[0]) or (width is not None and width != given_hw[1]):
                raise InputError(
                    f"The given {'image' if image is not None else 'depth map'} is {given_hw[1]}x{given_hw[0]} "
                    f"but height x width {height}x{width} was asked: leave them out or resize the input."
                )
            height, width = given_hw
        if height is None or width is None:
            side = self.unet.config.sample_size
            side = side if isinstance(side, int) else side[0]
            height = height or side * self.vae_scale_factor
            width = width or side * self.vae_scale_factor
        if _not_int(num_inference_steps) or num_inference_steps < 1:
            raise InputError(f"num_inference_steps must be a positive integer, got {num_inference_steps!r}.")
        if (
            isinstance(guidance_scale, bool)
            or not isinstance(guidance_scale, int | float)
            or not (math.isfinite(guidance_scale) and guidance_scale >= 0)
        ):
            raise InputError(f"guidance_scale must be a finite number >= 0, got {guidance_scale!r}.")
        if _not_int(keep_given_clean_steps) or not 0 <= keep_given_clean_steps <= num_inference_steps:
            raise InputError(
                f"keep_given_clean_steps must be an integer in [0, {num_inference_steps}], "
                f"got {keep_given_clean_steps!r}."
            )
        if generator is not None and seed is not None:
            raise InputError("Give either a seed or a generator, not both.")
        if seed is not None and _not_int(seed):
            raise InputError(f"seed must be an integer, got {seed!r}.")
        if output_type not in OUTPUT_TYPES:
            raise InputError(f"output_type must be one of {', '.join(OUTPUT_TYPES)}, got {output_type!r}.")
        patch = self.joint_patch
        if patch is None or patch.modalities != 2:
            raise InputError(
                "The UNet carries no two-modality joint patch: build the pipeline with "
                "JointSDPipeline.from_stock(pipe, joint_weights=FOLDER) or call load_joint_weights(FOLDER)."
            )
        return mode, given, height, width

    # -- steps -----------------------------------------------------------------------------------------

    @torch.no_grad()
    def encode_given(
        self, given_signed: torch.Tensor, device: torch.device, dtype: torch.dtype
    ) -> torch.Tensor:
        """VAE latents (G,4,h,w), scaled, of images or replicated depth maps (G,3,H,W) in [-1,1].

        The posterior mean (no random draw), so a given input conditions the same way on every call.
        """
        encoded = self.vae.encode(given_signed.to(device=device, dtype=self.vae.dtype))
        latents = retrieve_latents(encoded, sample_mode="argmax")
        return (latents * self.vae.config.scaling_factor).to(dtype)

    @torch.no_grad()
    def decode_depth(self, depth_latents: torch.Tensor, generator=None) -> torch.Tensor:
        """Depth latents (B,4,h,w) -> float32 (B,H,W) disparity in [0,1] (near = 1): mean of the 3 channels."""
        latents = depth_latents / self.vae.config.scaling_factor
        decoded = decode_finite(
            self.vae,
            lambda: self.vae.decode(latents.to(self.vae.dtype), return_dict=False, generator=generator)[0],
        )
        return signed_to_unit(decoded.float().mean(dim=1))

    # -- the call --------------------------------------------------------------------------------------

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str] | None = None,
        image: GivenImage | None = None,
        depth: GivenDepth | None = None,
        mode: Mode | None = None,
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int = 50,
        guidance_scale: float = 7.5,
        negative_prompt: str | list[str] | None = None,
        num_images_per_prompt: int = 1,
        eta: float = 0.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        seed: int | None = None,
        latents: torch.Tensor | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        keep_given_clean_steps: int = 1,
        normalize_given_depth: bool = True,
        output_type: str = "uint8",
        return_dict: bool = True,
        callback_on_step_end: Callable | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
    ) -> JointSDOutput | tuple:
        """Generate images and their depth maps, or the depth of given images, or images for given depth.

        Args:
            prompt: a string or one per sample; defaults to the empty prompt.
            image: the given images (``image_to_depth``): uint8 (H,W,3) or (G,H,W,3), or PIL images.
            depth: the given depth (``depth_to_image``): disparity (larger = nearer), float (H,W) or (G,H,W),
                numpy or torch. With ``normalize_given_depth`` (default) each map is normalised as training
                data is (its 2nd / 98th percentiles to [-1,1], :func:`core.data.image_depth.normalize_disparity`),
                so any scale and offset works; without it the values are taken as [0,1] disparity, the
                convention of this pipeline's own output.
            mode: "joint", "image_to_depth" or "depth_to_image"; inferred from ``image`` / ``depth`` when None.
            height, width: output size in px (multiples of 8); default the UNet's sample size, or the given
                input's size (which they must match when given).
            num_inference_steps, guidance_scale, negative_prompt, num_images_per_prompt, eta: as in
                ``StableDiffusionPipeline``. G given inputs must be 1 (shared) or one per prompt.
            generator / seed: a torch.Generator (or one per sample), or an integer seed (a CPU generator).
            latents: optional initial noise (2n,4,h,w), image half first (n = prompts x images per prompt).
            keep_given_clean_steps: the last N steps see the given modality clean, and it is returned clean.
            output_type: "uint8" (numpy), "np" (float [0,1]), "pil" or "latent" (see :class:`JointSDOutput`).
            callback_on_step_end: diffusers' ``(pipeline, step, timestep, tensors) -> dict`` after every step;
                ``latents`` are the joint latents (2n,4,h,w), the one tensor the returned dict may replace.

        Returns:
            :class:`JointSDOutput`, or ``(images, depth, nsfw_content_detected)`` when ``return_dict`` is False.
        """
        # 1. Check inputs
        if prompt is None and prompt_embeds is None:
            prompt = ""
        mode, given, height, width = self.check_joint_inputs(
            mode,
            image,
            depth,
            height,
            width,
            num_inference_steps,
            guidance_scale,
            keep_given_clean_steps,
            normalize_given_depth,
            generator,
            seed,
            output_type,
        )
        self.check_inputs(
            prompt,
            height,
            width,
            None,
            negative_prompt,
            prompt_embeds,
            negative_prompt_embeds,
            None,
            None,
            list(callback_on_step_end_tensor_inputs),
        )
        self._guidance_scale = guidance_scale
        self._guidance_rescale = 0.0
        self._clip_skip = None
        self._cross_attention_kwargs = None
        self._interrupt = False
        if seed is not None:
            generator = torch.Generator("cpu").manual_seed(seed)

        # 2. Batch: n samples, each an image entry and a depth entry
        if prompt is not None:
            batch_size = 1 if isinstance(prompt, str) else len(prompt)
        else:
            batch_size = prompt_embeds.shape[0]
        n = batch_size * num_images_per_prompt
        if given is not None and given.shape[0] not in (1, batch_size):
            raise InputError(
                f"Got {given.shape[0]} given inputs for {batch_size} prompts: give one, or one per prompt."
            )
        if latents is not None and tuple(latents.shape[:1]) != (2 * n,):
            raise InputError(
                f"latents must hold {2 * n} entries (image half, then depth half), got shape "
                f"{tuple(latents.shape)}."
            )
        device = self._execution_device

        # 3. Encode the prompt; both entries of a sample get its embedding
        prompt_embeds, negative_prompt_embeds = self.encode_prompt(
            prompt,
            device,
            num_images_per_prompt,
            self.do_classifier_free_guidance,
            negative_prompt,
            prompt_embeds=prompt_embeds,
            negative_prompt_embeds=negative_prompt_embeds,
        )
        embeds = torch.cat([prompt_embeds, prompt_embeds])
        if self.do_classifier_free_guidance:
            embeds = torch.cat([negative_prompt_embeds, negative_prompt_embeds, embeds])

        # 4. Timesteps
        timesteps, num_inference_steps = retrieve_timesteps(self.scheduler, num_inference_steps, device)

        # 5. Latents: image half first (the stock pipeline's draw), then the depth half
        channels = self.unet.config.in_channels
        halves = [None, None] if latents is None else list(latents.chunk(2))
        latents = torch.cat(
            [
                self.prepare_latents(
                    n, channels, height, width, prompt_embeds.dtype, device, generator, halves[half]
                )
                for half in (IMAGE, DEPTH)
            ]
        )

        # 6. The given modality: clean latents and the fixed noise that carries them to each timestep
        given_half = {"joint": None, "image_to_depth": IMAGE, "depth_to_image": DEPTH}[mode]
        if given is not None:
            given_latents = self.encode_given(given, device, latents.dtype)
            repeat = n if given_latents.shape[0] == 1 else num_images_per_prompt
            given_latents = given_latents.repeat_interleave(repeat, dim=0)
            given_noise = latents.chunk(2)[given_half] / self.scheduler.init_noise_sigma
        extra_step_kwargs = self.prepare_extra_step_kwargs(generator, eta)
        timestep_cond = None
        if self.unet.config.time_cond_proj_dim is not None:
            scale = torch.tensor(self.guidance_scale - 1).repeat(2 * n)
            timestep_cond = self.get_guidance_scale_embedding(
                scale, embedding_dim=self.unet.config.time_cond_proj_dim
            ).to(device=device, dtype=latents.dtype)

        # 7. The patch: [x.., y..] per CFG half
        patch = self.joint_patch
        layout = [IMAGE] * n + [DEPTH] * n
        patch.set_batch_layout(layout * 2 if self.do_classifier_free_guidance else layout)

        # 8. Denoising loop
        self._num_timesteps = len(timesteps)
        first_clean = len(timesteps) - keep_given_clean_steps
        warmup = len(timesteps) - num_inference_steps * self.scheduler.order
        try:
            with self.progress_bar(total=num_inference_steps) as progress_bar:
                for i, t in enumerate(timesteps):
                    if self.interrupt:
                        continue
                    if given is not None:
                        if i >= first_clean:
                            part = given_latents
                        else:
                            part = self.scheduler.add_noise(given_latents, given_noise, t.reshape(1))
                        latents = _replace_half(latents, given_half, part)
                    model_input = torch.cat([latents] * 2) if self.do_classifier_free_guidance else latents
                    model_input = self.scheduler.scale_model_input(model_input, t)
                    noise_pred = self.unet(
                        model_input,
                        t,
                        encoder_hidden_states=embeds,
                        timestep_cond=timestep_cond,
                        return_dict=False,
                    )[0]
                    if self.do_classifier_free_guidance:
                        uncond, text = noise_pred.chunk(2)
                        noise_pred = uncond + self.guidance_scale * (text - uncond)
                    latents = self.scheduler.step(
                        noise_pred, t, latents, **extra_step_kwargs, return_dict=False
                    )[0]
                    if given is not None and i >= first_clean:
                        latents = _replace_half(latents, given_half, given_latents)
                    if callback_on_step_end is not None:
                        tensors = {
                            "latents": latents,
                            "prompt_embeds": prompt_embeds,
                            "negative_prompt_embeds": negative_prompt_embeds,
                        }
                        outputs = callback_on_step_end(
                            self, i, t, {k: tensors[k] for k in callback_on_step_end_tensor_inputs}
                        )
                        latents = outputs.pop("latents", latents)
                    if i == len(timesteps) - 1 or ((i + 1) > warmup and (i + 1) % self.scheduler.order == 0):
                        progress_bar.update()
        finally:
            patch.park()

        # 9. Decode: images as the stock pipeline does, depth to one float32 map
        image_latents, depth_latents = latents.chunk(2)
        if output_type == "latent":
            images, depth_out, nsfw = image_latents, depth_latents, None
        else:
            scaled = image_latents / self.vae.config.scaling_factor
            decoded = decode_finite(
                self.vae,
                lambda: self.vae.decode(scaled.to(self.vae.dtype), return_dict=False, generator=generator)[0],
            )
            decoded, nsfw = self.run_safety_checker(decoded, device, prompt_embeds.dtype)
            denormalize = [True] * n if nsfw is None else [not flagged for flagged in nsfw]
            images = self.image_processor.postprocess(
                decoded, output_type="pil" if output_type == "pil" else "np", do_denormalize=denormalize
            )
            if output_type == "uint8":
                images = unit_to_uint8(images)
            depth_out = self.decode_depth(depth_latents, generator).cpu().numpy()
        self.maybe_free_model_hooks()
        if not return_dict:
            return images, depth_out, nsfw
        return JointSDOutput(images=images, depth=depth_out, nsfw_content_detected=nsfw)


# -- inputs ------------------------------------------------------------------------------------------


def _not_int(value: object) -> bool:
    return isinstance(value, bool) or not isinstance(value, int)


def _replace_half(latents: torch.Tensor, half: int, part: torch.Tensor) -> torch.Tensor:
    """The joint latents (2n,...) with half ``half`` (IMAGE: first n, DEPTH: last n) replaced by ``part``."""
    halves = list(latents.chunk(2))
    halves[half] = part.to(latents.dtype)
    return torch.cat(halves)


def _given_image_signed(image: GivenImage) -> torch.Tensor:
    """Given images -> float32 (G,3,H,W) in [-1,1]."""
    if isinstance(image, PIL.Image.Image):
        image = [image]
    if isinstance(image, list | tuple) and image and all(isinstance(i, PIL.Image.Image) for i in image):
        sizes = {i.size for i in image}
        if len(sizes) > 1:
            raise InputError(f"The given images must all have one size, got {sorted(sizes)}.")
        image = np.stack([pil_to_rgb_uint8(i) for i in image])
    if not isinstance(image, np.ndarray):
        raise InputError(
            f"image must be uint8 (H,W,3) / (G,H,W,3) or PIL images, got {type(image).__name__}."
        )
    if image.ndim == 3:
        image = image[None]
    if image.ndim != 4 or image.shape[3] != 3 or 0 in image.shape:
        raise InputError(f"image must have shape (H,W,3) or (G,H,W,3), got {image.shape}.")
    if image.dtype != np.uint8:
        raise InputError(f"image must be uint8 pixels in [0,255], got dtype {image.dtype}.")
    return to_signed(image)


def _given_depth_signed(depth: GivenDepth, normalize: bool) -> torch.Tensor:
    """Given disparity maps -> float32 (G,3,H,W) in [-1,1], near = +1 (see ``normalize_given_depth``)."""
    if isinstance(depth, torch.Tensor):
        depth = depth.detach().cpu().float().numpy()
    if not isinstance(depth, np.ndarray) or not np.issubdtype(depth.dtype, np.number):
        raise InputError(f"depth must be a float array (H,W) or (G,H,W), got {type(depth).__name__}.")
    if depth.ndim == 2:
        depth = depth[None]
    if depth.ndim != 3 or 0 in depth.shape:
        raise InputError(f"depth must have shape (H,W) or (G,H,W), got {depth.shape}.")
    depth = depth.astype(np.float32)
    if normalize:
        signed = np.stack([normalize_disparity(d) for d in depth])
    else:
        if not np.isfinite(depth).all():
            raise InputError("depth holds NaN or infinite values; give finite disparity in [0,1].")
        signed = unit_to_signed(depth)
    return torch.from_numpy(signed)[:, None].expand(-1, 3, -1, -1).contiguous()
