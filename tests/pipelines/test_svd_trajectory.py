"""SVDTrajectoryPipeline on tiny SVD: stock equivalence, SDEdit start, frame-0 pinning, callbacks, checks.

Sizes: 32x32 pixels (16x16 latents with the tiny VAE), 4 frames, 2-4 steps. The tiny VAE has random
weights, so its round trip is poor (mean error about 0.27 of the [0,1] range, and its decoder output
hardly depends on the latents); pixel checks therefore compare with the round trip decoded alone
(``decode_chunk_size=1``: no temporal mixing in the decoder), where frame 0 must match to float error.
"""

import numpy as np
import pytest
import torch
from PIL import Image

from core import models
from core.config import Settings
from core.imaging import to_signed
from core.pipelines.svd_common import steps_for_strength
from core.pipelines.svd_trajectory import SVDTrajectoryPipeline

TINY = Settings.from_env({}, svd_model="tiny", device="cpu")
SIZE, FRAMES = 32, 4


@pytest.fixture(scope="module")
def pipe():
    pipe = models.load_pipeline("svd", TINY, pipeline_cls=SVDTrajectoryPipeline)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(0).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def guide(image):
    # A warp-like guide: the image sliding right 3 px per frame, frame 0 the image itself.
    return np.stack([np.roll(image, 3 * k, axis=1) for k in range(FRAMES)])


def _run(pipe, image, guide, seed=0, **kwargs):
    kwargs = {"strength": 0.5, "num_inference_steps": 2, "output_type": "np", **kwargs}
    return pipe(image, guide, generator=torch.Generator().manual_seed(seed), **kwargs).frames


def _unit(pixels_signed: torch.Tensor) -> np.ndarray:
    """(T,3,H,W) in [-1,1] -> (T,H,W,3) in [0,1], as the pipeline's "np" output."""
    return (pixels_signed / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).numpy()


@torch.no_grad()
def _round_trip(pipe, frames_uint8: np.ndarray, num_frames: int) -> np.ndarray:
    """The VAE's encode/decode of (T,H,W,3) frames, decoded `num_frames` at a time."""
    latents = pipe.vae.encode(to_signed(frames_uint8)).latent_dist.mode()
    decoded = [pipe.vae.decode(z, num_frames=len(z)).sample for z in latents.split(num_frames)]
    return _unit(torch.cat(decoded))


def _count_unet_calls(pipe):
    calls = []
    handle = pipe.unet.register_forward_pre_hook(lambda module, args: calls.append(args[0].shape[0]))
    return calls, handle


def test_strength_one_unpinned_is_stock_svd_bit_for_bit(pipe, image):
    stock = models.load_pipeline("svd", TINY)
    stock.set_progress_bar_config(disable=True)
    expected = stock(Image.fromarray(image), height=SIZE, width=SIZE, num_frames=FRAMES, num_inference_steps=2,
                     generator=torch.Generator().manual_seed(0), output_type="np").frames  # fmt: skip
    frames = _run(pipe, image, None, strength=1.0, num_frames=FRAMES, fix_first_frame=False)
    assert frames.shape == (1, FRAMES, SIZE, SIZE, 3) and frames.dtype == np.float32
    assert 0.0 <= frames.min() and frames.max() <= 1.0
    assert np.array_equal(frames, expected)


def test_same_seed_same_video_other_seed_other_video(pipe, image, guide):
    first, again, other = (_run(pipe, image, guide, seed=s) for s in (0, 0, 1))
    assert np.array_equal(first, again)
    assert np.abs(first - other).max() > 1e-3


def test_steps_for_strength_is_ceil_of_the_share():
    assert [steps_for_strength(25, s) for s in (0.0, 0.01, 0.3, 0.5, 0.96, 1.0)] == [0, 1, 8, 13, 24, 25]
    assert [steps_for_strength(10, s) for s in (0.1, 0.3, 0.7)] == [1, 3, 7]  # no float overshoot


