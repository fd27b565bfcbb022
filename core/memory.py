"""GPU memory: how much of a video the VAE handles at once, and the low-VRAM mode.

Where the peak is (full-size SVD-XT, fp16, 14 frames at 576x1024, measured by
``tests/benchmarks/gpu_paths.py``): the UNet's weights (3.1 GB) and its activations during denoising are
fixed costs; what grows with the frames handled at once is the VAE. Its encoder runs in float32 (SVD's VAE
asks for the upcast), so encoding a guide video in one go cost more than the whole denoising loop, and the
temporal decoder's activations grow with the decode chunk. So:

- encoding (per frame, so the chunk changes memory only, never the result) uses the largest chunk that fits
  :data:`VAE_BUDGET_BYTES`;
- decoding keeps the caller's chunk (the temporal decoder mixes the frames of one chunk, so the chunk is part
  of the result) unless that chunk does not fit the budget, which in the low-VRAM mode is smaller;
- the low-VRAM mode (``Settings.low_vram``, ``KINEMA_LOW_VRAM=1``, ``--low-vram``) also offloads each model to
  the CPU while another one runs (``enable_model_cpu_offload``), runs the UNet's feed-forward layers one
  sample at a time (``enable_forward_chunking``, exact) and the two classifier-free-guidance halves one after
  the other (``SVDPipelineBase.enable_guidance_split``).
"""

from __future__ import annotations

import math

import torch

from core.config import Settings

GIB = 1024**3
# Peak activation bytes per frame and pixel of the full-size SVD VAE (AutoencoderKLTemporalDecoder),
# measured on an H200 with gpu_paths.py's VAE rows (3084 and 2436 B at one frame, the most of 1-4 frames):
# encoding runs in float32 (SVD's VAE asks for the upcast), decoding in the weights' dtype (fp16).
ENCODE_BYTES_PER_PIXEL = 3100
DECODE_BYTES_PER_PIXEL = 2450
# Activation budget of one VAE chunk: default mode (the UNet stays resident, 16 GiB in all) / low-VRAM mode
# (the UNet is offloaded while the VAE runs, 8 GiB in all).
VAE_BUDGET_BYTES = {False: 6 * GIB, True: 3 * GIB}


def vae_chunk_frames(height: int, width: int, bytes_per_pixel: int, budget_bytes: int) -> int:
    """The most frames of ``height`` x ``width`` px whose VAE activations fit ``budget_bytes`` (at least 1)."""
    if height <= 0 or width <= 0:
        raise ValueError(f"height and width must be positive, got {height}x{width}")
    return max(1, math.floor(budget_bytes / (bytes_per_pixel * height * width)))


def encode_chunk_frames(height: int, width: int, low_vram: bool = False) -> int:
    """Frames the VAE encodes at once at this size: the budget's fit (encoding is per frame, so exact)."""
    return vae_chunk_frames(height, width, ENCODE_BYTES_PER_PIXEL, VAE_BUDGET_BYTES[low_vram])


def decode_chunk_frames(height: int, width: int, requested: int, low_vram: bool = False) -> int:
    """The decode chunk to use: ``requested`` unless it does not fit the budget, then the budget's fit."""
    if requested < 1:
        raise ValueError(f"the decode chunk must be positive, got {requested}")
    return min(requested, vae_chunk_frames(height, width, DECODE_BYTES_PER_PIXEL, VAE_BUDGET_BYTES[low_vram]))


def place_pipeline(pipe, settings: Settings) -> None:
    """Put a freshly built pipeline on the configured device with the configured offload and memory mode.

    ``offload`` "model" / "sequential" (or ``low_vram``, which means "model" unless "sequential" is set)
    install diffusers' CPU-offload hooks; otherwise the whole pipeline moves to the device. ``low_vram``
    also enables the UNet's feed-forward chunking where the UNet has it (SVD's does; exact). On the CPU
    there is nothing to offload to, so only the chunking applies.

    The mode may change from one call to the next over the same cached modules (``load_pipeline`` builds
    every pipeline over shared components, and each app run chooses its mode): every state the last mode
    left on the modules (offload hooks, chunking, guidance split) is set here either way.
    """
    device = settings.resolved_device()
    offload = settings.offload
    if settings.low_vram and offload == "none":
        offload = "model"
    if offload == "model" and device != "cpu":
        pipe.enable_model_cpu_offload(device=device)
    elif offload == "sequential" and device != "cpu":
        pipe.enable_sequential_cpu_offload(device=device)
    else:
        # Offload hooks a low-VRAM run left on the shared modules would keep moving them (diffusers' .to()
        # only warns about them, or refuses after a sequential offload): take them off first.
        pipe.remove_all_hooks()
        pipe.to(device)
    if hasattr(pipe, "enable_guidance_split"):  # our SVD pipelines: one guidance half at a time
        pipe.enable_guidance_split(settings.low_vram)
    unet = getattr(pipe, "unet", None)
    if hasattr(unet, "enable_forward_chunking"):  # the UNet is shared between pipelines: set it either way
        set_forward_chunking(unet, settings.low_vram)


def set_forward_chunking(unet: torch.nn.Module, on: bool) -> None:
    """Feed-forward layers one sample at a time (on; what ``enable_forward_chunking()`` sets) or all at once."""
    for module in unet.modules():
        if hasattr(module, "set_chunk_feed_forward"):
            module.set_chunk_feed_forward(chunk_size=1 if on else None, dim=0)
