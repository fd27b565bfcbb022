"""core.lora on the tiny SD UNet (PeftAdapterMixin) and the tiny SVD UNet (no mixin): one code path for both.

"Training" an adapter = adding seeded noise to its lora_A / lora_B weights, which moves the UNet output by
~0.1 (asserted, so every equality below is between outputs that an adapter really changes).
Run with ``-s`` to see the measured differences.
"""

import json

import pytest
import torch
from diffusers import StableDiffusionPipeline
from diffusers.utils import convert_state_dict_to_diffusers
from peft import get_peft_model_state_dict
from safetensors import safe_open
from safetensors.torch import save_file

from core import lora
from core.errors import InputError
from core.models import tiny_sd_components, tiny_svd_components

SEED = 0
# Two outputs "match" at 1e-6; an adapter's effect must be far above that.
EXACT = 1e-6
VISIBLE = 1e-3


def _sd_unet():
    return tiny_sd_components(SEED)["unet"]


def _svd_unet():
    return tiny_svd_components(SEED)["unet"]


def _sd_inputs():
    g = torch.Generator().manual_seed(1)
    sample = torch.randn(2, 4, 16, 16, generator=g)
    return sample, torch.tensor([10, 700]), torch.randn(2, 7, 32, generator=g)


def _svd_inputs():
    g = torch.Generator().manual_seed(1)
    sample = torch.randn(1, 3, 8, 16, 16, generator=g)  # (B, F, 4 noisy + 4 image latent channels, H, W)
    added_time_ids = torch.tensor([[6.0, 127.0, 0.02]])  # fps - 1, motion_bucket_id, noise_aug_strength
    return sample, torch.tensor([10.0]), torch.randn(1, 1, 32, generator=g), added_time_ids


UNETS = {"sd": (_sd_unet, _sd_inputs), "svd": (_svd_unet, _svd_inputs)}


@pytest.fixture(autouse=True)
def _seeded():
    """add_lora draws lora_A from the global stream: seed it per test, and give the caller's back."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        yield


@pytest.fixture(params=sorted(UNETS))
def kind(request):
    return request.param


@torch.no_grad()
def _out(unet, inputs):
    return unet(*inputs).sample


def _diff(a, b) -> float:
    return (a - b).abs().max().item()


def _train(unet, name, seed):
    """Stand-in for training: move adapter ``name``'s weights by seeded noise."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, param in unet.named_parameters():
            if f".{name}." in key:
                param.add_(0.05 * torch.randn(param.shape, generator=g))


def _adapter_weights(unet, name):
    return get_peft_model_state_dict(unet, adapter_name=name)


def _assert_same_tensors(a: dict, b: dict):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def _structure(model):
    return [(name, type(module).__name__) for name, module in model.named_modules()]


def test_trained_adapter_saved_and_loaded_into_fresh_unet_gives_same_output(kind, tmp_path):
    make, inputs = UNETS[kind]
    unet = make()
    base = _out(unet, inputs())
    modules = lora.add_lora(unet, "y_lora", rank=4)
    # The default targets: every attention projection, and nothing else.
    assert modules and all(m.endswith((".to_k", ".to_q", ".to_v", ".to_out.0")) for m in modules)
    # Ready to train: the UNet's own weights frozen, the adapter's trainable.
    trainable = {key for key, param in unet.named_parameters() if param.requires_grad}
    assert trainable and all(".y_lora." in key for key in trainable)
    assert len(trainable) == 2 * len(modules)
    _train(unet, "y_lora", seed=3)
    trained = _out(unet, inputs())
    assert _diff(trained, base) > VISIBLE

    file = lora.save_lora(unet, "y_lora", tmp_path)
    assert file == tmp_path / "y_lora.safetensors"
    fresh = make()
    assert lora.load_lora(fresh, file) == "y_lora"  # the name comes from the file
    assert lora.list_loras(fresh) == ["y_lora"] and lora.active_loras(fresh) == ["y_lora"]
    _assert_same_tensors(_adapter_weights(fresh, "y_lora"), _adapter_weights(unet, "y_lora"))
    loaded = _out(fresh, inputs())
    print(
        f"{kind}: trained vs base {_diff(trained, base):.3g}, loaded vs trained {_diff(loaded, trained):.3g}"
    )
    assert _diff(loaded, trained) <= EXACT


