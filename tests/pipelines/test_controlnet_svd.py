"""The flow ControlNet for SVD (core.controlnet_svd) and SVDTrajectoryPipeline's ControlNet mode, on tiny SVD.

Sizes: 32x32 pixels (16x16 latents with the tiny VAE, factor 2), 4 frames, 2 steps. "Randomised" means
a ControlNet whose zero convs (the residual convs) got random weights, as training would give them, so its
residuals are not zero.
"""

import copy
import time

import numpy as np
import pytest
import torch
from diffusers import StableVideoDiffusionPipeline
from PIL import Image

from core import models
from core.config import Settings
from core.controlnet_svd import (
    DEFAULT_FLOW_SCALE_PX,
    SVDFlowControlNet,
    controlnet_unet_output,
    flow_condition,
    unet_residual_hooks,
)
from core.errors import InputError, ModelNotAvailable
from core.pipelines.svd_trajectory import SVDTrajectoryPipeline
from tests.support.full_architecture import full_architecture_random

SIZE, FRAMES, LATENT = 32, 4, 16
TINY = Settings.from_env({}, svd_model="tiny", svd_controlnet_model="tiny", device="cpu")


@pytest.fixture(scope="module")
def components():
    return models.tiny_svd_components(0)


@pytest.fixture(scope="module")
def controlnet(components):
    return SVDFlowControlNet.from_unet(components["unet"], vae_scale_factor=2).eval()


def _randomised(controlnet: SVDFlowControlNet, seed: int = 0) -> SVDFlowControlNet:
    trained = copy.deepcopy(controlnet)
    zero_convs = [*trained.controlnet_down_blocks, trained.controlnet_mid_block]
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for conv in zero_convs:
            for param in conv.parameters():
                param.copy_(0.1 * torch.randn(param.shape, generator=generator))
    return trained


@pytest.fixture(scope="module")
def randomised(controlnet):
    return _randomised(controlnet)


@pytest.fixture(scope="module")
def unet_inputs():
    """Inputs of one UNet call: batch 2 (as with guidance), 3 frames, 8x8 latents (16x16 pixels)."""
    generator = torch.Generator().manual_seed(0)
    return {
        "model_input": torch.randn(2, 3, 8, 8, 8, generator=generator),
        "t": torch.tensor(500.0),
        "encoder_hidden_states": torch.randn(2, 1, 32, generator=generator),
        "added_time_ids": torch.tensor([[6.0, 127.0, 0.02]] * 2),
        "controlnet_cond": torch.randn(2, 3, 3, 16, 16, generator=generator),
    }


def _unet(unet, inputs):
    return unet(
        inputs["model_input"],
        inputs["t"],
        encoder_hidden_states=inputs["encoder_hidden_states"],
        added_time_ids=inputs["added_time_ids"],
        return_dict=False,
    )[0]


def _hook_counts(unet) -> list[int]:
    blocks = [unet, unet.mid_block, *unet.up_blocks]
    return [len(b._forward_pre_hooks) + len(b._forward_hooks) for b in blocks]


# -- residual hooks -------------------------------------------------------------------------------------


