"""What the SVD pipelines (trajectory, interpolation) share, on top of diffusers' stock SVD pipeline.

:class:`SVDPipelineBase` is ``StableVideoDiffusionPipeline`` plus the steps its ``__call__`` runs inline,
split into methods the subclasses compose: encode conditioning frames, batch the conditioning for
classifier-free guidance, the per-frame guidance ramp, one guided UNet prediction, the Euler loop with
frame pinning and ``callback_on_step_end``, and decoding. The encoders, the loop body and the random draws
are the stock pipeline's own (its helpers are called, not copied), so a subclass run on the same inputs
and generator reproduces stock SVD exactly where it means to.

Latent spaces (SVD's own, easy to mix up):
    conditioning latents  ``vae.encode(image + noise_aug_strength * noise).latent_dist.mode()``, unscaled;
                          concatenated to the noisy latents on the channel axis (4 + 4 = the UNet's 8).
    denoised latents      ``vae.encode(frame).latent_dist.mode() * vae.config.scaling_factor``: what the
                          Euler loop moves and ``decode_latents`` divides by the scaling factor.

Module functions (:func:`encode_condition_latents`, :func:`encode_video_latents`, :func:`pin_frames`) take
plain modules and tensors so training code builds exactly what the pipelines see.

SDEdit from a guide video (the trajectory pipeline's warp, the interpolation pipeline's flow frames): the guide's
latents noised to the sigma that ``strength`` selects, then the last :func:`steps_for_strength` steps of the
schedule (:meth:`SVDPipelineBase._guide_start`, inputs checked by :func:`check_guide`).
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import PIL.Image
import torch
from diffusers import StableVideoDiffusionPipeline
from diffusers.utils.torch_utils import randn_tensor

from core.controlnet_svd import CONDITION_ROWS
from core.errors import InputError
from core.imaging import pil_to_rgb_uint8, to_unit
from core.memory import encode_chunk_frames
from core.precision import decode_finite

OUTPUT_TYPES = ("pil", "np", "pt", "latent")

ImageInput = PIL.Image.Image | np.ndarray
# model_output_fn(latents (B,T,4,h,w), timestep) -> the scheduler's model output (v-prediction), same shape.
ModelOutputFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# pin_fn(latents (B,T,4,h,w), sigma) -> latents with some frames held on a clean frame's noise path.
PinFn = Callable[[torch.Tensor, float], torch.Tensor]


# -- plain functions (shared with training) ---------------------------------------------------------------


def encode_condition_latents(
    vae: torch.nn.Module,
    images_signed: torch.Tensor,
    noise_aug_strength: float,
    generator: torch.Generator | list[torch.Generator] | None = None,
) -> torch.Tensor:
    """SVD's conditioning latents of images: the VAE mode of the noise-augmented pixels, unscaled.

    images_signed: (B,3,H,W) in [-1,1] on the execution device. Returns (B,C,H/f,W/f) in the VAE's dtype.
    The noise is drawn first, with the images' shape, as ``StableVideoDiffusionPipeline`` draws it.
    """
    noise = randn_tensor(
        images_signed.shape, generator=generator, device=images_signed.device, dtype=images_signed.dtype
    )
    augmented = images_signed + noise_aug_strength * noise
    return vae.encode(augmented.to(vae.dtype)).latent_dist.mode()


def encode_video_latents(vae: torch.nn.Module, frames_signed: torch.Tensor, chunk_size: int) -> torch.Tensor:
    """Frames (T,3,H,W) in [-1,1] -> denoising-space latents (T,C,H/f,W/f): VAE mode x scaling factor.

    Encodes ``chunk_size`` frames at a time (the encoder is per-frame, so chunking changes memory only).
    """
    chunks = [
        vae.encode(frames_signed[i : i + chunk_size].to(vae.dtype)).latent_dist.mode()
        for i in range(0, frames_signed.shape[0], chunk_size)
    ]
    return torch.cat(chunks) * vae.config.scaling_factor


def pin_frames(
    latents: torch.Tensor,
    clean_latents: torch.Tensor,
    frame_indices: Sequence[int],
    noise: torch.Tensor,
    sigma: float,
) -> torch.Tensor:
    """Hold frames on a clean frame's noise path: ``latents[:, i] = clean + sigma * noise[:, i]``.

    latents, noise: (B,T,C,h,w); clean_latents: (B,len(frame_indices),C,h,w) in denoising space. With the
    same ``noise`` at every step, a pinned frame is exactly where the Euler ODE of the clean frame is at
    ``sigma`` (the sample is ``x0 + sigma * eps``), and at the final sigma of 0 it is the clean latent
    itself. Returns a new tensor; other frames are unchanged.
    """
    pinned = latents.clone()
    index = list(frame_indices)
    pinned[:, index] = (clean_latents + sigma * noise[:, index]).to(latents.dtype)
    return pinned


def steps_for_strength(num_inference_steps: int, strength: float) -> int:
    """How many Euler steps an SDEdit of ``strength`` runs: ``ceil(num_inference_steps * strength)``.

    The run is the last ones of the ``num_inference_steps`` schedule, starting at schedule index
    ``num_inference_steps - steps``; any strength above 0 runs at least one step. (Rounded to 6 decimals
    first, so 0.3 x 10 is 3 steps, not 4.)
    """
    return min(num_inference_steps, math.ceil(round(num_inference_steps * strength, 6)))


def as_pil_rgb(image: ImageInput) -> PIL.Image.Image:
    """A PIL image or uint8 (H,W,3) array -> RGB PIL image (alpha over white, as core.imaging does)."""
    if isinstance(image, PIL.Image.Image):
        return PIL.Image.fromarray(pil_to_rgb_uint8(image))
    return PIL.Image.fromarray(image)


def image_size_hw(image: ImageInput) -> tuple[int, int]:
    """(height, width) of a PIL image or (H,W,3) array."""
    if isinstance(image, PIL.Image.Image):
        return image.height, image.width
    return int(image.shape[0]), int(image.shape[1])


# -- checks shared by the pipelines' check_inputs ---------------------------------------------------------


def check_image(image: object, name: str) -> None:
    """Raise InputError unless ``image`` is a PIL image or a uint8 (H,W,3) array with sides divisible by 8."""
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise InputError(
                f"`{name}` must be uint8 pixels (H,W,3), got dtype {image.dtype} and shape {image.shape}."
            )
    elif not isinstance(image, PIL.Image.Image):
        raise InputError(
            f"`{name}` must be a PIL image or a uint8 (H,W,3) array, got {type(image).__name__}."
        )
    height, width = image_size_hw(image)
    if height % 8 or width % 8 or height == 0 or width == 0:
        raise InputError(f"`{name}` is {width}x{height}; both sides must be positive multiples of 8.")


def check_guide(guide_video: object, strength: object, num_frames: object, image_hw: tuple[int, int]) -> None:
    """Raise InputError unless ``strength`` is in [0,1] and ``guide_video`` is uint8 (T,H,W,3) frames at the
    image's size ``image_hw`` with T = ``num_frames`` (when given); None only with ``strength`` 1."""
    if isinstance(strength, bool) or not isinstance(strength, int | float) or not 0.0 <= strength <= 1.0:
        raise InputError(f"`strength` must be a number in [0, 1], got {strength!r}.")
    if guide_video is None:
        if strength < 1.0:
            raise InputError(f"A `guide_video` is needed for strength {strength} (only 1 runs without).")
        return
    if not isinstance(guide_video, np.ndarray):
        raise InputError(f"`guide_video` must be a uint8 numpy array, got {type(guide_video).__name__}.")
    if guide_video.dtype != np.uint8 or guide_video.ndim != 4 or guide_video.shape[3] != 3:
        raise InputError(
            f"`guide_video` must be uint8 frames (T,H,W,3), got dtype {guide_video.dtype} "
            f"and shape {guide_video.shape}."
        )
    if tuple(guide_video.shape[1:3]) != image_hw:
        raise InputError(
            f"`guide_video` frames are {guide_video.shape[1:3]} (H,W) but `image` is {image_hw}; "
            "give both the same size."
        )
    if guide_video.shape[0] < 1 or (num_frames is not None and num_frames != guide_video.shape[0]):
        raise InputError(f"`num_frames` is {num_frames} but `guide_video` has {guide_video.shape[0]} frames.")


