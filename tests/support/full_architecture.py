"""The real SD1.5 and SVD-XT architectures with random weights: test scaffolding for slow tests and benchmarks.

Nothing is downloaded: the configs are written here, the tokenizer is core.models' offline CLIP tokenizer.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import torch

from core.models.presets import clip_text_encoder, offline_clip_tokenizer, svd_scheduler

FullKind = Literal["sd15", "svd_xt"]


def full_architecture_random(kind: FullKind, components: Iterable[str] | None = None, seed: int = 0) -> dict:
    """The real SD1.5 (``sd15``) or SVD-XT (``svd_xt``) architecture with random weights, no download.

    ``components`` picks a subset (e.g. ``("unet",)``): the full SVD image encoder alone is a 630M
    parameter ViT-H, so build only what a test needs. Returns a dict of components.
    """
    from diffusers import (
        AutoencoderKL,
        AutoencoderKLTemporalDecoder,
        PNDMScheduler,
        UNet2DConditionModel,
        UNetSpatioTemporalConditionModel,
    )
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    wide = (128, 256, 512, 512)
    if kind == "sd15":
        builders = {
            "unet": lambda: UNet2DConditionModel(
                sample_size=64,
                block_out_channels=(320, 640, 1280, 1280),
                down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
                cross_attention_dim=768,
                attention_head_dim=8,
            ),
            "vae": lambda: AutoencoderKL(
                block_out_channels=wide,
                down_block_types=("DownEncoderBlock2D",) * 4,
                up_block_types=("UpDecoderBlock2D",) * 4,
                layers_per_block=2,
                latent_channels=4,
                sample_size=512,
            ),
            "tokenizer": offline_clip_tokenizer,
            "text_encoder": lambda: clip_text_encoder(
                offline_clip_tokenizer(),
                vocab_size=49408,
                hidden_size=768,
                intermediate_size=3072,
                num_hidden_layers=12,
                num_attention_heads=12,
                hidden_act="quick_gelu",
                projection_dim=768,
            ),
            "scheduler": lambda: PNDMScheduler(
                beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", skip_prk_steps=True
            ),
        }
    elif kind == "svd_xt":
        builders = {
            # The library defaults are SVD's UNet; SVD-XT is trained for 25 frames at 576x1024.
            "unet": lambda: UNetSpatioTemporalConditionModel(sample_size=96, num_frames=25),
            "vae": lambda: AutoencoderKLTemporalDecoder(
                block_out_channels=wide,
                down_block_types=("DownEncoderBlock2D",) * 4,
                layers_per_block=2,
                latent_channels=4,
                sample_size=768,
            ),
            "image_encoder": lambda: CLIPVisionModelWithProjection(
                CLIPVisionConfig(
                    hidden_size=1280,
                    intermediate_size=5120,
                    num_hidden_layers=32,
                    num_attention_heads=16,
                    patch_size=14,
                    image_size=224,
                    projection_dim=1024,
                )
            ),
            "scheduler": svd_scheduler,
            "feature_extractor": CLIPImageProcessor,
        }
    else:
        raise ValueError(f"kind must be 'sd15' or 'svd_xt', got {kind!r}")
    wanted = list(builders) if components is None else list(components)
    unknown = set(wanted) - set(builders)
    if unknown:
        raise ValueError(f"unknown components {sorted(unknown)} for {kind}; choose from {list(builders)}")
    built = {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for name in wanted:
            module = builders[name]()
            built[name] = module.eval() if isinstance(module, torch.nn.Module) else module
    return built
