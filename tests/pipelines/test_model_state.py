"""core.models.state: what `attached` puts on a shared module comes off exactly, and concurrent requests with
different weights never see each other's state.

Tiny SD (64x64, 2 steps) on a UNet of its own (not the process-wide cached one), joint-weight folders with
random non-zero joint layers and a y_lora, and a random LoRA file.
"""

import threading

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline

from core import lora
from core.errors import InputError
from core.models import tiny_sd_components
from core.models.state import JointWeights, LoraWeights, attached
from core.patches.joint import ORDINARY_TARGETS, joint_patch_of
from core.pipelines.joint_sd import JointSDPipeline

SIDE = 64
SAMPLE = torch.Generator().manual_seed(0)
LATENTS = torch.randn(2, 4, SIDE // 2, SIDE // 2, generator=SAMPLE)
TEXT = torch.randn(2, 77, 32, generator=SAMPLE)


def _joint_folder(folder, seed: int):
    """A JointPatch.save folder with random joint layers and y_lora (weights a request can tell apart)."""
    pipe = JointSDPipeline.from_stock(StableDiffusionPipeline(**tiny_sd_components()))
    patch = pipe.joint_patch
    lora.add_lora(pipe.unet, "y_lora", 4, target_modules=ORDINARY_TARGETS, init=False)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in patch.joint_parameters():
            param.copy_(0.05 * torch.randn(param.shape, generator=generator))
    patch.save(folder)
    return str(folder)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("joint")
    return [_joint_folder(root / name, seed) for seed, name in enumerate(("a", "b"))]


@pytest.fixture(scope="module")
def lora_file(tmp_path_factory):
    unet = tiny_sd_components()["unet"]
    lora.add_lora(unet, "interp", target_modules=ORDINARY_TARGETS, init=False)
    return str(lora.save_lora(unet, "interp", tmp_path_factory.mktemp("lora") / "interp.safetensors"))


@pytest.fixture
def pipe():
    """A joint pipeline over tiny SD modules of its own, nothing attached."""
    pipe = JointSDPipeline(**tiny_sd_components())
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _forward(unet) -> torch.Tensor:
    with torch.no_grad():
        return unet(LATENTS, 500, encoder_hidden_states=TEXT).sample


def _snapshot(unet) -> tuple[dict, dict, torch.Tensor]:
    state = {key: value.clone() for key, value in unet.state_dict().items()}
    flags = {name: param.requires_grad for name, param in unet.named_parameters()}
    return state, flags, _forward(unet)


def _assert_restored(unet, snapshot) -> None:
    state, flags, output = snapshot
    now = unet.state_dict()
    assert now.keys() == state.keys()
    assert all(torch.equal(now[key], state[key]) for key in state)
    assert {name: param.requires_grad for name, param in unet.named_parameters()} == flags
    assert torch.equal(_forward(unet), output)  # bit for bit
    assert joint_patch_of(unet) is None and lora.list_loras(unet) == []
    assert not unet._forward_hooks and all(not m._forward_hooks for m in unet.modules())


def _generate(pipe, folder: str, seed: int = 3):
    with attached(pipe.unet, JointWeights(folder)):
        out = pipe("a chair", height=SIDE, width=SIDE, num_inference_steps=2, seed=seed, output_type="np")
    return out.images, out.depth


def test_attached_restores_the_module_exactly(pipe, folders, lora_file):
    before = _snapshot(pipe.unet)
    with attached(pipe.unet, JointWeights(folders[0]), LoraWeights(lora_file, "interp")) as (patch, name):
        assert joint_patch_of(pipe.unet) is patch and name == "interp"
        assert set(lora.list_loras(pipe.unet)) == {"y_lora", "interp"}
        assert not torch.equal(_forward(pipe.unet), before[2])  # the interp LoRA changes every entry
    _assert_restored(pipe.unet, before)


def test_nested_blocks_restore_the_state_of_their_entry(pipe, folders, lora_file):
    before = _snapshot(pipe.unet)
    with attached(pipe.unet, JointWeights(folders[0])) as (patch,):
        patched = _snapshot(pipe.unet)  # parked: the stock output
        assert torch.equal(patched[2], before[2])
        with attached(pipe.unet, LoraWeights(lora_file, "interp")):
            assert lora.list_loras(pipe.unet) == ["y_lora", "interp"]
        assert lora.list_loras(pipe.unet) == ["y_lora"] and joint_patch_of(pipe.unet) is patch
        state, flags, output = patched
        assert {n: p.requires_grad for n, p in pipe.unet.named_parameters()} == flags
        assert torch.equal(_forward(pipe.unet), output)
    _assert_restored(pipe.unet, before)


def test_an_exception_in_the_block_or_a_failed_attachment_restores_the_module(pipe, folders, tmp_path):
    before = _snapshot(pipe.unet)
    with pytest.raises(RuntimeError, match="request failed"):
        with attached(pipe.unet, JointWeights(folders[0])):
            raise RuntimeError("request failed")
    _assert_restored(pipe.unet, before)
    # The joint patch attaches, then the LoRA file does not load: the patch comes off again.
    (tmp_path / "broken.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(InputError):
        with attached(
            pipe.unet, JointWeights(folders[1]), LoraWeights(str(tmp_path / "broken.safetensors"), "x")
        ):
            pytest.fail("the block must not run")
    _assert_restored(pipe.unet, before)
    # A joint-weights file that does not load leaves nothing of the patch behind.
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "joint_layers.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(InputError, match="not a readable joint-patch file"):
        with attached(pipe.unet, JointWeights(str(tmp_path / "bad"))):
            pytest.fail("the block must not run")
    _assert_restored(pipe.unet, before)


def test_attaching_does_not_touch_the_callers_random_stream(pipe):
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    with attached(pipe.unet, JointWeights(fresh_lora_rank=4)):
        assert torch.equal(torch.rand(3), expected)


def test_an_adapter_name_in_use_is_refused(pipe, lora_file):
    with attached(pipe.unet, LoraWeights(lora_file, "interp")):
        with pytest.raises(InputError, match="already carries a LoRA adapter named 'interp'"):
            with attached(pipe.unet, LoraWeights(lora_file, "interp")):
                pass
        assert lora.list_loras(pipe.unet) == ["interp"]


def test_concurrent_requests_with_different_joint_weights_get_their_own_output(pipe, folders):
    """Two threads (two Gradio requests) on one shared UNet, each with its own joint weights: each output is
    the output of the same request run alone."""
    alone = [_generate(pipe, folder) for folder in folders]
    assert np.abs(alone[0][1] - alone[1][1]).max() > 1e-3  # the weights matter
    results: dict[int, tuple] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def request(i: int) -> None:
        try:
            start.wait()
            for _ in range(2):  # interleave with the other thread's runs
                results[i] = _generate(pipe, folders[i])
        except BaseException as err:  # noqa: BLE001 - reported by the main thread
            errors.append(err)

    threads = [threading.Thread(target=request, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors and not any(thread.is_alive() for thread in threads)
    for i in range(2):
        np.testing.assert_array_equal(results[i][0], alone[i][0])
        np.testing.assert_array_equal(results[i][1], alone[i][1])
    assert joint_patch_of(pipe.unet) is None


def test_the_lock_keeps_another_thread_out_until_the_block_ends(pipe):
    entered = threading.Event()

    def other_request() -> None:
        with attached(pipe.unet):
            entered.set()

    with attached(pipe.unet, JointWeights()):
        thread = threading.Thread(target=other_request)
        thread.start()
        assert not entered.wait(0.2)  # the other thread waits for the module
        with attached(pipe.unet):  # the same thread may nest
            pass
    assert entered.wait(5)
    thread.join()