def test_file_is_diffusers_format_with_the_config_in_its_header(tmp_path):
    unet = _sd_unet()
    lora.add_lora(unet, "y_lora", rank=4, alpha=8)
    file = lora.save_lora(unet, "y_lora", tmp_path / "sub" / "adapter.safetensors")
    with safe_open(str(file), framework="pt") as reader:
        keys, header = list(reader.keys()), reader.metadata()
    assert len(keys) == 2 * len(lora.lora_modules(unet, "y_lora"))
    assert all(
        k.startswith("unet.") and (k.endswith(".lora.down.weight") or k.endswith(".lora.up.weight"))
        for k in keys
    )
    config = json.loads(header["lora_adapter_metadata"])
    assert config["unet.r"] == 4 and config["unet.lora_alpha"] == 8
    assert sorted(config["unet.target_modules"]) == sorted(lora.DEFAULT_TARGETS)
    assert json.loads(header["kinema_lora"]) == {"name": "y_lora", "prefix": "unet"}


@pytest.mark.parametrize("targets", [lora.DEFAULT_TARGETS, ("to_q", "proj_in")], ids=["attention", "mixed"])
@pytest.mark.parametrize("by_folder", [False, True], ids=["file", "folder"])
def test_diffusers_load_lora_weights_reads_our_sd_file(tmp_path, targets, by_folder):
    # alpha = 2 * rank: without the config in the header diffusers would assume alpha = rank and differ.
    unet = _sd_unet()
    lora.add_lora(unet, "y_lora", rank=4, alpha=8, target_modules=targets)
    _train(unet, "y_lora", seed=3)
    file = lora.save_lora(unet, "y_lora", tmp_path)

    ours = _sd_unet()
    lora.load_lora(ours, file)
    pipe = StableDiffusionPipeline(**tiny_sd_components(SEED))
    pipe.load_lora_weights(str(tmp_path if by_folder else file), adapter_name="y_lora")
    assert pipe.unet.peft_config["y_lora"].lora_alpha == 8
    _assert_same_tensors(_adapter_weights(pipe.unet, "y_lora"), _adapter_weights(ours, "y_lora"))
    theirs_out, ours_out = _out(pipe.unet, _sd_inputs()), _out(ours, _sd_inputs())
    print(f"diffusers loader vs ours ({targets}): {_diff(theirs_out, ours_out):.3g}")
    assert _diff(theirs_out, ours_out) <= EXACT
    assert _diff(ours_out, _out(_sd_unet(), _sd_inputs())) > VISIBLE


def test_file_written_by_diffusers_without_config_loads(tmp_path):
    # What the research scripts wrote: peft weights -> diffusers keys -> save_lora_weights, no header config.
    unet = _sd_unet()
    lora.add_lora(unet, "y_lora", rank=4)
    _train(unet, "y_lora", seed=3)
    weights = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet, adapter_name="y_lora"))
    StableDiffusionPipeline.save_lora_weights(tmp_path, unet_lora_layers=weights)

    fresh = _sd_unet()
    assert lora.load_lora(fresh, tmp_path, name="y_lora") == "y_lora"
    assert fresh.peft_config["y_lora"].r == 4 and fresh.peft_config["y_lora"].lora_alpha == 4
    assert _diff(_out(fresh, _sd_inputs()), _out(unet, _sd_inputs())) <= EXACT


def test_disable_enable_and_delete(kind):
    make, inputs = UNETS[kind]
    unet = make()
    # Frozen as add_lora leaves it: trainable and frozen weights can take different CPU matmul paths (1.2e-6
    # apart in the SVD UNet with identical weights), and this test asserts bit-equality.
    unet.requires_grad_(False)
    base = _out(unet, inputs())
    structure, weights = _structure(unet), {k: v.clone() for k, v in unet.state_dict().items()}
    lora.add_lora(unet, "y_lora")
    _train(unet, "y_lora", seed=3)
    adapted = _out(unet, inputs())
    assert _diff(adapted, base) > VISIBLE

    lora.set_lora_enabled(unet, False)
    disabled = _out(unet, inputs())
    lora.set_lora_enabled(unet, True)
    enabled = _out(unet, inputs())
    print(
        f"{kind}: disabled vs base {_diff(disabled, base):.3g}, re-enabled vs adapted {_diff(enabled, adapted):.3g}"
    )
    assert torch.equal(disabled, base)
    assert torch.equal(enabled, adapted)
    assert lora.active_loras(unet) == ["y_lora"]

    lora.delete_lora(unet, "y_lora")
    assert lora.list_loras(unet) == [] and not hasattr(unet, "peft_config")
    assert _structure(unet) == structure
    _assert_same_tensors(unet.state_dict(), weights)
    assert not any(p.requires_grad for p in unet.parameters())  # still frozen, as peft leaves it
    assert torch.equal(_out(unet, inputs()), base)


