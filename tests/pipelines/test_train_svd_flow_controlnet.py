"""python -m core.training.svd_flow_controlnet as a subprocess on tiny SVD and synthetic moving-sprite videos, and
its data and conditioning checked in process against the flow ControlNet mode of SVDTrajectoryPipeline.

Clips: 4 frames of 32x32 (16x16 latents) from 8-frame Panda-layout videos, 1-6 tracks each. One 16-step run
(module fixture) is checked for loss, checkpoints and validation; a second run resumes from its checkpoint-12;
the saved output folder is loaded by core.models.load_svd_controlnet and reproduces the validation sample.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch
from training_script import run_script

from core.config import Settings
from core.controlnet_svd import flow_condition
from core.data.synthetic import write_video_folder
from core.imaging import from_signed
from core.models import clear_cache, load_svd_controlnet, tiny_svd_components
from core.pipelines.svd_trajectory import SVDTrajectoryPipeline
from core.training import svd_flow_controlnet as train
from core.training.common import TRAINER_STATE_NAME

WEIGHTS = "diffusion_pytorch_model.safetensors"
SIZE, FRAMES, STEPS = 32, 4, 16
# As in test_train_svd_interp_lora: ln(sigma) spread 0.5 keeps the steps' losses comparable; lr 3e-2 makes the
# tiny random ControlNet learn within 16 steps.
FLAGS = [
    "--pretrained_model", "tiny",
    "--resolution", str(SIZE),
    "--width", str(SIZE),
    "--num_frames", str(FRAMES),
    "--min_tracks", "1",
    "--max_tracks", "6",
    "--flow_sigma_px", "3",
    "--train_batch_size", "2",
    "--max_train_steps", str(STEPS),
    "--learning_rate", "3e-2",
    "--p_std", "0.5",
    "--conditioning_dropout", "0.1",
    "--checkpointing_steps", "4",
    "--checkpoints_total_limit", "2",
    "--validation_steps", str(STEPS),
    "--validation_inference_steps", "2",
    "--report_to", "none",
    "--seed", "0",
]  # fmt: skip


def _train(data_dir: Path, output_dir: Path, *extra: str) -> dict:
    return run_script(
        "core.training.svd_flow_controlnet",
        "--data_dir",
        str(data_dir),
        "--output_dir",
        str(output_dir),
        *FLAGS,
        *extra,
    )


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return safetensors.torch.load_file(str(folder / WEIGHTS))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    write_video_folder(root, n=4, layout="panda", size=(SIZE, SIZE), n_frames=8, fps=8.0, seed=0)
    return root


@pytest.fixture(scope="module")
def full_run(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("svd_flow_controlnet")
    return _train(data_dir, out), out


def test_loss_decreases(full_run):
    summary, _ = full_run
    curve = summary["loss_curve"]
    first, last = np.mean(curve[:4]), np.mean(curve[-4:])
    print(
        f"svd_flow_controlnet loss: first quarter {first:.4f}, last quarter {last:.4f} "
        f"({summary['seconds_per_step']:.2f} s/step)"
    )
    assert len(curve) == STEPS and summary["steps"] == STEPS
    assert last < 0.75 * first


def test_checkpoints_weights_and_validation(full_run):
    summary, out = full_run
    assert summary["checkpoints"] == ["checkpoint-12", "checkpoint-16"]
    state = json.loads((out / "checkpoint-12" / TRAINER_STATE_NAME).read_text())
    assert state["global_step"] == 12 and state["loss_curve"] == summary["loss_curve"][:12]
    # Checkpoints and the output folder are ControlNet model folders; the final one is the last checkpoint's.
    final, last = _weights(out), _weights(out / "checkpoint-16")
    assert final.keys() == last.keys() and all(torch.equal(final[k], last[k]) for k in final)
    assert sum(v.numel() for v in final.values()) == summary["trained_parameters"]
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
    summary, out = full_run
    resumed_dir = tmp_path / "resumed"
    resumed_dir.mkdir()
    shutil.copytree(out / "checkpoint-12", resumed_dir / "checkpoint-12")  # as if the run stopped after 12
    resumed = _train(data_dir, resumed_dir, "--resume_from_checkpoint", "latest", "--validation_steps", "0")
    assert (resumed["start_step"], resumed["steps"]) == (12, STEPS)
    assert resumed["loss_curve"] == summary["loss_curve"]
    expected, got = _weights(out), _weights(resumed_dir)
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key


def _pipe(controlnet=None) -> SVDTrajectoryPipeline:
    pipe = SVDTrajectoryPipeline(**tiny_svd_components(), controlnet=controlnet)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_output_folder_loads_through_load_svd_controlnet_and_reproduces_validation(full_run):
    _, out = full_run
    folder = out / "validation" / f"step-{STEPS}"
    sample, metrics = np.load(folder / "sample.npz"), json.loads((folder / "metrics.json").read_text())
    clear_cache()
    controlnet = load_svd_controlnet(Settings(svd_controlnet_model=str(out), device="cpu"))
    pipe = _pipe(controlnet)
    condition = flow_condition(
        sample["tracks_norm"],
        SIZE,
        SIZE,
        sigma_px=metrics["flow_sigma_px"],
        flow_scale_px=controlnet.config.flow_scale_px,
    )
    settings = ("fps", "motion_bucket_id", "noise_aug_strength", "num_inference_steps")
    frames = pipe(
        sample["image"],
        strength=1.0,
        num_frames=FRAMES,
        flow_condition=condition,
        controlnet_conditioning_scale=metrics["controlnet_conditioning_scale"],
        min_guidance_scale=metrics["min_guidance_scale"],
        max_guidance_scale=metrics["max_guidance_scale"],
        generator=torch.Generator().manual_seed(metrics["seed"]),
        output_type="np",
        **{name: metrics[name] for name in settings},
    ).frames[0]
    print(
        f"svd_flow_controlnet reload: max difference to the validation sample {np.abs(frames - sample['frames']).max():.3g}"
    )
    np.testing.assert_allclose(frames, sample["frames"], atol=1e-5, rtol=0)  # other process and thread count
    clear_cache()


# -- data and conditioning, in process ------------------------------------------------------------------


def _task(data_dir: Path, tmp_path: Path, *extra: str):
    args = train.build_parser().parse_args(
        [*FLAGS, "--output_dir", str(tmp_path), "--data_dir", str(data_dir), *extra]
    )
    train.check_args(args)
    return args, train.build_task(args, accelerator=None)


def test_items_are_functions_of_their_index(data_dir, tmp_path):
    args, task = _task(data_dir, tmp_path)
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
    args, task = _task(data_dir, tmp_path, *flags)
    seen = []
    hook = task.models["controlnet"].register_forward_pre_hook(
        lambda module, inputs, kwargs: seen.append([inputs[0], *inputs[2:5]]), with_kwargs=True
    )
    item = task.dataset[1]
    batch = task.collate_fn([item])
    torch.manual_seed(0)
    task.compute_loss(batch, task.models)

    clip_uint8 = from_signed(item["pixel_values"])
    pipe = _pipe(task.models["controlnet"])  # the tiny components: the training run's frozen SVD
    pipe(clip_uint8[0], strength=1.0, num_frames=FRAMES, num_inference_steps=1, fps=7, motion_bucket_id=127,
         noise_aug_strength=0.0, flow_condition=item["flow_condition"].numpy(), output_type="latent")  # fmt: skip
    hook.remove()
    (
        (train_input, train_embedding, train_ids, train_flow),
        (pipe_input, pipe_embedding, pipe_ids, pipe_flow),
    ) = seen
    half = slice(0, 1) if dropout else slice(1, 2)  # the pipeline batches [unconditional, conditional]
    torch.testing.assert_close(train_input[:, :, 4:], pipe_input[half, :, 4:], atol=1e-6, rtol=0)
    torch.testing.assert_close(train_embedding, pipe_embedding[half], atol=1e-6, rtol=0)
    assert torch.equal(train_flow, pipe_flow[half])
    assert torch.equal(train_ids, pipe_ids[half]) and train_ids.tolist() == [[6.0, 127.0, 0.0]]
    assert (train_flow.abs().max() > 0) == (dropout == 0.0)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--max_tracks", "0"], "--max_tracks must be at least 1"),
        (["--min_tracks", "5", "--max_tracks", "3"], "at least --min_tracks (5)"),
        (["--flow_scale_px", "0"], "--flow_scale_px must be a positive number"),
        (["--resolution", "8"], "--resolution must be at least 16 for optical flow"),
        (["--data_dir", "/no/such/folder"], "--data_dir /no/such/folder is not a folder"),
    ],
)
def test_bad_flags_exit_2_with_a_sentence(data_dir, tmp_path, capsys, extra, message):
    argv = ["--output_dir", str(tmp_path / "out"), "--data_dir", str(data_dir), "--pretrained_model", "tiny"]
    assert train.main([*argv, *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()
