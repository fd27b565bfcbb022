"""Half-precision guards: where fp16 is known to overflow, detect it and redo that step in float32.

Where: the VAE decoders. SD's VAE decoder can overflow fp16 on saturated or large latents (the reason
diffusers' SDXL pipelines upcast it), and SVD's temporal decoder ships with ``force_upcast`` set. The overflow
shows as inf/NaN pixels, a black or speckled frame after minutes of denoising. The UNets and the encoders
have not been seen to overflow in fp16 (the GPU benchmark's paths all ran finite), so they are not guarded.

:func:`decode_finite` runs a decode as is; only when an fp16 decoder returns non-finite values does it decode
again with the decoder in float32 (and back), so a finite result is never changed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

logger = logging.getLogger(__name__)


def decode_finite(decoder: torch.nn.Module, decode: Callable[[], torch.Tensor]) -> torch.Tensor:
    """``decode()``, or, when ``decoder`` is fp16 and the result holds inf/NaN, ``decode()`` again in float32.

    ``decode`` must cast its input to ``decoder.dtype`` when called (it runs once in each precision).
    """
    out = decode()
    if decoder.dtype != torch.float16 or torch.isfinite(out).all():
        return out
    logger.warning("The fp16 VAE decode overflowed (inf/NaN pixels): decoding again in float32.")
    decoder.to(torch.float32)
    try:
        return decode()
    finally:
        decoder.to(torch.float16)
