"""python -m core.training.svd_flow_controlnet as a subprocess on tiny SVD and synthetic moving-sprite videos, and
its data and conditioning checked in process against the flow ControlNet mode of SVDTrajectoryPipeline.

Clips: 4 frames of 32x32 (16x16 latents) from 8-frame Panda-layout videos, 1-6 tracks each. One 16-step run
(module fixture) is checked for loss, checkpoints and validation; a second run resumes from its checkpoint-12;
the saved output folder is loaded by core.models.load_svd_controlnet and reproduces the validation sample.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch
from svd_training import (
    FRAMES,
    SIZE,
    TINY_SVD_FLAGS,
    assert_conditioned_alike,
    module_fixtures,
    sampling_kwargs,
    tiny_pipe,
)
from training_script import (
    TrainingScript,
    assert_checkpoints,
    assert_loss_falls,
    assert_resume_reaches_the_same_weights,
    bad_flags_error,
)

from core.config import Settings
from core.controlnet_svd import flow_condition
from core.imaging import from_signed
from core.models import clear_cache, load_svd_controlnet
from core.pipelines.svd_trajectory import SVDTrajectoryPipeline
from core.training import svd_flow_controlnet as train

STEPS = 16


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return safetensors.torch.load_file(str(folder / "diffusion_pytorch_model.safetensors"))


# As in svd_training.LORA_RUN_FLAGS: ln(sigma) spread 0.5 keeps the steps' losses comparable; lr 3e-2 makes the
# tiny random ControlNet learn within 16 steps.
SCRIPT = TrainingScript(
    train,
    (
        *TINY_SVD_FLAGS,
        "--min_tracks", "1",
        "--max_tracks", "6",
        "--flow_sigma_px", "3",
        "--train_batch_size", "2",
        "--max_train_steps", str(STEPS),
        "--p_std", "0.5",
        "--conditioning_dropout", "0.1",
        "--checkpointing_steps", "4",
        "--validation_steps", str(STEPS),
    ),
    _weights,
)  # fmt: skip
data_dir, full_run = module_fixtures(SCRIPT)


def test_loss_decreases(full_run):
    assert_loss_falls(SCRIPT, full_run[0], below=0.75)


def test_checkpoints_weights_and_validation(full_run):
    summary, out = full_run
    # Checkpoints and the output folder are ControlNet model folders; the final one is the last checkpoint's.
    final = assert_checkpoints(SCRIPT, summary, out, kept=(12, STEPS))
    config = json.loads((out / "config.json").read_text())
    assert config["_class_name"] == "SVDFlowControlNet" and config["flow_scale_px"] == 20.0
    # Trained: the zero convs out are no longer zero.
    assert final["controlnet_mid_block.weight"].abs().max() > 0

    assert summary["validated_at"] == [STEPS]
    folder = out / "validation" / f"step-{STEPS}"
    sample = np.load(folder / "sample.npz")
    assert sample["frames"].shape == sample["stock_frames"].shape == (FRAMES, SIZE, SIZE, 3)
    assert np.array_equal(sample["image"], sample["truth"][0])
    assert sample["tracks_norm"].shape[1:] == (FRAMES, 2) and 1 <= len(sample["tracks_norm"]) <= 6
    metrics = json.loads((folder / "metrics.json").read_text())
    print(
        f"svd_flow_controlnet validation ObjMC (px, tiny random SVD, so not a quality figure): ControlNet "
        f"{metrics['objmc_px']:.2f}, stock {metrics['stock_objmc_px']:.2f}, real clip {metrics['truth_objmc_px']:.2f}"
    )
    assert (metrics["fps"], metrics["motion_bucket_id"], metrics["num_frames"]) == (7, 127, FRAMES)
    assert metrics["num_tracks"] == len(sample["tracks_norm"])
    assert all(metrics[k] >= 0 for k in ("objmc_px", "stock_objmc_px", "truth_objmc_px"))
    assert np.abs(sample["frames"] - sample["stock_frames"]).max() > 1e-2  # the ControlNet acts
    assert (folder / "sample.mp4").stat().st_size > 0


def test_resume_latest_reaches_the_same_weights(full_run, data_dir, tmp_path):
    assert_resume_reaches_the_same_weights(SCRIPT, full_run, data_dir, tmp_path / "resumed", from_step=12)


def test_output_folder_loads_through_load_svd_controlnet_and_reproduces_validation(full_run):
    _, out = full_run
    folder = out / "validation" / f"step-{STEPS}"
    sample, metrics = np.load(folder / "sample.npz"), json.loads((folder / "metrics.json").read_text())
    clear_cache()
    controlnet = load_svd_controlnet(Settings(svd_controlnet_model=str(out), device="cpu"))
    pipe = tiny_pipe(SVDTrajectoryPipeline, controlnet=controlnet)
    condition = flow_condition(
        sample["tracks_norm"],
        SIZE,
        SIZE,
        sigma_px=metrics["flow_sigma_px"],
        flow_scale_px=controlnet.config.flow_scale_px,
    )
    frames = pipe(
        sample["image"],
        strength=1.0,
        num_frames=FRAMES,
        flow_condition=condition,
        controlnet_conditioning_scale=metrics["controlnet_conditioning_scale"],
        output_type="np",
        **sampling_kwargs(metrics),
    ).frames[0]
    print(
        f"svd_flow_controlnet reload: max difference to the validation sample {np.abs(frames - sample['frames']).max():.3g}"
    )
    np.testing.assert_allclose(frames, sample["frames"], atol=1e-5, rtol=0)  # other process and thread count
    clear_cache()


# -- data and conditioning, in process ------------------------------------------------------------------


def test_items_are_functions_of_their_index(data_dir, tmp_path):
    _, task = SCRIPT.task(data_dir, tmp_path)
    counts = []
    for index in range(len(task.dataset)):
        item, again = task.dataset[index], task.dataset[index]
        tracks = item["tracks_norm"]
        assert np.array_equal(tracks, again["tracks_norm"])
        assert torch.equal(item["flow_condition"], again["flow_condition"])
        assert 1 <= len(tracks) <= 6 and tracks.shape[1:] == (FRAMES, 2)
        expected = flow_condition(tracks, SIZE, SIZE, sigma_px=3.0, flow_scale_px=20.0)
        assert np.array_equal(item["flow_condition"].numpy(), expected)
        counts.append(len(tracks))
    assert len(set(counts)) > 1  # the count is drawn per clip
    batch = task.collate_fn([task.dataset[0], task.dataset[1]])
    assert batch["flow_condition"].shape == (2, FRAMES, 3, SIZE, SIZE)
    assert batch["pixel_values"].shape == (2, FRAMES, 3, SIZE, SIZE)


@pytest.mark.parametrize("dropout", [0.0, 1.0])
def test_training_conditions_the_controlnet_as_the_pipeline(data_dir, tmp_path, dropout):
    """One training loss and one pipeline step give the ControlNet the same inputs: conditioning channels,
    CLIP embedding, [fps - 1, bucket, noise] time ids and flow condition; with dropout 1 the pipeline's
    unconditional half (zero image conditioning and zero flow)."""
    flags = ["--noise_aug_strength", "0", "--conditioning_dropout", str(dropout)]  # no draw in the latents
    _, task = SCRIPT.task(data_dir, tmp_path, *flags)
    seen = []
    hook = task.models["controlnet"].register_forward_pre_hook(
        lambda module, inputs, kwargs: seen.append([inputs[0], *inputs[2:5]]), with_kwargs=True
    )
    item = task.dataset[1]
    batch = task.collate_fn([item])
    torch.manual_seed(0)
    task.compute_loss(batch, task.models)

    clip_uint8 = from_signed(item["pixel_values"])
    # The tiny components are the training run's frozen SVD.
    pipe = tiny_pipe(SVDTrajectoryPipeline, controlnet=task.models["controlnet"])
    pipe(clip_uint8[0], strength=1.0, num_frames=FRAMES, num_inference_steps=1, fps=7, motion_bucket_id=127,
         noise_aug_strength=0.0, flow_condition=item["flow_condition"].numpy(), output_type="latent")  # fmt: skip
    hook.remove()
    (*training, train_flow), (*pipeline, pipe_flow) = seen
    half = slice(0, 1) if dropout else slice(1, 2)  # the pipeline batches [unconditional, conditional]
    assert_conditioned_alike(training, pipeline, half)
    assert torch.equal(train_flow, pipe_flow[half])
    assert training[2].tolist() == [[6.0, 127.0, 0.0]]  # the time ids [fps - 1, bucket, noise]
    assert (train_flow.abs().max() > 0) == (dropout == 0.0)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--max_tracks", "0"], "--max_tracks must be at least 1"),
        (["--min_tracks", "5", "--max_tracks", "3"], "at least --min_tracks (5)"),
        (["--flow_scale_px", "0"], "--flow_scale_px must be a positive number"),
        (["--resolution", "8"], "--resolution must be at least 16 for optical flow"),
        (["--data_dir", "/no/such/folder"], "--data_dir /no/such/folder is not a folder"),
        (["--new_layers_lr_scale", "0"], "--new_layers_lr_scale must be positive"),
    ],
)
def test_bad_flags_exit_2_with_a_sentence(data_dir, tmp_path, capsys, extra, message):
    assert message in bad_flags_error(SCRIPT, data_dir, tmp_path / "out", capsys, *extra)


def test_the_new_layers_alone_train_at_the_scaled_learning_rate(data_dir, tmp_path):
    from core.training.common import _optimizer_groups

    _, task = SCRIPT.task(data_dir, tmp_path, "--new_layers_lr_scale", "10")
    controlnet = task.models["controlnet"]
    body, new = _optimizer_groups(task, ["controlnet"], 1e-4)
    new_layers = [
        controlnet.controlnet_cond_embedding,
        *controlnet.controlnet_down_blocks,
        controlnet.controlnet_mid_block,
    ]
    assert new["lr"] == pytest.approx(1e-3) and body["lr"] == 1e-4
    assert {id(p) for p in new["params"]} == {id(p) for m in new_layers for p in m.parameters()}
    assert len(body["params"]) + len(new["params"]) == len(list(controlnet.parameters()))
