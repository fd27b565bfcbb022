"""JointSDPipeline on tiny SD (64x64, 3 steps): exactness against stock SD, modes, seeds, injection, callback."""

import functools

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers import StableDiffusionPipeline

from core.data.synthetic import disparity_of, make_image_scene
from core.errors import InputError
from core.imaging import to_signed
from core.models import tiny_sd_components
from core.patches.joint import apply_joint_patch
from core.pipelines import joint_sd
from core.pipelines.joint_sd import JointSDPipeline

PROMPTS = ["a red sphere on a checkered floor", "a blue cube"]
STEPS = 3
SIZE = 64  # the tiny UNet's default: 32 latents x VAE factor 2


def _quiet(pipe):
    pipe.set_progress_bar_config(disable=True)
    return pipe


@functools.cache
def _stock_images(prompts: tuple[str, ...], guidance_scale: float, seed: int) -> np.ndarray:
    """Stock SD on never-patched tiny components: float (B,64,64,3) in [0,1]."""
    stock = _quiet(StableDiffusionPipeline(**tiny_sd_components(0)))
    generator = torch.Generator().manual_seed(seed)
    return stock(
        list(prompts),
        num_inference_steps=STEPS,
        guidance_scale=guidance_scale,
        generator=generator,
        output_type="np",
    ).images


def _perturbed_pipeline(seed: int = 0, scale: float = 0.2) -> JointSDPipeline:
    """A patched tiny pipeline whose joint convs and LoRAs (zero / randomly initialised) hold seeded noise."""
    base = StableDiffusionPipeline(**tiny_sd_components(0))
    apply_joint_patch(base.unet, joint_lora_rank=4, y_lora_rank=4)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in base.unet.named_parameters():
            if "joint_conv" in name or ".lora_" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * scale)
    return _quiet(JointSDPipeline.from_stock(base))


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory):
    """A joint-weights folder (joint layers + the three LoRAs) of a perturbed pipeline."""
    folder = tmp_path_factory.mktemp("joint_weights")
    _perturbed_pipeline().joint_patch.save(folder)
    return folder


@pytest.fixture(scope="module")
def pipe(weights_dir):
    """A 'trained' joint pipeline: fresh stock components + the weights folder."""
    return _quiet(JointSDPipeline.from_stock(StableDiffusionPipeline(**tiny_sd_components(0)), weights_dir))


@pytest.fixture(scope="module")
def scene_image():
    return make_image_scene((SIZE, SIZE), seed=0).image_uint8


# -- exactness ---------------------------------------------------------------------------------------


def test_joint_image_half_equals_stock_sd_at_initialisation():
    """Zero-initialised joint layers and LoRAs: the image half is stock SD's output for the same seed."""
    base = StableDiffusionPipeline(**tiny_sd_components(0))
    apply_joint_patch(base.unet, joint_lora_rank=4, y_lora_rank=4)
    pipe = _quiet(JointSDPipeline.from_stock(base))
    out = pipe(PROMPTS, num_inference_steps=STEPS, guidance_scale=7.5, seed=0, output_type="np")
    error = np.abs(out.images - _stock_images(tuple(PROMPTS), 7.5, 0)).max()
    assert out.images.shape == (2, SIZE, SIZE, 3)
    assert error <= 1e-5, error  # measured 0 on one thread, 1.5e-6 on two (UNet batch 8 against 4)


def test_parked_patch_leaves_pipelines_sharing_the_unet_stock(pipe):
    pipe(PROMPTS[0], num_inference_steps=STEPS, seed=1)
    shared = _quiet(StableDiffusionPipeline(**pipe.components))
    images = shared(
        [PROMPTS[0]], num_inference_steps=STEPS, generator=torch.Generator().manual_seed(0), output_type="np"
    ).images
    np.testing.assert_array_equal(images, _stock_images((PROMPTS[0],), 7.5, 0))
    # The trained weights do act inside a joint call.
    joint = pipe(PROMPTS[0], num_inference_steps=STEPS, seed=0, output_type="np").images
    assert np.abs(joint - images).max() > 1e-3


def test_weights_folder_reloads_exactly(weights_dir, pipe):
    original = _perturbed_pipeline()
    for mode_kwargs in ({}, {"image": make_image_scene((SIZE, SIZE), seed=3).image_uint8}):
        a = original(PROMPTS[0], num_inference_steps=STEPS, seed=4, output_type="latent", **mode_kwargs)
        b = pipe(PROMPTS[0], num_inference_steps=STEPS, seed=4, output_type="latent", **mode_kwargs)
        assert torch.equal(a.images, b.images) and torch.equal(a.depth, b.depth)


# -- modes, shapes, ranges, seeds ----------------------------------------------------------------------