@torch.no_grad()
def test_residual_hooks_add_each_residual_to_the_skip_it_belongs_to(components, unet_inputs):
    """Checked against diffusers' own forward: which down_block_res_samples entry each up block receives."""
    unet = components["unet"]
    produced = []  # down_block_res_samples as the UNet builds it: conv_in's output, then each block's
    received = {i: [] for i in range(len(unet.up_blocks))}  # the skips each up block gets, per call
    mid_out, up_in = [], []

    def observe(i):
        def hook(module, args, kwargs):
            received[i].append(kwargs["res_hidden_states_tuple"])
            if i == 0:
                up_in.append(kwargs["hidden_states"])

        return hook

    def observe_up_blocks():
        return [
            b.register_forward_pre_hook(observe(i), with_kwargs=True) for i, b in enumerate(unet.up_blocks)
        ]

    handles = [
        unet.conv_in.register_forward_hook(lambda m, a, out: produced.append(out)),
        *(b.register_forward_hook(lambda m, a, out: produced.extend(out[1])) for b in unet.down_blocks),
        unet.mid_block.register_forward_hook(lambda m, a, out: mid_out.append(out)),
        *observe_up_blocks(),
    ]
    try:
        stock = _unet(unet, unet_inputs)
        # Every skip an up block receives is one of the produced tensors, and each is used exactly once.
        index = [
            [next(k for k, p in enumerate(produced) if p is s) for s in received[i][0]] for i in received
        ]
        assert sorted(k for ks in index for k in ks) == list(range(len(produced)))
        generator = torch.Generator().manual_seed(1)
        down = [torch.randn(p.shape, generator=generator) for p in produced]
        mid = torch.randn(mid_out[0].shape, generator=generator)
        with unet_residual_hooks(unet, down, mid):
            handles += observe_up_blocks()  # after the residual hooks: they see what the blocks receive
            changed = _unet(unet, unet_inputs)
    finally:
        for handle in handles:
            handle.remove()
    # The hooked call recomputes the same skips (the down path is untouched); each gets its residual.
    for i, ks in enumerate(index):
        for skip, k in zip(received[i][-1], ks, strict=True):
            assert torch.equal(skip, produced[k] + down[k])
    assert torch.equal(up_in[-1], mid_out[0] + mid)  # the mid residual goes into the up path
    assert (changed - stock).abs().max() > 1e-2


@torch.no_grad()
def test_zero_residuals_give_the_stock_unet_exactly_and_leaving_removes_the_hooks(components, unet_inputs):
    unet = components["unet"]
    before = _hook_counts(unet)
    stock = _unet(unet, unet_inputs)
    down, mid = SVDFlowControlNet.from_unet(unet, vae_scale_factor=2)(
        unet_inputs["model_input"],
        unet_inputs["t"],
        unet_inputs["encoder_hidden_states"],
        unet_inputs["added_time_ids"],
        unet_inputs["controlnet_cond"],
    )
    assert all(torch.count_nonzero(r) == 0 for r in (*down, mid))  # zero convs: zero residuals
    with unet_residual_hooks(unet, down, mid):
        assert _hook_counts(unet) != before
        assert torch.equal(_unet(unet, unet_inputs), stock)
    assert _hook_counts(unet) == before
    random_down = [torch.randn_like(r) for r in down]
    with pytest.raises(RuntimeError):  # an error inside the block still removes the hooks
        with unet_residual_hooks(unet, random_down, torch.randn_like(mid)):
            raise RuntimeError("boom")
    assert _hook_counts(unet) == before
    assert torch.equal(_unet(unet, unet_inputs), stock)
    with pytest.raises(ValueError, match="5 down residuals"):
        with unet_residual_hooks(unet, down[:-1], mid):
            pass


# -- the ControlNet model -------------------------------------------------------------------------------


def test_from_unet_copies_the_encoder_and_zeroes_the_outputs(components, controlnet):
    unet = components["unet"]
    unet_state = unet.state_dict()
    copied = [k for k in controlnet.state_dict() if k.split(".")[0] in {"conv_in", "time_embedding", "add_embedding", "down_blocks", "mid_block"}]  # fmt: skip
    assert len(copied) > 100
    assert all(torch.equal(controlnet.state_dict()[k], unet_state[k]) for k in copied)
    # One zero conv per skip the up blocks consume (conv_in's included), one for the mid block.
    assert len(controlnet.controlnet_down_blocks) == sum(len(b.resnets) for b in unet.up_blocks) == 6
    zero = [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block]
    assert all(torch.count_nonzero(p) == 0 for m in zero for p in m.parameters())
    # Only the outputs are zero: the condition path is live from the first step, at the flow's own scale.
    embedding = controlnet.controlnet_cond_embedding
    assert torch.count_nonzero(embedding.conv_out.weight) == embedding.conv_out.weight.numel()
    with torch.no_grad():
        blob = torch.zeros(1, 3, 16, 16)
        blob[:, :, 6:10, 6:10] = 1.0
        assert embedding(torch.zeros_like(blob)).abs().max() == 0  # no tracks, no change to the features
        assert embedding(blob).std() > 0.01
    assert controlnet.vae_scale_factor == 2 and controlnet.config.flow_scale_px == DEFAULT_FLOW_SCALE_PX
    assert SVDFlowControlNet.from_unet(unet).vae_scale_factor == 8  # SVD's VAE by default
    fresh = SVDFlowControlNet.from_unet(unet, load_weights_from_unet=False)
    assert not torch.equal(fresh.conv_in.weight, unet.conv_in.weight)


