"""python -m core.training.svd_joint_flow as a subprocess on tiny SVD and synthetic moving-sprite videos, and its
conditioning, flow-LoRA start and flag checks in process.

Clips: 4 frames of 32x32 (16x16 latents) from 8-frame Panda-layout videos, flow scale 4 px. One 12-step run (module
fixture, batch 1) is checked for loss, checkpoints and validation; a second run resumes from its checkpoint-8; the
saved folder is loaded by the app's loader and reproduces the validation sample.
"""

import json
from dataclasses import replace
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
    unet_calls,
)
from training_script import (
    TrainingScript,
    assert_checkpoints,
    assert_loss_falls,
    assert_resume_reaches_the_same_weights,
    bad_flags_error,
)

from core import lora, models
from core.config import Settings
from core.errors import InputError
from core.flow.encoding import FlowEncoding
from core.imaging import from_signed
from core.models import load_svd_joint_flow
from core.models.state import attached
from core.patches.joint import JOINT_FILE
from core.pipelines.svd_flow import FLOW_ADAPTER_NAME
from core.pipelines.svd_joint_flow import SVDJointFlowPipeline
from core.training import svd_joint_flow as joint_train

STEPS = 12
WEIGHT_FILES = (JOINT_FILE, "xy_lora.safetensors", "yx_lora.safetensors", "y_lora.safetensors")


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return {
        f"{name}:{key}": value
        for name in WEIGHT_FILES
        for key, value in safetensors.torch.load_file(str(folder / name)).items()
    }


# ln(sigma) spread 0.1: the loss of one step depends mostly on its sigma, so a narrow spread makes 12 steps
# comparable (measured first/last quarter 0.273 -> 0.172 at 1.3 s/step).
SCRIPT = TrainingScript(
    joint_train,
    (
        *TINY_SVD_FLAGS,
        "--flow_scale_px", "4",
        "--max_train_steps", str(STEPS),
        "--p_std", "0.1",
        "--conditioning_dropout", "0",
        "--checkpointing_steps", "4",
        "--validation_steps", str(STEPS),
        "--validation_tracks", "3",
        "--validation_sigma_px", "3",
    ),
    _weights,
)  # fmt: skip
data_dir, full_run = module_fixtures(SCRIPT)


def test_loss_decreases(full_run):
    assert_loss_falls(SCRIPT, full_run[0], below=0.8)


def test_checkpoints_weights_and_validation(full_run):
    summary, out = full_run
    assert_checkpoints(SCRIPT, summary, out, kept=(8, STEPS))
    for folder in (out, out / "checkpoint-8"):
        assert FlowEncoding.load(folder).scale_px(SIZE) == pytest.approx(4.0)

    assert summary["validated_at"] == [STEPS]
    folder = out / "validation" / f"step-{STEPS}"
    sample = np.load(folder / "sample.npz")
    assert sample["frames"].shape == sample["free_frames"].shape == (FRAMES, SIZE, SIZE, 3)
    assert sample["flows_px"].shape == (FRAMES, SIZE, SIZE, 2)
    assert sample["truth"].shape == (FRAMES, SIZE, SIZE, 3)
    tracks = sample["tracks_norm"]
    assert tracks.shape[1:] == (FRAMES, 2) and 1 <= len(tracks) <= 3
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["num_tracks"] == len(tracks) and metrics["flow_scale_px"] == pytest.approx(4.0)
    print(
        f"svd_joint_flow validation ObjMC (px): with tracks {metrics['objmc_px']:.2f}, free "
        f"{metrics['free_objmc_px']:.2f}, real clip {metrics['truth_objmc_px']:.2f}"
    )
    # The tracks come from the clip's own flow, so the tracker follows them on the real clip closely.
    assert 0 <= metrics["truth_objmc_px"] < 1.0 and metrics["objmc_px"] >= 0 and metrics["free_objmc_px"] >= 0
    for video in ("sample.mp4", "flow.mp4"):
        assert (folder / video).stat().st_size > 0


def test_resume_latest_reaches_the_same_weights(full_run, data_dir, tmp_path):
    assert_resume_reaches_the_same_weights(SCRIPT, full_run, data_dir, tmp_path / "resumed", from_step=8)


def test_output_folder_loads_in_the_app_loader_and_reproduces_the_validation_sample(full_run):
    _, out = full_run
    folder = out / "validation" / f"step-{STEPS}"
    sample, metrics = np.load(folder / "sample.npz"), json.loads((folder / "metrics.json").read_text())

    def render(source: str):
        pipe = load_svd_joint_flow(
            Settings.from_env({}, svd_model="tiny", svd_joint_flow_model=source, device="cpu")
        )
        pipe.set_progress_bar_config(disable=True)
        with attached(pipe.unet, pipe.joint_weights):
            return pipe(
                sample["truth"][0],
                sample["tracks_norm"],
                sigma_px=metrics["sigma_px"],
                output_type="np",
                **sampling_kwargs(metrics),
            )

    untrained = render("tiny")
    trained = render(str(out))
    print(
        f"svd_joint_flow reload: frames vs validation {np.abs(trained.frames[0] - sample['frames']).max():.3g}, "
        f"flow vs validation {np.abs(trained.flows_px[0] - sample['flows_px']).max():.3g} px; trained vs untrained "
        f"patch: frames {np.abs(trained.frames - untrained.frames).max():.3g}"
    )
    np.testing.assert_allclose(trained.frames[0], sample["frames"], atol=1e-5, rtol=0)  # other process
    np.testing.assert_allclose(trained.flows_px[0], sample["flows_px"], atol=1e-4, rtol=0)
    assert np.abs(trained.frames - untrained.frames).max() > 1e-3  # the trained patch is there to be loaded


