"""SVDInterpolatePipeline on tiny SVD: both modes, pinned ends, fusion, head-and-tail layout, chains, loops.

Sizes: 32x32 pixels (16x16 latents), 4 frames, 2 steps. As in test_svd_trajectory, pixel checks of the
ends compare with the VAE round trip decoded alone (``decode_chunk_size=1``), because the random tiny
VAE's round trip is poor (mean error about 0.27) and its decoder output hardly depends on the latents.
"""

import numpy as np
import pytest
import torch
from PIL import Image

from core import models
from core.config import Settings
from core.errors import InputError
from core.imaging import to_signed
from core.pipelines.svd_interpolate import (
    TAIL_CONDITION_FRAMES,
    SVDInterpolatePipeline,
    fusion_weights,
    head_tail_conditioning,
    interpolate_keyframes,
)

TINY = Settings.from_env({}, svd_model="tiny", device="cpu")
SIZE, FRAMES = 32, 4


@pytest.fixture(scope="module")
def pipe():
    pipe = models.load_pipeline("svd", TINY, pipeline_cls=SVDInterpolatePipeline)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def keyframes():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (3, SIZE, SIZE, 3), dtype=np.uint8)


def _run(pipe, head, tail, mode="svd-trf", seed=0, **kwargs):
    kwargs = {"num_frames": FRAMES, "num_inference_steps": 2, "output_type": "np", **kwargs}
    return pipe(head, tail, mode=mode, generator=torch.Generator().manual_seed(seed), **kwargs).frames


@torch.no_grad()
def _round_trip_alone(pipe, image_uint8: np.ndarray) -> np.ndarray:
    latents = pipe.vae.encode(to_signed(image_uint8)[None]).latent_dist.mode()
    return (pipe.vae.decode(latents, num_frames=1).sample / 2 + 0.5).clamp(0, 1)[0].permute(1, 2, 0).numpy()


@pytest.mark.parametrize("mode", ["svd-trf", "svd-lora"])
def test_shapes_and_determinism(pipe, keyframes, mode):
    a, b = keyframes[0], keyframes[1]
    first, again, other = (_run(pipe, a, b, mode, seed=s) for s in (0, 0, 1))
    assert first.shape == (1, FRAMES, SIZE, SIZE, 3) and 0.0 <= first.min() and first.max() <= 1.0
    assert np.array_equal(first, again)
    assert np.abs(first - other).max() > 1e-3


@pytest.mark.parametrize("mode", ["svd-trf", "svd-lora"])
@torch.no_grad()
def test_first_frame_is_head_and_last_is_tail(pipe, keyframes, mode):
    a, b = keyframes[0], keyframes[1]
    scale = pipe.vae.config.scaling_factor
    clean = pipe.vae.encode(to_signed(keyframes[:2])).latent_dist.mode() * scale
    latents = _run(pipe, a, b, mode, output_type="latent")
    assert torch.allclose(latents[0, 0], clean[0], atol=1e-5)
    assert torch.allclose(latents[0, -1], clean[1], atol=1e-5)
    # Decoded alone, the ends are A's and B's round trips to float error; with the temporal decoder,
    # within the round-trip error + 0.02.
    frames = _run(pipe, a, b, mode, decode_chunk_size=1)[0]
    for frame, key in ((frames[0], a), (frames[-1], b)):
        assert np.abs(frame - _round_trip_alone(pipe, key)).max() < 1e-5
    frames = _run(pipe, a, b, mode)[0]
    for frame, key in ((frames[0], a), (frames[-1], b)):
        error_alone = np.abs(_round_trip_alone(pipe, key) - key / 255.0).mean()
        assert np.abs(frame - key / 255.0).mean() <= error_alone + 0.02


def _unet_inputs(pipe):
    """Record each UNet call's (sample, encoder_hidden_states) while the returned handle is live."""
    seen = []
    handle = pipe.unet.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append((args[0].clone(), kwargs["encoder_hidden_states"].clone())),
        with_kwargs=True,
    )
    return seen, handle


