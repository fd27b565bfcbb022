"""SVD generating a video and its optical flow together, conditioned on sparse flow by joint sampling.

The research path of the original work (SEED_NOTES, "Three lines of work", item 1), kept as an EXPERIMENTAL
backend: there, conditioning through joint diffusion did not give control over the motion. The working
trajectory methods are the warp engine, the training-free SDEdit refinement
(:mod:`core.pipelines.svd_trajectory`) and the trained flow ControlNet.

How it works. SVD's UNet carries the joint patch (:mod:`core.patches.joint`, two modalities: x = the RGB
video, y = its flow video encoded as images by :mod:`core.flow.encoding`), trained by ``python -m
core.training.svd_joint_flow``. One call denoises the pair together:

- UNet batch: ``[video, flow]`` per guidance half, ``[video_u, flow_u, video_c, flow_c]`` with classifier-free
  guidance (unconditional half first, as stock SVD); ``JointPatch.set_batch_layout([0, 1, 0, 1])`` pairs
  each video with its flow and masks ``y_lora`` to the flow entries. Both entries of a half get the first
  frame's stock SVD conditioning (CLIP embedding + noise-augmented image latents; zeros in the unconditional
  half), the same added time ids and the same per-frame guidance ramp.
- Random draws: the conditioning noise, then the video's noise, exactly as stock SVD draws them, then the
  flow's noise. So with a freshly patched UNet (zero-initialised joint layers and LoRAs: the video entries do
  not see the flow entries) and ``fix_first_frame=False`` the video is stock SVD's video for the same seed.
- Conditioning on the user's tracks by replacement (the "known values" of joint sampling, as inpainting by
  replacement does): the tracks give a flow video (:mod:`core.flow`'s layout, as
  :func:`core.trajectory.sparse_flow`: frame t+1 holds p_{t+1} - p_t at p_t, frame 0 zero). Known values are that flow near each track, at
  its full displacement: ``sparse_flow / sparse_flow_mask`` where the mask reaches :data:`SUPPORT_WEIGHT`
  (3.7 sigma from a lone track; zero flow beyond), which is exactly a lone track's displacement around it
  (DragNUWA's Gaussian fall-off is a conditioning signal, not the flow there); where the Gaussians of
  several tracks overlap it is their weighted mean, or their weighted sum where the weights add up past 1
  (the mask's cap). The flow video is encoded (:func:`core.flow.encoding.encode_flow` at the model's
  scale) and put through the VAE; a latent cell is known where the mask, averaged over the cell's pixels, is at least
  :data:`KNOWN_MASK_THRESHOLD` (0.5: a cell mostly covered by tracks), and every cell of frame 0 is known
  (zero flow, by the convention). Before the first step and after every step the flow latents of known
  cells are replaced by ``known + sigma * noise`` (the flow's own initial unit noise, fixed, as
  :func:`core.pipelines.svd_common.pin_frames` holds frames), so at sigma 0 they are the known latents
  exactly. The video entries see the pinned flow only through the joint attention: this is the mechanism
  whose control the research found too weak.
- ``fix_first_frame`` (default) holds the video's frame 0 on the input image as
  :class:`~core.pipelines.svd_trajectory.SVDTrajectoryPipeline` does.
- Cost: one UNet call per step over twice stock SVD's batch (4 entries with guidance), one VAE encode of the
  known flow video and two VAE decodes (video and flow).

Loading: :func:`core.models.load_svd_joint_flow` (``Settings.svd_joint_flow_model``, env
``KINEMA_SVD_JOINT_FLOW_MODEL``) over the cached SVD; the patch is on the shared UNet only while it runs:

    pipe = load_svd_joint_flow(settings)
    with core.models.state.attached(pipe.unet, pipe.joint_weights):
        out = pipe(image_uint8, tracks_norm, output_type="np", generator=torch.Generator().manual_seed(0))
    out.frames[0]      # (T,H,W,3) float in [0,1]
    out.flows_px[0]    # (T,H,W,2) float32 px flow video, frame t+1: flow from t to t+1
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from diffusers.utils import BaseOutput

from core.errors import InputError
from core.flow.encoding import FlowEncoding, decode_flow
from core.memory import encode_chunk_frames
from core.models.state import JointWeights
from core.patches.joint import joint_patch_of
from core.pipelines.svd_common import (
    ImageInput,
    SVDPipelineBase,
    check_call_options,
    check_image,
    image_size_hw,
    pin_frames,
)
from core.pipelines.svd_flow import DEFAULT_FLOW_ENCODING, encode_flow_latents, latent_mask
from core.trajectory import sparse_flow, sparse_flow_mask

VIDEO, FLOW = 0, 1  # modality of each entry of the joint batch
# A latent cell is known when the sparse-flow mask averaged over its pixels reaches this.
KNOWN_MASK_THRESHOLD = 0.5
# The tracks' displacement is written where their summed Gaussian weight reaches this (3.7 sigma from a lone
# track), zero flow beyond: the VAE encoder sees that neighbourhood when it encodes the known cells.
SUPPORT_WEIGHT = 1e-3


@dataclass
class SVDJointFlowPipelineOutput(BaseOutput):
    """Output of :class:`SVDJointFlowPipeline`.

    ``frames``: the video as the stock SVD pipeline returns it: list of lists of PIL images ("pil"), (1,T,H,W,3)
    float [0,1] numpy ("np"), (1,T,3,H,W) float [0,1] torch ("pt"), or the (1,T,C,h,w) latents ("latent").
    ``flows_px``: (1,T,H,W,2) float32 numpy, the generated flow video decoded to px (:mod:`core.flow`'s
    flow-video layout: frame t+1 the flow from frame t to t+1 on frame t's grid, frame 0 zero); None for "latent".
    ``flow_latents``: (1,T,C,h,w) the flow video's denoised latents.
    """

    frames: Any
    flows_px: np.ndarray | None
    flow_latents: torch.Tensor


@dataclass
class KnownFlow:
    """What the user's tracks fix in the flow video (see the module docstring).

    ``flow_video_px``: (T,H,W,2) float32, the tracks' displacement around each track, zero elsewhere and on
    frame 0. ``latent_mask``: (T,1,h,w) bool, the known latent cells (every cell of frame 0).
    """

    flow_video_px: np.ndarray
    latent_mask: torch.Tensor


def known_flow(
    tracks_norm: np.ndarray | None,
    num_frames: int,
    height: int,
    width: int,
    scale_factor: int,
    sigma_px: float = 10.0,
) -> KnownFlow:
    """The known flow values and latent cells of tracks (M,T,2) in [0,1] (None or M = 0: frame 0 only).

    ``scale_factor``: the VAE's downsampling (the pipeline's ``vae_scale_factor``); height and width must be
    multiples of it. ``sigma_px``: the tracks' Gaussian width, as in :func:`core.trajectory.sparse_flow`.
    """
    flow_px = np.zeros((num_frames, height, width, 2), np.float32)
    weight = np.zeros((num_frames, height, width, 1), np.float32)
    if tracks_norm is not None and len(tracks_norm):
        flow_px = sparse_flow(tracks_norm, height, width, sigma_px=sigma_px)
        weight = sparse_flow_mask(tracks_norm, height, width, sigma_px=sigma_px)
        # The weighted mean displacement: a lone track's own displacement over its neighbourhood.
        support = weight >= SUPPORT_WEIGHT
        flow_px = np.divide(flow_px, weight, out=np.zeros_like(flow_px), where=support)
    known_cells = latent_mask(weight, scale_factor) >= KNOWN_MASK_THRESHOLD
    known_cells[0] = True
    return KnownFlow(flow_px, known_cells)


class SVDJointFlowPipeline(SVDPipelineBase):
    r"""Stable Video Diffusion generating a video and its flow together (experimental; module docstring).

    Components: stock SVD's (``vae``, ``image_encoder``, ``unet``, ``scheduler``, ``feature_extractor``), the
    UNet carrying a two-modality joint patch (:func:`core.patches.joint.apply_joint_patch`). Attributes set by
    :func:`core.models.load_svd_joint_flow`: ``flow_encoding`` (a :class:`~core.flow.encoding.FlowEncoding`), the
    flow scale the patch was trained with, ``core.pipelines.svd_flow.DEFAULT_FLOW_ENCODING`` (16 px at 512 px
    width) until a model sets it; ``joint_weights``, the patch to attach to the shared UNet around a call
    (:func:`core.models.state.attached`), None for a pipeline whose UNet carries its patch itself (training).
    Between calls the patch is parked (no pairing, adapters masked off).
    """

    flow_encoding: FlowEncoding = DEFAULT_FLOW_ENCODING
    joint_weights: JointWeights | None = None

    @staticmethod
    def check_inputs(
        image: object,
        tracks_norm: object,
        num_frames: object,
        sigma_px: object,
        num_inference_steps: object,
        decode_chunk_size: object,
        output_type: object,
        callback_on_step_end_tensor_inputs: object,
        allowed_tensor_inputs: list[str],
    ) -> np.ndarray | None:
        """Raise InputError (a ValueError) naming the offending value; return the tracks as float64
        (M,T,2), or None. Never fixes input (points outside [0,1] are clipped, as core.trajectory does)."""
        check_image(image, "image")
        if num_frames is not None and (
            isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 2
        ):
            raise InputError(f"`num_frames` must be an integer >= 2 or None, got {num_frames!r}.")
        if isinstance(sigma_px, bool) or not isinstance(sigma_px, int | float) or not 0 < sigma_px < np.inf:
            raise InputError(f"`sigma_px` must be a positive number of pixels, got {sigma_px!r}.")
        tracks = None
        if tracks_norm is not None:
            try:
                tracks = np.asarray(tracks_norm, dtype=np.float64)
            except (TypeError, ValueError) as err:
                raise InputError("`tracks_norm` must be an array of (x, y) positions (M,T,2).") from err
            if tracks.ndim != 3 or tracks.shape[2] != 2 or tracks.shape[1] < 2:
                raise InputError(
                    f"`tracks_norm` must have shape (M,T,2) with T >= 2 frames, got {tracks.shape}."
                )
            if not np.isfinite(tracks).all():
                raise InputError("`tracks_norm` contains NaN or infinite coordinates.")
            if num_frames is not None and tracks.shape[1] != num_frames:
                raise InputError(
                    f"`num_frames` is {num_frames} but `tracks_norm` covers {tracks.shape[1]} frames."
                )
        check_call_options(
            num_inference_steps,
            decode_chunk_size,
            output_type,
            callback_on_step_end_tensor_inputs,
            allowed_tensor_inputs,
        )
        return tracks

    @torch.no_grad()
    def encode_flow_video(self, flow_video_px: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Flow videos (...,T,H,W,2) px -> denoising-space latents (...,T,C,h,w) in the UNet's dtype, at this
        model's flow scale (``svd_flow.encode_flow_latents`` on the execution device, as many frames at a time as
        ``core.memory.encode_chunk_frames`` allows)."""
        flows = torch.as_tensor(flow_video_px).to(self._execution_device)
        scale_px = self.flow_encoding.scale_px(flows.shape[-2])
        with self._vae_upcast():
            chunk = encode_chunk_frames(*flows.shape[-3:-1])
            latents = encode_flow_latents(self.vae, flows, scale_px, chunk)
        return latents.to(self.unet.dtype)

    @torch.no_grad()
    def decode_flow_video(self, flow_latents: torch.Tensor, chunk_size: int) -> np.ndarray:
        """Flow latents (B,T,C,h,w) -> flow videos (B,T,H,W,2) float32 px, frame 0 set to the convention's zero.

        Decoded as stock SVD decodes its video, then :func:`core.flow.encoding.decode_flow` at this model's scale.
        """
        images_signed = self.decode_latents(flow_latents, flow_latents.shape[1], chunk_size)  # (B,3,T,H,W)
        images_signed = images_signed.permute(0, 2, 3, 4, 1)
        flows_px = (
            decode_flow(images_signed, self.flow_encoding.scale_px(images_signed.shape[3])).cpu().numpy()
        )
        flows_px[:, 0] = 0.0
        return flows_px

    @torch.no_grad()
    def __call__(
        self,
        image: ImageInput,
        tracks_norm: np.ndarray | None = None,
        num_frames: int | None = None,
        num_inference_steps: int = 25,
        min_guidance_scale: float = 1.0,
        max_guidance_scale: float = 3.0,
        fps: int = 7,
        motion_bucket_id: int = 127,
        noise_aug_strength: float = 0.02,
        sigma_px: float = 10.0,
        fix_first_frame: bool = True,
        decode_chunk_size: int | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        output_type: str = "np",
        callback_on_step_end: Callable | None = None,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
        return_dict: bool = True,
    ):
        r"""Generate a video from ``image`` and its flow, the flow held on the tracks' flow where they fix it.

        Args:
            image: the first frame, PIL or uint8 (H,W,3); sides multiples of 8 (of 64 for real SVD).
            tracks_norm: (M,T,2) positions in [0,1] per frame (``Trajectories.tracks_norm``); None or M = 0
                generates video and flow freely (frame 0 of the flow is still held at zero).
            num_frames: T >= 2; defaults to the tracks' length, else the UNet's ``num_frames``.
            sigma_px: the tracks' Gaussian width in px (:func:`core.trajectory.sparse_flow`): how far around
                a track its displacement is imposed.
            fix_first_frame: hold the video's frame 0 on ``image``.
            num_inference_steps, min_guidance_scale, max_guidance_scale, fps, motion_bucket_id,
            noise_aug_strength, decode_chunk_size, generator, output_type ("pil", "np", "pt", "latent"),
            return_dict: as in ``StableVideoDiffusionPipeline``; the guidance ramp and time ids apply to
                video and flow alike.
            callback_on_step_end, callback_on_step_end_tensor_inputs: as there; ``"latents"`` is the joint
                (2,T,C,h,w) tensor ``[video, flow]`` after the step and the replacement.

        Returns:
            :class:`SVDJointFlowPipelineOutput`, or ``(frames, flows_px)`` when ``return_dict`` is False.
        """
        tensor_inputs = (
            ["latents"] if callback_on_step_end_tensor_inputs is None else callback_on_step_end_tensor_inputs
        )
        # 1. Check inputs
        tracks = self.check_inputs(
            image,
            tracks_norm,
            num_frames,
            sigma_px,
            num_inference_steps,
            decode_chunk_size,
            output_type,
            tensor_inputs,
            self._callback_tensor_inputs,
        )
        patch = joint_patch_of(self.unet)
        if patch is None or patch.modalities != 2:
            raise InputError(
                "The UNet carries no two-modality joint patch: load the pipeline with "
                "core.models.load_svd_joint_flow and call it inside core.models.state.attached(pipe.unet, "
                "pipe.joint_weights)."
            )
        height, width = image_size_hw(image)
        if num_frames is None:
            num_frames = tracks.shape[1] if tracks is not None else self.unet.config.num_frames
        decode_chunk_size = decode_chunk_size or num_frames
        device = self._execution_device
        self._guidance_scale = max_guidance_scale

        # 2-3. The first frame's conditioning for both entries [video, flow], batched for guidance, and its
        #      clean latents: stock SVD's draws
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
            copies=2,
        )
        dtype = conditioning.image_embeddings.dtype

        # 4. Timesteps
        self.scheduler.set_timesteps(num_inference_steps, device=device)

        # 5. Starting latents: the video's noise first (stock SVD's draw), then the flow's
        video_noise = self._latent_noise(num_frames, height, width, generator, device, dtype)
        flow_noise = self._latent_noise(num_frames, height, width, generator, device, dtype)
        latents = torch.cat([video_noise, flow_noise]) * self.scheduler.init_noise_sigma

        # 6. The known flow: latents of the tracks' flow video, and the cells they fix
        known = known_flow(tracks, num_frames, height, width, self.vae_scale_factor, sigma_px)
        known_latents = self.encode_flow_video(known.flow_video_px).to(dtype)
        known_mask = known.latent_mask.to(device)

        def pin_fn(x: torch.Tensor, sigma: float) -> torch.Tensor:
            video, flow = x.chunk(2)
            if fix_first_frame:
                video = pin_frames(video, clean_first.unsqueeze(1), [0], video_noise, sigma)
            noised_known = (known_latents + sigma * flow_noise[0]).to(flow.dtype)
            flow = torch.where(known_mask, noised_known, flow[0]).unsqueeze(0)
            return torch.cat([video, flow])

        latents = pin_fn(latents, float(self.scheduler.sigmas[0]))

        # 7. Per-frame guidance scale, the same for both entries
        self._set_guidance_ramp(min_guidance_scale, max_guidance_scale, num_frames, 2, device, dtype)

        # 8. Denoising loop, the patch laid out as [video, flow] per guidance half
        layout = [VIDEO, FLOW]
        patch.set_batch_layout(layout * 2 if self.do_classifier_free_guidance else layout)
        try:
            latents = self._denoise(
                latents,
                0,
                lambda x, t: self._predict(x, t, conditioning),
                pin_fn,
                callback_on_step_end,
                tensor_inputs,
            )
        finally:
            patch.park()

        # 9. Decode the video as stock SVD does, and the flow to px
        video_latents, flow_latents = latents.chunk(2)
        frames = self._output(video_latents, num_frames, decode_chunk_size, output_type)
        flows_px = None
        if output_type != "latent":
            flows_px = self.decode_flow_video(flow_latents, decode_chunk_size)
        self.maybe_free_model_hooks()
        if not return_dict:
            return frames, flows_px
        return SVDJointFlowPipelineOutput(frames=frames, flows_px=flows_px, flow_latents=flow_latents)