def check_call_options(
    num_inference_steps: object,
    decode_chunk_size: object,
    output_type: object,
    callback_on_step_end_tensor_inputs: object,
    allowed_tensor_inputs: Sequence[str],
) -> None:
    """Raise InputError on an invalid step count, decode chunk, output type or callback tensor name."""
    if not isinstance(num_inference_steps, int) or num_inference_steps < 1:
        raise InputError(f"`num_inference_steps` must be a positive integer, got {num_inference_steps!r}.")
    if decode_chunk_size is not None and (not isinstance(decode_chunk_size, int) or decode_chunk_size < 1):
        raise InputError(
            f"`decode_chunk_size` must be a positive integer or None, got {decode_chunk_size!r}."
        )
    if output_type not in OUTPUT_TYPES:
        raise InputError(f"`output_type` must be one of {OUTPUT_TYPES}, got {output_type!r}.")
    unknown = [k for k in callback_on_step_end_tensor_inputs or () if k not in allowed_tensor_inputs]
    if unknown:
        raise InputError(
            f"`callback_on_step_end_tensor_inputs` may only name {list(allowed_tensor_inputs)}, got {unknown}."
        )


# -- the pipeline base ------------------------------------------------------------------------------------


@dataclass
class SVDConditioning:
    """What the UNet sees besides the noisy latents, batched for guidance as [unconditional, conditional].

    image_embeddings (B',1,D), image_latents (B',T,C,h,w) unscaled conditioning latents, added_time_ids
    (B',3) = (fps - 1, motion bucket, noise augmentation); B' = 2B with classifier-free guidance, else B.
    """

    image_embeddings: torch.Tensor
    image_latents: torch.Tensor
    added_time_ids: torch.Tensor