def test_trf_runs_head_forward_and_tail_time_reversed(pipe, keyframes):
    seen, handle = _unet_inputs(pipe)
    try:
        _run(pipe, keyframes[0], keyframes[1], "svd-trf", output_type="latent")
    finally:
        handle.remove()
    assert len(seen) == 4  # two UNet calls per step, each the size of stock SVD's (batch 2 with guidance)
    embeddings = pipe._encode_image([Image.fromarray(k) for k in keyframes[:2]], "cpu", 1, False)
    for (forward, forward_embedding), (reverse, reverse_embedding) in (seen[0:2], seen[2:4]):
        assert forward.shape == reverse.shape == (2, FRAMES, 8, SIZE // 2, SIZE // 2)
        noisy = forward[:, :, :4]
        assert torch.equal(reverse[:, :, :4], noisy.flip(1))  # the same sample, time reversed
        assert torch.allclose(forward_embedding[1], embeddings[0], atol=1e-6)  # head's CLIP embedding
        assert torch.allclose(reverse_embedding[1], embeddings[1], atol=1e-6)  # tail's
        assert torch.count_nonzero(forward_embedding[0]) == 0  # unconditional half, as stock
        # Conditioning channels: one image's latents on every frame (head forward, tail reversed).
        assert not torch.allclose(forward[1, 0, 4:], reverse[1, 0, 4:])
        assert torch.equal(forward[1, :, 4:], forward[1, :1, 4:].expand(FRAMES, -1, -1, -1))


def test_fusion_weights_ramp_from_head_to_tail():
    w = fusion_weights(5)
    assert torch.allclose(w, torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0]))
    assert torch.allclose(w + w.flip(0), torch.ones(5))  # symmetric: reversing A and B mirrors the blend


def test_lora_mode_gives_the_unet_head_and_tail(pipe, keyframes):
    seen, handle = _unet_inputs(pipe)
    try:
        _run(pipe, keyframes[0], keyframes[1], "svd-lora", output_type="latent")
    finally:
        handle.remove()
    assert len(seen) == 2  # one UNet call per step, as stock SVD
    sample, embedding = seen[0]
    condition = sample[1, :, 4:]  # the conditional half's 4 conditioning channels per frame
    assert torch.equal(condition[: FRAMES - 1], condition[:1].expand(FRAMES - 1, -1, -1, -1))
    assert not torch.allclose(condition[-1], condition[0])
    embeddings = pipe._encode_image([Image.fromarray(k) for k in keyframes[:2]], "cpu", 1, False)
    assert torch.allclose(embedding[1], embeddings.mean(0), atol=1e-6)


@torch.no_grad()
def test_a_guide_video_is_refined_from_its_noised_latents_with_the_ends_pinned(pipe, keyframes):
    a, b = keyframes[0], keyframes[1]
    guide = np.stack([a, keyframes[2], 255 - keyframes[2], b])
    clean = pipe.vae.encode(to_signed(guide)).latent_dist.mode() * pipe.vae.config.scaling_factor
    seen, handle = _unet_inputs(pipe)
    try:
        unchanged = _run(pipe, a, b, "svd-lora", guide_video=guide, strength=0.0, output_type="latent")
        assert seen == []  # strength 0 runs no step: the guide's latents as they are
        refined = _run(
            pipe,
            a,
            b,
            "svd-lora",
            guide_video=guide,
            strength=0.5,
            num_inference_steps=4,
            output_type="latent",
        )
    finally:
        handle.remove()
    assert torch.allclose(unchanged[0], clean, atol=1e-5)
    assert len(seen) == 2  # the last 2 of 4 steps, one UNet call each (svd-lora)
    # The first step starts from the guide noised to its sigma, not from pure noise.
    sigma = float(pipe.scheduler.sigmas[2])
    started = seen[0][0][1, :, :4] * (sigma**2 + 1) ** 0.5  # the conditional half, unscaled
    assert (started - clean).std() == pytest.approx(
        sigma, rel=0.1
    )  # every frame: the ends on their own paths
    assert torch.allclose(refined[0, [0, -1]], clean[[0, -1]], atol=1e-5)
    assert not torch.allclose(refined[0, 1:-1], clean[1:-1], atol=1e-2)
    with pytest.raises(
        InputError, match=r"A `guide_video` is needed for strength 0.5 \(only 1 runs without\)\."
    ):
        _run(pipe, a, b, "svd-lora", strength=0.5)


def test_head_tail_conditioning_layout():
    generator = torch.Generator().manual_seed(0)
    head, tail = torch.randn(2, 2, 4, 3, 5, generator=generator)
    head_embedding, tail_embedding = torch.randn(2, 2, 1, 8, generator=generator)
    built = head_tail_conditioning(head, tail, head_embedding, tail_embedding, num_frames=6)
    assert built.image_latents.shape == (2, 6, 4, 3, 5)
    for t in range(6):
        expected = tail if t >= 6 - TAIL_CONDITION_FRAMES else head
        assert torch.equal(built.image_latents[:, t], expected)
    assert torch.allclose(built.image_embeddings, (head_embedding + tail_embedding) / 2)
    with pytest.raises(InputError, match="at least 2 frames"):
        head_tail_conditioning(head, tail, head_embedding, tail_embedding, num_frames=1)


