"""python -m core.training.svd_flow_lora as a subprocess on tiny SVD and synthetic moving-sprite videos, and its
targets and conditioning checked in process against core.flow and the SVDFlowPipeline.

Clips: 4 frames of 32x32 (16x16 latents) from 8-frame Panda-layout videos; their DIS flow is up to ~1.7 px, so
the flow scale is 2 px. One 20-step run (module fixture) is checked for loss, checkpoints and validation; a
second run resumes from its checkpoint-15; the saved LoRA and scale reload into a fresh SVDFlowPipeline.
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

from core.flow import flows_to_video
from core.flow.encoding import FLOW_ENCODING_FILE, FlowEncoding
from core.flow.estimate import estimate_video_flow
from core.imaging import from_signed
from core.pipelines.svd_flow import FLOW_ADAPTER_NAME, SVDFlowPipeline
from core.training import svd_flow_lora as flow_train

SCALE_PX = 2.0


def _lora_file(folder: Path) -> dict[str, torch.Tensor]:
    return safetensors.torch.load_file(str(folder / f"{FLOW_ADAPTER_NAME}.safetensors"))


SCRIPT = TrainingScript(
    flow_train, (*TINY_SVD_FLAGS, *LORA_RUN_FLAGS, "--flow_scale_px", str(SCALE_PX)), _lora_file
)
data_dir, full_run = module_fixtures(SCRIPT)


def test_loss_decreases(full_run):
    assert_loss_falls(SCRIPT, full_run[0], below=0.75)


def test_checkpoints_scale_and_validation(full_run):
    summary, out = full_run
    assert_checkpoints(SCRIPT, summary, out, kept=(15, 20))
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
    assert_resume_reaches_the_same_weights(SCRIPT, full_run, data_dir, tmp_path / "resumed", from_step=15)


def _generate(pipe, sample, metrics) -> np.ndarray:
    return pipe(sample["first_frame"], num_frames=metrics["num_frames"], **sampling_kwargs(metrics)).flows_px[
        0
    ]


def test_saved_lora_reloads_into_the_flow_pipeline_exactly(full_run):
    _, out = full_run
    folder = out / "validation" / "step-20"
    sample, metrics = np.load(folder / "sample.npz"), json.loads((folder / "metrics.json").read_text())
    pipe = tiny_pipe(SVDFlowPipeline)
    assert pipe.load_flow_lora(out).scale_px(SIZE) == SCALE_PX  # the scale comes from the folder
    flows = _generate(pipe, sample, metrics)
    base = _generate(tiny_pipe(SVDFlowPipeline), sample, metrics)
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
    _, task = SCRIPT.task(data_dir, tmp_path, "--noise_aug_strength", "0")
    item = task.dataset[1]
    clip_uint8 = from_signed(item["pixel_values"])
    batch = task.collate_fn([item])
    expected_flows = flows_to_video(estimate_video_flow(clip_uint8, "dis"))
    assert batch["flows_px"].shape == (1, FRAMES, SIZE, SIZE, 2)
    np.testing.assert_array_equal(batch["flows_px"][0].numpy(), expected_flows)

    pipe = tiny_pipe(SVDFlowPipeline, unet=task.models["unet"])
    with unet_calls(task.models["unet"]) as seen:
        torch.manual_seed(0)
        task.compute_loss(batch, task.models)
        pipe(
            clip_uint8[0],
            num_frames=FRAMES,
            num_inference_steps=1,
            noise_aug_strength=0.0,
            output_type="latent",
        )
    training, pipeline = seen
    assert_conditioned_alike(training, pipeline, half=slice(1, None))  # the pipeline's conditional half
    assert training[2].tolist() == [[6.0, 127.0, 0.0]]  # the time ids [fps - 1, bucket, noise]


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
    assert message in bad_flags_error(SCRIPT, data_dir, tmp_path / "out", capsys, *extra)
