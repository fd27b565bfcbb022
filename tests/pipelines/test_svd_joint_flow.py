"""SVDJointFlowPipeline on tiny SVD: stock equivalence of the video, the replacement at known flow cells, shapes,
determinism, input checks and the loader.

Sizes: 32x32 pixels (16x16 latents with the tiny VAE, factor 2), 4 frames, 2-3 steps. The pipelines run on the
UNet that ``core.models`` caches for every tiny SVD pipeline, with the joint patch attached by
``core.models.state.attached`` for the test only.
"""

import numpy as np
import pytest
import torch
from diffusers import StableVideoDiffusionPipeline
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image

from core import models
from core.config import Settings
from core.errors import InputError, ModelNotAvailable
from core.flow.encoding import FlowEncoding
from core.models import load_svd_joint_flow
from core.models.state import attached
from core.patches.joint import JOINT_CONV, apply_joint_patch, joint_patch_of
from core.pipelines.svd_flow import DEFAULT_FLOW_ENCODING
from core.pipelines.svd_joint_flow import SVDJointFlowPipeline, known_flow

TINY = Settings.from_env({}, svd_model="tiny", svd_joint_flow_model="tiny", device="cpu")
SIZE, FRAMES, FACTOR = 32, 4, 2
# A track moving 2 px right per frame from the image centre, and an anchor near the top-left corner.
TRACKS = np.array([[[0.5 + 2 * t / SIZE, 0.5] for t in range(FRAMES)], [[0.2, 0.2]] * FRAMES])


@pytest.fixture
def pipe():
    pipe = load_svd_joint_flow(TINY)
    pipe.set_progress_bar_config(disable=True)
    with attached(pipe.unet, pipe.joint_weights):
        yield pipe


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(0).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)


def _run(pipe, image, tracks=TRACKS, seed=0, **kwargs):
    kwargs = {"num_inference_steps": 2, "generator": torch.Generator().manual_seed(seed), **kwargs}
    return pipe(image, tracks, **kwargs)


def _stock_frames(stock: StableVideoDiffusionPipeline, image: np.ndarray) -> np.ndarray:
    stock.set_progress_bar_config(disable=True)
    return stock(Image.fromarray(image), height=SIZE, width=SIZE, num_frames=FRAMES, num_inference_steps=2,
                 generator=torch.Generator().manual_seed(0), output_type="np").frames  # fmt: skip


def _fresh_stock(doubled: bool) -> StableVideoDiffusionPipeline:
    """Stock SVD on fresh tiny components. ``doubled`` runs every UNet call on each entry twice ([a, a, b, b],
    the joint pipeline's batch size) and keeps one of each: CPU matmuls round differently by batch size."""
    parts = models.tiny_svd_components()
    parts["unet"].requires_grad_(False)  # as under the patch's LoRAs (core.lora: frozen weights' matmul path)
    stock = StableVideoDiffusionPipeline(**parts)
    if doubled:

        def repeat(module, args, kwargs):
            for key in ("encoder_hidden_states", "added_time_ids"):
                kwargs[key] = kwargs[key].repeat_interleave(2, 0)
            return (args[0].repeat_interleave(2, 0), *args[1:]), kwargs

        stock.unet.register_forward_pre_hook(repeat, with_kwargs=True)
        stock.unet.register_forward_hook(lambda module, args, kwargs, out: (out[0][::2],), with_kwargs=True)
    return stock


# -- the video of a fresh patch is stock SVD's -----------------------------------------------------------


def test_fresh_patch_gives_stock_svds_video_with_or_without_tracks(pipe, image):
    free = _run(pipe, image, tracks=None, num_frames=FRAMES, fix_first_frame=False).frames
    guided = _run(pipe, image, fix_first_frame=False).frames
    # The draws are stock SVD's: bit for bit against stock run at the joint batch size.
    assert np.array_equal(free, _stock_frames(_fresh_stock(doubled=True), image))
    # Zero-initialised joint layers: the video entries do not see the (pinned) flow entries.
    assert np.array_equal(guided, free)
    error = np.abs(free - _stock_frames(_fresh_stock(doubled=False), image)).max()
    print(f"joint video vs stock SVD (UNet batch 4 against 2): max error {error:.2g}")
    assert error <= 1e-4, error  # measured 2.6e-5 on one thread (1.2e-6 per UNet call, grown by the steps)


