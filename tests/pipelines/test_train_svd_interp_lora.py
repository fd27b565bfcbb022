"""python -m core.training.svd_interp_lora as a subprocess on tiny SVD and synthetic moving-sprite videos, and
its EDM parametrisation and conditioning checked against diffusers' SVD scheduler and our svd-lora pipeline.

Clips: 4 frames of 32x32 (16x16 latents) from 8-frame Panda-layout videos. One 20-step run (module fixture) is
checked for loss, checkpoints and validation; a second run resumes from its checkpoint-15; the saved LoRA is
reloaded into a fresh svd-lora pipeline.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch
from training_script import run_script

from core.data.synthetic import write_video_folder
from core.imaging import from_signed
from core.lora import DEFAULT_TARGETS, load_lora
from core.models import tiny_svd_components
from core.motion import motion_bucket_from_video
from core.pipelines.svd_interpolate import SVDInterpolatePipeline
from core.training import svd_interp_lora as svd_train
from core.training.common import TRAINER_STATE_NAME

# One thread: the tiny models gain nothing from more, and a loaded 2-core machine runs them 4x slower with 2.
WEIGHTS = f"{svd_train.ADAPTER_NAME}.safetensors"
SIZE, FRAMES = 32, 4
# The loss of one step depends mostly on its sigma (about 1 at small sigma, near 0 at large); ln(sigma) spread
# 0.5 instead of 1.6 keeps 20 steps comparable. As for SD, the convolutions make the random tiny UNet learn
# fast: first/last quarter 0.23 -> 0.12 (attention only: 0.30 -> 0.24 at lr 3e-2).
TARGETS = [*DEFAULT_TARGETS, "conv_in", "conv1", "conv2", "conv_out"]
FLAGS = [
    "--pretrained_model", "tiny",
    "--resolution", str(SIZE),
    "--width", str(SIZE),
    "--num_frames", str(FRAMES),
    "--train_batch_size", "2",
    "--max_train_steps", "20",
    "--learning_rate", "3e-2",
    "--p_std", "0.5",
    "--conditioning_dropout", "0",
    "--lora_targets", *TARGETS,
    "--checkpointing_steps", "5",
    "--checkpoints_total_limit", "2",
    "--validation_steps", "10",
    "--validation_inference_steps", "2",
    "--report_to", "none",
    "--seed", "0",
]  # fmt: skip


def _train(data_dir: Path, output_dir: Path, *extra: str) -> dict:
    return run_script(
        "core.training.svd_interp_lora",
        "--data_dir",
        str(data_dir),
        "--output_dir",
        str(output_dir),
        *FLAGS,
        *extra,
    )


def _lora_file(folder: Path) -> dict[str, torch.Tensor]:
    return safetensors.torch.load_file(str(folder / WEIGHTS))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    write_video_folder(root, n=4, layout="panda", size=(SIZE, SIZE), n_frames=8, fps=8.0, seed=0)
    return root


@pytest.fixture(scope="module")
def full_run(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("svd_interp_lora")
    return _train(data_dir, out), out


def test_loss_decreases(full_run):
    summary, _ = full_run
    curve = summary["loss_curve"]
    first, last = np.mean(curve[:5]), np.mean(curve[-5:])
    print(
        f"svd_interp_lora loss: first quarter {first:.4f}, last quarter {last:.4f} ({summary['seconds_per_step']:.2f} s/step)"
    )
    assert len(curve) == 20 and summary["steps"] == 20
    assert last < 0.75 * first


def test_checkpoints_and_validation_video(full_run):
    summary, out = full_run
    assert summary["checkpoints"] == ["checkpoint-15", "checkpoint-20"]
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-15", "checkpoint-20"]
    state = json.loads((out / "checkpoint-15" / TRAINER_STATE_NAME).read_text())
    assert state["global_step"] == 15 and state["loss_curve"] == summary["loss_curve"][:15]
    final, last = _lora_file(out), _lora_file(out / "checkpoint-20")
    assert final.keys() == last.keys() and all(torch.equal(final[k], last[k]) for k in final)
    assert all(k.startswith("unet.") and ".lora" in k for k in final)
    assert sum(v.numel() for v in final.values()) == summary["trained_parameters"]
    assert summary["validated_at"] == [10, 20]
    folder = out / "validation" / "step-20"
    sample = np.load(folder / "sample.npz")
    assert sample["frames"].shape == (FRAMES, SIZE, SIZE, 3) and sample["truth"].shape == (
        FRAMES,
        SIZE,
        SIZE,
        3,
    )
    assert np.array_equal(sample["head"], sample["truth"][0]) and np.array_equal(
        sample["tail"], sample["truth"][-1]
    )
    metrics = json.loads((folder / "metrics.json").read_text())
    assert (metrics["fps"], metrics["motion_bucket_id"], metrics["num_frames"]) == (7, 127, FRAMES)
    assert metrics["inbetween_mae"] > 0 and metrics["crossfade_mae"] > 0
    assert (folder / "sample.mp4").stat().st_size > 0


def test_resume_latest_reaches_the_same_weights(full_run, data_dir, tmp_path):
    summary, out = full_run
    resumed_dir = tmp_path / "resumed"
    resumed_dir.mkdir()
    shutil.copytree(out / "checkpoint-15", resumed_dir / "checkpoint-15")  # as if the run stopped after 15
    resumed = _train(data_dir, resumed_dir, "--resume_from_checkpoint", "latest", "--validation_steps", "0")
    assert (resumed["start_step"], resumed["steps"]) == (15, 20)
    assert resumed["loss_curve"] == summary["loss_curve"]
    expected, got = _lora_file(out), _lora_file(resumed_dir)
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key


def _interpolate(pipe, sample, metrics) -> np.ndarray:
    settings = ("fps", "motion_bucket_id", "noise_aug_strength", "num_inference_steps")
    return pipe(
        sample["head"],
        sample["tail"],
        mode="svd-lora",
        num_frames=metrics["num_frames"],
        min_guidance_scale=metrics["min_guidance_scale"],
        max_guidance_scale=metrics["max_guidance_scale"],
        generator=torch.Generator().manual_seed(metrics["seed"]),
        output_type="np",
        **{name: metrics[name] for name in settings},
    ).frames[0]


def _fresh_pipe() -> SVDInterpolatePipeline:
    pipe = SVDInterpolatePipeline(**tiny_svd_components())
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_saved_lora_reloads_into_the_interpolation_pipeline_exactly(full_run):
    _, out = full_run
    folder = out / "validation" / "step-20"
    sample, metrics = np.load(folder / "sample.npz"), json.loads((folder / "metrics.json").read_text())
    pipe = _fresh_pipe()
    assert load_lora(pipe.unet, out) == svd_train.ADAPTER_NAME
    frames = _interpolate(pipe, sample, metrics)
    base = _interpolate(_fresh_pipe(), sample, metrics)
    print(
        f"svd_interp_lora frames: reloaded vs validation {np.abs(frames - sample['frames']).max():.3g}, "
        f"LoRA vs base {np.abs(frames - base).max():.3g}"
    )
    np.testing.assert_allclose(frames, sample["frames"], atol=1e-5, rtol=0)  # other process and thread count
    assert np.abs(frames - base).max() > 1e-2  # the trained LoRA is there to be loaded


# -- the parametrisation, in process -------------------------------------------------------------------


def test_training_conditions_the_unet_as_the_svd_lora_pipeline(data_dir, tmp_path):
    """One training loss and one pipeline step see the same conditioning channels, embedding and time ids."""
    flags = ["--output_dir", str(tmp_path), "--data_dir", str(data_dir), "--motion_bucket_from_flow"]
    flags += ["--noise_aug_strength", "0"]  # no random draw in the conditioning latents: comparable exactly
    args = svd_train.build_parser().parse_args([*FLAGS, *flags])
    task = svd_train.build_task(args, accelerator=None)
    seen = []
    hook = task.models["unet"].register_forward_pre_hook(
        lambda module, inputs, kwargs: seen.append(
            (inputs[0], kwargs["encoder_hidden_states"], kwargs["added_time_ids"])
        ),
        with_kwargs=True,
    )
    item = task.dataset[1]
    clip_uint8 = from_signed(item["pixel_values"])
    batch = task.collate_fn([item])
    torch.manual_seed(0)
    task.compute_loss(batch, task.models)

    pipe = SVDInterpolatePipeline(**{**tiny_svd_components(), "unet": task.models["unet"]})
    pipe.set_progress_bar_config(disable=True)
    bucket = motion_bucket_from_video(clip_uint8, item["fps"])
    pipe(clip_uint8[0], clip_uint8[-1], mode="svd-lora", num_frames=FRAMES, num_inference_steps=1, fps=7,
         motion_bucket_id=bucket, noise_aug_strength=0.0, output_type="latent")  # fmt: skip
    hook.remove()
    (train_input, train_embedding, train_ids), (pipe_input, pipe_embedding, pipe_ids) = seen
    # The pipeline batches [unconditional, conditional]; training is the conditional half.
    torch.testing.assert_close(train_input[:, :, 4:], pipe_input[1:, :, 4:], atol=1e-6, rtol=0)
    torch.testing.assert_close(train_embedding, pipe_embedding[1:], atol=1e-6, rtol=0)
    assert torch.equal(train_ids, pipe_ids[1:])
    assert train_ids.tolist() == [[6.0, float(bucket), 0.0]]  # [fps - 1, motion bucket, noise augmentation]
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
    argv = ["--output_dir", str(tmp_path / "out"), "--data_dir", str(data_dir), "--pretrained_model", "tiny"]
    assert svd_train.main([*argv, *extra]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