@torch.no_grad()
def test_controlnet_unet_output_shapes_scale_and_determinism(components, controlnet, randomised, unet_inputs):
    unet = components["unet"]
    stock = _unet(unet, unet_inputs)
    args = [unet_inputs[k] for k in ("model_input", "t", "encoder_hidden_states", "added_time_ids", "controlnet_cond")]  # fmt: skip
    down, mid = randomised(*args)
    assert [tuple(r.shape) for r in down] == [(6, 32, 8, 8)] * 3 + [
        (6, 32, 4, 4),
        (6, 64, 4, 4),
        (6, 64, 4, 4),
    ]
    assert tuple(mid.shape) == (6, 64, 4, 4)
    half_down, half_mid = randomised(*args, conditioning_scale=0.5)
    assert all(torch.allclose(h, 0.5 * r, atol=1e-6) for h, r in zip((*half_down, half_mid), (*down, mid)))

    def output(model, scale):
        return controlnet_unet_output(unet, model, *args[:4], args[4], conditioning_scale=scale)

    assert torch.equal(output(controlnet, 1.0), stock)
    assert torch.equal(output(randomised, 0.0), stock)
    changed = output(randomised, 1.0)
    assert changed.shape == stock.shape and (changed - stock).abs().max() > 0.1
    assert torch.equal(output(randomised, 1.0), changed)
    # The flow condition matters: another condition, another output.
    other = controlnet_unet_output(unet, randomised, *args[:4], torch.zeros_like(args[4]))
    assert (other - changed).abs().max() > 1e-3
    assert torch.equal(_unet(unet, unet_inputs), stock)  # nothing left attached


def test_condition_at_the_wrong_resolution_is_refused(controlnet, unet_inputs):
    cond = unet_inputs["controlnet_cond"][..., :8, :8]
    args = [unet_inputs[k] for k in ("model_input", "t", "encoder_hidden_states", "added_time_ids")]
    with pytest.raises(InputError, match="vae_scale_factor"):
        controlnet(*args, cond)
    with pytest.raises(InputError, match="the sample's B and T"):
        controlnet(*args, unet_inputs["controlnet_cond"][:1])


def test_gradient_checkpointing_gives_the_same_gradients(components, randomised, unet_inputs):
    unet = components["unet"]
    args = [unet_inputs[k] for k in ("model_input", "t", "encoder_hidden_states", "added_time_ids", "controlnet_cond")]  # fmt: skip
    grads = []
    for checkpointing in (False, True):
        model = copy.deepcopy(randomised).train()
        if checkpointing:
            model.enable_gradient_checkpointing()
        controlnet_unet_output(unet, model, *args).square().mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert grads[0].abs().max() > 0
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


# -- flow_condition ---------------------------------------------------------------------------------------


def _norm(points_px, size=SIZE):
    """Pixel centres -> normalised coordinates (x_norm = (x_px + 0.5) / W)."""
    return (np.asarray(points_px, dtype=np.float64) + 0.5) / size


