"""python -m core.training.joint_lora run as a real subprocess on synthetic image + depth scenes (tiny SD).

One 20-step run, and a second run that resumes from a copy of the first run's step-10 checkpoint: loss,
checkpoints, exact resume, and the saved weights reproducing the validation samples in a fresh pipeline.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch
from diffusers import StableDiffusionPipeline
from training_script import (
    TrainingScript,
    assert_checkpoints,
    assert_loss_falls,
    assert_resume_reaches_the_same_weights,
    bad_flags_error,
    module_fixtures,
)

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
FLAGS = (
    "--pretrained_model", "tiny",
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
)  # fmt: skip


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    tensors = {}
    for name in WEIGHT_FILES:
        tensors.update({f"{name}:{k}": v for k, v in safetensors.torch.load_file(str(folder / name)).items()})
    return tensors


SCRIPT = TrainingScript(joint_lora, FLAGS, _weights)
data_dir, full_run = module_fixtures(
    SCRIPT, lambda root: write_image_depth_folder(root, n=4, size=(32, 32), seed=0)
)


def test_loss_decreases(full_run):
    summary, _ = full_run
    assert summary["task"] == "joint_lora"
    assert_loss_falls(SCRIPT, summary, below=0.97)  # measured 1.064 -> 0.996 (x0.936)


def test_checkpoints_and_final_weights_hold_only_the_trained_layers(full_run):
    summary, out = full_run
    # Every weight file in the output and both checkpoints (read here); the joint layers, the three LoRAs, and
    # nothing of SD: exactly the trained parameter count.
    final = assert_checkpoints(SCRIPT, summary, out, kept=(CHECKPOINT_EVERY, STEPS))
    assert not any(
        torch.equal(final[k], v)
        for k, v in _weights(out / f"checkpoint-{CHECKPOINT_EVERY}").items()
        if "lora_B" in k
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


def test_resume_latest_reaches_the_same_steps_and_weights(full_run, data_dir, tmp_path):
    assert_resume_reaches_the_same_weights(
        SCRIPT, full_run, data_dir, tmp_path / "resumed", from_step=CHECKPOINT_EVERY
    )


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


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--data_dir", "/no/such/folder"], "--data_dir /no/such/folder is not a folder"),
        (["--caption_dropout", "1.5"], "--caption_dropout must be in [0, 1]"),
        (["--joint_lora_rank", "0"], "--joint_lora_rank must be at least 1"),
    ],
)
def test_unusable_flags_exit_with_a_message(data_dir, tmp_path, capsys, extra, message):
    assert message in bad_flags_error(SCRIPT, data_dir, tmp_path / "out", capsys, *extra)


def test_a_missing_model_exits_with_a_message(data_dir, tmp_path, capsys):
    # Found when the task loads the model, once training has started.
    extra = ("--pretrained_model", str(tmp_path / "no_model"))
    assert "model_index.json" in bad_flags_error(
        SCRIPT, data_dir, tmp_path / "out", capsys, *extra, in_training=True
    )