@pytest.mark.parametrize("strength, expected_steps", [(0.3, 2), (0.75, 3)])
def test_unet_and_callback_run_once_per_step_of_the_strength(pipe, image, guide, strength, expected_steps):
    calls, handle = _count_unet_calls(pipe)
    seen = []
    try:
        _run(pipe, image, guide, strength=strength, num_inference_steps=4, output_type="latent",
             callback_on_step_end=lambda p, i, t, kw: seen.append((i, float(t))) or {})  # fmt: skip
    finally:
        handle.remove()
    assert calls == [2] * expected_steps  # one call per step, batch 2 (guidance), as stock SVD
    pipe.scheduler.set_timesteps(4)
    assert seen == [(i, float(t)) for i, t in enumerate(pipe.scheduler.timesteps[4 - expected_steps :])]


def test_callback_can_replace_the_latents(pipe, image, guide):
    def zero_last(p, i, t, callback_kwargs):
        assert set(callback_kwargs) == {"latents"}
        return {"latents": torch.zeros_like(callback_kwargs["latents"])} if i == 1 else {}

    latents = _run(
        pipe, image, guide, output_type="latent", num_inference_steps=4, callback_on_step_end=zero_last
    )
    assert latents.shape == (1, FRAMES, 4, SIZE // 2, SIZE // 2)
    assert torch.count_nonzero(latents) == 0  # the callback has the last word, after pinning


@torch.no_grad()
def test_frame_zero_is_held_on_the_image(pipe, image, guide):
    clean = pipe.vae.encode(to_signed(image)[None]).latent_dist.mode() * pipe.vae.config.scaling_factor
    alone = _round_trip(pipe, image[None], 1)[0]
    error_alone = np.abs(alone - image / 255.0).mean()
    for strength in (0.5, 1.0):
        latents = _run(pipe, image, guide, strength=strength, output_type="latent")
        assert torch.allclose(latents[0, 0], clean[0], atol=1e-5)
        # Decoded one frame at a time, frame 0 is the image's round trip to float error ...
        frames = _run(pipe, image, guide, strength=strength, decode_chunk_size=1)[0]
        assert np.abs(frames[0] - alone).max() < 1e-5
        # ... and decoded with its neighbours (temporal decoder) within the round-trip error + 0.02.
        frames = _run(pipe, image, guide, strength=strength)[0]
        assert np.abs(frames[0] - image / 255.0).mean() <= error_alone + 0.02
    # Not pinned, frame 0 drifts away from the image's round trip.
    free = _run(pipe, image, guide, strength=1.0, decode_chunk_size=1, fix_first_frame=False)[0]
    assert np.abs(free[0] - alone).max() > 0.05


def test_strength_zero_is_the_guide_through_the_vae(pipe, image, guide):
    calls, handle = _count_unet_calls(pipe)
    try:
        frames = _run(pipe, image, guide, strength=0.0)[0]
    finally:
        handle.remove()
    assert calls == []
    assert np.abs(frames - _round_trip(pipe, guide, FRAMES)).max() <= 1e-5


@pytest.mark.parametrize(
    "change, message",
    [
        ({"strength": 1.5}, "strength"),
        ({"strength": -0.1}, "strength"),
        ({"guide_video": None}, "guide_video"),
        ({"guide_video": np.zeros((FRAMES, SIZE, SIZE + 8, 3), np.uint8)}, "(32, 40)"),
        ({"guide_video": np.zeros((FRAMES, SIZE, SIZE, 3), np.float32)}, "float32"),
        ({"num_frames": FRAMES + 1}, "has 4 frames"),
        ({"image": np.zeros((SIZE, SIZE + 4, 3), np.uint8)}, "36x32"),
        ({"num_inference_steps": 0}, "num_inference_steps"),
        ({"output_type": "gif"}, "gif"),
        ({"callback_on_step_end_tensor_inputs": ["noise"]}, "noise"),
    ],
)
def test_bad_input_raises_value_error_naming_the_value(pipe, image, guide, change, message):
    kwargs = {"image": image, "guide_video": guide, "strength": 0.5, **change}
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        pipe(**kwargs)


def test_model_cpu_offload_gives_the_same_video(image, guide):
    pipe = SVDTrajectoryPipeline(**models.tiny_svd_components(0))
    pipe.set_progress_bar_config(disable=True)
    expected = _run(pipe, image, guide)
    pipe.enable_model_cpu_offload(device="cpu")
    assert np.array_equal(_run(pipe, image, guide), expected)
