"""The shared training loop on a tiny SD LoRA task: loss, checkpoints, exact resume, validation, summary."""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch
import torch.nn.functional as F

from core.data.image_depth import ImageDepthFolder
from core.data.synthetic import write_image_depth_folder
from core.errors import InputError
from core.lora import add_lora, load_lora, save_lora
from core.models import tiny_sd_components
from core.training import checkpoints, common

LORA = "toy"
# Attention-only LoRA barely moves a random tiny UNet's loss in 12 steps; the convolutions do.
TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "conv_in", "conv1", "conv2", "conv_out")
# 5 images in batches of 2 -> 3 batches per epoch; with 2 accumulation steps an epoch is 2 optimizer
# steps, the second of them a single batch: resuming has to get the epoch arithmetic right.
FLAGS = [
    "--resolution", "16",
    "--train_batch_size", "2",
    "--gradient_accumulation_steps", "2",
    "--max_train_steps", "12",
    "--learning_rate", "3e-2",
    "--lr_scheduler", "linear",
    "--lr_warmup_steps", "2",
    "--checkpointing_steps", "3",
    "--checkpoints_total_limit", "2",
    "--validation_steps", "5",
    "--report_to", "none",
    "--seed", "7",
]  # fmt: skip


class Interrupted(Exception):
    """Stands for a crash or a killed job in the middle of training."""


class ToyRun:
    """Builds a tiny SD UNet + LoRA task and records what the loop does with it."""

    def __init__(self, data_dir, crash_at_call=None):
        self.data_dir = data_dir
        self.crash_at_call = crash_at_call
        self.losses: list[float] = []  # every micro-batch loss, in order
        self.saved_to: list[str] = []  # folder names save_weights wrote to
        self.validated: list[tuple[int, str, tuple]] = []  # (step, folder name, sample shape)
        self.models: dict[str, torch.nn.Module] = {}

    def build(self, args, accelerator) -> common.TrainingTask:
        parts = tiny_sd_components(seed=0)
        unet, vae, text_encoder, tokenizer = (
            parts["unet"],
            parts["vae"],
            parts["text_encoder"],
            parts["tokenizer"],
        )
        noise_scheduler = parts["scheduler"]
        vae.requires_grad_(False)
        text_encoder.requires_grad_(False)
        add_lora(unet, LORA, rank=4, target_modules=TARGETS)  # freezes the UNet's own weights
        dataset = ImageDepthFolder(self.data_dir, sample_size=args.resolution)

        def collate(items):
            ids = tokenizer(
                [item["caption"] for item in items],
                padding="max_length",
                max_length=16,
                truncation=True,
                return_tensors="pt",
            ).input_ids
            return {"pixel_values": torch.stack([item["pixel_values"] for item in items]), "input_ids": ids}

        def compute_loss(batch, models):
            if self.crash_at_call is not None and len(self.losses) + 1 == self.crash_at_call:
                raise Interrupted
            latents = models["vae"].encode(batch["pixel_values"]).latent_dist.sample()
            latents = latents * models["vae"].config.scaling_factor
            noise = torch.randn_like(latents)
            timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (latents.shape[0],))
            noisy = noise_scheduler.add_noise(latents, noise, timesteps)
            text = models["text_encoder"](batch["input_ids"])[0]
            loss = F.mse_loss(models["unet"](noisy, timesteps, text).sample, noise)
            self.losses.append(loss.item())
            return loss

        def save_weights(models, folder):
            self.saved_to.append(folder.name)
            save_lora(models["unet"], LORA, folder)

        def load_weights(models, folder):
            load_lora(models["unet"], folder, LORA)

        def validate(models, step, folder):
            from diffusers import StableDiffusionPipeline

            pipe = StableDiffusionPipeline(**{**parts, **models})
            pipe.set_progress_bar_config(disable=True)
            generator = torch.Generator().manual_seed(0)
            size = args.resolution
            images = pipe("a red sphere", height=size, width=size, num_inference_steps=2,
                          generator=generator, output_type="np").images  # fmt: skip
            np.save(folder / "sample.npy", images)
            self.validated.append((step, folder.name, images.shape))

        self.models = {"unet": unet, "vae": vae, "text_encoder": text_encoder}
        return common.TrainingTask(
            name="toy_lora",
            models=self.models,
            dataset=dataset,
            collate_fn=collate,
            compute_loss=compute_loss,
            save_weights=save_weights,
            load_weights=load_weights,
            validate=validate,
        )