def test_diffusers_adapter_methods_work_on_our_sd_adapters():
    unet = _sd_unet()
    base = _out(unet, _sd_inputs())
    lora.add_lora(unet, "y_lora")
    _train(unet, "y_lora", seed=3)
    unet.disable_adapters()  # needs diffusers' "adapters loaded" flag, which add_lora sets
    assert torch.equal(_out(unet, _sd_inputs()), base)


def test_load_onto_existing_adapter_replaces_its_weights(kind, tmp_path):
    make, inputs = UNETS[kind]
    trained = make()
    lora.add_lora(trained, "y_lora")
    _train(trained, "y_lora", seed=3)
    file = lora.save_lora(trained, "y_lora", tmp_path)

    resumed = make()
    lora.add_lora(resumed, "y_lora")
    _train(resumed, "y_lora", seed=4)  # other weights, same shapes
    assert _diff(_out(resumed, inputs()), _out(trained, inputs())) > VISIBLE
    assert lora.load_lora(resumed, file) == "y_lora"
    assert lora.list_loras(resumed) == ["y_lora"]
    _assert_same_tensors(_adapter_weights(resumed, "y_lora"), _adapter_weights(trained, "y_lora"))
    assert _diff(_out(resumed, inputs()), _out(trained, inputs())) <= EXACT


def test_two_adapters_coexist_and_switch(kind, tmp_path):
    make, inputs = UNETS[kind]
    unet = make()
    unet.requires_grad_(False)  # as add_lora leaves it (see test_disable_enable_and_delete)
    base = _out(unet, inputs())
    y_modules = lora.add_lora(unet, "y_lora")
    # Restricted by a regex over module paths, as the joint patch does for its own layers; proj_in is a
    # layer y_lora does not have.
    xy_modules = lora.add_lora(unet, "xy_lora", rank=2, target_modules=r".*\.(attn1\.to_q|proj_in)")
    assert 0 < len(xy_modules) < len(y_modules)
    assert all(m.endswith((".attn1.to_q", ".proj_in")) for m in xy_modules)
    assert any(m.endswith(".proj_in") for m in xy_modules)
    _train(unet, "y_lora", seed=3)
    _train(unet, "xy_lora", seed=5)
    assert lora.list_loras(unet) == ["y_lora", "xy_lora"]
    assert lora.active_loras(unet) == ["y_lora", "xy_lora"]
    both = _out(unet, inputs())

    y_file = lora.save_lora(unet, "y_lora", tmp_path)
    xy_file = lora.save_lora(unet, "xy_lora", tmp_path)
    with safe_open(str(xy_file), framework="pt") as reader:
        assert len(list(reader.keys())) == 2 * len(xy_modules)  # only its own weights

    only_y = make()
    lora.load_lora(only_y, y_file)
    lora.set_active_loras(unet, ["y_lora"])
    assert lora.active_loras(unet) == ["y_lora"]
    assert _diff(_out(unet, inputs()), _out(only_y, inputs())) <= EXACT
    assert _diff(_out(unet, inputs()), both) > VISIBLE
    lora.set_active_loras(unet, [])
    assert torch.equal(_out(unet, inputs()), base)
    lora.set_active_loras(unet, ["y_lora", "xy_lora"], weights=[0.0, 0.0])
    assert torch.equal(_out(unet, inputs()), base)
    lora.set_active_loras(unet, ["y_lora", "xy_lora"])
    assert _diff(_out(unet, inputs()), both) <= EXACT

    # Both into a fresh model from their files; deleting one keeps the other intact.
    fresh = make()
    lora.load_lora(fresh, tmp_path, name="y_lora")
    lora.load_lora(fresh, tmp_path, name="xy_lora")
    assert lora.active_loras(fresh) == ["y_lora", "xy_lora"]
    assert _diff(_out(fresh, inputs()), both) <= EXACT
    lora.delete_lora(fresh, "xy_lora")
    assert lora.list_loras(fresh) == ["y_lora"]
    assert _structure(fresh) == _structure(only_y)  # proj_in layers unwrapped again
    assert _diff(_out(fresh, inputs()), _out(only_y, inputs())) <= EXACT


def test_loading_leaves_the_global_random_stream_alone(tmp_path):
    unet = _sd_unet()
    lora.add_lora(unet, "y_lora")
    file = lora.save_lora(unet, "y_lora", tmp_path)
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    lora.load_lora(_sd_unet(), file)
    assert torch.equal(torch.rand(3), expected)


