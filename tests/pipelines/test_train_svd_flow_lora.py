"""python -m core.training.svd_flow_lora as a subprocess on tiny SVD and synthetic moving-sprite videos, and its
targets and conditioning checked in process against core.flow and the SVDFlowPipeline.

Clips: 4 frames of 32x32 (16x16 latents) from 8-frame Panda-layout videos; their DIS flow is up to ~1.7 px, so
the flow scale is 2 px. One 20-step run (module fixture) is checked for loss, checkpoints and validation; a
second run resumes from its checkpoint-15; the saved LoRA and scale reload into a fresh SVDFlowPipeline.
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
from core.flow.encoding import FLOW_ENCODING_FILE, FlowEncoding, flows_to_video
from core.flow.estimate import estimate_video_flow
from core.imaging import from_signed
from core.lora import DEFAULT_TARGETS
from core.models import tiny_svd_components
from core.pipelines.svd_flow import FLOW_ADAPTER_NAME, SVDFlowPipeline
from core.training import svd_flow_lora as flow_train
from core.training.common import TRAINER_STATE_NAME

WEIGHTS = f"{FLOW_ADAPTER_NAME}.safetensors"
SIZE, FRAMES, SCALE_PX = 32, 4, 2.0
# As in test_train_svd_interp_lora: ln(sigma) spread 0.5 keeps 20 steps comparable, and the convolutions make
# the random tiny UNet learn fast enough to see within them.
TARGETS = [*DEFAULT_TARGETS, "conv_in", "conv1", "conv2", "conv_out"]
FLAGS = [
    "--pretrained_model", "tiny",
    "--resolution", str(SIZE),
    "--width", str(SIZE),
    "--num_frames", str(FRAMES),
    "--flow_scale_px", str(SCALE_PX),
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
        "core.training.svd_flow_lora",
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
    out = tmp_path_factory.mktemp("svd_flow_lora")
    return _train(data_dir, out), out


def test_loss_decreases(full_run):
    summary, _ = full_run
    curve = summary["loss_curve"]
    first, last = np.mean(curve[:5]), np.mean(curve[-5:])
    print(
        f"svd_flow_lora loss: first quarter {first:.4f}, last quarter {last:.4f} "
        f"({summary['seconds_per_step']:.2f} s/step)"
    )
    assert len(curve) == 20 and summary["steps"] == 20
    assert last < 0.75 * first


def test_checkpoints_scale_and_validation(full_run):
    summary, out = full_run
    assert summary["checkpoints"] == ["checkpoint-15", "checkpoint-20"]
    state = json.loads((out / "checkpoint-15" / TRAINER_STATE_NAME).read_text())
    assert state["global_step"] == 15 and state["loss_curve"] == summary["loss_curve"][:15]
    final, last = _lora_file(out), _lora_file(out / "checkpoint-20")
    assert final.keys() == last.keys() and all(torch.equal(final[k], last[k]) for k in final)
    assert sum(v.numel() for v in final.values()) == summary["trained_parameters"]
    # The scale travels with every copy of the weights, relative to the training width.
    for folder in (out, out / "checkpoint-15", out / "checkpoint-20"):
        assert FlowEncoding.load(folder) == FlowEncoding(SCALE_PX / SIZE)
    assert json.loads((out / FLOW_ENCODING_FILE).read_text())["scale_px"] == SCALE_PX

    assert summary["validated_at"] == [10, 20]
    folder = out / "validation" / "step-20"
    sample = np.load(folder / "sample.npz")
    assert sample["flows_px"].shape == sample["truth_px"].shape == (FRAMES, SIZE, SIZE, 2)
    assert np.all(sample["flows_px"][0] == 0) and np.all(sample["truth_px"][0] == 0)
    metrics = json.loads((folder / "metrics.json").read_text())
    truth = sample["truth_px"]
    zero_epe = float(np.linalg.norm(truth[1:], axis=-1).mean())
    epe = float(np.linalg.norm(sample["flows_px"][1:] - truth[1:], axis=-1).mean())
    print(
        f"svd_flow_lora validation EPE {metrics['epe_px']:.3f} px, zero flow {metrics['zero_flow_epe_px']:.3f} px, "
        f"encoding floor {metrics['encoding_floor_epe_px']:.4f} px, clipped {metrics['clipped_fraction']:.4f}"
    )
    assert metrics["epe_px"] == pytest.approx(epe, rel=1e-6)
    assert metrics["zero_flow_epe_px"] == pytest.approx(zero_epe, rel=1e-6) and zero_epe > 0.1
    assert 0 <= metrics["encoding_floor_epe_px"] < 1e-3 and metrics["clipped_fraction"] == 0.0
    assert (metrics["fps"], metrics["motion_bucket_id"], metrics["flow_scale_px"]) == (7, 127, SCALE_PX)
    assert (folder / "flow.mp4").stat().st_size > 0


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


def _generate(pipe, sample, metrics) -> np.ndarray:
    settings = ("fps", "motion_bucket_id", "noise_aug_strength", "num_inference_steps")
    return pipe(
        sample["first_frame"],
        num_frames=metrics["num_frames"],
        min_guidance_scale=metrics["min_guidance_scale"],
        max_guidance_scale=metrics["max_guidance_scale"],
        generator=torch.Generator().manual_seed(metrics["seed"]),
        **{name: metrics[name] for name in settings},
    ).flows_px[0]


def _fresh_pipe() -> SVDFlowPipeline:
    pipe = SVDFlowPipeline(**tiny_svd_components())
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_saved_lora_reloads_into_the_flow_pipeline_exactly(full_run):
    _, out = full_run
    folder = out / "validation" / "step-20"
    sample, metrics = np.load(folder / "sample.npz"), json.loads((folder / "metrics.json").read_text())
    pipe = _fresh_pipe()
    assert pipe.load_flow_lora(out).scale_px(SIZE) == SCALE_PX  # the scale comes from the folder
    flows = _generate(pipe, sample, metrics)
    base = _generate(_fresh_pipe(), sample, metrics)
    print(
        f"svd_flow_lora flows: reloaded vs validation {np.abs(flows - sample['flows_px']).max():.3g} px, "
        f"LoRA vs base {np.abs(flows - base).max():.3g} px"
    )
    np.testing.assert_allclose(flows, sample["flows_px"], atol=1e-5, rtol=0)  # other process and thread count
    assert np.abs(flows - base).max() > 1e-2  # the trained LoRA is there to be loaded


# -- targets and conditioning, in process -----------------------------------------------------------------


def test_training_targets_the_clip_flow_and_conditions_as_the_pipeline(data_dir, tmp_path):
    """The batch carries the clip's DIS flow video; one training loss and one pipeline step see the same
    conditioning channels, embedding and time ids ([fps - 1, motion bucket, noise augmentation])."""
    flags = ["--output_dir", str(tmp_path), "--data_dir", str(data_dir), "--noise_aug_strength", "0"]
    args = flow_train.build_parser().parse_args([*FLAGS, *flags])
    task = flow_train.build_task(args, accelerator=None)
    item = task.dataset[1]
    clip_uint8 = from_signed(item["pixel_values"])
    batch = task.collate_fn([item])
    expected_flows = flows_to_video(estimate_video_flow(clip_uint8, "dis"))
    assert batch["flows_px"].shape == (1, FRAMES, SIZE, SIZE, 2)
    np.testing.assert_array_equal(batch["flows_px"][0].numpy(), expected_flows)

    seen = []
    hook = task.models["unet"].register_forward_pre_hook(
        lambda module, inputs, kwargs: seen.append(
            (inputs[0], kwargs["encoder_hidden_states"], kwargs["added_time_ids"])
        ),
        with_kwargs=True,
    )
    torch.manual_seed(0)
    task.compute_loss(batch, task.models)
    pipe = SVDFlowPipeline(**{**tiny_svd_components(), "unet": task.models["unet"]})
    pipe.set_progress_bar_config(disable=True)
    pipe(
        clip_uint8[0], num_frames=FRAMES, num_inference_steps=1, noise_aug_strength=0.0, output_type="latent"
    )
    hook.remove()
    (train_input, train_embedding, train_ids), (pipe_input, pipe_embedding, pipe_ids) = seen
    torch.testing.assert_close(train_input[:, :, 4:], pipe_input[1:, :, 4:], atol=1e-6, rtol=0)
    torch.testing.assert_close(train_embedding, pipe_embedding[1:], atol=1e-6, rtol=0)
    assert torch.equal(train_ids, pipe_ids[1:]) and train_ids.tolist() == [[6.0, 127.0, 0.0]]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--flow_scale_px", "0"], "--flow_scale_px must be a positive"),
        (["--num_frames", "1"], "--num_frames must be at least 2"),
        (["--width", "36"], "--width must be a multiple of 8"),
        (["--data_dir", "/no/such/folder"], "--data_dir /no/such/folder is not a folder"),
    ],
)
def test_bad_flags_exit_2_with_a_sentence(data_dir, tmp_path, capsys, extra, message):
    argv = ["--output_dir", str(tmp_path / "out"), "--data_dir", str(data_dir), "--pretrained_model", "tiny"]
    assert flow_train.main([*argv, *extra]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