def _args(output_dir, *extra) -> argparse.Namespace:
    parser = common.add_common_args(argparse.ArgumentParser())
    return parser.parse_args(["--output_dir", str(output_dir), *FLAGS, *extra])


def _lora_file(folder):
    return safetensors.torch.load_file(str(folder / f"{LORA}.safetensors"))


def _reset_accelerate() -> None:
    """Forget accelerate's process-wide state, so the next run_training starts as a new CLI run would."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    yield
    _reset_accelerate()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("scenes")
    write_image_depth_folder(root, n=5, size=(24, 24), seed=3)
    return root


@pytest.fixture(scope="module")
def full_run(data_dir, tmp_path_factory):
    """One uninterrupted 12-step run: (ToyRun, summary, output_dir)."""
    out = tmp_path_factory.mktemp("full")
    run = ToyRun(data_dir)
    summary = common.run_training(_args(out), run.build)
    _reset_accelerate()
    return run, summary, out


def test_loss_decreases(full_run):
    run, summary, _ = full_run
    curve = summary["loss_curve"]
    assert len(curve) == 12 and len(run.losses) == 12 * 2 - 6  # every 2nd step of an epoch has one batch
    # Each step's loss is the mean of its micro-batches.
    assert curve[0] == pytest.approx(np.mean(run.losses[:2]), rel=1e-6)
    assert curve[1] == pytest.approx(run.losses[2], rel=1e-6)
    assert np.mean(curve[-4:]) < 0.8 * np.mean(curve[:4])


def test_checkpoints_every_n_with_total_limit(full_run):
    run, summary, out = full_run
    # Saved at 3, 6, 9, 12 (LoRA-only, through the task's hook) into a partial folder renamed when complete,
    # then the final weights into output_dir.
    partial = [f"{checkpoints.PARTIAL_PREFIX}checkpoint-{step}" for step in (3, 6, 9, 12)]
    assert run.saved_to == [*partial, out.name]
    assert [p.name for p in checkpoints.list_checkpoints(out)] == ["checkpoint-9", "checkpoint-12"]
    assert summary["checkpoints"] == ["checkpoint-9", "checkpoint-12"]
    files = sorted(p.name for p in (out / "checkpoint-12").iterdir())
    assert files == sorted(
        [
            "optimizer.bin",
            "scheduler.bin",
            "random_states_0.pkl",
            f"{LORA}.safetensors",
            checkpoints.TRAINER_STATE_NAME,
            checkpoints.MANIFEST_NAME,
        ]
    )
    assert checkpoints.inspect_checkpoint(out / "checkpoint-12") == []
    assert not list(out.glob(f"{checkpoints.PARTIAL_PREFIX}*"))
    state = json.loads((out / "checkpoint-9" / checkpoints.TRAINER_STATE_NAME).read_text())
    assert state["global_step"] == 9 and state["loss_curve"] == summary["loss_curve"][:9]
    assert state["validated_at"] == [5]
    # The final file holds the trained adapter exactly, and only LoRA weights.
    final = _lora_file(out)
    assert final and all(".lora" in key for key in final)
    last = _lora_file(out / "checkpoint-12")
    assert final.keys() == last.keys() and all(torch.equal(final[k], last[k]) for k in final)
    trained = {k: v for k, v in run.models["unet"].state_dict().items() if "lora" in k}
    assert sum(v.numel() for v in final.values()) == sum(v.numel() for v in trained.values())
    assert summary["trained_parameters"] == sum(v.numel() for v in final.values())


def test_validation_every_n_steps_and_at_the_end(full_run):
    run, summary, out = full_run
    assert [(step, name) for step, name, _ in run.validated] == [
        (5, "step-5"),
        (10, "step-10"),
        (12, "step-12"),
    ]
    assert all(shape == (1, 16, 16, 3) for _, _, shape in run.validated)
    assert summary["validated_at"] == [5, 10, 12]
    assert (out / "validation" / "step-10" / "sample.npy").is_file()
    # Validation leaves the trained model in train mode and the frozen ones in eval mode.
    assert run.models["unet"].training
    assert not run.models["vae"].training and not run.models["text_encoder"].training


def test_summary_json(full_run):
    _, summary, out = full_run
    written = json.loads((out / common.SUMMARY_NAME).read_text())
    assert written == summary
    assert written["task"] == "toy_lora"
    assert (written["steps"], written["start_step"], written["resumed_from"]) == (12, 0, None)
    assert written["num_processes"] == 1 and written["mixed_precision"] == "no"
    assert written["args"]["learning_rate"] == 3e-2 and written["args"]["output_dir"] == str(out)
    assert written["wall_time_s"] > 0 and 0 < written["seconds_per_step"] < written["wall_time_s"]


def test_resume_latest_reaches_identical_weights(full_run, data_dir, tmp_path):
    full, full_summary, full_out = full_run
    out = tmp_path / "run"
    crashed = ToyRun(data_dir, crash_at_call=17)  # step 11, second batch: checkpoint-9 is the latest
    with pytest.raises(Interrupted):
        common.run_training(_args(out), crashed.build)
    assert crashed.losses == full.losses[:16]
    assert [p.name for p in checkpoints.list_checkpoints(out)] == ["checkpoint-6", "checkpoint-9"]
    assert not (out / common.SUMMARY_NAME).exists()

    _reset_accelerate()
    resumed = ToyRun(data_dir)
    summary = common.run_training(_args(out, "--resume_from_checkpoint", "latest"), resumed.build)
    assert (summary["start_step"], summary["steps"]) == (9, 12)
    assert summary["resumed_from"] == str(out / "checkpoint-9")
    assert not list(out.glob("checkpoint-12.replaced-*"))
    # Steps 10-12 see the same batches, noise and timesteps: same losses, same weights, bit for bit.
    assert resumed.losses == full.losses[-len(resumed.losses) :] and len(resumed.losses) == 4
    assert summary["loss_curve"] == full_summary["loss_curve"]
    expected, got = _lora_file(full_out), _lora_file(out)
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key
    assert summary["validated_at"] == [5, 10, 12]
    assert [step for step, _, _ in resumed.validated] == [10, 12]
    assert summary["checkpoints"] == ["checkpoint-9", "checkpoint-12"]


def test_gradient_checkpointing_trains_the_same(full_run, data_dir, tmp_path):
    full, _, _ = full_run
    run = ToyRun(data_dir, crash_at_call=7)  # steps 1-4
    with pytest.raises(Interrupted):
        common.run_training(_args(tmp_path / "gc", "--gradient_checkpointing"), run.build)
    assert run.models["unet"].is_gradient_checkpointing
    np.testing.assert_allclose(run.losses, full.losses[:6], rtol=1e-5)


def test_bad_flags_raise_input_error(tmp_path):
    def never_built(args, accelerator):
        raise AssertionError("the task must not be built for unusable flags")

    for extra, needle in [
        (["--checkpoints_total_limit", "0"], "--checkpoints_total_limit"),
        (["--max_train_steps", "0"], "--max_train_steps"),
        (["--learning_rate", "0"], "--learning_rate"),
        (["--resume_from_checkpoint", str(tmp_path)], "not a complete checkpoint"),
    ]:
        with pytest.raises(InputError, match=needle):
            common.run_training(_args(tmp_path / "out", *extra), never_built)
    (tmp_path / "old" / "checkpoint-4").mkdir(parents=True)
    with pytest.raises(InputError, match="--resume_from_checkpoint latest"):
        common.run_training(_args(tmp_path / "old"), never_built)


def test_latest_without_checkpoints_starts_fresh(tmp_path):
    assert checkpoints.resolve_resume("latest", tmp_path) is None
    (tmp_path / ".partial-checkpoint-4").mkdir()  # a save that was killed: never a candidate
    assert checkpoints.resolve_resume("latest", tmp_path) is None


def test_latest_with_only_damaged_checkpoints_is_refused(tmp_path):
    (tmp_path / "checkpoint-3").mkdir()  # interrupted save of the earlier version: no trainer_state.json
    (tmp_path / "checkpoint-2").mkdir()
    (tmp_path / "checkpoint-2" / checkpoints.TRAINER_STATE_NAME).write_text("{}")
    with pytest.raises(InputError, match="no usable checkpoint .*checkpoint-3 is not a complete checkpoint"):
        checkpoints.resolve_resume("latest", tmp_path)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU fallback")
def test_mixed_precision_falls_back_to_float32_on_cpu():
    assert common._resolved_mixed_precision("bf16") == "no"
    assert common._resolved_mixed_precision("no") == "no"


def _two_process_run(phase: str, data_dir: str, out: str) -> None:
    """One process of a 2-process run: ``full``, ``crash`` (at step 11) or ``resume`` (latest)."""
    if phase == "full":
        common.run_training(_args(Path(out) / "full"), ToyRun(data_dir).build)
    elif phase == "crash":
        # Each process has 2 batches per epoch = 1 step of 2 micro-batches: call 21 is step 11's first.
        with pytest.raises(Interrupted):
            common.run_training(_args(Path(out) / "resumed"), ToyRun(data_dir, crash_at_call=21).build)
    else:
        extra = ("--resume_from_checkpoint", "latest")
        common.run_training(_args(Path(out) / "resumed", *extra), ToyRun(data_dir).build)


@pytest.mark.slow
def test_two_processes_resume_exactly(data_dir, tmp_path):
    """DDP over 2 CPU processes (gloo), as `accelerate launch` starts it: the same resume guarantee."""
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": os.getcwd()}
    for phase in ("full", "crash", "resume"):
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", __file__, phase]
        done = subprocess.run(
            [*command, str(data_dir), str(tmp_path)], env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, f"{phase}: {done.stderr[-3000:]}"
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    summary = json.loads((resumed / common.SUMMARY_NAME).read_text())
    assert (summary["num_processes"], summary["start_step"], summary["steps"]) == (2, 9, 12)
    assert summary["loss_curve"] == json.loads((full / common.SUMMARY_NAME).read_text())["loss_curve"]
    assert (resumed / "checkpoint-12" / "random_states_1.pkl").is_file()
    assert checkpoints.inspect_checkpoint(resumed / "checkpoint-12", num_processes=2) == []
    expected, got = _lora_file(full), _lora_file(resumed)
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key


if __name__ == "__main__":  # the processes of test_two_processes_resume_exactly
    _two_process_run(*sys.argv[1:])


def test_learning_rate_scales_make_one_group_per_factor_longest_key_first():
    models = {
        "net": torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)),
        "frozen": torch.nn.Linear(2, 2),
    }
    models["frozen"].requires_grad_(False)
    models["net"][1].bias.requires_grad_(False)
    task = common.TrainingTask("toy", models, [], None, None, None)
    # No scales: one group, the trained parameters in model order, as a plain AdamW(params) takes them.
    (group,) = common._optimizer_groups(task, ["net"], 1e-3)
    assert group["lr"] == 1e-3 and group["params"] == [
        p for p in models["net"].parameters() if p.requires_grad
    ]
    task.learning_rate_scales = {"net.1": 10.0, "net.0.b": 2.0, "net.0.bias": 0.5}
    groups = common._optimizer_groups(task, ["net"], 1e-3)
    net = models["net"]
    assert [(g["lr"], g["params"]) for g in groups] == [
        (1e-3, [net[0].weight]),
        (5e-4, [net[0].bias]),  # the longest matching key wins
        (1e-2, [net[1].weight]),  # frozen net.1.bias is left out
    ]