def test_flow_condition_of_a_lone_track():
    track = _norm([[10, 12], [14, 12], [14, 20]])[None]  # (1,3,2): right 4 px, then down 8 px
    cond = flow_condition(track, SIZE, SIZE, sigma_px=2.0, flow_scale_px=4.0)
    assert cond.shape == (3, 3, SIZE, SIZE) and cond.dtype == np.float32
    assert np.count_nonzero(cond[0]) == 0  # frame 0
    # Frame t holds (p_t - p_{t-1}) / flow_scale_px at p_{t-1}, mask 1 there.
    assert cond[1, :, 12, 10].tolist() == [1.0, 0.0, 1.0]
    assert cond[2, :, 12, 14].tolist() == [0.0, 2.0, 1.0]
    # Gaussian spread: one sigma away the value is exp(-1/2) of the peak; far away nothing.
    assert cond[1, 0, 12, 12] == pytest.approx(np.exp(-0.5), rel=1e-6)
    assert np.abs(cond[:, :, 28:, 28:]).max() < 1e-12
    assert 0.0 <= cond[:, 2].min() and cond[:, 2].max() == 1.0


def test_flow_condition_without_tracks_is_zero_and_bad_scales_are_refused():
    empty = flow_condition(np.zeros((0, FRAMES, 2)), SIZE, 24, flow_scale_px=5.0)
    assert empty.shape == (FRAMES, 3, SIZE, 24) and np.count_nonzero(empty) == 0
    anchor = flow_condition(_norm([[5, 5]] * FRAMES)[None], SIZE, SIZE, flow_scale_px=5.0)
    assert np.count_nonzero(anchor[:, :2]) == 0 and anchor[1, 2, 5, 5] == 1.0  # pinned: mask only
    for scale in (0.0, -1.0, float("inf"), "4", True):
        with pytest.raises(InputError, match="flow_scale_px"):
            flow_condition(empty[:, :2], SIZE, SIZE, flow_scale_px=scale)


# -- the pipeline's ControlNet mode ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(0).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def cond():
    tracks = _norm([[[8, 8], [11, 9], [14, 10], [17, 11]], [[24, 20], [24, 20], [24, 20], [24, 20]]])
    return flow_condition(tracks, SIZE, SIZE, sigma_px=3.0, flow_scale_px=DEFAULT_FLOW_SCALE_PX)


def _pipe(components, controlnet=None):
    pipe = SVDTrajectoryPipeline(**components, controlnet=controlnet)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _run(pipe, image, seed=0, **kwargs):
    kwargs = {"strength": 1.0, "num_frames": FRAMES, "num_inference_steps": 2, "output_type": "np", **kwargs}
    return pipe(image, generator=torch.Generator().manual_seed(seed), **kwargs).frames


def test_zero_init_controlnet_is_stock_svd_bit_for_bit(components, controlnet, image, cond):
    stock = StableVideoDiffusionPipeline(**components)
    stock.set_progress_bar_config(disable=True)
    expected = stock(Image.fromarray(image), height=SIZE, width=SIZE, num_frames=FRAMES, num_inference_steps=2,
                     generator=torch.Generator().manual_seed(0), output_type="np").frames  # fmt: skip
    frames = _run(_pipe(components, controlnet), image, fix_first_frame=False, flow_condition=cond)
    assert frames.shape == (1, FRAMES, SIZE, SIZE, 3)
    assert np.array_equal(frames, expected)


def test_scale_zero_is_stock_and_scale_one_steers(components, randomised, image, cond):
    pipe = _pipe(components, randomised)
    plain = _run(pipe, image, output_type="latent")  # the ControlNet is not run without a flow condition
    assert torch.equal(_run(pipe, image, output_type="latent", flow_condition=cond, controlnet_conditioning_scale=0.0), plain)  # fmt: skip
    steered = _run(pipe, image, output_type="latent", flow_condition=cond)
    assert steered.shape == (1, FRAMES, 4, LATENT, LATENT)
    assert (steered - plain).abs().max() > 0.1
    assert torch.equal(
        _run(pipe, image, output_type="latent", flow_condition=torch.from_numpy(cond)), steered
    )
    assert torch.equal(_run(pipe, image, output_type="latent", flow_condition=cond), steered)  # deterministic
    assert (_run(pipe, image, seed=1, output_type="latent", flow_condition=cond) - steered).abs().max() > 1e-3


