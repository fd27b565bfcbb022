"""The joint-diffusion patch on tiny SD and SVD UNets (and, slow, the full SD1.5 architecture)."""

import copy
import functools

import pytest
import torch
from diffusers.models.attention import BasicTransformerBlock
from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0
from peft import LoraConfig

from core import lora
from core.errors import InputError
from core.models import tiny_sd_components, tiny_svd_components
from core.patches import handbook
from core.patches.joint import (
    JOINT_ATTN,
    JOINT_CONV,
    apply_joint_patch,
    joint_lora_names,
    joint_patch_of,
    modality_lora_names,
    pairing_from_layout,
    remove_joint_patch,
)
from tests.support.full_architecture import full_architecture_random

TIMESTEP = torch.tensor([500])


@functools.cache
def _stock_unets() -> dict:
    return {"sd": tiny_sd_components(0)["unet"], "svd": tiny_svd_components(0)["unet"]}


def sd_unet():
    """A fresh copy of the stock tiny SD UNet (the same weights every time)."""
    return copy.deepcopy(_stock_unets()["sd"])


def svd_unet():
    return copy.deepcopy(_stock_unets()["svd"])


def sd_inputs(batch: int, seed: int = 1, size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    latents = torch.randn(batch, 4, size, size, generator=generator)
    text = torch.randn(batch, 77, 32, generator=generator)
    return latents, text


@torch.no_grad()
def run_sd(unet, latents, text) -> torch.Tensor:
    return unet(latents, TIMESTEP, encoder_hidden_states=text).sample


def perturb(params, seed: int, scale: float = 0.1) -> None:
    """Overwrite parameters with seeded noise, so zero-initialised layers start to matter."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in params:
            param.copy_(torch.randn(param.shape, generator=generator) * scale)


def lora_weights(unet, name: str) -> list[torch.nn.Parameter]:
    return [p for key, p in unet.named_parameters() if f".lora_A.{name}." in key or f".lora_B.{name}." in key]


def structure(unet) -> list[tuple[str, type]]:
    return [(name, type(module)) for name, module in unet.named_modules()]


def capture_joint_attention(patch):
    """Record (queries, keys/values) of every joint attention call, in call order."""
    calls = []

    def hook(module, args, kwargs, output):
        calls.append((args[0].clone(), kwargs["encoder_hidden_states"].clone()))

    handles = [
        getattr(block, JOINT_ATTN).register_forward_hook(hook, with_kwargs=True)
        for block in patch.blocks.values()
    ]
    return calls, handles


# -- exactness at initialisation -------------------------------------------------------------------


def test_patched_tiny_sd_unet_equals_stock_until_the_joint_layers_change():
    unet = sd_unet()
    latents, text = sd_inputs(4)
    stock = run_sd(unet, latents, text)
    patch = apply_joint_patch(unet, joint_lora_rank=4, y_lora_rank=4)
    assert len(patch.blocks) == 6  # every BasicTransformerBlock of the tiny UNet
    patch.set_batch_layout([0, 0, 1, 1])
    patched = run_sd(unet, latents, text)
    assert (patched - stock).abs().max() <= 1e-5

    # The same check must fail once the zero conv (the joint layers' only way out) is not zero.
    perturb([getattr(b, JOINT_CONV).weight for b in patch.blocks.values()], seed=2)
    assert (run_sd(unet, latents, text) - stock).abs().max() > 1e-3


def test_patched_tiny_svd_unet_patches_only_spatial_blocks_and_equals_stock():
    unet = svd_unet()
    spatial = {n for n, m in unet.named_modules() if isinstance(m, BasicTransformerBlock)}
    generator = torch.Generator().manual_seed(3)
    videos, frames = 2, 3
    sample = torch.randn(videos, frames, 8, 8, 8, generator=generator)
    image_embeddings = torch.randn(videos, 1, 32, generator=generator)
    added_time_ids = torch.tensor([[6.0, 127.0, 0.02]] * videos)

    @torch.no_grad()
    def run():
        return unet(sample, torch.tensor([0.5]), image_embeddings, added_time_ids).sample

    stock = run()
    patch = apply_joint_patch(unet, joint_lora_rank=4, y_lora_rank=4)
    assert set(patch.blocks) == spatial and all(".transformer_blocks." in n for n in spatial)
    assert not any(JOINT_ATTN in n for n, _ in unet.named_modules() if "temporal_transformer_blocks" in n)
    patch.set_batch_layout([0, 1])  # video 0 is x, video 1 is y
    calls, _ = capture_joint_attention(patch)
    assert (run() - stock).abs().max() <= 1e-5

    # Spatial blocks see videos * frames entries: frame f of video 0 attends to frame f of video 1.
    queries, keys = calls[0]
    assert queries.shape[0] == videos * frames
    for f in range(frames):
        assert torch.equal(keys[f], queries[frames + f]) and torch.equal(keys[frames + f], queries[f])

    # y_lora reaches spatial rows (video * frames) and temporal rows (video * pixels) of video 1 only.
    assert any("temporal_transformer_blocks" in path for path in lora.lora_modules(unet, "y_lora"))
    perturb(lora_weights(unet, "y_lora"), seed=4)
    out = run()
    assert torch.equal(out[0], stock[0]) and (out[1] - stock[1]).abs().max() > 1e-3

    perturb([getattr(b, JOINT_CONV).weight for b in patch.blocks.values()], seed=5)
    assert (run()[0] - stock[0]).abs().max() > 1e-3


# -- pairing ---------------------------------------------------------------------------------------


def test_pairing_from_layouts_including_cfg_and_three_modalities():
    assert pairing_from_layout([0, 0, 1, 1]).flatten().tolist() == [2, 3, 0, 1]
    assert pairing_from_layout([0, 1, 0, 1]).flatten().tolist() == [1, 0, 3, 2]
    # CFG: [x1, x2, y1, y2] unconditional, then the same conditional.
    cfg = [0, 0, 1, 1, 0, 0, 1, 1]
    assert pairing_from_layout(cfg).flatten().tolist() == [2, 3, 0, 1, 6, 7, 4, 5]
    # image, depth, normals of two samples, in any order: partners listed in modality order.
    assert pairing_from_layout([0, 1, 2, 2, 1, 0], 3).tolist() == [
        [1, 2],
        [0, 2],
        [0, 1],
        [5, 4],
        [5, 3],
        [4, 3],
    ]
    for bad in ([0, 0, 1], [0, 2], [], [0.0, 1.0], [True, False], [[0, 1]]):
        with pytest.raises(InputError):
            pairing_from_layout(bad)


@pytest.mark.parametrize(("layout", "partner"), [([0, 0, 1, 1], [2, 3, 0, 1]), ([0, 1, 0, 1], [1, 0, 3, 2])])
def test_joint_layers_attend_exactly_to_the_partner(layout, partner):
    unet = sd_unet()
    patch = apply_joint_patch(unet)
    patch.set_batch_layout(layout)
    calls, _ = capture_joint_attention(patch)
    latents, text = sd_inputs(4)
    run_sd(unet, latents, text)
    assert len(calls) == len(patch.blocks)
    for queries, keys in calls:
        assert torch.equal(keys, queries[partner])

    # End to end, with live joint layers: changing one entry moves only itself and its partner.
    perturb([p for b in patch.blocks.values() for p in getattr(b, JOINT_CONV).parameters()], seed=5)
    before = run_sd(unet, latents, text)
    moved = latents.clone()
    moved[3] += 1.0
    after = run_sd(unet, moved, text)
    changed = [i for i in range(4) if not torch.equal(before[i], after[i])]
    assert changed == sorted({3, partner[3]})


def test_no_pairing_skips_the_joint_layers_and_the_batch_must_match():
    unet = sd_unet()
    patch = apply_joint_patch(unet)
    calls, _ = capture_joint_attention(patch)
    latents, text = sd_inputs(4)
    run_sd(unet, latents, text)
    assert calls == []
    patch.set_pairing([1, 0, 3, 2])
    run_sd(unet, latents, text)
    assert torch.equal(calls[0][1], calls[0][0][[1, 0, 3, 2]])
    with pytest.raises(InputError):
        patch.set_batch_layout([0, 1, 1])  # unequal modalities
    with pytest.raises(InputError):
        patch.set_pairing([[0, 4]])
    patch.set_batch_layout([0, 1, 0, 1, 0, 1])
    with pytest.raises(InputError, match="batch of 6"):
        run_sd(unet, latents, text)


def test_joint_layers_use_the_default_processor_whatever_attn1_uses():
    unet = sd_unet()
    unet.set_attn_processor(AttnProcessor())  # stands for a patched attn1 processor (e.g. cross_frame)
    patch = apply_joint_patch(unet)
    assert all(isinstance(getattr(b, JOINT_ATTN).processor, AttnProcessor2_0) for b in patch.blocks.values())


def test_bad_arguments_raise_input_errors():
    for modalities in (1, 5, 2.0, True):
        with pytest.raises(InputError):
            apply_joint_patch(sd_unet(), modalities=modalities)
    with pytest.raises(InputError, match="no BasicTransformerBlock"):
        apply_joint_patch(torch.nn.Linear(2, 2))
    patch = apply_joint_patch(sd_unet())
    for bad in (["x", "y"], [[0, 1]], None):
        with pytest.raises(InputError):
            patch.set_batch_layout(bad)
    with pytest.raises(InputError):
        patch.set_pairing("01")


def test_three_modalities_concatenate_both_partners_tokens():
    unet = sd_unet()
    latents, text = sd_inputs(3)
    stock = run_sd(unet, latents, text)
    patch = apply_joint_patch(unet, modalities=3, joint_lora_rank=2, y_lora_rank=2)
    assert patch.joint_lora_names == ("xyz_lora", "yxz_lora", "zxy_lora") == joint_lora_names(3)
    assert patch.modality_lora_names == ("y_lora", "z_lora") == modality_lora_names(3)
    assert set(lora.list_loras(unet)) == set(patch.lora_names)
    patch.set_batch_layout([2, 0, 1])  # normals, image, depth of one sample
    calls, _ = capture_joint_attention(patch)
    assert (run_sd(unet, latents, text) - stock).abs().max() <= 1e-5
    queries, keys = calls[0]
    tokens = queries.shape[1]
    assert keys.shape[1] == 2 * tokens
    assert torch.equal(keys[0], torch.cat([queries[1], queries[2]]))  # z attends to x then y
    assert torch.equal(keys[1], torch.cat([queries[2], queries[0]]))  # x attends to y then z


# -- masked LoRA -----------------------------------------------------------------------------------


def test_y_lora_changes_only_the_masked_entries_bit_exactly():
    unet = sd_unet()
    latents, text = sd_inputs(4)
    stock = run_sd(unet, latents, text)
    patch = apply_joint_patch(unet, joint_lora_rank=4, y_lora_rank=4)
    perturb(lora_weights(unet, "y_lora"), seed=6)
    patch.set_batch_layout([0, 1, 0, 1])
    out = run_sd(unet, latents, text)
    for i in (0, 2):  # x entries: exactly the stock output
        assert torch.equal(out[i], stock[i])
    for i in (1, 3):
        assert (out[i] - stock[i]).abs().max() > 1e-3

    patch.set_lora_mask("y_lora", [True, False, False, False])
    out = run_sd(unet, latents, text)
    assert (out[0] - stock[0]).abs().max() > 1e-3
    assert all(torch.equal(out[i], stock[i]) for i in (1, 2, 3))
    patch.set_lora_mask("y_lora", None)  # no mask: every entry
    out = run_sd(unet, latents, text)
    assert all((out[i] - stock[i]).abs().max() > 1e-3 for i in range(4))
    with pytest.raises(InputError):
        patch.set_lora_mask("style_lora", [1, 0, 0, 0])
    with pytest.raises(InputError):
        patch.set_lora_mask("y_lora", [0.5, 1, 0, 0])


@pytest.mark.parametrize(("name", "selected"), [("xy_lora", (0, 2)), ("yx_lora", (1, 3))])
def test_joint_loras_apply_only_to_their_modality(name, selected):
    unet = sd_unet()
    patch = apply_joint_patch(unet, joint_lora_rank=4)
    patch.set_batch_layout([0, 1, 0, 1])
    first = next(iter(patch.blocks.values()))
    outputs = []
    getattr(first, JOINT_ATTN).register_forward_hook(lambda m, a, out: outputs.append(out.clone()))
    latents, text = sd_inputs(4)
    run_sd(unet, latents, text)
    perturb(lora_weights(unet, name), seed=7)
    run_sd(unet, latents, text)
    # The first patched block sees the same input both times: only the adapter's entries may move.
    plain, adapted = outputs
    for i in range(4):
        if i in selected:
            assert (adapted[i] - plain[i]).abs().max() > 1e-3
        else:
            assert torch.equal(adapted[i], plain[i])


# -- save, load, remove ----------------------------------------------------------------------------


def trained_patch(unet, seed: int):
    """A patch whose joint layers and adapters all hold non-trivial weights."""
    patch = apply_joint_patch(unet, joint_lora_rank=4, y_lora_rank=4)
    perturb(patch.joint_parameters(), seed=seed, scale=0.05)
    for offset, name in enumerate(patch.lora_names):
        perturb(lora_weights(unet, name), seed=seed + 1 + offset)
    patch.set_batch_layout([0, 0, 1, 1])
    return patch


@pytest.mark.parametrize("fresh_ranks", [None, 4])
def test_save_load_round_trip_into_a_fresh_patched_unet(tmp_path, fresh_ranks):
    latents, text = sd_inputs(4)
    unet = sd_unet()
    stock = run_sd(unet, latents, text)
    patch = trained_patch(unet, seed=10)
    trained = run_sd(unet, latents, text)
    assert (trained - stock).abs().max() > 1e-2
    patch.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "joint_layers.safetensors",
        "xy_lora.safetensors",
        "y_lora.safetensors",
        "yx_lora.safetensors",
    ]

    fresh = sd_unet()
    loaded = apply_joint_patch(fresh, joint_lora_rank=fresh_ranks, y_lora_rank=fresh_ranks)
    loaded.load(tmp_path)
    loaded.set_batch_layout([0, 0, 1, 1])
    assert (run_sd(fresh, latents, text) - trained).abs().max() <= 1e-6
    assert loaded.joint_state_dict().keys() == patch.joint_state_dict().keys()


def test_load_rejects_missing_or_mismatching_folders(tmp_path):
    patch = trained_patch(sd_unet(), seed=20)
    with pytest.raises(InputError, match="joint_layers"):
        patch.load(tmp_path / "nothing")
    patch.save(tmp_path)
    with pytest.raises(InputError, match="modalities"):
        apply_joint_patch(sd_unet(), modalities=3).load(tmp_path)
    svd = apply_joint_patch(svd_unet())
    with pytest.raises(InputError, match="does not fit"):
        svd.load(tmp_path)


def test_remove_restores_stock_structure_forward_and_output():
    unet = sd_unet()
    latents, text = sd_inputs(4)
    stock = run_sd(unet, latents, text)
    stock_structure, stock_keys = structure(unet), list(unet.state_dict())
    patch = trained_patch(unet, seed=30)
    assert structure(unet) != stock_structure
    with pytest.raises(InputError, match="already"):
        apply_joint_patch(unet)
    remove_joint_patch(unet)
    assert structure(unet) == stock_structure and list(unet.state_dict()) == stock_keys
    assert lora.list_loras(unet) == []
    for block in patch.blocks.values():
        assert "forward" not in vars(block) and not block.attn1._forward_hooks
    assert torch.equal(run_sd(unet, latents, text), stock)
    with pytest.raises(InputError):
        remove_joint_patch(unet)
    # Removable means re-appliable.
    apply_joint_patch(unet).set_batch_layout([0, 0, 1, 1])
    assert torch.equal(run_sd(unet, latents, text), stock)


# -- the seed handbook's names (core.patches.handbook) ---------------------------------------------

# The handbook's adapter config, added with peft directly (suffix targets: attn1, attn2 and joint_attn).
HANDBOOK_LORA = dict(
    r=4, lora_alpha=4, init_lora_weights="gaussian", target_modules=["to_k", "to_q", "to_v", "to_out.0"]
)


def test_handbook_apply_patch_is_apply_joint_patch():
    ours, theirs = sd_unet(), sd_unet()
    latents, text = sd_inputs(4)
    stock = run_sd(ours, latents, text)
    patches = [apply_joint_patch(ours), handbook.apply_patch(theirs)]
    assert joint_patch_of(theirs) is patches[1]
    assert structure(theirs) == structure(ours) and lora.list_loras(theirs) == []
    for patch in patches:
        perturb(patch.joint_parameters(), seed=40, scale=0.05)
        patch.set_batch_layout([0, 0, 1, 1])
    out = run_sd(theirs, latents, text)
    assert torch.equal(out, run_sd(ours, latents, text))
    assert (out - stock).abs().max() > 1e-3  # the joint layers are live


@pytest.mark.parametrize("with_adapter", [False, True])
def test_handbook_initialize_joint_layers_restores_fresh_joint_layers(with_adapter):
    unet = sd_unet()
    latents, text = sd_inputs(4)
    stock = run_sd(unet, latents, text)
    patch = handbook.apply_patch(unet)
    if with_adapter:  # peft wraps attn1 and joint_attn: their weights move under 'base_layer'
        unet.add_adapter(LoraConfig(**HANDBOOK_LORA), adapter_name="y_lora")
    patch.set_batch_layout([0, 0, 1, 1])
    perturb(patch.joint_parameters(), seed=41, scale=0.05)
    assert (run_sd(unet, latents, text) - stock).abs().max() > 1e-3
    handbook.initialize_joint_layers(unet)
    assert (run_sd(unet, latents, text) - stock).abs().max() <= 1e-5
    fresh = apply_joint_patch(sd_unet()).joint_state_dict()
    restored = patch.joint_state_dict()
    assert restored.keys() == fresh.keys()
    assert all(torch.equal(restored[key], fresh[key]) for key in fresh)


def test_handbook_hack_lora_forward_masks_an_adapter_added_with_peft():
    unet = sd_unet()
    latents, text = sd_inputs(4)
    stock = run_sd(unet, latents, text)
    handbook.apply_patch(unet)
    handbook.set_patch_lora_mask(unet, "y_lora", [0, 1, 0, 1])
    unet.add_adapter(LoraConfig(**HANDBOOK_LORA), adapter_name="y_lora")
    perturb(lora_weights(unet, "y_lora"), seed=42)
    unmasked = run_sd(unet, latents, text)
    assert all((unmasked[i] - stock[i]).abs().max() > 1e-3 for i in range(4))  # peft alone: every entry
    handbook.hack_lora_forward(unet)
    out = run_sd(unet, latents, text)
    assert all(torch.equal(out[i], stock[i]) for i in (0, 2))
    assert all(torch.equal(out[i], unmasked[i]) for i in (1, 3))


def test_handbook_set_patch_lora_mask_is_set_lora_mask():
    ours, theirs = sd_unet(), sd_unet()
    latents, text = sd_inputs(4)
    stock = run_sd(ours, latents, text)
    patch = apply_joint_patch(ours, y_lora_rank=4)
    apply_joint_patch(theirs, y_lora_rank=4)
    for unet in (ours, theirs):
        perturb(lora_weights(unet, "y_lora"), seed=43)
    patch.set_lora_mask("y_lora", [1, 0, 0, 1])
    handbook.set_patch_lora_mask(theirs, "y_lora", [1, 0, 0, 1])
    out = run_sd(theirs, latents, text)
    assert torch.equal(out, run_sd(ours, latents, text))
    assert torch.equal(out[1], stock[1]) and torch.equal(out[2], stock[2])
    assert (out[0] - stock[0]).abs().max() > 1e-3
    with pytest.raises(InputError):
        handbook.set_patch_lora_mask(theirs, "style_lora", [1, 0, 0, 0])


@pytest.mark.parametrize(
    ("mask", "partner"), [([1, 1, 0, 0], [2, 3, 0, 1]), ([True, False, True, False], [1, 0, 3, 2])]
)
def test_handbook_joint_attention_mask_pairs_each_x_with_its_y_and_keeps_lora_masks(mask, partner):
    unet = sd_unet()
    latents, text = sd_inputs(4)
    stock = run_sd(unet, latents, text)
    patch = apply_joint_patch(unet, y_lora_rank=4)
    perturb(lora_weights(unet, "y_lora"), seed=44)
    handbook.set_patch_lora_mask(unet, "y_lora", [0, 0, 0, 1])
    handbook.set_joint_attention_mask(unet, mask)
    calls, _ = capture_joint_attention(patch)
    out = run_sd(unet, latents, text)
    assert len(calls) == len(patch.blocks)
    assert all(torch.equal(keys, queries[partner]) for queries, keys in calls)
    # The joint conv is still zero, so only y_lora moves an entry: the one its own mask selects.
    assert [i for i in range(4) if not torch.equal(out[i], stock[i])] == [3]


def test_handbook_names_raise_input_errors():
    unet = sd_unet()
    calls = [
        handbook.initialize_joint_layers,
        handbook.hack_lora_forward,
        lambda u: handbook.set_patch_lora_mask(u, "y_lora", None),
        lambda u: handbook.set_joint_attention_mask(u, [1, 0]),
    ]
    for call in calls:
        with pytest.raises(InputError, match="apply_patch"):
            call(unet)
    handbook.apply_patch(unet)
    for bad in ([1, 1, 1, 0], [0.5, 0.5], [[1, 0]], [], "x"):
        with pytest.raises(InputError):
            handbook.set_joint_attention_mask(unet, bad)
    three = sd_unet()
    apply_joint_patch(three, modalities=3)
    with pytest.raises(InputError, match="two modalities"):
        handbook.set_joint_attention_mask(three, [1, 0])


# -- the full SD1.5 architecture -------------------------------------------------------------------


@pytest.mark.slow
def test_full_size_sd15_unet_patched_equals_stock():
    unet = full_architecture_random("sd15", components=("unet",))["unet"]
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(2, 4, 32, 32, generator=generator)  # a 256x256 pair [x, y]
    text = torch.randn(2, 77, 768, generator=generator)
    stock = run_sd(unet, latents, text)
    patch = apply_joint_patch(unet, joint_lora_rank=8, y_lora_rank=8)
    assert len(patch.blocks) == 16
    patch.set_batch_layout([0, 1])
    assert (run_sd(unet, latents, text) - stock).abs().max() <= 1e-5