def test_trained_joint_layers_carry_the_tracks_to_the_video(image):
    parts = models.tiny_svd_components()
    pipe = SVDJointFlowPipeline(**parts)
    pipe.set_progress_bar_config(disable=True)
    patch = apply_joint_patch(pipe.unet, 2)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for block in patch.blocks.values():
            conv = getattr(block, JOINT_CONV)
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator))
    # Latents: the tiny random VAE's decoder output hardly depends on them.
    free = _run(pipe, image, tracks=None, num_frames=FRAMES, output_type="latent").frames
    guided = _run(pipe, image, output_type="latent").frames
    print(f"video latents with tracks vs without, joint conv perturbed: {(guided - free).abs().max():.3g}")
    # Exactly 0 with zero-initialised joint layers (the first test); measured 1.8e-3 here.
    assert (guided - free).abs().max() > 1e-4


# -- the replacement -------------------------------------------------------------------------------------


def test_known_flow_is_the_tracks_displacement_on_the_cells_they_cover():
    known = known_flow(TRACKS, FRAMES, SIZE, SIZE, FACTOR, sigma_px=3.0)
    assert known.flow_video_px.shape == (FRAMES, SIZE, SIZE, 2) and known.flow_video_px.dtype == np.float32
    assert known.latent_mask.shape == (FRAMES, 1, SIZE // FACTOR, SIZE // FACTOR)
    assert np.count_nonzero(known.flow_video_px[0]) == 0 and bool(known.latent_mask[0].all())
    for t in range(1, FRAMES):
        x = 15.5 + 2 * (t - 1)  # the moving track's pixel-centre position in frame t-1 (row 15.5)
        for col in (int(x), int(x) + 1):
            # The full displacement around the track (not DragNUWA's Gaussian fall-off): 2 px right.
            np.testing.assert_allclose(known.flow_video_px[t, 15, col], [2.0, 0.0], atol=1e-3)  # anchor: 2e-4
        np.testing.assert_allclose(known.flow_video_px[t, 5, 5], [0.0, 0.0], atol=1e-4)  # the anchor
        assert not known.flow_video_px[t, 31, 0].any()  # beyond SUPPORT_WEIGHT (3.7 sigma) of both tracks
        mask = known.latent_mask[t, 0]
        assert mask[7, int(x) // FACTOR] and mask[2, 2]  # cells of the track and of the anchor
        assert not mask[15, 15] and not mask[0, 15]  # far corners
        assert 4 <= int(mask.sum()) <= 40
    free = known_flow(None, FRAMES, SIZE, SIZE, FACTOR)
    assert np.count_nonzero(free.flow_video_px) == 0
    assert free.latent_mask[0].all() and not free.latent_mask[1:].any()


def test_flow_latents_are_held_on_the_noised_known_values(pipe, image):
    steps, seen = 3, []
    out = _run(pipe, image, num_inference_steps=steps, sigma_px=3.0, output_type="latent",
               callback_on_step_end=lambda p, i, t, kw: seen.append(kw["latents"].clone()) or {})  # fmt: skip
    # The pipeline's draws, in its order: conditioning noise, video noise, flow noise.
    generator = torch.Generator().manual_seed(0)
    shape = (1, FRAMES, 4, SIZE // FACTOR, SIZE // FACTOR)
    randn_tensor((1, 3, SIZE, SIZE), generator=generator)
    video_noise, flow_noise = (randn_tensor(shape, generator=generator) for _ in range(2))
    known = known_flow(TRACKS, FRAMES, SIZE, SIZE, FACTOR, sigma_px=3.0)
    known_latents = pipe.encode_flow_video(known.flow_video_px)
    mask = known.latent_mask.expand(-1, 4, -1, -1)
    pipe.scheduler.set_timesteps(steps)
    assert len(seen) == steps and seen[-1].shape == (2, *shape[1:])
    for i, latents in enumerate(seen):
        sigma = float(pipe.scheduler.sigmas[i + 1])
        expected = known_latents + sigma * flow_noise[0]
        flow = latents[1]
        torch.testing.assert_close(flow[mask], expected[mask], atol=1e-5 * max(sigma, 1.0), rtol=0)
        assert (flow[~mask] - expected[~mask]).abs().max() > 1e-2  # the rest is generated
    assert float(pipe.scheduler.sigmas[steps]) == 0.0
    assert torch.equal(out.flow_latents[0][mask], known_latents[mask])  # exactly the known latents at the end
    assert torch.equal(out.frames, seen[-1][:1]) and torch.equal(out.flow_latents, seen[-1][1:])
    # The video's frame 0 is held on the image (fix_first_frame), on the video's own noise.
    clean = pipe.vae.encode(
        pipe.video_processor.preprocess(Image.fromarray(image), SIZE, SIZE)
    ).latent_dist.mode()
    torch.testing.assert_close(out.frames[0, 0], clean[0] * pipe.vae.config.scaling_factor, atol=1e-5, rtol=0)
    assert video_noise.shape == shape


# -- outputs ---------------------------------------------------------------------------------------------


def test_shapes_ranges_and_output_types(pipe, image):
    out = _run(pipe, image, num_inference_steps=1)
    assert out.frames.shape == (1, FRAMES, SIZE, SIZE, 3) and out.frames.dtype == np.float32
    assert 0.0 <= out.frames.min() and out.frames.max() <= 1.0
    assert out.flows_px.shape == (1, FRAMES, SIZE, SIZE, 2) and out.flows_px.dtype == np.float32
    scale = DEFAULT_FLOW_ENCODING.scale_px(SIZE)
    assert np.isfinite(out.flows_px).all() and np.abs(out.flows_px).max() <= scale  # the encoding's range
    assert np.count_nonzero(out.flows_px[0, 0]) == 0  # frame 0: the convention's zero flow
    assert out.flow_latents.shape == (1, FRAMES, 4, SIZE // FACTOR, SIZE // FACTOR)
    pt = _run(pipe, image, num_inference_steps=1, output_type="pt")
    assert pt.frames.shape == (1, FRAMES, 3, SIZE, SIZE)
    np.testing.assert_allclose(pt.frames.permute(0, 1, 3, 4, 2).numpy(), out.frames, atol=1e-6)
    pil = _run(pipe, image, num_inference_steps=1, output_type="pil").frames
    assert len(pil) == 1 and len(pil[0]) == FRAMES and pil[0][0].size == (SIZE, SIZE)
    latent = _run(pipe, image, num_inference_steps=1, output_type="latent")
    assert latent.frames.shape == (1, FRAMES, 4, SIZE // FACTOR, SIZE // FACTOR) and latent.flows_px is None
    frames, flows_px = _run(pipe, image, num_inference_steps=1, return_dict=False)
    assert np.array_equal(frames, out.frames) and np.array_equal(flows_px, out.flows_px)


def test_same_seed_same_output_other_seed_other_output(pipe, image):
    first, again, other = (_run(pipe, image, seed=s, num_inference_steps=1) for s in (0, 0, 1))
    assert np.array_equal(first.frames, again.frames) and np.array_equal(first.flows_px, again.flows_px)
    assert np.abs(first.frames - other.frames).max() > 1e-3
    assert np.abs(first.flows_px - other.flows_px).max() > 1e-3


def test_patch_is_parked_after_a_call_so_stock_svd_on_the_shared_unet_is_unchanged(pipe, image):
    _run(pipe, image)
    stock = models.load_pipeline("svd", TINY)
    assert stock.unet is pipe.unet
    assert np.array_equal(_stock_frames(stock, image), _stock_frames(_fresh_stock(doubled=False), image))


# -- checks ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change, message",
    [
        ({"tracks": np.zeros((1, FRAMES, 3))}, "shape (M,T,2)"),
        ({"tracks": np.zeros((FRAMES, 2))}, "shape (M,T,2)"),
        ({"tracks": np.zeros((1, 1, 2))}, "T >= 2"),
        ({"tracks": np.full((1, FRAMES, 2), np.nan)}, "NaN"),
        ({"tracks": "up"}, "(M,T,2)"),
        ({"num_frames": FRAMES + 1}, "covers 4 frames"),
        ({"num_frames": 1}, "integer >= 2"),
        ({"image": np.zeros((30, 32, 3), np.uint8)}, "multiples of 8"),
        ({"image": np.zeros((32, 32), np.uint8)}, "uint8 pixels (H,W,3)"),
        ({"sigma_px": 0}, "sigma_px"),
        ({"output_type": "gif"}, "output_type"),
        ({"num_inference_steps": 0}, "num_inference_steps"),
    ],
)
def test_bad_inputs_raise_input_error(pipe, image, change, message):
    kwargs = dict(change)
    arguments = (kwargs.pop("image", image), kwargs.pop("tracks", TRACKS))
    with pytest.raises(InputError) as raised:
        pipe(*arguments, **kwargs)
    assert message in str(raised.value)


def test_a_unet_without_the_patch_is_refused(image):
    pipe = SVDJointFlowPipeline(**models.tiny_svd_components())
    with pytest.raises(InputError, match="load_svd_joint_flow"):
        pipe(image, TRACKS, num_inference_steps=1)


# -- loading ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source, why",
    [("", "the setting is empty"), ("/no/such/folder", "no such folder")],
)
def test_loader_names_the_setting_when_weights_are_missing(source, why):
    with pytest.raises(ModelNotAvailable) as raised:
        load_svd_joint_flow(TINY.replace(svd_joint_flow_model=source))
    message = str(raised.value)
    assert why in message and "KINEMA_SVD_JOINT_FLOW_MODEL" in message and "--svd-joint-flow-model" in message


def test_loader_refuses_folders_without_fitting_weights(tmp_path):
    settings = TINY.replace(svd_joint_flow_model=str(tmp_path))
    with pytest.raises(ModelNotAvailable, match="no joint_layers.safetensors or flow_encoding.json"):
        load_svd_joint_flow(settings)
    (tmp_path / "joint_layers.safetensors").write_bytes(b"not safetensors")
    FlowEncoding(0.25).save(tmp_path, SIZE)
    with pytest.raises(ModelNotAvailable, match="not a readable joint-patch file"):
        load_svd_joint_flow(settings)
    assert joint_patch_of(models.load_pipeline("svd", TINY).unet) is None  # nothing half-loaded is left


def test_loader_reads_a_saved_folder(tmp_path, image):
    trained = load_svd_joint_flow(TINY)
    trained.set_progress_bar_config(disable=True)
    with attached(trained.unet, trained.joint_weights) as (patch,):
        generator = torch.Generator().manual_seed(2)
        with torch.no_grad():
            for param in patch.joint_parameters():
                param.copy_(torch.randn(param.shape, generator=generator) * 0.05)
        patch.save(tmp_path)
        expected = _run(trained, image)
    FlowEncoding.from_scale_px(4.0, SIZE).save(tmp_path, SIZE)
    loaded = load_svd_joint_flow(TINY.replace(svd_joint_flow_model=str(tmp_path)))
    assert loaded.flow_encoding.scale_px(SIZE) == pytest.approx(4.0)
    assert joint_patch_of(loaded.unet) is None  # the patch is on the shared UNet only while a run holds it
    loaded.set_progress_bar_config(disable=True)
    loaded.flow_encoding = DEFAULT_FLOW_ENCODING  # the scale `expected` was made with
    with attached(loaded.unet, loaded.joint_weights):
        out = _run(loaded, image)
    assert np.array_equal(out.frames, expected.frames) and np.array_equal(out.flows_px, expected.flows_px)
