"""One UNet step of the real SD1.5 and SVD-XT architectures (random weights) on the CPU."""

import pytest
import torch

from tests.support.full_architecture import full_architecture_random

pytestmark = pytest.mark.slow


@torch.no_grad()
def test_sd15_unet_one_step_at_small_resolution():
    unet = full_architecture_random("sd15", components=("unet",))["unet"]
    assert sum(p.numel() for p in unet.parameters()) == 859_520_964  # SD1.5's UNet
    sample = torch.randn(1, 4, 16, 16)  # a 128x128 image in latent space
    text = torch.randn(1, 77, 768)
    out = unet(sample, torch.tensor([500]), encoder_hidden_states=text).sample
    assert out.shape == sample.shape and torch.isfinite(out).all()


@torch.no_grad()
def test_svd_xt_unet_one_step_at_small_resolution():
    unet = full_architecture_random("svd_xt", components=("unet",))["unet"]
    assert sum(p.numel() for p in unet.parameters()) == 1_524_623_082  # SVD(-XT)'s UNet
    frames = 2
    sample = torch.randn(1, frames, 8, 8, 8)  # noisy latents + image latents, 64x64 pixels
    image_embeddings = torch.randn(1, 1, 1024)
    added_time_ids = torch.tensor([[6.0, 127.0, 0.02]])  # fps-1, motion bucket, noise aug
    out = unet(sample, torch.tensor([0.5]), image_embeddings, added_time_ids).sample
    assert out.shape == (1, frames, 4, 8, 8) and torch.isfinite(out).all()