def test_controlnet_combines_with_the_guide(components, controlnet, randomised, image, cond):
    guide = np.stack([np.roll(image, 3 * k, axis=1) for k in range(FRAMES)])
    sdedit = _run(_pipe(components), image, guide_video=guide, strength=0.5, output_type="latent")
    zero = _run(_pipe(components, controlnet), image, guide_video=guide, strength=0.5, output_type="latent",
                flow_condition=cond)  # fmt: skip
    assert torch.equal(zero, sdedit)
    both = _run(_pipe(components, randomised), image, guide_video=guide, strength=0.5, output_type="latent",
                flow_condition=cond, num_frames=None)  # fmt: skip
    assert (both - sdedit).abs().max() > 1e-3  # one step at sigma 1.3 of 2: a small change


@pytest.mark.parametrize("max_guidance_scale, batch", [(3.0, 2), (1.0, 1)])
def test_unconditional_half_sees_no_tracks(components, randomised, image, cond, max_guidance_scale, batch):
    pipe = _pipe(components, randomised)
    seen = []
    handle = randomised.register_forward_pre_hook(lambda m, args: seen.append(args[4].clone()))
    try:
        _run(pipe, image, output_type="latent", flow_condition=cond, min_guidance_scale=1.0,
             max_guidance_scale=max_guidance_scale)  # fmt: skip
    finally:
        handle.remove()
    assert len(seen) == 2  # once per step
    expected = torch.from_numpy(cond)[None]
    if batch == 2:
        expected = torch.cat([torch.zeros_like(expected), expected])
    assert all(torch.equal(s, expected) for s in seen)


def test_model_cpu_offload_keeps_the_controlnet_output(image, cond, randomised):
    pipe = _pipe(models.tiny_svd_components(0), copy.deepcopy(randomised))
    expected = _run(pipe, image, flow_condition=cond)
    pipe.enable_model_cpu_offload(device="cpu")
    assert np.array_equal(_run(pipe, image, flow_condition=cond), expected)


@pytest.mark.parametrize("with_controlnet", [False, True])
def test_pipeline_saves_and_reloads_with_or_without_controlnet(
    components, randomised, tmp_path, with_controlnet
):
    _pipe(components, randomised if with_controlnet else None).save_pretrained(tmp_path)
    reloaded = SVDTrajectoryPipeline.from_pretrained(tmp_path, local_files_only=True)
    assert (tmp_path / "controlnet").exists() == with_controlnet
    if not with_controlnet:
        assert reloaded.controlnet is None
        return
    assert isinstance(reloaded.controlnet, SVDFlowControlNet)
    expected = randomised.state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in reloaded.controlnet.state_dict().items())


@pytest.mark.parametrize(
    "change, message",
    [
        (
            {"flow_condition": np.zeros((FRAMES, 3, SIZE, SIZE), np.float32), "controlnet": None},
            "needs a flow ControlNet",
        ),  # fmt: skip
        ({"flow_condition": np.zeros((FRAMES, 2, SIZE, SIZE), np.float32)}, r"\(T,3,H,W\)"),
        ({"flow_condition": np.zeros((FRAMES, 3, SIZE, 16), np.float32)}, r"\(4, 3, 32, 16\)"),
        ({"flow_condition": np.zeros((3, SIZE, SIZE), np.float32)}, r"\(3, 32, 32\)"),
        ({"flow_condition": np.zeros((FRAMES, 3, SIZE, SIZE), np.int64)}, "int64"),
        ({"flow_condition": np.full((FRAMES, 3, SIZE, SIZE), np.nan, np.float32)}, "NaN"),
        ({"flow_condition": [[0.0]]}, "list"),
        ({"num_frames": FRAMES + 1}, "has 4 frames"),
        ({"controlnet_conditioning_scale": -1.0}, "controlnet_conditioning_scale"),
        ({"controlnet_conditioning_scale": float("nan")}, "controlnet_conditioning_scale"),
        (
            {
                "guide_video": np.zeros((FRAMES + 1, SIZE, SIZE, 3), np.uint8),
                "strength": 0.5,
                "num_frames": None,
            },
            "guide_video",
        ),  # fmt: skip
    ],
)
def test_bad_controlnet_input_raises_input_error(components, controlnet, image, cond, change, message):
    change = dict(change)
    pipe = _pipe(components, change.pop("controlnet", controlnet))
    kwargs = {"flow_condition": cond, "num_frames": FRAMES, "strength": 1.0, **change}
    with pytest.raises(InputError, match=message):
        pipe(image, **kwargs)


