"""SVDFlowPipeline on tiny SVD: stock equivalence without (or with a switched-off) LoRA, frame-0 pinning on
the zero flow, the decode path from flow images to px, the scale, LoRA loading, the shared pieces.

Sizes: 32x32 pixels (16x16 latents, VAE factor 2), 4 frames, 2 steps. The tiny VAE has random weights, so a
flow put through it does not come back: the decode path is checked with the VAE's output replaced by known
flow images, and the encode path against a reference computation.
"""

import numpy as np
import pytest
import torch
from PIL import Image

from core import models
from core.config import Settings
from core.errors import InputError
from core.flow.encoding import FlowEncoding, decode_flow, encode_flow
from core.lora import add_lora, save_lora, set_lora_enabled
from core.pipelines.svd_flow import (
    DEFAULT_FLOW_ENCODING,
    FLOW_ADAPTER_NAME,
    SVDFlowPipeline,
    encode_flow_latents,
    latent_mask,
)

TINY = Settings.from_env({}, svd_model="tiny", device="cpu")
SIZE, FRAMES = 32, 4


@pytest.fixture(scope="module")
def pipe():
    pipe = models.load_pipeline("svd", TINY, pipeline_cls=SVDFlowPipeline)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(0).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def flow_video():
    """A known flow video: frame 0 zero, then different dx and dy fields per frame, inside +-4 px."""
    rng = np.random.default_rng(1)
    flows = rng.uniform(-4.0, 4.0, (FRAMES, SIZE, SIZE, 2)).astype(np.float32)
    flows[0] = 0.0
    return flows


def _fresh(seed=0) -> SVDFlowPipeline:
    pipe = SVDFlowPipeline(**models.tiny_svd_components(seed))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _run(pipe, image, seed=0, **kwargs):
    kwargs = {"num_frames": FRAMES, "num_inference_steps": 2, **kwargs}
    return pipe(image, generator=torch.Generator().manual_seed(seed), **kwargs)


def _stock_latents(image, unet=None):
    stock = models.load_pipeline("svd", TINY)
    if unet is not None:
        stock = type(stock)(**{**stock.components, "unet": unet})
    stock.set_progress_bar_config(disable=True)
    return stock(
        Image.fromarray(image),
        height=SIZE,
        width=SIZE,
        num_frames=FRAMES,
        num_inference_steps=2,
        generator=torch.Generator().manual_seed(0),
        output_type="latent",
    ).frames


# -- outputs ---------------------------------------------------------------------------------------------


def test_shapes_ranges_and_determinism(pipe, image):
    out = _run(pipe, image)
    assert (
        out.frames.shape == (1, FRAMES, SIZE, SIZE, 3) and 0.0 <= out.frames.min() <= out.frames.max() <= 1.0
    )
    assert out.flows_px.shape == (1, FRAMES, SIZE, SIZE, 2) and out.flows_px.dtype == np.float32
    assert out.flow_colors.shape == (1, FRAMES, SIZE, SIZE, 3) and out.flow_colors.dtype == np.uint8
    scale_px = DEFAULT_FLOW_ENCODING.scale_px(SIZE)  # 1 px at 32 px width
    assert np.all(out.flows_px[:, 0] == 0) and np.abs(out.flows_px).max() <= scale_px
    assert np.all(out.flow_colors[:, 0] == 255)  # zero flow is white
    again, other = _run(pipe, image), _run(pipe, image, seed=1)
    assert np.array_equal(out.flows_px, again.flows_px) and np.array_equal(out.frames, again.frames)
    assert np.abs(out.flows_px - other.flows_px).max() > 1e-3
    frames, flows_px, colors = _run(pipe, image, return_dict=False)
    assert np.array_equal(flows_px, out.flows_px) and np.array_equal(colors, out.flow_colors)