@dataclass(frozen=True)
class Reinjection:
    """Noise re-injection for `SVDPipelineBase._denoise`: the first ``steps`` steps are each taken ``1 +
    repeats`` times, with fresh noise from ``generator`` between the takes (time-reversal fusion's remedy
    for the seams where the fused paths disagree)."""

    repeats: int
    steps: int
    generator: torch.Generator | list[torch.Generator] | None = None

    def renoise(self, latents: torch.Tensor, sigma: float, next_sigma: float) -> torch.Tensor:
        """Latents at ``next_sigma`` brought back to ``sigma`` with fresh noise."""
        noise = randn_tensor(
            latents.shape, generator=self.generator, device=latents.device, dtype=latents.dtype
        )
        return latents + (sigma**2 - next_sigma**2) ** 0.5 * noise


class SVDPipelineBase(StableVideoDiffusionPipeline):
    """``StableVideoDiffusionPipeline`` with its ``__call__`` steps as reusable methods (see the module doc).

    Components, offload order (``image_encoder->unet->vae``) and callback tensors are the stock pipeline's.
    Subclasses write a short ``__call__`` from these methods.
    """

    _guidance_split = False  # both guidance halves in one UNet batch unless enable_guidance_split()

    @contextlib.contextmanager
    def _vae_upcast(self) -> Iterator[None]:
        """Run the block with an fp16 VAE in fp32 when its config asks for it (as the stock pipeline does)."""
        needs_upcasting = self.vae.dtype == torch.float16 and self.vae.config.force_upcast
        if needs_upcasting:
            self.vae.to(dtype=torch.float32)
        try:
            yield
        finally:
            if needs_upcasting:
                self.vae.to(dtype=torch.float16)

    def _encode_frames(
        self,
        images: list[PIL.Image.Image],
        height: int,
        width: int,
        noise_aug_strength: float,
        generator: torch.Generator | list[torch.Generator] | None,
        device: torch.device,
        clean: bool,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """N conditioning images -> CLIP embeddings (N,1,D), conditioning latents (N,C,h,w) and, when
        ``clean``, their denoising-space latents without noise augmentation (N,C,h,w) (else None).

        The same encoders, resizing and random draws as stock SVD's steps 3-4 (for N = 1, bit for bit).
        """
        image_embeddings = self._encode_image(images, device, 1, False)
        pixels_signed = self.video_processor.preprocess(images, height=height, width=width).to(device)
        with self._vae_upcast():
            image_latents = encode_condition_latents(self.vae, pixels_signed, noise_aug_strength, generator)
            clean_latents = encode_video_latents(self.vae, pixels_signed, len(images)) if clean else None
        if clean_latents is not None:
            clean_latents = clean_latents.to(image_embeddings.dtype)
        return image_embeddings, image_latents.to(image_embeddings.dtype), clean_latents

    def _image_conditioning(
        self,
        image: ImageInput,
        height: int,
        width: int,
        num_frames: int,
        fps: int,
        motion_bucket_id: int,
        noise_aug_strength: float,
        generator: torch.Generator | list[torch.Generator] | None,
        device: torch.device,
        *,
        clean: bool,
        copies: int = 1,
    ) -> tuple[SVDConditioning, torch.Tensor | None]:
        """Stock SVD's conditioning on one first frame: encoded (:meth:`_encode_frames`), repeated over
        ``num_frames`` frames and ``copies`` batch entries (e.g. 2 for a [video, flow] pair), batched for
        guidance (:meth:`_conditioning`). Also returns the frame's clean latents (1,C,h,w) when ``clean``."""
        embeddings, image_latents, clean_latents = self._encode_frames(
            [as_pil_rgb(image)], height, width, noise_aug_strength, generator, device, clean=clean
        )
        conditioning = self._conditioning(
            embeddings.repeat(copies, 1, 1),
            image_latents.unsqueeze(1).repeat(copies, num_frames, 1, 1, 1),
            fps,
            motion_bucket_id,
            noise_aug_strength,
        )
        return conditioning, clean_latents

    def _latent_noise(
        self,
        num_frames: int,
        height: int,
        width: int,
        generator: torch.Generator | list[torch.Generator] | None,
        device: torch.device,
        dtype: torch.dtype,
    ) -> torch.Tensor:
        """Unit noise (1,T,C,h,w) for the denoising latents, drawn as stock SVD draws its initial latents."""
        shape = (
            1,
            num_frames,
            self.unet.config.in_channels // 2,
            height // self.vae_scale_factor,
            width // self.vae_scale_factor,
        )
        return randn_tensor(shape, generator=generator, device=device, dtype=dtype)

    def _guide_start(
        self,
        guide_video: np.ndarray | None,
        strength: float,
        num_inference_steps: int,
        noise: torch.Tensor,
        decode_chunk_size: int,
    ) -> tuple[torch.Tensor, int, float]:
        """Where an SDEdit from ``guide_video`` (uint8 (T,H,W,3), checked by :func:`check_guide`) starts, the
        scheduler's timesteps set: its latents noised to the start sigma with ``noise`` (1,T,C,h,w), or
        pure noise as stock SVD at strength 1 (the guide unused). Returns (latents (1,T,C,h,w), the first
        schedule index, the start sigma); strength 0 starts at sigma 0 (no step runs)."""
        first_index = num_inference_steps - steps_for_strength(num_inference_steps, strength)
        sigma_start = float(self.scheduler.sigmas[first_index])
        if strength == 1.0:
            return noise * self.scheduler.init_noise_sigma, first_index, sigma_start
        # Normalised like the image path ((x / 255) * 2 - 1), so equal pixels give equal latents.
        guide_signed = self.video_processor.normalize(to_unit(guide_video, noise.device))
        with self._vae_upcast():
            chunk = min(decode_chunk_size, encode_chunk_frames(*guide_video.shape[1:3]))
            guide_latents = encode_video_latents(self.vae, guide_signed, chunk)
        return guide_latents.to(noise.dtype).unsqueeze(0) + sigma_start * noise, first_index, sigma_start

    def _conditioning(
        self,
        image_embeddings: torch.Tensor,
        image_latents: torch.Tensor,
        fps: int,
        motion_bucket_id: int,
        noise_aug_strength: float,
    ) -> SVDConditioning:
        """Batch embeddings (B,1,D) and per-frame conditioning latents (B,T,C,h,w) for guidance (zeros as
        the unconditional half, as stock SVD does) and add the micro-conditioning ids."""
        batch_size = image_embeddings.shape[0]
        if self.do_classifier_free_guidance:
            image_embeddings = torch.cat([torch.zeros_like(image_embeddings), image_embeddings])
            image_latents = torch.cat([torch.zeros_like(image_latents), image_latents])
        # SVD was trained on fps - 1 (see the stock pipeline).
        added_time_ids = self._get_add_time_ids(
            fps - 1,
            motion_bucket_id,
            noise_aug_strength,
            image_embeddings.dtype,
            batch_size,
            1,
            self.do_classifier_free_guidance,
        )
        return SVDConditioning(image_embeddings, image_latents, added_time_ids.to(image_embeddings.device))

    def _set_guidance_ramp(
        self,
        min_guidance_scale: float,
        max_guidance_scale: float,
        num_frames: int,
        batch_size: int,
        device: torch.device,
        dtype: torch.dtype,
    ) -> None:
        """Stock SVD's per-frame guidance: linear from ``min`` on frame 0 to ``max`` on the last frame."""
        ramp = torch.linspace(min_guidance_scale, max_guidance_scale, num_frames).unsqueeze(0)
        ramp = ramp.to(device, dtype).repeat(batch_size, 1)
        self._guidance_scale = ramp[:, :, None, None, None]

    def enable_guidance_split(self, split: bool = True) -> None:
        """Run the UNet on the two guidance halves one after the other instead of as one batch of 2B (half
        the activation memory, a little slower; the low-VRAM mode turns it on)."""
        self._guidance_split = split

    def _predict(self, latents: torch.Tensor, t: torch.Tensor, conditioning: SVDConditioning) -> torch.Tensor:
        """One guided UNet prediction for latents (B,T,C,h,w) at timestep t: the stock loop body."""
        guided = self.do_classifier_free_guidance
        model_input = torch.cat([latents] * 2) if guided else latents
        model_input = self.scheduler.scale_model_input(model_input, t)
        model_input = torch.cat([model_input, conditioning.image_latents], dim=2)
        if guided and self._guidance_split:
            half = latents.shape[0]
            model_output = torch.cat(
                [self._unet_rows(model_input, t, conditioning, slice(k, k + half)) for k in (0, half)]
            )
        else:
            model_output = self._unet_rows(model_input, t, conditioning, slice(None))
        if guided:
            unconditional, conditional = model_output.chunk(2)
            model_output = unconditional + self.guidance_scale * (conditional - unconditional)
        return model_output

    def _unet_rows(
        self, model_input: torch.Tensor, t: torch.Tensor, conditioning: SVDConditioning, rows: slice
    ) -> torch.Tensor:
        """The UNet on batch rows ``rows`` of the guidance batch (an attached ControlNet reads the same rows)."""
        token = CONDITION_ROWS.set(None if rows == slice(None) else rows)
        try:
            return self.unet(
                model_input[rows],
                t,
                encoder_hidden_states=conditioning.image_embeddings[rows],
                added_time_ids=conditioning.added_time_ids[rows],
                return_dict=False,
            )[0]
        finally:
            CONDITION_ROWS.reset(token)

    def _denoise(
        self,
        latents: torch.Tensor,
        first_index: int,
        model_output_fn: ModelOutputFn,
        pin_fn: PinFn | None,
        callback_on_step_end: Callable | None,
        callback_on_step_end_tensor_inputs: Sequence[str],
        reinjection: Reinjection | None = None,
    ) -> torch.Tensor:
        """Euler steps from schedule index ``first_index`` (set_timesteps already called) to sigma 0.

        Each step: model output -> scheduler step -> ``pin_fn`` at the new sigma -> ``callback_on_step_end``
        (called as ``callback(pipe, i, t, {name: tensor})`` with i counted from 0 in this loop; a returned
        ``"latents"`` replaces the latents, after pinning, so a callback has the last word). With
        ``reinjection``, each of its first steps is taken ``1 + repeats`` times: after a take, fresh noise
        brings the latents back up to the step's own sigma (``sqrt(sigma_i^2 - sigma_{i+1}^2)`` more) and
        the step is taken again, from a copy of the scheduler's state, so the schedule advances once.
        """
        timesteps = self.scheduler.timesteps[first_index:]
        self.scheduler.set_begin_index(first_index)
        self._num_timesteps = len(timesteps)
        with self.progress_bar(total=len(timesteps)) as progress_bar:
            for i, t in enumerate(timesteps):
                sigma, next_sigma = (float(self.scheduler.sigmas[first_index + i + k]) for k in (0, 1))
                repeats = reinjection.repeats if reinjection is not None and i < reinjection.steps else 0
                before = copy.deepcopy(self.scheduler) if repeats else None
                for take in range(repeats + 1):
                    if take:
                        latents = reinjection.renoise(latents, sigma, next_sigma)
                        if pin_fn is not None:
                            latents = pin_fn(latents, sigma)
                    model_output = model_output_fn(latents, t)
                    scheduler = copy.deepcopy(before) if take < repeats else self.scheduler
                    latents = scheduler.step(model_output, t, latents).prev_sample
                    if pin_fn is not None:
                        latents = pin_fn(latents, next_sigma)
                if callback_on_step_end is not None:
                    tensors = {"latents": latents}
                    callback_kwargs = {k: tensors[k] for k in callback_on_step_end_tensor_inputs}
                    callback_outputs = callback_on_step_end(self, i, t, callback_kwargs)
                    latents = callback_outputs.pop("latents", latents)
                progress_bar.update()
        return latents

    def _output(self, latents: torch.Tensor, num_frames: int, decode_chunk_size: int, output_type: str):
        """Latents (B,T,C,h,w) -> frames as ``output_type`` ("latent" returns the latents as they are)."""
        if output_type == "latent":
            return latents
        frames = decode_finite(
            self.vae, lambda: self.decode_latents(latents.to(self.vae.dtype), num_frames, decode_chunk_size)
        )
        return self.video_processor.postprocess_video(video=frames, output_type=output_type)
