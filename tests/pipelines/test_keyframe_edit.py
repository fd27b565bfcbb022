"""Consistent keyframe editing on the tiny SD model: cross-frame attention, shared noise, ControlNet.

Its consistency figure: tests/pipelines/test_eval_keyframe_edit.py."""

import copy
import functools

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers import ControlNetModel, StableDiffusionImg2ImgPipeline

from core.config import Settings
from core.errors import InputError
from core.eval.fixtures import pan_keyframes
from core.imaging import to_unit
from core.models import load_pipeline, tiny_sd_components
from core.patches.cross_frame import (
    CrossFrameAttnProcessor,
    cross_frame_attention,
    cross_frame_groups,
)
from core.pipelines.keyframe_edit import KeyframeEditPipeline, canny_conditions

TIMESTEP = torch.tensor([500])
SIZE = 32  # keyframe side for pipeline tests (latents 16x16 with the tiny VAE's factor 2)
FAST = {"num_inference_steps": 2, "strength": 1.0, "guidance_scale": 7.5}


# -- helpers ---------------------------------------------------------------------------------------


@functools.cache
def _stock_unet():
    return tiny_sd_components(0)["unet"]


def unet_copy():
    return copy.deepcopy(_stock_unet())


def unet_inputs(keyframes: int, halves: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Latents (halves*K, 4, 8, 8) and text (halves*K, 77, 32), one text per half as with CFG."""
    generator = torch.Generator().manual_seed(seed)
    latents = torch.randn(halves * keyframes, 4, 8, 8, generator=generator)
    text = torch.randn(halves, 77, 32, generator=generator).repeat_interleave(keyframes, dim=0)
    return latents, text


@torch.no_grad()
def run_unet(unet, latents, text) -> torch.Tensor:
    return unet(latents, TIMESTEP, encoder_hidden_states=text).sample


def row_diffs(a: torch.Tensor, b: torch.Tensor) -> list[float]:
    return (a - b).abs().amax(dim=(1, 2, 3)).tolist()


@pytest.fixture(scope="module")
def pipe() -> KeyframeEditPipeline:
    pipeline = load_pipeline(
        "sd", Settings.from_env(sd_model="tiny", device="cpu"), pipeline_cls=KeyframeEditPipeline
    )
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


@pytest.fixture(scope="module")
def keyframes() -> np.ndarray:
    """3 keyframes of a pan over the astronaut photo, uint8 (3,32,32,3)."""
    return pan_keyframes(SIZE, count=3, spacing=4)


def tiny_controlnet(pipe) -> ControlNetModel:
    # The tiny VAE shrinks by 2, so the condition embedding must too (one stride-2 stage).
    torch.manual_seed(0)
    return ControlNetModel.from_unet(pipe.unet, conditioning_embedding_out_channels=(16, 32)).eval()


def with_controlnet(pipe, controlnet) -> KeyframeEditPipeline:
    components = {k: v for k, v in pipe.components.items() if k != "controlnet"}
    pipeline = KeyframeEditPipeline(**components, controlnet=controlnet)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


# -- the attention processor on the tiny SD UNet ---------------------------------------------------


@pytest.mark.parametrize("halves", [1, 2])
def test_one_keyframe_gives_the_stock_unet_output_in_every_mode(halves):
    unet = unet_copy()
    latents, text = unet_inputs(1, halves)
    stock = run_unet(unet, latents, text)
    for mode in ("anchor", "all", "none"):
        with cross_frame_attention(unet, 1, mode) as processor:
            out = run_unet(unet, latents, text)
        assert (mode == "none") == (processor is None)
        diff = (out - stock).abs().max().item()
        assert diff <= 1e-6, (mode, diff)


def test_anchor_keyframe_is_computed_as_without_cross_frame_the_others_are_not():
    unet = unet_copy()
    latents, text = unet_inputs(3, halves=2)
    stock = run_unet(unet, latents, text)
    for anchor in (0, 2):
        with cross_frame_attention(unet, 3, "anchor", anchor):
            diffs = row_diffs(run_unet(unet, latents, text), stock)
        anchors = {anchor, 3 + anchor}  # one anchor per CFG half
        assert all(diffs[r] <= 1e-6 for r in anchors), diffs
        assert all(diffs[r] > 1e-3 for r in set(range(6)) - anchors), diffs


def test_identical_keyframes_attend_as_the_stock_unet():
    # Keys [self, anchor] or [all] that are copies of self's give the same softmax-weighted mean.
    unet = unet_copy()
    latents, text = unet_inputs(1, halves=2)
    latents, text = latents.repeat_interleave(3, dim=0), text.repeat_interleave(3, dim=0)
    stock = run_unet(unet, latents, text)
    for mode in ("anchor", "all"):
        with cross_frame_attention(unet, 3, mode, anchor_index=1):
            diff = (run_unet(unet, latents, text) - stock).abs().max().item()
        assert diff <= 1e-5, (mode, diff)


def test_keyframes_mix_only_within_their_guidance_half():
    unet = unet_copy()
    latents, text = unet_inputs(3, halves=2)  # rows: uncond k0 k1 k2 | cond k0 k1 k2

    def changed_rows(mode: str, anchor: int, row: int) -> list[int]:
        perturbed = latents.clone()
        perturbed[row] += 0.5
        with cross_frame_attention(unet, 3, mode, anchor):
            before, after = run_unet(unet, latents, text), run_unet(unet, perturbed, text)
        diffs = row_diffs(after, before)
        assert all(d == 0.0 or d > 1e-4 for d in diffs), diffs  # untouched rows are bit for bit the same
        return [r for r, d in enumerate(diffs) if d > 0]

    assert changed_rows("none", 0, row=4) == [4]
    assert changed_rows("all", 0, row=4) == [3, 4, 5]
    assert changed_rows("all", 0, row=1) == [0, 1, 2]
    assert changed_rows("anchor", 0, row=4) == [4]  # a non-anchor is seen by no one else
    assert changed_rows("anchor", 0, row=3) == [3, 4, 5]  # the conditional anchor, by its half only
    assert changed_rows("anchor", 2, row=2) == [0, 1, 2]


def test_groups_list_who_attends_to_whom():
    def listed(groups):
        return [(g.rows.tolist(), g.sources.tolist()) for g in groups]

    assert listed(cross_frame_groups(4, 2, "none")) == [([0, 1, 2, 3], [[0], [1], [2], [3]])]
    assert listed(cross_frame_groups(4, 2, "all")) == [([0, 1, 2, 3], [[0, 1], [0, 1], [2, 3], [2, 3]])]
    assert listed(cross_frame_groups(6, 3, "anchor", 1)) == [
        ([1, 4], [[1], [4]]),
        ([0, 2, 3, 5], [[0, 1], [2, 1], [3, 4], [5, 4]]),
    ]
    assert listed(cross_frame_groups(2, 1, "anchor")) == [([0, 1], [[0], [1]])]
    with pytest.raises(InputError, match="batch of 5"):
        cross_frame_groups(5, 2, "all")
    with pytest.raises(InputError, match="cross_frame"):
        cross_frame_groups(4, 2, "previous")
    with pytest.raises(InputError, match="anchor_index 2"):
        cross_frame_groups(4, 2, "anchor", 2)


def test_processors_are_restored_after_the_block_and_after_an_error():
    unet = unet_copy()
    controlnet = ControlNetModel.from_unet(unet)
    models = (unet, controlnet)
    before = [
        {n: m.processor for n, m in model.named_modules() if hasattr(m, "set_processor")} for model in models
    ]
    self_attention = [[n for n in b if n.endswith("attn1")] for b in before]
    assert [len(s) for s in self_attention] == [6, 3]  # every BasicTransformerBlock of each model
    with cross_frame_attention(models, 2, "all") as processor:
        for model, names in zip(models, self_attention):
            assert all(model.get_submodule(n).processor is processor for n in names)
            # Cross-attention (attn2) keeps its processors.
            others = [n for n, m in model.named_modules() if hasattr(m, "set_processor") and n not in names]
            assert not any(
                isinstance(model.get_submodule(n).processor, CrossFrameAttnProcessor) for n in others
            )
    with pytest.raises(RuntimeError, match="boom"), cross_frame_attention(models, 2, "anchor"):
        raise RuntimeError("boom")
    after = [
        {n: m.processor for n, m in model.named_modules() if hasattr(m, "set_processor")} for model in models
    ]
    assert all(after[i][n] is before[i][n] for i in range(2) for n in before[i])


def test_processor_refuses_cross_attention_inputs():
    unet = unet_copy()
    attn2 = next(m for n, m in unet.named_modules() if n.endswith("attn2"))
    tokens = torch.randn(2, 16, attn2.query_dim)
    with pytest.raises(InputError, match="self-attention"):
        CrossFrameAttnProcessor(2, "all")(attn2, tokens, encoder_hidden_states=torch.randn(2, 77, 32))


# -- the pipeline ----------------------------------------------------------------------------------


def test_none_with_one_keyframe_equals_stock_img2img(pipe, keyframes):
    components = {k: v for k, v in pipe.components.items() if k != "controlnet"}
    stock = StableDiffusionImg2ImgPipeline(**components, requires_safety_checker=False)
    stock.set_progress_bar_config(disable=True)
    settings = {"num_inference_steps": 3, "strength": 0.7, "guidance_scale": 6.0, "output_type": "np"}
    expected = stock(
        "a red car", image=to_unit(keyframes[:1]), generator=torch.Generator().manual_seed(7), **settings
    ).images
    ours = pipe("a red car", keyframes[:1], cross_frame="none", seed=7, **settings).images
    assert ours.shape == expected.shape == (1, SIZE, SIZE, 3)
    assert np.abs(ours - expected).max() <= 1e-6


def test_shared_noise_makes_a_batched_edit_equal_editing_each_keyframe_alone(pipe, keyframes):
    # Each keyframe of a batch starts from the noise a single-keyframe call with that seed draws.
    batched = pipe("a red car", keyframes, cross_frame="none", seed=3, output_type="np", **FAST).images
    for k in range(len(keyframes)):
        alone = pipe("a red car", keyframes[k : k + 1], cross_frame="none", seed=3, output_type="np", **FAST)
        assert np.abs(batched[k] - alone.images[0]).max() <= 1e-5


def test_identical_keyframes_get_identical_edits(pipe, keyframes):
    same = np.repeat(keyframes[:1], 3, axis=0)
    for mode in ("none", "anchor", "all"):
        out = pipe("a red car", same, cross_frame=mode, seed=0, output_type="np", **FAST).images
        assert np.abs(out - out[:1]).max() <= 1e-5, mode


def test_shapes_ranges_and_determinism_by_seed(pipe, keyframes):
    first = pipe("a red car", keyframes, seed=1, **FAST)
    again = pipe("a red car", keyframes, generator=torch.Generator().manual_seed(1), **FAST)
    other = pipe("a red car", keyframes, seed=2, **FAST)
    assert first.images.shape == (3, SIZE, SIZE, 3) and first.images.dtype == np.uint8
    assert first.nsfw_content_detected is None
    np.testing.assert_array_equal(first.images, again.images)
    assert np.abs(first.images.astype(int) - other.images).mean() > 1.0

    pils = [PIL.Image.fromarray(f) for f in keyframes]
    np.testing.assert_array_equal(pipe("a red car", pils, seed=1, **FAST).images, first.images)
    images, nsfw = pipe("a red car", keyframes, seed=1, return_dict=False, **FAST)
    np.testing.assert_array_equal(images, first.images)
    assert len(pipe("a red car", keyframes, seed=1, output_type="pil", **FAST).images) == 3
    tensor = pipe("a red car", keyframes, seed=1, output_type="pt", **FAST).images
    assert tensor.shape == (3, 3, SIZE, SIZE) and 0 <= tensor.min() and tensor.max() <= 1
    latents = pipe("a red car", keyframes, seed=1, output_type="latent", **FAST).images
    assert latents.shape == (3, 4, SIZE // 2, SIZE // 2)


def test_anchor_keyframe_edit_equals_its_edit_without_cross_frame(pipe, keyframes):
    # Compared as latents: the tiny random VAE shrinks differences about 7x.
    def edit(mode: str) -> np.ndarray:
        return pipe(
            "a red car", keyframes, cross_frame=mode, anchor_index=1, seed=5, output_type="latent", **FAST
        ).images.numpy()

    none, anchored, everyone = edit("none"), edit("anchor"), edit("all")
    assert np.abs(anchored[1] - none[1]).max() <= 1e-6
    assert np.abs(anchored[[0, 2]] - none[[0, 2]]).max(axis=(1, 2, 3)).min() > 1e-3
    assert np.abs(everyone - none).max(axis=(1, 2, 3)).min() > 1e-3


def test_per_keyframe_prompts(pipe, keyframes):
    base = pipe("a red car", keyframes, cross_frame="none", seed=0, output_type="np", **FAST).images
    mixed = pipe(
        keyframes=keyframes,
        prompts=["a red car", "a blue boat", "a red car"],
        cross_frame="none",
        seed=0,
        output_type="np",
        **FAST,
    ).images
    assert np.abs(mixed[[0, 2]] - base[[0, 2]]).max() <= 1e-5
    assert np.abs(mixed[1] - base[1]).max() > 1e-3
    with pytest.raises(InputError, match="3 strings"):
        pipe(keyframes=keyframes, prompts=["a", "b"], **FAST)


@pytest.mark.parametrize(("steps", "strength", "expected"), [(4, 1.0, 4), (4, 0.5, 2), (5, 0.3, 1)])
def test_strength_sets_the_number_of_denoising_steps(pipe, keyframes, steps, strength, expected):
    calls = []

    def count(pipeline, step, timestep, tensors):
        calls.append(int(timestep))
        return {}

    pipe("x", keyframes[:2], num_inference_steps=steps, strength=strength, seed=0, callback_on_step_end=count)
    assert len(calls) == expected
    assert calls == sorted(calls, reverse=True)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"strength": 0.0}, "strength"),
        ({"strength": 1.5}, "strength"),
        ({"strength": -0.2}, "strength"),
        ({"strength": 0.1, "num_inference_steps": 5}, "no denoising step"),
        ({"num_inference_steps": 0}, "num_inference_steps"),
        ({"guidance_scale": float("nan")}, "guidance_scale"),
        ({"cross_frame": "previous"}, "cross_frame"),
        ({"anchor_index": 3}, "anchor_index 3"),
        ({"seed": 1, "generator": torch.Generator()}, "not both"),
        ({"output_type": "jpg"}, "output_type"),
        ({"keyframes": np.zeros((2, 31, 32, 3), np.uint8)}, "multiples of 2"),
        ({"keyframes": np.zeros((2, 32, 32, 3), np.float32)}, "uint8"),
        ({"keyframes": np.zeros((32, 32, 3), np.uint8)}, r"\(K,H,W,3\)"),
        ({"keyframes": "frames.mp4"}, "uint8 array"),
        ({"prompt": None}, "prompt"),
        ({"controlnet_conditioning": "canny"}, "no ControlNet"),
    ],
)
def test_bad_inputs_raise_input_error(pipe, keyframes, change, message):
    call = {"prompt": "x", "keyframes": keyframes, **FAST, **change}
    with pytest.raises(InputError, match=message):
        pipe(**call)


def test_pil_keyframes_of_different_sizes_are_refused(pipe):
    frames = [PIL.Image.new("RGB", (32, 32)), PIL.Image.new("RGB", (64, 32))]
    with pytest.raises(InputError, match="one size"):
        pipe("x", frames, **FAST)


def test_load_pipeline_builds_the_keyframe_pipeline_without_a_controlnet(pipe):
    assert isinstance(pipe, KeyframeEditPipeline) and pipe.controlnet is None
    assert pipe.vae_scale_factor == 2


# -- ControlNet ------------------------------------------------------------------------------------


def test_controlnet_path_runs_and_its_residuals_reach_the_unet(pipe, keyframes):
    controlnet = tiny_controlnet(pipe)
    pipeline = with_controlnet(pipe, controlnet)
    plain = pipeline("a red car", keyframes, seed=0, output_type="np", **FAST).images
    # A fresh ControlNet's output convolutions are zero: its residuals add nothing.
    canny = pipeline(
        "a red car", keyframes, seed=0, output_type="np", controlnet_conditioning="canny", **FAST
    ).images
    assert canny.shape == plain.shape and np.abs(canny - plain).max() <= 1e-5

    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in controlnet.named_parameters():
            if "zero_conv" in name or "controlnet_down_blocks" in name or "controlnet_mid_block" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.05)
    ramp = np.linspace(0, 255, SIZE).astype(np.uint8)
    depth = np.broadcast_to(ramp[None, :, None], (3, SIZE, SIZE)).copy()  # (K,H,W) grey condition images
    for conditioning in ("canny", depth):
        for mode in ("anchor", "all"):
            guided = pipeline(
                "a red car",
                keyframes,
                cross_frame=mode,
                seed=0,
                output_type="np",
                controlnet_conditioning=conditioning,
                **FAST,
            ).images
            assert np.abs(guided - plain).max() > 1e-3
    # The ControlNet's processors were put back too.
    assert not any(isinstance(p, CrossFrameAttnProcessor) for p in controlnet.attn_processors.values())
    with pytest.raises(InputError, match="one condition image per keyframe"):
        pipeline("x", keyframes, controlnet_conditioning=depth[:2], **FAST)
    with pytest.raises(InputError, match="'canny' or condition images"):
        pipeline("x", keyframes, controlnet_conditioning="depth", **FAST)


def test_canny_conditions_mark_the_edge_of_a_step():
    frames = np.zeros((2, 32, 32, 3), np.uint8)
    frames[:, :, 16:] = 255
    edges = canny_conditions(frames)
    assert edges.shape == (2, 32, 32, 3) and edges.dtype == np.uint8
    assert set(np.unique(edges)) == {0, 255}
    assert set(np.nonzero(edges[0, :, :, 0])[1]) <= {15, 16}
    assert np.all(edges[..., 0] == edges[..., 2])
