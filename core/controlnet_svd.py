"""A flow ControlNet for Stable Video Diffusion: trajectory control learned from sparse flow maps.

The user's trajectories become DragNUWA-style sparse flow maps (:func:`flow_condition`: per frame, each
track's frame-to-frame displacement blurred at its position, plus a mask of where tracks are). A copy of
the SVD UNet's encoder (:class:`SVDFlowControlNet`: conv_in, time and micro-conditioning embeddings, down
blocks, mid block, initialised from the UNet's weights) reads the same inputs as the UNet plus those maps
and produces one residual per UNet skip connection and one for the mid block, each through a
zero-initialised 1x1 conv. The stock UNet adds them (:func:`unet_residual_hooks`: hooks, not a copy of
its forward): residuals go to the skips the up blocks consume and to the mid block's output, as in the
ControlNet paper. Untrained (zero convs), the residuals are exactly zero and SVD is unchanged.

    controlnet = SVDFlowControlNet.from_unet(unet)                   # zero convs: stock SVD output
    cond = flow_condition(trajectories.tracks_norm(14), 576, 1024, flow_scale_px=controlnet.config.flow_scale_px)
    out = controlnet_unet_output(unet, controlnet, model_input, t, embeddings, added_time_ids,
                                 torch.from_numpy(cond)[None], conditioning_scale=1.0)

Everything that runs "ControlNet, then UNet with its residuals" goes through :func:`controlnet_attached`
(the pipeline wraps its denoising loop in it; :func:`controlnet_unet_output`, used by training, is one
UNet call inside it), so training and inference cannot disagree.
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.controlnets.controlnet import (
    ControlNetConditioningEmbedding,
    ControlNetOutput,
    zero_module,
)
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.unets.unet_3d_blocks import UNetMidBlockSpatioTemporal, get_down_block
from diffusers.utils.torch_utils import maybe_adjust_dtype_for_device
from torch import nn

from core.errors import InputError
from core.trajectory import sparse_flow, sparse_flow_mask

# Frame-to-frame displacement (px) that maps to 1 in the flow channels. A drag across half of a 1024 px
# wide SVD-XT frame over 24 frame steps moves about 20 px a frame, so typical values are of order 1.
DEFAULT_FLOW_SCALE_PX = 20.0
# Channels of the conditioning embedding's conv stack for each VAE factor (each step halves the size).
_EMBEDDING_CHANNELS = (16, 32, 96, 256)


def flow_condition(
    tracks_norm: np.ndarray,
    height: int,
    width: int,
    *,
    sigma_px: float = 10.0,
    flow_scale_px: float,
) -> np.ndarray:
    """The ControlNet's input for trajectories: normalised sparse flow and its mask, per frame.

    Channels 0-1 are ``core.trajectory.sparse_flow`` (a flow video, :mod:`core.flow`'s layout: frame t+1
    holds p_{t+1} - p_t at p_t, Gaussian-spread with peak 1) divided by ``flow_scale_px``; channel 2 is
    ``sparse_flow_mask`` (where tracks are, anchors included, in [0,1]). Frame 0 is zero; no tracks
    (M = 0) give all zeros.

    Args:
        tracks_norm: (M,T,2) positions in [0,1] (``Trajectories.tracks_norm``).
        height, width: pixel size of the video.
        sigma_px: Gaussian standard deviation in px.
        flow_scale_px: the displacement in px that maps to 1 (``SVDFlowControlNet.config.flow_scale_px``).

    Returns:
        (T,3,H,W) float32: (dx / flow_scale_px, dy / flow_scale_px, mask).
    """
    if (
        isinstance(flow_scale_px, bool)
        or not isinstance(flow_scale_px, int | float)
        or not 0 < flow_scale_px < math.inf
    ):
        raise InputError(f"flow_scale_px must be a positive number of pixels, got {flow_scale_px!r}.")
    flow_px = sparse_flow(tracks_norm, height, width, sigma_px=sigma_px)
    mask = sparse_flow_mask(tracks_norm, height, width, sigma_px=sigma_px)
    channels = np.concatenate([flow_px / np.float32(flow_scale_px), mask], axis=3)
    return np.ascontiguousarray(channels.transpose(0, 3, 1, 2), dtype=np.float32)


def _init_condition_path(embedding: ControlNetConditioningEmbedding) -> None:
    """He-initialise every conv of the conditioning embedding, its last one included, with zero biases.

    diffusers zeroes the embedding's last conv and leaves the others at PyTorch's default init. Here only the
    output convs are zero: they alone make an untrained ControlNet exactly stock SVD. A second zero layer in
    series leaves the condition path without gradient until the output convs have grown, so the tracks' effect
    starts second order; and the default init shrinks a flow map about 170x over the embedding's six convs
    (measured on the mini ControlNet). With He init the flow reaches the body at its own scale: a track's
    blob adds up to ~0.2 to features of std ~0.6 there, and nothing where there are no tracks.
    """
    for module in embedding.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            nn.init.zeros_(module.bias)


def _per_block(value, count: int) -> list:
    """A per-block setting given once (int) or per block (sequence) -> a list of ``count`` entries."""
    return [value] * count if isinstance(value, int) else list(value)


class SVDFlowControlNet(ModelMixin, ConfigMixin):
    r"""A ControlNet branch for diffusers' ``UNetSpatioTemporalConditionModel`` (SVD, SVD-XT).

    Modules: copies of the UNet's ``conv_in`` (8 input channels: noisy latents + conditioning latents),
    ``time_proj``, ``time_embedding``, ``add_time_proj``, ``add_embedding``, ``down_blocks`` and
    ``mid_block``; ``controlnet_cond_embedding`` (diffusers' ControlNet conditioning embedding: a conv
    stack from pixel to latent resolution, ``vae_scale_factor`` = 2^(stride-2 convs), He-initialised, its
    last conv NOT zero (:func:`_init_condition_path`); applied per frame, added to ``conv_in``'s output);
    ``controlnet_down_blocks`` (a zero 1x1 conv per entry of the UNet's ``down_block_res_samples``, conv_in's
    included) and ``controlnet_mid_block``.

    Config (saved with the weights): the UNet encoder's sizes, ``conditioning_channels`` (3: flow x, y,
    mask), ``conditioning_embedding_out_channels`` and ``flow_scale_px`` (the normalisation
    :func:`flow_condition` must use for this model). Build one with :meth:`from_unet`.
    """

    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(
        self,
        in_channels: int = 8,
        down_block_types: tuple[str, ...] = (
            "CrossAttnDownBlockSpatioTemporal",
            "CrossAttnDownBlockSpatioTemporal",
            "CrossAttnDownBlockSpatioTemporal",
            "DownBlockSpatioTemporal",
        ),
        block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280),
        addition_time_embed_dim: int = 256,
        projection_class_embeddings_input_dim: int = 768,
        layers_per_block: int | tuple[int, ...] = 2,
        cross_attention_dim: int | tuple[int, ...] = 1024,
        transformer_layers_per_block: int | tuple[int, ...] = 1,
        num_attention_heads: int | tuple[int, ...] = (5, 10, 20, 20),
        conditioning_channels: int = 3,
        conditioning_embedding_out_channels: tuple[int, ...] = _EMBEDDING_CHANNELS,
        flow_scale_px: float = DEFAULT_FLOW_SCALE_PX,
    ):
        super().__init__()
        blocks = len(down_block_types)
        num_attention_heads = _per_block(num_attention_heads, blocks)
        cross_attention_dim = _per_block(cross_attention_dim, blocks)
        layers_per_block = _per_block(layers_per_block, blocks)
        transformer_layers_per_block = _per_block(transformer_layers_per_block, blocks)

        # The UNet's input and embeddings, built as UnetSpatioTemporalConditionModel builds them.
        self.conv_in = nn.Conv2d(in_channels, block_out_channels[0], kernel_size=3, padding=1)
        time_embed_dim = block_out_channels[0] * 4
        self.time_proj = Timesteps(block_out_channels[0], True, downscale_freq_shift=0)
        self.time_embedding = TimestepEmbedding(block_out_channels[0], time_embed_dim)
        self.add_time_proj = Timesteps(addition_time_embed_dim, True, downscale_freq_shift=0)
        self.add_embedding = TimestepEmbedding(projection_class_embeddings_input_dim, time_embed_dim)

        self.controlnet_cond_embedding = ControlNetConditioningEmbedding(
            conditioning_embedding_channels=block_out_channels[0],
            conditioning_channels=conditioning_channels,
            block_out_channels=tuple(conditioning_embedding_out_channels),
        )
        _init_condition_path(self.controlnet_cond_embedding)

        # Down blocks, and a zero conv per skip they produce (conv_in's output is the first skip).
        self.down_blocks = nn.ModuleList([])
        self.controlnet_down_blocks = nn.ModuleList([self._zero_conv(block_out_channels[0])])
        output_channel = block_out_channels[0]
        for i, down_block_type in enumerate(down_block_types):
            input_channel, output_channel = output_channel, block_out_channels[i]
            is_final_block = i == blocks - 1
            self.down_blocks.append(
                get_down_block(
                    down_block_type,
                    num_layers=layers_per_block[i],
                    transformer_layers_per_block=transformer_layers_per_block[i],
                    in_channels=input_channel,
                    out_channels=output_channel,
                    temb_channels=time_embed_dim,
                    add_downsample=not is_final_block,
                    resnet_eps=1e-5,
                    cross_attention_dim=cross_attention_dim[i],
                    num_attention_heads=num_attention_heads[i],
                    resnet_act_fn="silu",
                )
            )
            skips = layers_per_block[i] + (0 if is_final_block else 1)
            self.controlnet_down_blocks.extend(self._zero_conv(output_channel) for _ in range(skips))

        self.mid_block = UNetMidBlockSpatioTemporal(
            block_out_channels[-1],
            temb_channels=time_embed_dim,
            transformer_layers_per_block=transformer_layers_per_block[-1],
            cross_attention_dim=cross_attention_dim[-1],
            num_attention_heads=num_attention_heads[-1],
        )
        self.controlnet_mid_block = self._zero_conv(block_out_channels[-1])

    @staticmethod
    def _zero_conv(channels: int) -> nn.Conv2d:
        return zero_module(nn.Conv2d(channels, channels, kernel_size=1))

    @property
    def vae_scale_factor(self) -> int:
        """Pixel size / latent size the conditioning embedding maps between (2 per stride-2 conv)."""
        return 2 ** (len(self.config.conditioning_embedding_out_channels) - 1)

    @classmethod
    def from_unet(
        cls,
        unet: nn.Module,
        conditioning_channels: int = 3,
        flow_scale_px: float = DEFAULT_FLOW_SCALE_PX,
        load_weights_from_unet: bool = True,
        vae_scale_factor: int = 8,
    ) -> SVDFlowControlNet:
        """A ControlNet shaped like ``unet``'s encoder, with its weights (unless told not to), zero convs out.

        Args:
            unet: a ``UNetSpatioTemporalConditionModel``.
            conditioning_channels: channels of ``controlnet_cond`` (3 for :func:`flow_condition`).
            flow_scale_px: stored in the config for :func:`flow_condition`.
            load_weights_from_unet: copy conv_in, the embeddings, down and mid blocks from ``unet``.
            vae_scale_factor: pixel / latent size of the VAE the pipeline uses (8 for SVD; the tiny test
                VAE has 2); one of 1, 2, 4, 8.

        Returns:
            A float32 model on the CPU whose residuals are exactly zero.
        """
        if vae_scale_factor not in (1, 2, 4, 8):
            raise ValueError(f"vae_scale_factor must be 1, 2, 4 or 8, got {vae_scale_factor!r}.")
        config = unet.config
        controlnet = cls(
            in_channels=config.in_channels,
            down_block_types=config.down_block_types,
            block_out_channels=config.block_out_channels,
            addition_time_embed_dim=config.addition_time_embed_dim,
            projection_class_embeddings_input_dim=config.projection_class_embeddings_input_dim,
            layers_per_block=config.layers_per_block,
            cross_attention_dim=config.cross_attention_dim,
            transformer_layers_per_block=config.transformer_layers_per_block,
            num_attention_heads=config.num_attention_heads,
            conditioning_channels=conditioning_channels,
            conditioning_embedding_out_channels=_EMBEDDING_CHANNELS[: int(math.log2(vae_scale_factor)) + 1],
            flow_scale_px=flow_scale_px,
        )
        if load_weights_from_unet:
            for name in ("conv_in", "time_proj", "time_embedding", "add_time_proj", "add_embedding"):
                getattr(controlnet, name).load_state_dict(getattr(unet, name).state_dict())
            controlnet.down_blocks.load_state_dict(unet.down_blocks.state_dict())
            controlnet.mid_block.load_state_dict(unet.mid_block.state_dict())
        return controlnet

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        encoder_hidden_states: torch.Tensor,
        added_time_ids: torch.Tensor,
        controlnet_cond: torch.Tensor,
        conditioning_scale: float = 1.0,
        return_dict: bool = False,
    ) -> tuple[tuple[torch.Tensor, ...], torch.Tensor] | ControlNetOutput:
        """Residuals for the UNet's skips and mid block.

        Args:
            sample: (B,T,8,h,w) the UNet's input as it receives it (scaled noisy latents + conditioning
                latents on the channel axis).
            timestep, encoder_hidden_states (B,1,D), added_time_ids (B,3): as the UNet receives them.
            controlnet_cond: (B,T,C,H,W) float, H = h x ``vae_scale_factor`` (:func:`flow_condition`).
            conditioning_scale: every residual is multiplied by it.
            return_dict: return diffusers' ``ControlNetOutput`` instead of a tuple.

        Returns:
            (down_residuals, mid_residual): one (B*T,c,h',w') tensor per UNet skip, in the order of the
            UNet's ``down_block_res_samples``, and the mid block's (B*T,c,h/f,w/f).
        """
        batch_size, num_frames = sample.shape[:2]
        if controlnet_cond.shape[:2] != (batch_size, num_frames) or controlnet_cond.shape[-2:] != (
            sample.shape[-2] * self.vae_scale_factor,
            sample.shape[-1] * self.vae_scale_factor,
        ):
            raise InputError(
                f"controlnet_cond has shape {tuple(controlnet_cond.shape)} for a sample of shape "
                f"{tuple(sample.shape)}: it needs (B,T,C,H,W) with the sample's B and T and H, W = "
                f"{self.vae_scale_factor} x the latent size (this ControlNet's vae_scale_factor)."
            )

        # 1. time, as the UNet computes it
        timesteps = timestep
        if not torch.is_tensor(timesteps):
            dtype = maybe_adjust_dtype_for_device(
                torch.float64 if isinstance(timestep, float) else torch.int64, sample.device
            )
            timesteps = torch.tensor([timesteps], dtype=dtype, device=sample.device)
        elif len(timesteps.shape) == 0:
            timesteps = timesteps[None].to(sample.device)
        timesteps = timesteps.expand(batch_size)
        emb = self.time_embedding(self.time_proj(timesteps).to(dtype=sample.dtype))
        time_embeds = self.add_time_proj(added_time_ids.flatten()).reshape((batch_size, -1))
        emb = emb + self.add_embedding(time_embeds.to(emb.dtype))

        # Frames join the batch: (B,T,...) -> (B*T,...), embeddings repeated per frame.
        sample = sample.flatten(0, 1)
        emb = emb.repeat_interleave(num_frames, dim=0, output_size=emb.shape[0] * num_frames)
        encoder_hidden_states = encoder_hidden_states.repeat_interleave(
            num_frames, dim=0, output_size=encoder_hidden_states.shape[0] * num_frames
        )

        # 2. pre-process, plus the embedded condition
        sample = self.conv_in(sample)
        cond = controlnet_cond.flatten(0, 1).to(device=sample.device, dtype=sample.dtype)
        sample = sample + self.controlnet_cond_embedding(cond)
        image_only_indicator = torch.zeros(batch_size, num_frames, dtype=sample.dtype, device=sample.device)

        # 3. down
        down_block_res_samples = (sample,)
        for downsample_block in self.down_blocks:
            kwargs = {"hidden_states": sample, "temb": emb, "image_only_indicator": image_only_indicator}
            if getattr(downsample_block, "has_cross_attention", False):
                kwargs["encoder_hidden_states"] = encoder_hidden_states
            sample, res_samples = downsample_block(**kwargs)
            down_block_res_samples += res_samples

        # 4. mid
        sample = self.mid_block(
            hidden_states=sample,
            temb=emb,
            encoder_hidden_states=encoder_hidden_states,
            image_only_indicator=image_only_indicator,
        )

        # 5. zero convs, scaled
        down_residuals = tuple(
            conv(res) * conditioning_scale
            for res, conv in zip(down_block_res_samples, self.controlnet_down_blocks, strict=True)
        )
        mid_residual = self.controlnet_mid_block(sample) * conditioning_scale
        if return_dict:
            return ControlNetOutput(down_block_res_samples=down_residuals, mid_block_res_sample=mid_residual)
        return down_residuals, mid_residual


@contextlib.contextmanager
def unet_residual_hooks(
    unet: nn.Module, down_residuals: Sequence[torch.Tensor], mid_residual: torch.Tensor
) -> Iterator[None]:
    """Within the block, the stock ``unet``'s forward adds ControlNet residuals (hooks; its code untouched).

    The UNet's forward hands each up block the last ``len(block.resnets)`` entries of its
    ``down_block_res_samples`` (popping them off the end), as the keyword ``res_hidden_states_tuple``;
    a forward pre-hook on each up block adds the matching slice of ``down_residuals`` (given in the
    order of ``down_block_res_samples``) to those skips, and a forward hook on ``mid_block`` adds
    ``mid_residual`` to its output. The main path into the up blocks is not touched. Leaving the block
    removes the hooks: the UNet is stock again.
    """
    counts = [len(block.resnets) for block in unet.up_blocks]
    if len(down_residuals) != sum(counts):
        raise ValueError(
            f"{len(down_residuals)} down residuals for a UNet whose up blocks consume {sum(counts)} skips."
        )
    remaining = list(down_residuals)
    handles = []

    def add_to_skips(residuals: list[torch.Tensor]):
        def hook(module, args, kwargs):
            skips = kwargs["res_hidden_states_tuple"]
            kwargs["res_hidden_states_tuple"] = tuple(
                skip + residual.to(skip.dtype) for skip, residual in zip(skips, residuals, strict=True)
            )
            return args, kwargs

        return hook

    def add_to_mid(module, args, output):
        return output + mid_residual.to(output.dtype)

    try:
        for block, count in zip(unet.up_blocks, counts):
            residuals, remaining = remaining[-count:], remaining[:-count]
            handles.append(block.register_forward_pre_hook(add_to_skips(residuals), with_kwargs=True))
        handles.append(unet.mid_block.register_forward_hook(add_to_mid))
        yield
    finally:
        for handle in handles:
            handle.remove()


# The rows of ``controlnet_attached``'s condition the current UNet call stands for: all of them (None), or one
# guidance half when a pipeline runs the halves one at a time (``SVDPipelineBase.enable_guidance_split``).
CONDITION_ROWS: contextvars.ContextVar[slice | None] = contextvars.ContextVar("condition_rows", default=None)


@contextlib.contextmanager
def controlnet_attached(
    unet: nn.Module,
    controlnet: SVDFlowControlNet,
    controlnet_cond: torch.Tensor,
    conditioning_scale: float = 1.0,
) -> Iterator[None]:
    """Within the block, every ``unet`` call first runs ``controlnet`` on the same inputs and adds its residuals.

    A forward pre-hook on the UNet reads the call's sample, timestep, encoder_hidden_states and
    added_time_ids, runs the ControlNet with ``controlnet_cond`` (B,T,C,H,W) (the batch of every UNet
    call in the block, or the rows :data:`CONDITION_ROWS` names) and ``conditioning_scale``, and installs
    :func:`unet_residual_hooks` until the call returns. Leaving the block removes the hooks.
    """
    signature = inspect.signature(type(unet).forward)
    active: list[contextlib.ExitStack] = []

    def before(module, args, kwargs):
        inputs = signature.bind(module, *args, **kwargs).arguments
        down_residuals, mid_residual = controlnet(
            inputs["sample"],
            inputs["timestep"],
            inputs["encoder_hidden_states"],
            inputs["added_time_ids"],
            controlnet_cond[CONDITION_ROWS.get() or slice(None)],
            conditioning_scale=conditioning_scale,
            return_dict=False,
        )
        stack = contextlib.ExitStack()
        stack.enter_context(unet_residual_hooks(module, down_residuals, mid_residual))
        active.append(stack)

    def after(module, args, kwargs, output):
        if active:
            active.pop().close()

    handles = [
        unet.register_forward_pre_hook(before, with_kwargs=True),
        unet.register_forward_hook(after, with_kwargs=True, always_call=True),
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
        while active:
            active.pop().close()


def controlnet_unet_output(
    unet: nn.Module,
    controlnet: SVDFlowControlNet,
    model_input: torch.Tensor,
    t: torch.Tensor | float,
    encoder_hidden_states: torch.Tensor,
    added_time_ids: torch.Tensor,
    controlnet_cond: torch.Tensor,
    conditioning_scale: float = 1.0,
) -> torch.Tensor:
    """One UNet prediction with the ControlNet's residuals added (see :func:`controlnet_attached`).

    Args:
        model_input: (B,T,8,h,w) scaled noisy latents + conditioning latents, as the UNet takes them.
        t, encoder_hidden_states (B,1,D), added_time_ids (B,3): the UNet's other inputs.
        controlnet_cond: (B,T,C,H,W) float (:func:`flow_condition` per sample).
        conditioning_scale: multiplies every residual (0: the stock UNet's output exactly).

    Returns:
        The UNet's output (B,T,4,h,w).
    """
    with controlnet_attached(unet, controlnet, controlnet_cond, conditioning_scale):
        return unet(
            model_input,
            t,
            encoder_hidden_states=encoder_hidden_states,
            added_time_ids=added_time_ids,
            return_dict=False,
        )[0]
