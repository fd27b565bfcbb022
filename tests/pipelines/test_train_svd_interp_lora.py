"""python -m core.training.svd_interp_lora as a subprocess on tiny SVD and synthetic moving-sprite videos, and
its EDM parametrisation and conditioning checked against diffusers' SVD scheduler and our svd-lora pipeline.

Clips: 4 frames of 32x32 (16x16 latents) from 8-frame Panda-layout videos. One 20-step run (module fixture) is
checked for loss, checkpoints and validation; a second run resumes from its checkpoint-15; the saved LoRA is
reloaded into a fresh svd-lora pipeline.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch
from svd_training import (
    FRAMES,
    LORA_RUN_FLAGS,
    SIZE,
    TINY_SVD_FLAGS,
    assert_conditioned_alike,
    module_fixtures,
    sampling_kwargs,
    tiny_pipe,
    unet_calls,
)
from training_script import (
    TrainingScript,
    assert_checkpoints,
    assert_loss_falls,
    assert_resume_reaches_the_same_weights,
    bad_flags_error,
)

from core.imaging import from_signed
from core.lora import load_lora
from core.motion import motion_bucket_from_video
from core.pipelines.svd_interpolate import SVDInterpolatePipeline
from core.training import svd_interp_lora as svd_train


def _lora_file(folder: Path) -> dict[str, torch.Tensor]:
    return safetensors.torch.load_file(str(folder / f"{svd_train.ADAPTER_NAME}.safetensors"))


SCRIPT = TrainingScript(svd_train, (*TINY_SVD_FLAGS, *LORA_RUN_FLAGS), _lora_file)
data_dir, full_run = module_fixtures(SCRIPT)


def test_loss_decreases(full_run):
    assert_loss_falls(SCRIPT, full_run[0], below=0.75)


def test_checkpoints_and_validation_video(full_run):
    summary, out = full_run
    final = assert_checkpoints(SCRIPT, summary, out, kept=(15, 20))
    assert all(k.startswith("unet.") and ".lora" in k for k in final)
    assert summary["validated_at"] == [10, 20]
    folder = out / "validation" / "step-20"
    sample = np.load(folder / "sample.npz")
    assert sample["frames"].shape == sample["truth"].shape == (FRAMES, SIZE, SIZE, 3)
    assert np.array_equal(sample["head"], sample["truth"][0]) and np.array_equal(
        sample["tail"], sample["truth"][-1]
    )
    metrics = json.loads((folder / "metrics.json").read_text())
    assert (metrics["fps"], metrics["motion_bucket_id"], metrics["num_frames"]) == (7, 127, FRAMES)
    assert metrics["inbetween_mae"] > 0 and metrics["crossfade_mae"] > 0
    assert (folder / "sample.mp4").stat().st_size > 0


def test_resume_latest_reaches_the_same_weights(full_run, data_dir, tmp_path):
    assert_resume_reaches_the_same_weights(SCRIPT, full_run, data_dir, tmp_path / "resumed", from_step=15)


def _interpolate(pipe, sample, metrics) -> np.ndarray:
    return pipe(
        sample["head"],
        sample["tail"],
        mode="svd-lora",
        num_frames=metrics["num_frames"],
        output_type="np",
        **sampling_kwargs(metrics),
    ).frames[0]


def test_saved_lora_reloads_into_the_interpolation_pipeline_exactly(full_run):
    _, out = full_run
    folder = out / "validation" / "step-20"
    sample, metrics = np.load(folder / "sample.npz"), json.loads((folder / "metrics.json").read_text())
    pipe = tiny_pipe(SVDInterpolatePipeline)
    assert load_lora(pipe.unet, out) == svd_train.ADAPTER_NAME
    frames = _interpolate(pipe, sample, metrics)
    base = _interpolate(tiny_pipe(SVDInterpolatePipeline), sample, metrics)
    print(
        f"svd_interp_lora frames: reloaded vs validation {np.abs(frames - sample['frames']).max():.3g}, "
        f"LoRA vs base {np.abs(frames - base).max():.3g}"
    )
    np.testing.assert_allclose(frames, sample["frames"], atol=1e-5, rtol=0)  # other process and thread count
    assert np.abs(frames - base).max() > 1e-2  # the trained LoRA is there to be loaded


# -- the parametrisation, in process -------------------------------------------------------------------


def test_training_conditions_the_unet_as_the_svd_lora_pipeline(data_dir, tmp_path):
    """One training loss and one pipeline step see the same conditioning channels, embedding and time ids."""
    # No noise augmentation: no random draw in the conditioning latents, so they compare exactly.
    _, task = SCRIPT.task(data_dir, tmp_path, "--motion_bucket_from_flow", "--noise_aug_strength", "0")
    item = task.dataset[1]
    clip_uint8 = from_signed(item["pixel_values"])
    batch = task.collate_fn([item])
    bucket = motion_bucket_from_video(clip_uint8, item["fps"])
    pipe = tiny_pipe(SVDInterpolatePipeline, unet=task.models["unet"])
    with unet_calls(task.models["unet"]) as seen:
        torch.manual_seed(0)
        task.compute_loss(batch, task.models)
        pipe(clip_uint8[0], clip_uint8[-1], mode="svd-lora", num_frames=FRAMES, num_inference_steps=1, fps=7,
             motion_bucket_id=bucket, noise_aug_strength=0.0, output_type="latent")  # fmt: skip
    training, pipeline = seen
    # The pipeline batches [unconditional, conditional]; training is the conditional half.
    assert_conditioned_alike(training, pipeline, half=slice(1, None))
    assert training[2].tolist() == [[6.0, float(bucket), 0.0]]  # the time ids [fps - 1, bucket, noise]
    assert batch["motion_bucket_ids"].tolist() == [bucket]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--num_frames", "2"], "--num_frames must be at least 3"),
        (["--width", "36"], "--width must be a multiple of 8"),
        (["--motion_bucket_id", "300"], "--motion_bucket_id must be in [1, 255]"),
        (["--data_dir", "/no/such/folder"], "--data_dir /no/such/folder is not a folder"),
    ],
)
def test_bad_flags_exit_2_with_a_sentence(data_dir, tmp_path, capsys, extra, message):
    assert message in bad_flags_error(SCRIPT, data_dir, tmp_path / "out", capsys, *extra)
