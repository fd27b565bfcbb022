"""What the SVD training scripts' tests share: the tiny run's flags and clips, the module fixtures, a pipeline
call rebuilt from a validation's metrics.json, and the comparison of a training step's UNet inputs with a
pipeline step's.

Clips: 4 frames of 32x32 (16x16 latents) from four 8-frame Panda-layout videos of moving sprites.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
import training_script
from training_script import TrainingScript

from core.data.synthetic import write_video_folder
from core.lora import DEFAULT_TARGETS
from core.models import tiny_svd_components

SIZE, FRAMES = 32, 4
# The flags every tiny run shares; each test module adds its steps, checkpoints, noise spread and its own flags.
# lr 3e-2 makes the random tiny models learn within a few steps.
TINY_SVD_FLAGS = (
    "--pretrained_model", "tiny",
    "--resolution", str(SIZE),
    "--width", str(SIZE),
    "--num_frames", str(FRAMES),
    "--learning_rate", "3e-2",
    "--checkpoints_total_limit", "2",
    "--validation_inference_steps", "2",
    "--report_to", "none",
    "--seed", "0",
)  # fmt: skip
# The LoRA scripts' run: 20 steps of 2 clips, checkpoints every 5 (15 and 20 kept), validation at 10 and 20.
# The loss of one step depends mostly on its sigma (about 1 at small sigma, near 0 at large); ln(sigma) spread
# 0.5 instead of 1.6 keeps 20 steps comparable. The convolutions make the LoRA on the random tiny UNet learn
# fast: first/last quarter loss 0.23 -> 0.12 (attention only: 0.30 -> 0.24).
LORA_RUN_FLAGS = (
    "--train_batch_size", "2",
    "--max_train_steps", "20",
    "--p_std", "0.5",
    "--conditioning_dropout", "0",
    "--lora_targets", *DEFAULT_TARGETS, "conv_in", "conv1", "conv2", "conv_out",
    "--checkpointing_steps", "5",
    "--validation_steps", "10",
)  # fmt: skip
# The sampling options metrics.json records, as the SVD pipelines take them.
SAMPLING_OPTIONS = (
    "fps",
    "motion_bucket_id",
    "noise_aug_strength",
    "num_inference_steps",
    "min_guidance_scale",
    "max_guidance_scale",
)


def write_clips(root: Path) -> None:
    """The clips every SVD trainer test trains on: four 8-frame synthetic moving-sprite videos, Panda layout."""
    write_video_folder(root, n=4, layout="panda", size=(SIZE, SIZE), n_frames=8, fps=8.0, seed=0)


def module_fixtures(script: TrainingScript):
    """Module-scoped fixtures for a test module to bind as ``data_dir, full_run = module_fixtures(SCRIPT)``:
    ``data_dir``, the clips' video folder (:func:`write_clips`), and ``full_run``, ``(summary, output
    folder)`` of one run of ``script`` on them."""
    return training_script.module_fixtures(script, write_clips)


def tiny_pipe(pipeline_class: type, **components):
    """``pipeline_class`` over the tiny SVD components (``components`` replacing or adding some), progress bar
    off."""
    pipe = pipeline_class(**{**tiny_svd_components(), **components})
    pipe.set_progress_bar_config(disable=True)
    return pipe


def sampling_kwargs(metrics: dict) -> dict:
    """A pipeline call's sampling options as a validation's ``metrics.json`` records them, and a CPU generator
    seeded with its seed: what reproduces its sample."""
    return {
        **{name: metrics[name] for name in SAMPLING_OPTIONS},
        "generator": torch.Generator().manual_seed(metrics["seed"]),
    }


@contextmanager
def unet_calls(unet: torch.nn.Module) -> Iterator[list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]]:
    """Record ``(sample, encoder_hidden_states, added_time_ids)`` of every call of an SVD UNet in the block."""
    seen = []
    hook = unet.register_forward_pre_hook(
        lambda module, inputs, kwargs: seen.append(
            (inputs[0], kwargs["encoder_hidden_states"], kwargs["added_time_ids"])
        ),
        with_kwargs=True,
    )
    try:
        yield seen
    finally:
        hook.remove()


def assert_conditioned_alike(training: tuple, pipeline: tuple, half: slice) -> None:
    """A training step's UNet inputs ``(sample, embeddings, time ids)`` equal the ``half`` of a pipeline step's
    batch they stand for: the conditioning channels of the sample (4 on: the noised latents differ), the CLIP
    embeddings and the added time ids."""
    (train_input, train_embedding, train_ids), (pipe_input, pipe_embedding, pipe_ids) = training, pipeline
    torch.testing.assert_close(train_input[:, :, 4:], pipe_input[half, :, 4:], atol=1e-6, rtol=0)
    torch.testing.assert_close(train_embedding, pipe_embedding[half], atol=1e-6, rtol=0)
    assert torch.equal(train_ids, pipe_ids[half])