def test_chain_shares_seams_and_each_segment_has_its_own_seed(pipe, keyframes):
    video = interpolate_keyframes(pipe, keyframes, frames_between=2, seed=7, num_inference_steps=2)
    assert video.shape == (7, SIZE, SIZE, 3) and video.dtype == np.uint8
    for k in range(3):
        assert np.array_equal(video[3 * k], keyframes[k])  # each keyframe once, exact, at k * (2 + 1)
    for segment in range(2):
        alone = _run(pipe, keyframes[segment], keyframes[segment + 1], seed=7 + segment)[0]
        assert np.array_equal(video[3 * segment + 1 : 3 * segment + 3], np.rint(alone[1:3] * 255))
    # A new last keyframe changes only the last segment.
    edited = keyframes.copy()
    edited[2] = 255 - edited[2]
    changed = interpolate_keyframes(pipe, edited, frames_between=2, seed=7, num_inference_steps=2)
    assert np.array_equal(changed[:4], video[:4]) and not np.array_equal(changed[4:6], video[4:6])


def test_loop_returns_to_the_first_keyframe(pipe, keyframes):
    # One keyframe, A -> A: both ends of the segment are A.
    frames = _run(pipe, keyframes[0], keyframes[0], decode_chunk_size=1)[0]
    alone = _round_trip_alone(pipe, keyframes[0])
    assert np.abs(frames[0] - alone).max() < 1e-5 and np.abs(frames[-1] - alone).max() < 1e-5
    video = interpolate_keyframes(
        pipe, keyframes[:2], frames_between=2, seed=3, loop=True, num_inference_steps=2
    )
    assert video.shape == (6, SIZE, SIZE, 3)  # A . . B . . (then A again: not repeated)
    assert np.array_equal(video[0], keyframes[0]) and np.array_equal(video[3], keyframes[1])
    back = _run(pipe, keyframes[1], keyframes[0], seed=3 + 1)[0]
    assert np.array_equal(video[4:6], np.rint(back[1:3] * 255))


@pytest.mark.parametrize(
    "change, message",
    [
        ({"mode": "svd-magic"}, "svd-magic"),
        ({"tail_image": np.zeros((SIZE, SIZE + 8, 3), np.uint8)}, r"\(32, 40\)"),
        ({"num_frames": 1}, "got 1"),
        ({"head_image": "a.png"}, "str"),
        ({"noise_reinjection": -1}, "between 0 and 8, got -1"),
        ({"noise_reinjection": True}, "whole number of repeats, got True"),
        ({"noise_reinjection": 1, "num_inference_steps": 2, "reinjection_steps": 3}, "from 1 to 2 .*got 3"),
    ],
)
def test_bad_input_raises_value_error_naming_the_value(pipe, keyframes, change, message):
    kwargs = {"head_image": keyframes[0], "tail_image": keyframes[1], **change}
    with pytest.raises(ValueError, match=message):
        pipe(**kwargs)


@pytest.mark.parametrize(
    "keyframes_shape, frames_between, loop, message",
    [((1, SIZE, SIZE, 3), 2, False, "at least 2"), ((2, SIZE, SIZE, 3), 0, False, "frames_between")],
)
def test_chain_rejects_bad_requests(pipe, keyframes_shape, frames_between, loop, message):
    with pytest.raises(InputError, match=message):
        interpolate_keyframes(pipe, np.zeros(keyframes_shape, np.uint8), frames_between, loop=loop)


def test_noise_reinjection_repeats_the_early_steps_and_keeps_the_ends(pipe, keyframes):
    a, b = keyframes[0], keyframes[1]
    seen, handle = _unet_inputs(pipe)
    try:
        plain = _run(pipe, a, b, output_type="latent", num_inference_steps=4)
        calls_plain = len(seen)
        reinjected = _run(pipe, a, b, output_type="latent", num_inference_steps=4, noise_reinjection=2)
        calls_reinjected = len(seen) - calls_plain
        _run(
            pipe, a, b, output_type="latent", num_inference_steps=4, noise_reinjection=1, reinjection_steps=3
        )
        calls_three = len(seen) - calls_plain - calls_reinjected
    finally:
        handle.remove()
    # Two UNet calls per take (head and tail paths); 4 steps, the first 2 (half) taken 3 times each.
    assert (calls_plain, calls_reinjected, calls_three) == (8, 16, 14)
    assert not torch.allclose(plain, reinjected)
    assert torch.equal(
        plain, _run(pipe, a, b, output_type="latent", num_inference_steps=4, noise_reinjection=0)
    )
    scale = pipe.vae.config.scaling_factor
    clean = pipe.vae.encode(to_signed(keyframes[:2])).latent_dist.mode() * scale
    assert torch.allclose(reinjected[0, 0], clean[0], atol=1e-5) and torch.allclose(
        reinjected[0, -1], clean[1], atol=1e-5
    )
    again = _run(pipe, a, b, output_type="latent", num_inference_steps=4, noise_reinjection=2)
    assert torch.equal(reinjected, again)  # the fresh noise comes from the run's generator