# -- in process ----------------------------------------------------------------------------------------------


def test_training_conditions_both_halves_as_the_pipeline(data_dir, tmp_path):
    """One training loss and one pipeline step see the same conditioning channels, embedding and time ids on
    video and flow entries."""
    # No noise augmentation: no random draw in the conditioning latents, so they compare exactly.
    _, task = SCRIPT.task(data_dir, tmp_path / "out", "--noise_aug_strength", "0")
    item = task.dataset[1]
    batch = task.collate_fn([item])
    pipe = tiny_pipe(SVDJointFlowPipeline, unet=task.models["unet"])
    with unet_calls(task.models["unet"]) as seen:
        torch.manual_seed(0)
        loss = task.compute_loss(batch, task.models)
        pipe(from_signed(item["pixel_values"][0]), None, num_frames=FRAMES, num_inference_steps=1,
             noise_aug_strength=0.0, output_type="latent")  # fmt: skip
    assert loss.ndim == 0 and float(loss.detach()) > 0
    training, pipeline = seen
    # Training: [video, flow]; the pipeline: [video_u, flow_u, video_c, flow_c] (guidance), conditional half last.
    assert training[0].shape[0] == 2 and pipeline[0].shape[0] == 4
    assert_conditioned_alike(training, pipeline, half=slice(2, None))
    assert training[2].tolist() == [[6.0, 127.0, 0.0]] * 2  # the time ids [fps - 1, bucket, noise]


def test_loss_is_the_mean_of_its_halves_and_a_fresh_patch_keeps_the_video_blind_to_the_flow(
    data_dir, tmp_path
):
    """The training loss is the mean of video_and_flow_losses' two halves; with the patch at init (zero joint
    layers) the video entries' loss does not change when each clip gets another clip's flow video, which is what
    the conditioning gap of core.eval.proof_svd relies on."""
    args, task = SCRIPT.task(data_dir, tmp_path / "out", "--conditioning_dropout", "0")
    batch = task.collate_fn([task.dataset[0], task.dataset[1]])
    pipe = joint_train.joint_flow_pipeline(args)

    def losses(flows_px: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        torch.manual_seed(0)
        with torch.no_grad():
            return joint_train.video_and_flow_losses(pipe, pipe.unet, {**batch, "flows_px": flows_px}, args)

    torch.manual_seed(0)
    with torch.no_grad():
        loss = task.compute_loss(batch, task.models)
    video, flow = losses(batch["flows_px"])
    assert float(loss) == pytest.approx(float(video + flow) / 2, rel=1e-5)
    rolled_video, rolled_flow = losses(torch.roll(batch["flows_px"], 1, dims=0))
    assert torch.equal(rolled_video, video)
    assert not torch.equal(rolled_flow, flow)  # the flow entries' targets did change


def _flow_lora_folder(folder: Path, rank: int) -> dict[str, torch.Tensor]:
    """A folder as svd_flow_lora writes it (random weights); returns the adapter's state dict."""
    unet = models.tiny_svd_components()["unet"]
    lora.add_lora(unet, FLOW_ADAPTER_NAME, rank=rank, init=False)
    lora.save_lora(unet, FLOW_ADAPTER_NAME, folder)
    FlowEncoding.from_scale_px(2.0, SIZE).save(folder, SIZE)
    return safetensors.torch.load_file(str(folder / f"{FLOW_ADAPTER_NAME}.safetensors"))


def test_y_lora_starts_from_a_flow_lora_with_its_scale(data_dir, tmp_path):
    flow_dir = tmp_path / "flow"
    flow_weights = _flow_lora_folder(flow_dir, rank=4)
    flags = ["--init_y_lora", str(flow_dir), "--y_lora_rank", "4"]
    at = SCRIPT.flags.index("--flow_scale_px")
    no_scale = replace(SCRIPT, flags=SCRIPT.flags[:at] + SCRIPT.flags[at + 2 :])  # the flow LoRA's scale
    args, task = no_scale.task(data_dir, tmp_path / "out", *flags)
    lora.save_lora(task.models["unet"], "y_lora", tmp_path / "y")
    y_weights = safetensors.torch.load_file(str(tmp_path / "y" / "y_lora.safetensors"))
    assert y_weights.keys() == flow_weights.keys()
    assert all(torch.equal(y_weights[key], flow_weights[key]) for key in flow_weights)
    assert joint_train.flow_encoding_of(args).scale_px(SIZE) == pytest.approx(2.0)

    with pytest.raises(InputError, match="--y_lora_rank equal to the flow LoRA's --rank"):
        SCRIPT.task(data_dir, tmp_path / "out", "--init_y_lora", str(flow_dir), "--y_lora_rank", "2",
                    "--flow_scale_px", "2")  # fmt: skip
    with pytest.raises(InputError, match="differs from the scale the flow LoRA"):
        SCRIPT.task(
            data_dir, tmp_path / "out", *flags
        )  # the flags ask for 4 px, the flow LoRA was trained at 2


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--joint_lora_rank", "0"], "--joint_lora_rank must be at least 1"),
        (["--resolution", "8", "--width", "8"], "at least 16 for optical flow"),
        (["--flow_scale_px", "-1"], "--flow_scale_px must be a positive number"),
        (["--init_y_lora", "/no/such/folder"], "--init_y_lora /no/such/folder is not a folder"),
        (["--data_dir", "/no/such/folder"], "--data_dir /no/such/folder is not a folder"),
    ],
)
def test_bad_flags_exit_2_with_a_sentence(data_dir, tmp_path, capsys, extra, message):
    assert message in bad_flags_error(SCRIPT, data_dir, tmp_path / "out", capsys, *extra)