# -- errors ------------------------------------------------------------------------------------------


@pytest.fixture
def sd_file(tmp_path):
    unet = _sd_unet()
    lora.add_lora(unet, "y_lora", rank=4)
    _train(unet, "y_lora", seed=3)
    return lora.save_lora(unet, "y_lora", tmp_path / "y_lora.safetensors")


def test_missing_and_unreadable_files_raise_input_error(tmp_path, sd_file):
    unet = _sd_unet()
    with pytest.raises(InputError, match="does not exist"):
        lora.load_lora(unet, tmp_path / "nothing.safetensors")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds 0"):
        lora.load_lora(unet, tmp_path / "empty")
    (tmp_path / "two").mkdir()
    for name in ("a", "b"):
        (tmp_path / "two" / f"{name}.safetensors").write_bytes(sd_file.read_bytes())
    with pytest.raises(InputError, match="holds 2"):
        lora.load_lora(unet, tmp_path / "two")
    assert lora.load_lora(unet, tmp_path / "two", name="b") == "b"  # a name picks NAME.safetensors

    pickled = tmp_path / "weights.pt"
    torch.save({"unet.x.lora_A.weight": torch.zeros(1)}, pickled)
    text = tmp_path / "notes.safetensors"
    text.write_text("not weights")
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(sd_file.read_bytes()[:-100])
    for bad in (pickled, text, truncated):
        with pytest.raises(InputError, match="not a readable safetensors"):
            lora.load_lora(_sd_unet(), bad)

    not_lora = tmp_path / "model.safetensors"
    save_file({"unet.conv_in.weight": torch.zeros(32, 4, 3, 3)}, str(not_lora))
    with pytest.raises(InputError, match="not a LoRA weight"):
        lora.load_lora(_sd_unet(), not_lora)


def test_mismatched_files_raise_and_leave_the_model_unchanged(sd_file):
    # An SD file into the SVD UNet: the targets match modules there, but not these ones.
    svd = _svd_unet()
    base = _out(svd, _svd_inputs())
    with pytest.raises(
        InputError, match="does not fit adapter 'y_lora' of this UNetSpatioTemporalConditionModel"
    ):
        lora.load_lora(svd, sd_file)
    assert lora.list_loras(svd) == [] and not hasattr(svd, "peft_config")
    assert all(p.requires_grad for p in svd.parameters())
    assert _structure(svd) == _structure(_svd_unet())
    assert torch.equal(_out(svd, _svd_inputs()), base)

    # Onto an existing adapter of another rank, or over other modules: its weights stay as they were.
    for kwargs, message in (
        ({"rank": 8}, "r 4 in the file, 8 in the model"),
        ({"target_modules": ["to_q"]}, "have no place"),
    ):
        unet = _sd_unet()
        lora.add_lora(unet, "y_lora", **kwargs)
        before = {k: v.clone() for k, v in _adapter_weights(unet, "y_lora").items()}
        with pytest.raises(InputError, match=message):
            lora.load_lora(unet, sd_file)
        _assert_same_tensors(_adapter_weights(unet, "y_lora"), before)


def test_bad_arguments_raise_input_error(tmp_path):
    unet = _sd_unet()
    lora.add_lora(unet, "y_lora")
    with pytest.raises(InputError, match="already has"):
        lora.add_lora(unet, "y_lora")
    for name in ("a.b", "", "weight", "1st"):
        with pytest.raises(InputError, match="names are"):
            lora.add_lora(unet, name)
    with pytest.raises(InputError, match="rank"):
        lora.add_lora(unet, "r0", rank=0)
    with pytest.raises(InputError, match="init"):
        lora.add_lora(unet, "pissa", init="pissa")
    with pytest.raises(InputError, match="Cannot add"):
        lora.add_lora(unet, "nowhere", target_modules=r".*\.no_such_layer")
    assert lora.list_loras(unet) == ["y_lora"]  # failed adds leave nothing behind
    for call in (
        lambda: lora.save_lora(unet, "other", tmp_path),
        lambda: lora.delete_lora(unet, "other"),
        lambda: lora.set_active_loras(unet, ["other"]),
    ):
        with pytest.raises(InputError, match="no LoRA adapter named 'other'"):
            call()
    with pytest.raises(InputError, match="safetensors"):
        lora.save_lora(unet, "y_lora", tmp_path / "adapter.pt")
    with pytest.raises(InputError, match="one per adapter"):
        lora.set_active_loras(unet, ["y_lora"], weights=[1.0, 0.5])