def test_joint_mode_shapes_ranges_and_output_types(pipe):
    out = pipe(PROMPTS, num_inference_steps=STEPS, seed=0, num_images_per_prompt=1)
    assert out.images.shape == (2, SIZE, SIZE, 3) and out.images.dtype == np.uint8
    assert out.depth.shape == (2, SIZE, SIZE) and out.depth.dtype == np.float32
    assert 0.0 <= out.depth.min() and out.depth.max() <= 1.0 and out.depth.std() > 0
    assert out.nsfw_content_detected is None

    pil = pipe(PROMPTS, num_inference_steps=STEPS, seed=0, output_type="pil")
    assert len(pil.images) == 2 and all(isinstance(i, PIL.Image.Image) for i in pil.images)
    assert pil.images[0].size == (SIZE, SIZE)
    np.testing.assert_array_equal(np.stack([np.asarray(i) for i in pil.images]), out.images)
    np.testing.assert_array_equal(pil.depth, out.depth)

    latent = pipe(PROMPTS, num_inference_steps=STEPS, seed=0, output_type="latent", return_dict=False)
    images, depth, nsfw = latent
    assert images.shape == depth.shape == (2, 4, SIZE // 2, SIZE // 2) and nsfw is None
    decoded = pipe.decode_depth(depth).numpy()
    np.testing.assert_allclose(decoded, out.depth, atol=1e-6)


def test_given_modes_shapes_and_ranges(pipe, scene_image):
    to_depth = pipe("", image=scene_image, num_inference_steps=STEPS, seed=0)
    assert to_depth.images.shape == (1, SIZE, SIZE, 3) and to_depth.depth.shape == (1, SIZE, SIZE)
    disparity = disparity_of(make_image_scene((SIZE, SIZE), seed=0).depth)
    to_image = pipe(PROMPTS[:2], depth=disparity, num_inference_steps=STEPS, seed=0)  # one map, two prompts
    assert to_image.images.shape == (2, SIZE, SIZE, 3) and to_image.images.dtype == np.uint8
    assert to_image.depth.dtype == np.float32 and 0 <= to_image.depth.min() <= to_image.depth.max() <= 1
    # PIL input is the same image.
    from_pil = pipe("", image=PIL.Image.fromarray(scene_image), num_inference_steps=STEPS, seed=0)
    np.testing.assert_array_equal(from_pil.depth, to_depth.depth)


def test_determinism_by_seed(pipe):
    a = pipe(PROMPTS[1], num_inference_steps=STEPS, seed=5, output_type="latent")
    b = pipe(PROMPTS[1], num_inference_steps=STEPS, seed=5, output_type="latent")
    c = pipe(PROMPTS[1], num_inference_steps=STEPS, seed=6, output_type="latent")
    d = pipe(
        PROMPTS[1],
        num_inference_steps=STEPS,
        generator=torch.Generator().manual_seed(5),
        output_type="latent",
    )
    assert torch.equal(a.images, b.images) and torch.equal(a.depth, b.depth)
    assert torch.equal(a.images, d.images) and torch.equal(a.depth, d.depth)
    assert (a.images - c.images).abs().max() > 0.1 and (a.depth - c.depth).abs().max() > 0.1


def test_half_precision_keeps_depth_in_float32(weights_dir, pipe, scene_image):
    parts = tiny_sd_components(0)
    for name in ("unet", "vae", "text_encoder"):
        parts[name].to(torch.float16)
    half = _quiet(JointSDPipeline.from_stock(StableDiffusionPipeline(**parts), weights_dir))
    small = scene_image[::2, ::2]  # 32x32: float16 kernels are slow on CPU
    for kwargs in ({"height": 32, "width": 32}, {"image": small}):
        out16 = half(PROMPTS[0], num_inference_steps=2, seed=0, **kwargs)
        out32 = pipe(PROMPTS[0], num_inference_steps=2, seed=0, **kwargs)
        assert out16.depth.dtype == np.float32 and np.isfinite(out16.depth).all()
        assert np.abs(out16.depth - out32.depth).max() < 0.01  # measured ~1e-3
        assert np.abs(out16.images.astype(int) - out32.images).max() <= 3


# -- the given modality ------------------------------------------------------------------------------


@torch.no_grad()
def _vae_round_trip_uint8(pipe, image_uint8) -> np.ndarray:
    latents = pipe.encode_given(to_signed(image_uint8[None]), torch.device("cpu"), torch.float32)
    decoded = pipe.vae.decode(latents / pipe.vae.config.scaling_factor).sample
    return np.rint(pipe.image_processor.postprocess(decoded, output_type="np") * 255).astype(np.uint8)


def test_image_to_depth_keeps_the_given_image(pipe, scene_image):
    round_trip = _vae_round_trip_uint8(pipe, scene_image)
    # The random tiny VAE's own round-trip error (levels 0..255): the bound for a kept image.
    trip_error = np.abs(round_trip.astype(int) - scene_image).max()
    kept = pipe("", image=scene_image, num_inference_steps=STEPS, seed=0, keep_given_clean_steps=1)
    assert np.abs(kept.images.astype(int) - scene_image).max() <= trip_error
    assert np.abs(kept.images.astype(int) - round_trip).max() <= 1  # measured 0: exactly the round trip

    given = pipe.encode_given(to_signed(scene_image[None]), torch.device("cpu"), torch.float32)
    clean = pipe("", image=scene_image, num_inference_steps=STEPS, seed=0, output_type="latent")
    noisy = pipe(
        "",
        image=scene_image,
        num_inference_steps=STEPS,
        seed=0,
        output_type="latent",
        keep_given_clean_steps=0,
    )
    assert torch.equal(clean.images, given)
    assert (noisy.images - given).abs().max() > 1e-3  # without the option: what the last step made of it
    # The depth is denoised against the given image: another image, another depth (same seed).
    other = pipe(
        "",
        image=make_image_scene((SIZE, SIZE), seed=1).image_uint8,
        num_inference_steps=STEPS,
        seed=0,
        output_type="latent",
    )
    assert (other.depth - clean.depth).abs().max() > 1e-3  # measured 6e-3; float noise is ~1e-6


def test_depth_to_image_keeps_the_given_depth_and_ignores_its_scale(pipe):
    disparity = disparity_of(make_image_scene((SIZE, SIZE), seed=2).depth)
    out = pipe("", depth=disparity, num_inference_steps=STEPS, seed=0)
    with torch.no_grad():
        given = pipe.encode_given(
            joint_sd._given_depth_signed(disparity, normalize=True), torch.device("cpu"), torch.float32
        )
        expected = pipe.decode_depth(given).numpy()
    np.testing.assert_allclose(out.depth, expected, atol=1e-6)
    # Disparity up to scale and offset (what estimators give): the same result.
    scaled = pipe("", depth=3.0 * disparity + 0.5, num_inference_steps=STEPS, seed=0)
    np.testing.assert_allclose(scaled.depth, out.depth, atol=1e-5)
    assert np.abs(scaled.images.astype(int) - out.images).max() <= 1
    # Without normalisation, [0,1] disparity goes in as it is.
    raw = pipe("", depth=out.depth[0], normalize_given_depth=False, num_inference_steps=STEPS, seed=0)
    assert raw.depth.shape == (1, SIZE, SIZE)


# -- callback, errors, evaluation ------------------------------------------------------------------------


def test_callback_sees_and_replaces_the_joint_latents(pipe):
    seen = []

    def callback(pipeline, step, timestep, tensors):
        seen.append((step, int(timestep), tuple(tensors["latents"].shape)))
        if step == STEPS - 1:
            return {"latents": torch.zeros_like(tensors["latents"])}
        return {}

    a = pipe(PROMPTS, num_inference_steps=STEPS, seed=0, callback_on_step_end=callback)
    b = pipe(PROMPTS, num_inference_steps=STEPS, seed=9, callback_on_step_end=callback)
    assert [s for s, _, _ in seen] == [0, 1, 2, 0, 1, 2]
    assert all(shape == (4, 4, SIZE // 2, SIZE // 2) for _, _, shape in seen)  # [x1, x2, y1, y2]
    assert seen[0][1] > seen[1][1] > seen[2][1]
    # Zeroed final latents: every seed decodes to the same image and depth.
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.depth, b.depth)


def test_bad_inputs_raise_input_errors(pipe, scene_image, tmp_path):
    disparity = np.ones((SIZE, SIZE), np.float32)
    cases = [
        ({"image": scene_image, "depth": disparity}, "not both"),
        ({"mode": "image_to_depth"}, "takes image"),
        ({"mode": "joint", "image": scene_image}, "neither image nor depth"),
        ({"mode": "depth_only"}, "mode must be one of"),
        ({"image": scene_image.astype(np.float32)}, "uint8"),
        ({"image": scene_image[..., :2]}, "shape"),
        ({"image": scene_image, "height": 32}, "leave them out"),
        ({"depth": np.full((SIZE, SIZE), np.nan), "normalize_given_depth": False}, "finite"),
        ({"image": np.stack([scene_image] * 3)}, "one per prompt"),
        ({"keep_given_clean_steps": STEPS + 1}, "keep_given_clean_steps"),
        ({"num_inference_steps": 0}, "num_inference_steps"),
        ({"guidance_scale": float("nan")}, "guidance_scale"),
        ({"seed": 1, "generator": torch.Generator()}, "not both"),
        ({"output_type": "pt"}, "output_type"),
        ({"latents": torch.zeros(1, 4, 32, 32)}, "latents must hold 2"),
    ]
    for kwargs, needle in cases:
        with pytest.raises(InputError, match=needle):
            pipe(PROMPTS[0], **{"num_inference_steps": STEPS, **kwargs})
    with pytest.raises(ValueError, match="divisible by 8"):
        pipe(PROMPTS[0], height=60, width=64, num_inference_steps=STEPS)
    stock_unet = JointSDPipeline(**tiny_sd_components(0))
    with pytest.raises(InputError, match="from_stock"):
        stock_unet(PROMPTS[0], num_inference_steps=STEPS)
    with pytest.raises(InputError, match="joint_layers.safetensors"):
        stock_unet.load_joint_weights(tmp_path)