# -- loading ----------------------------------------------------------------------------------------------


def _settings(model: str) -> Settings:
    return Settings.from_env({}, svd_model="tiny", svd_controlnet_model=model, device="cpu")


def test_loader_tiny_none_and_the_documented_wiring(image, cond):
    assert models.load_svd_controlnet(_settings("")) is None
    pipe = models.load_pipeline("svd", TINY, pipeline_cls=SVDTrajectoryPipeline)
    pipe.set_progress_bar_config(disable=True)
    plain = _run(pipe, image, output_type="latent")
    pipe.register_modules(controlnet=models.load_svd_controlnet(TINY))
    assert isinstance(pipe.controlnet, SVDFlowControlNet) and pipe.controlnet.vae_scale_factor == 2
    assert "controlnet" in pipe.components
    assert torch.equal(_run(pipe, image, output_type="latent", flow_condition=cond), plain)  # zero convs


def test_save_pretrained_round_trip_is_exact(tmp_path, randomised, unet_inputs):
    folder = tmp_path / "controlnet"
    randomised.save_pretrained(folder)
    assert (folder / "diffusion_pytorch_model.safetensors").is_file()
    models.clear_cache()
    loaded = models.load_svd_controlnet(_settings(str(folder)))
    assert loaded.config.flow_scale_px == DEFAULT_FLOW_SCALE_PX and loaded.vae_scale_factor == 2
    expected = randomised.state_dict()
    assert loaded.state_dict().keys() == expected.keys()
    assert all(torch.equal(v, expected[k]) for k, v in loaded.state_dict().items())
    assert models.load_svd_controlnet(_settings(str(folder))) is loaded  # cached
    models.clear_cache()
    assert models.load_svd_controlnet(_settings(str(folder))) is not loaded


def test_missing_or_wrong_model_names_the_setting(tmp_path, components):
    with pytest.raises(ModelNotAvailable, match="KINEMA_SVD_CONTROLNET_MODEL.*--svd-controlnet-model"):
        models.load_svd_controlnet(_settings(str(tmp_path / "nowhere")))
    components["unet"].save_pretrained(tmp_path / "unet")
    with pytest.raises(ModelNotAvailable, match="holds a UNetSpatioTemporalConditionModel"):
        models.load_svd_controlnet(_settings(str(tmp_path / "unet")))
    with pytest.raises(ModelNotAvailable, match="no config.json"):
        models.load_svd_controlnet(_settings("some-org/some-model"))


# -- full size ----------------------------------------------------------------------------------------------


@pytest.mark.slow
@torch.no_grad()
def test_svd_xt_controlnet_zero_init_is_stock():
    start = time.perf_counter()
    unet = full_architecture_random("svd_xt", components=["unet"])["unet"]
    controlnet = SVDFlowControlNet.from_unet(unet).eval()
    count = sum(p.numel() for p in controlnet.parameters())
    print(f"SVDFlowControlNet on the SVD-XT UNet: {count:,} parameters (UNet {unet.num_parameters():,})")
    assert 0.3 * unet.num_parameters() < count < 0.6 * unet.num_parameters()
    generator = torch.Generator().manual_seed(0)
    sample = torch.randn(1, 2, 8, 8, 8, generator=generator)  # 2 frames, 64x64 pixels
    embeddings = torch.randn(1, 1, 1024, generator=generator)
    added_time_ids = torch.tensor([[6.0, 127.0, 0.02]])
    cond = torch.randn(1, 2, 3, 64, 64, generator=generator)
    stock = unet(sample, torch.tensor(0.5), embeddings, added_time_ids).sample
    out = controlnet_unet_output(
        unet, controlnet, sample, torch.tensor(0.5), embeddings, added_time_ids, cond
    )
    assert torch.equal(out, stock)
    print(f"built and ran in {time.perf_counter() - start:.1f} s")