def test_unpinned_without_lora_is_stock_svd_bit_for_bit(pipe, image):
    latents = _run(pipe, image, pin_first_frame=False, output_type="latent")
    assert latents.frames.shape == (1, FRAMES, 4, SIZE // 2, SIZE // 2) and latents.flows_px is None
    assert torch.equal(latents.frames, _stock_latents(image))


def test_zero_and_switched_off_loras_are_stock_svd_bit_for_bit(image):
    """A fresh flow LoRA (gaussian init, B = 0) adds exactly nothing; a trained one switched off neither."""
    flow = _fresh()
    add_lora(flow.unet, FLOW_ADAPTER_NAME, rank=4)  # also freezes the UNet, as in training
    reference = models.tiny_svd_components()["unet"].requires_grad_(False)  # same requires_grad state
    stock = _stock_latents(image, reference)
    assert torch.equal(_run(flow, image, pin_first_frame=False, output_type="latent").frames, stock)

    trained = _fresh()
    add_lora(trained.unet, FLOW_ADAPTER_NAME, rank=4, init=False)  # random B: as if trained
    on = _run(trained, image, pin_first_frame=False, output_type="latent").frames
    set_lora_enabled(trained.unet, False)
    off = _run(trained, image, pin_first_frame=False, output_type="latent").frames
    assert torch.equal(off, stock)
    assert (on - stock).abs().max() > 1e-2


def test_frame_zero_is_pinned_on_the_zero_flow(pipe, image):
    latents = _run(pipe, image, output_type="latent").frames
    zero_latents = pipe.encode_flow_video(np.zeros((1, 1, SIZE, SIZE, 2), np.float32), 1.0)
    assert torch.allclose(latents[:, :1], zero_latents, atol=1e-6)
    unpinned = _run(pipe, image, pin_first_frame=False, output_type="latent").frames
    assert (unpinned[:, 0] - zero_latents[:, 0]).abs().max() > 1e-2


# -- the decode path ---------------------------------------------------------------------------------------


def _known_images(flow_video, scale_px):
    """What the VAE would decode for a perfect round trip: (1,3,T,H,W) flow images in [-1,1]."""
    return torch.from_numpy(encode_flow(flow_video, scale_px)).permute(3, 0, 1, 2)[None]


@pytest.mark.parametrize("scale_px", [None, 4.0, 8.0])
def test_decoded_flow_images_come_back_as_the_known_flow(pipe, image, flow_video, monkeypatch, scale_px):
    used_scale = scale_px or DEFAULT_FLOW_ENCODING.scale_px(SIZE)
    images = _known_images(np.clip(flow_video, -used_scale, used_scale), used_scale)
    monkeypatch.setattr(pipe, "decode_latents", lambda latents, num_frames, chunk: images.clone())
    out = _run(pipe, image, flow_scale_px=scale_px)
    expected = np.clip(flow_video, -used_scale, used_scale)
    error = np.abs(out.flows_px[0] - expected).max()
    assert error <= 2.0**-22 * used_scale  # float32 rounding only: channels, frames and scale wired right
    np.testing.assert_allclose(out.frames[0], (images[0].permute(1, 2, 3, 0).numpy() + 1) / 2, atol=1e-6)


def test_output_types_agree_on_the_flow_images(pipe, image):
    np_out = _run(pipe, image, output_type="np")
    pt_out = _run(pipe, image, output_type="pt")
    pil_out = _run(pipe, image, output_type="pil")
    assert pt_out.frames.shape == (1, FRAMES, 3, SIZE, SIZE)
    np.testing.assert_allclose(pt_out.frames[0].permute(0, 2, 3, 1).numpy(), np_out.frames[0], atol=1e-6)
    pil = np.stack([np.asarray(frame) for frame in pil_out.frames[0]])
    assert np.abs(pil.astype(int) - np.rint(np_out.frames[0] * 255)).max() <= 1
    assert np.array_equal(np_out.flows_px, pt_out.flows_px) and np.array_equal(
        np_out.flows_px, pil_out.flows_px
    )
    # The flows are the "np" frames decoded (frame 0 set to zero by the convention).
    decoded = decode_flow(np_out.frames[0] * 2 - 1, DEFAULT_FLOW_ENCODING.scale_px(SIZE))
    np.testing.assert_allclose(np_out.flows_px[0, 1:], decoded[1:], atol=1e-5)


def test_encode_flow_latents_matches_a_reference_computation(pipe, flow_video):
    latents = encode_flow_latents(pipe.vae, flow_video, 4.0, chunk_size=3)
    images = torch.from_numpy(encode_flow(flow_video, 4.0)).permute(0, 3, 1, 2)
    with torch.no_grad():
        expected = pipe.vae.encode(images).latent_dist.mode() * pipe.vae.config.scaling_factor
    assert latents.shape == (FRAMES, 4, SIZE // 2, SIZE // 2)
    torch.testing.assert_close(latents, expected, atol=1e-5, rtol=0)
    batched = pipe.encode_flow_video(np.stack([flow_video, flow_video]), 4.0)
    assert batched.shape == (2, FRAMES, 4, SIZE // 2, SIZE // 2)
    torch.testing.assert_close(batched[1], expected, atol=1e-5, rtol=0)


def test_latent_mask_is_the_known_share_of_each_cell():
    mask = np.zeros((2, 4, 6, 1), np.float32)
    mask[1, 0, 0] = 1.0  # one pixel of the first 2x2 cell
    mask[1, 2:4, 4:6] = 1.0  # a whole cell
    cells = latent_mask(mask, 2)
    assert cells.shape == (2, 1, 2, 3)
    assert cells[0].sum() == 0
    assert cells[1, 0].tolist() == [[0.25, 0.0, 0.0], [0.0, 0.0, 1.0]]
    with pytest.raises(InputError, match="multiples of 2"):
        latent_mask(np.zeros((1, 5, 4)), 2)
    with pytest.raises(InputError, match=r"\(T,H,W\)"):
        latent_mask(np.zeros((4, 4)), 2)


# -- scale and LoRA loading ----------------------------------------------------------------------------------


def test_load_flow_lora_sets_the_adapter_and_the_scale(image, tmp_path):
    trained = _fresh()
    add_lora(trained.unet, FLOW_ADAPTER_NAME, rank=4, init=False)
    save_lora(trained.unet, FLOW_ADAPTER_NAME, tmp_path)
    FlowEncoding.from_scale_px(2.0, 16).save(tmp_path, width=16)  # 1/8 of the width: 4 px at 32 px

    loaded = _fresh()
    assert loaded.load_flow_lora(tmp_path) == FlowEncoding(1 / 8)
    assert loaded.flow_encoding.scale_px(SIZE) == 4.0
    expected = _run(trained, image, flow_scale_px=4.0)
    got = _run(loaded, image)
    assert np.array_equal(got.flows_px, expected.flows_px)
    assert SVDFlowPipeline.flow_encoding == DEFAULT_FLOW_ENCODING  # the class default is untouched


def test_load_flow_lora_without_encoding_file_is_refused(tmp_path):
    with pytest.raises(InputError, match="flow encoding"):
        _fresh().load_flow_lora(tmp_path)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"num_frames": 1}, "num_frames"),
        ({"flow_scale_px": -1.0}, "flow_scale_px"),
        ({"flow_scale_px": True}, "flow_scale_px"),
        ({"output_type": "mp4"}, "output_type"),
        ({"image": np.zeros((30, 32, 3), np.uint8)}, "multiples of 8"),
    ],
)
def test_bad_input_raises_naming_the_value(pipe, image, change, message):
    kwargs = {"image": image, "num_frames": FRAMES, "num_inference_steps": 1, **change}
    with pytest.raises(InputError, match=message):
        pipe(**kwargs)
