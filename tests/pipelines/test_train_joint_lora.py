"""python -m core.training.joint_lora run as a real subprocess on synthetic image + depth scenes (tiny SD).

One 20-step run, and a second run that resumes from a copy of the first run's step-10 checkpoint: loss,
checkpoints, exact resume, and the saved weights reproducing the validation samples in a fresh pipeline.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch
from diffusers import StableDiffusionPipeline
from training_script import run_script

from core.data.synthetic import write_image_depth_folder
from core.lora import SUFFIX
from core.models import tiny_sd_components
from core.patches.joint import JOINT_FILE
from core.pipelines.joint_sd import JointSDPipeline
from core.training import joint_lora

PROMPT = "a red sphere"
STEPS, CHECKPOINT_EVERY = 20, 10
SAMPLE = {"height": 32, "width": 32, "num_inference_steps": 2, "guidance_scale": 7.5, "seed": 0}
WEIGHT_FILES = [JOINT_FILE, *(f"{name}{SUFFIX}" for name in ("xy_lora", "yx_lora", "y_lora"))]


def _flags(data_dir: Path, output_dir: Path, *extra: str) -> list[str]:
    return [
        "--pretrained_model", "tiny",
        "--data_dir", str(data_dir),
        "--output_dir", str(output_dir),
        "--resolution", "32",
        "--train_batch_size", "2",
        "--max_train_steps", str(STEPS),
        "--learning_rate", "3e-2",
        "--checkpointing_steps", str(CHECKPOINT_EVERY),
        "--validation_steps", str(STEPS),
        "--validation_prompt", PROMPT,
        "--validation_inference_steps", str(SAMPLE["num_inference_steps"]),
        "--validation_guidance_scale", str(SAMPLE["guidance_scale"]),
        "--validation_scenes", "1",
        "--report_to", "none",
        "--seed", "0",
        *extra,
    ]  # fmt: skip


def _train(*flags: str) -> dict:
    return run_script("core.training.joint_lora", *flags)


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    tensors = {}
    for name in WEIGHT_FILES:
        tensors.update({f"{name}:{k}": v for k, v in safetensors.torch.load_file(str(folder / name)).items()})
    return tensors


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("scenes")
    write_image_depth_folder(root, n=4, size=(32, 32), seed=0)
    return root


@pytest.fixture(scope="module")
def full_run(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("joint_full")
    return _train(*_flags(data_dir, out)), out


@pytest.fixture(scope="module")
def resumed_run(full_run, data_dir, tmp_path_factory):
    """A second run that finds a copy of the first run's checkpoint-10 and resumes it to step 20."""
    _, full_out = full_run
    out = tmp_path_factory.mktemp("joint_resumed")
    shutil.copytree(full_out / f"checkpoint-{CHECKPOINT_EVERY}", out / f"checkpoint-{CHECKPOINT_EVERY}")
    return _train(*_flags(data_dir, out, "--resume_from_checkpoint", "latest")), out


def test_loss_decreases(full_run):
    summary, _ = full_run
    curve = summary["loss_curve"]
    assert summary["task"] == "joint_lora" and summary["steps"] == STEPS and len(curve) == STEPS
    first, last = np.mean(curve[: STEPS // 4]), np.mean(curve[-STEPS // 4 :])
    assert last < 0.97 * first, (first, last)  # measured 1.064 -> 0.996 (x0.936)


def test_checkpoints_and_final_weights_hold_only_the_trained_layers(full_run):
    summary, out = full_run
    assert summary["checkpoints"] == ["checkpoint-10", "checkpoint-20"]
    for folder in (out, out / "checkpoint-10", out / "checkpoint-20"):
        assert all((folder / name).is_file() for name in WEIGHT_FILES), folder
    final = _weights(out)
    assert all(torch.equal(final[k], v) for k, v in _weights(out / "checkpoint-20").items())
    # The joint layers, the three LoRAs, and nothing of SD: exactly the trained parameter count.
    assert summary["trained_parameters"] == sum(v.numel() for v in final.values())
    assert not any(
        torch.equal(final[k], v) for k, v in _weights(out / "checkpoint-10").items() if "lora_B" in k
    )
    joint_keys = [k for k in final if k.startswith(JOINT_FILE)]
    assert joint_keys and all(".joint_attn." in k or ".joint_conv." in k for k in joint_keys)


def test_validation_writes_samples_and_the_depth_figure(full_run):
    summary, out = full_run
    assert summary["validated_at"] == [STEPS]
    folder = out / "validation" / f"step-{STEPS}"
    for name in ("sample_0.png", "depth_0.png", "depth_0_color.png", "sample_0.npz"):
        assert (folder / name).is_file(), name
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["prompts"] == [PROMPT]
    for row in ("image_to_depth vs truth", "flat map vs truth"):
        assert metrics["depth"][row]["absrel"] >= 0 and 0 <= metrics["depth"][row]["delta1"] <= 1


def test_resume_latest_reaches_the_same_steps_and_weights(full_run, resumed_run):
    full_summary, full_out = full_run
    summary, out = resumed_run
    assert (summary["start_step"], summary["steps"]) == (CHECKPOINT_EVERY, STEPS)
    assert summary["resumed_from"] == str(out / f"checkpoint-{CHECKPOINT_EVERY}")
    assert summary["loss_curve"] == full_summary["loss_curve"]
    expected, got = _weights(full_out), _weights(out)
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[k], got[k]) for k in expected)


def test_saved_weights_reproduce_the_validation_samples_exactly(full_run):
    _, out = full_run
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the training process
    try:
        pipe = JointSDPipeline.from_stock(StableDiffusionPipeline(**tiny_sd_components(0)), out)
        pipe.set_progress_bar_config(disable=True)
        sample = pipe(PROMPT, output_type="np", **SAMPLE)
    finally:
        torch.set_num_threads(threads)
    rendered = np.load(out / "validation" / f"step-{STEPS}" / "sample_0.npz")
    np.testing.assert_array_equal(sample.images[0], rendered["image"])
    np.testing.assert_array_equal(sample.depth[0], rendered["depth"])


def test_unusable_flags_exit_with_a_message(data_dir, tmp_path, capsys):
    from accelerate.state import AcceleratorState, GradientState

    cases = [
        (["--data_dir", str(tmp_path / "missing")], "--data_dir"),
        (["--caption_dropout", "1.5"], "--caption_dropout"),
        (["--joint_lora_rank", "0"], "--joint_lora_rank"),
        (["--pretrained_model", str(tmp_path / "no_model")], "model_index.json"),
    ]
    try:
        for extra, needle in cases:
            # argparse keeps the last value of a repeated flag.
            assert joint_lora.main([*_flags(data_dir, tmp_path / "out"), *extra]) == 2
            assert needle in capsys.readouterr().err
    finally:
        # The model check fails inside run_training, after accelerate set up its process-wide state.
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()
