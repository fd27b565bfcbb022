"""core.memory: VAE chunks from the memory budget, the low-VRAM switch, and exact feed-forward chunking."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch

from core.config import Settings
from core.memory import (
    DECODE_BYTES_PER_PIXEL,
    ENCODE_BYTES_PER_PIXEL,
    GIB,
    VAE_BUDGET_BYTES,
    decode_chunk_frames,
    encode_chunk_frames,
    place_pipeline,
    set_forward_chunking,
    vae_chunk_frames,
)
from core.models import load_pipeline, tiny_svd_components


def test_chunk_is_the_most_frames_that_fit_the_budget():
    assert vae_chunk_frames(100, 100, bytes_per_pixel=10, budget_bytes=10 * 100 * 100 * 3) == 3
    assert vae_chunk_frames(100, 100, bytes_per_pixel=10, budget_bytes=10 * 100 * 100 * 3 - 1) == 2
    assert vae_chunk_frames(4000, 4000, bytes_per_pixel=10**6, budget_bytes=1) == 1  # never 0
    with pytest.raises(ValueError, match="positive"):
        vae_chunk_frames(0, 64, 10, GIB)


def test_svd_size_chunks_fit_their_budgets():
    height, width = 576, 1024
    for low_vram in (False, True):
        budget = VAE_BUDGET_BYTES[low_vram]
        encode = encode_chunk_frames(height, width, low_vram)
        assert encode * ENCODE_BYTES_PER_PIXEL * height * width <= budget
        assert (encode + 1) * ENCODE_BYTES_PER_PIXEL * height * width > budget
        fit = decode_chunk_frames(height, width, 25, low_vram)
        assert fit * DECODE_BYTES_PER_PIXEL * height * width <= budget
    assert decode_chunk_frames(height, width, 25, True) < decode_chunk_frames(height, width, 25, False)


def test_decode_keeps_the_requested_chunk_when_it_fits():
    """The temporal decoder mixes the frames of a chunk, so a chunk that fits is never changed."""
    assert decode_chunk_frames(64, 64, 8) == 8
    assert decode_chunk_frames(64, 64, 8, low_vram=True) == 8
    assert decode_chunk_frames(2048, 2048, 8, low_vram=True) < 8
    with pytest.raises(ValueError, match="positive"):
        decode_chunk_frames(64, 64, 0)


def test_low_vram_setting_from_env_and_switch():
    assert Settings.from_env({}).low_vram is False
    assert Settings.from_env({"KINEMA_LOW_VRAM": "1"}).low_vram is True
    parser = argparse.ArgumentParser()
    Settings.add_arguments(parser)
    assert Settings.from_args(parser.parse_args(["--low-vram"]), environ={}).low_vram is True
    assert Settings.from_args(parser.parse_args([]), environ={"KINEMA_LOW_VRAM": "yes"}).low_vram is True
    assert Settings.from_args(parser.parse_args([]), environ={}).low_vram is False


def _unet_output(unet) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    sample = torch.randn(2, 3, 8, 16, 16, generator=generator)
    hidden = torch.randn(2, 1, unet.config.cross_attention_dim, generator=generator)
    with torch.no_grad():
        return unet(sample, 10.0, hidden, added_time_ids=torch.tensor([[6.0, 127.0, 0.02]] * 2)).sample


def test_forward_chunking_is_exact_and_switches_back():
    unet = tiny_svd_components()["unet"]
    chunk_sizes = lambda: {m._chunk_size for m in unet.modules() if hasattr(m, "_chunk_size")}  # noqa: E731
    stock = _unet_output(unet)
    set_forward_chunking(unet, True)
    assert chunk_sizes() == {1}
    torch.testing.assert_close(_unet_output(unet), stock, rtol=0, atol=1e-6)
    set_forward_chunking(unet, False)
    assert chunk_sizes() == {None}
    assert torch.equal(_unet_output(unet), stock)


def test_place_pipeline_on_cpu_sets_chunking_by_mode():
    pipe = load_pipeline("svd", Settings(svd_model="tiny", device="cpu", low_vram=True))
    assert {m._chunk_size for m in pipe.unet.modules() if hasattr(m, "_chunk_size")} == {1}
    place_pipeline(pipe, Settings(svd_model="tiny", device="cpu"))  # the shared UNet follows the mode
    assert {m._chunk_size for m in pipe.unet.modules() if hasattr(m, "_chunk_size")} == {None}
    assert pipe.device.type == "cpu"


def _chunk_sizes(unet) -> set:
    return {m._chunk_size for m in unet.modules() if hasattr(m, "_chunk_size")}


def test_place_pipeline_switches_modes_over_the_same_cached_modules(monkeypatch):
    """Each app run picks its mode; the modules are shared, so each switch must undo what the last one set.

    The offload hooks go on with a "cuda" device (installing them does not touch the device; running would);
    the move to "cuda" is spied on, since this machine may have no GPU.
    """
    from core.pipelines.svd_trajectory import SVDTrajectoryPipeline

    cpu = Settings(svd_model="tiny", device="cpu")
    low_vram_gpu = cpu.replace(device="cuda", low_vram=True)
    modules = lambda pipe: [pipe.vae, pipe.image_encoder, pipe.unet]  # noqa: E731
    hooked = lambda pipe: [hasattr(m, "_hf_hook") for m in modules(pipe)]  # noqa: E731

    pipe = load_pipeline("svd", cpu, pipeline_cls=SVDTrajectoryPipeline)
    place_pipeline(pipe, low_vram_gpu)
    assert hooked(pipe) == [True, True, True]
    assert _chunk_sizes(pipe.unet) == {1} and pipe._guidance_split is True

    # low-VRAM -> default on the GPU: the hooks come off before the move
    gpu_pipe = SVDTrajectoryPipeline(**pipe.components)  # a new pipeline over the same modules, as loaded
    assert hooked(gpu_pipe) == [True, True, True]
    moves = []
    monkeypatch.setattr(gpu_pipe, "to", lambda device: moves.append((device, hooked(gpu_pipe))))
    place_pipeline(gpu_pipe, low_vram_gpu.replace(low_vram=False))
    assert moves == [("cuda", [False, False, False])]
    assert _chunk_sizes(gpu_pipe.unet) == {None} and gpu_pipe._guidance_split is False

    # default -> low-VRAM -> default on the CPU: the pipeline runs (a left-over hook would send it to cuda)
    place_pipeline(pipe, low_vram_gpu)
    assert hooked(pipe) == [True, True, True]
    cpu_pipe = load_pipeline("svd", cpu, pipeline_cls=SVDTrajectoryPipeline)
    assert hooked(cpu_pipe) == [False, False, False] and _chunk_sizes(cpu_pipe.unet) == {None}
    assert all(p.device.type == "cpu" for m in modules(cpu_pipe) for p in m.parameters())
    image = np.zeros((32, 32, 3), np.uint8)
    latents = cpu_pipe(image, strength=1.0, num_frames=2, num_inference_steps=1, output_type="latent")[0]
    assert torch.isfinite(latents).all()


@pytest.mark.parametrize("with_controlnet", [False, True])
def test_guidance_split_gives_the_batched_result(with_controlnet):
    """One guidance half at a time (low-VRAM) = both halves in one batch, ControlNet rows included."""
    from core.controlnet_svd import SVDFlowControlNet, flow_condition
    from core.pipelines.svd_trajectory import SVDTrajectoryPipeline

    settings = Settings(svd_model="tiny", device="cpu")
    pipe = load_pipeline("svd", settings, pipeline_cls=SVDTrajectoryPipeline)
    frames, height, width = 3, 32, 32
    kwargs = {}
    if with_controlnet:
        with torch.random.fork_rng(devices=[]):  # from_unet draws its new layers from the global stream
            torch.manual_seed(0)
            controlnet = SVDFlowControlNet.from_unet(pipe.unet, vae_scale_factor=pipe.vae_scale_factor)
        generator = torch.Generator().manual_seed(1)
        with torch.no_grad():  # trained-looking: the residuals depend on which half's condition is read
            for param in controlnet.parameters():
                param.add_(0.05 * torch.randn(param.shape, generator=generator))
        pipe.controlnet = controlnet
        tracks = np.array([[[0.3, 0.3], [0.5, 0.4], [0.7, 0.5]]], np.float32)
        kwargs["flow_condition"] = flow_condition(
            tracks, height, width, flow_scale_px=controlnet.config.flow_scale_px
        )
    image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)

    def run(split: bool) -> torch.Tensor:
        pipe.enable_guidance_split(split)
        return pipe(image, strength=1.0, num_frames=frames, num_inference_steps=2, output_type="latent",
                    generator=torch.Generator().manual_seed(0), **kwargs)[0]  # fmt: skip

    batched, split = run(False), run(True)
    # Equal up to float noise: a batch of 1 and of 2 round differently (1e-6), which the EDM loop's sigma
    # scaling and the guidance amplify to ~1e-4 on latents of magnitude ~1.
    torch.testing.assert_close(split, batched, rtol=0, atol=1e-3)
    if with_controlnet:  # ... while reading the wrong half's condition would move the result far more
        kwargs["flow_condition"] = np.zeros_like(kwargs["flow_condition"])
        assert (run(True) - split).abs().max() > 10 * 1e-3
