"""The accelerate training loop that every ``python -m core.training.NAME`` script shares.

A script adds its own flags to :func:`add_common_args`, and gives :func:`run_training` a function that
builds a :class:`TrainingTask`: the models (parameters with ``requires_grad`` train), a dataset, a loss,
a save/load pair for the trained weights and an optional validation::

    def main(argv=None):
        parser = argparse.ArgumentParser(description="...")
        add_common_args(parser)
        parser.add_argument("--rank", type=int, default=8, help="LoRA rank.")
        args = parser.parse_args(argv)
        run_training(args, build_task)  # build_task(args, accelerator) -> TrainingTask

What the loop does with one ``accelerate.Accelerator``: mixed precision, gradient accumulation, gradient
checkpointing, AdamW with a ``diffusers.optimization`` LR schedule, gradient clipping, a tqdm bar,
tensorboard logging when installed, validation every ``--validation_steps`` and after the last step,
checkpoints, the final weights in ``--output_dir`` and ``summary.json`` (steps, per-step loss, time, args).

Checkpoints are ``OUTPUT_DIR/checkpoint-STEP/`` folders: accelerate's ``save_state`` (optimizer, LR
scheduler, gradient scaler, RNG) with the model weights written by the task's ``save_weights`` through
accelerate's save/load state hooks, so a checkpoint holds only the trained weights (e.g. LoRA
safetensors), never a copy of the frozen model. ``core.training.checkpoints`` writes them atomically with
a manifest of checksums, checks them before loading (``latest`` skips damaged ones, saying which file is
damaged) and prunes to ``--checkpoints_total_limit`` after each save.

Exact resume: ``--resume_from_checkpoint latest`` reaches the same final weights, bit for bit on CPU, as
an uninterrupted run with the same seed. Three things make that hold: the data order is a function of
(seed, epoch) (accelerate's seedable sampler) and a resumed epoch skips the batches already used; the
global RNGs (torch, numpy, random) are reseeded from (seed, step, micro-batch, process) before every
micro-batch, so the noise and timesteps a loss draws do not depend on what ran before; weights,
optimizer, schedule and RNG states come back from the checkpoint (a checkpoint without its RNG state is
refused unless ``--allow_inexact_resume``). The dataset's part of the contract: an item must
be a function of its index (seed any random crop by index, as ``core.data`` does).

Several GPUs and DeepSpeed come from ``accelerate launch`` with no change to the scripts::

    accelerate launch --multi_gpu --num_processes 4 -m core.training.joint_lora --output_dir runs/joint ...
    accelerate launch --use_deepspeed --zero_stage 2 --num_processes 4 -m core.training.joint_lora ...

``--train_batch_size`` is per process: the effective batch is batch x processes x accumulation steps.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from core.errors import InputError, KinemaError
from core.training.checkpoints import (
    CHECKPOINT_PREFIX,
    list_checkpoints,
    load_checkpoint,
    resolve_resume,
    save_checkpoint,
)

if TYPE_CHECKING:
    from accelerate import Accelerator

logger = logging.getLogger(__name__)

SUMMARY_NAME = "summary.json"
LR_SCHEDULERS = (
    "constant",
    "constant_with_warmup",
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
)

Models = dict[str, torch.nn.Module]


@dataclass
class TrainingTask:
    """What a training script supplies to :func:`run_training`.

    Attributes:
        name: the run's name in the tracker and in ``summary.json``.
        models: every module ``compute_loss`` needs, by name. Parameters with ``requires_grad=True`` are
            the ones that train (at least one). A module holding some is prepared by accelerate
            (wrapped for DDP on several GPUs) and put in train mode; the others go to eval mode. Under
            ``--mixed_precision fp16|bf16`` frozen parameters are cast to that dtype and trained ones
            stay float32 (the loss runs under autocast).
        dataset: a map-style dataset. For exact resume an item must be a function of its index.
        compute_loss: ``compute_loss(batch, models) -> loss``, a scalar tensor. ``batch`` is a collated
            batch already on the training device; ``models`` is ``models`` with the trained modules as
            accelerate wrapped them (call them; read their attributes through
            ``accelerate.utils.extract_model_from_parallel``). Draw noise and timesteps from torch's
            global RNG (``torch.randn_like``, ``torch.randint``): the loop reseeds it per micro-batch.
        save_weights: ``save_weights(models, folder)`` writes only the trained weights into ``folder``
            as safetensors (LoRA adapters through ``core.lora``, extra modules with ``save_file``): into
            each checkpoint folder, and at the end into ``--output_dir``. It, ``load_weights`` and
            ``validate`` get the unwrapped modules.
        load_weights: ``load_weights(models, folder)`` loads what ``save_weights`` wrote into the
            existing parameters, in place: the optimizer holds references to them.
        collate_fn: the DataLoader's collate function; None for torch's default.
        validate: optional ``validate(models, step, folder)``: build the real pipeline from ``models``
            and write samples into ``folder``. It runs on the main process under ``torch.no_grad`` and
            autocast, with every model in eval mode.
        learning_rate_scales: ``"MODEL.PREFIX" -> factor``: the trained parameters whose name (``MODEL``,
            the key in ``models``, then the parameter's name in it) starts with the key train at
            ``--learning_rate`` x factor (the longest matching key wins), e.g. new layers that start at
            zero. Empty: one learning rate for all.
    """

    name: str
    models: Models
    dataset: Dataset
    compute_loss: Callable[[Any, Models], torch.Tensor]
    save_weights: Callable[[Models, Path], None]
    load_weights: Callable[[Models, Path], None]
    collate_fn: Callable[[list], Any] | None = None
    validate: Callable[[Models, int, Path], None] | None = None
    learning_rate_scales: dict[str, float] = field(default_factory=dict)


TaskBuilder = Callable[[argparse.Namespace, "Accelerator"], TrainingTask]


# -- arguments -------------------------------------------------------------------------------------


def add_common_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the flags every training script shares to ``parser`` and return it.

    Scripts change defaults with ``parser.set_defaults(resolution=256, learning_rate=1e-4)``.
    """
    group = parser.add_argument_group("training loop (shared by every core.training script)")
    add = group.add_argument
    add(
        "--output_dir",
        type=str,
        required=True,
        help="Folder for checkpoints, samples, final weights and summary.json.",
    )
    add("--seed", type=int, default=0, help="Seed of the data order, the weight init and every random draw.")
    add("--resolution", type=int, default=512, help="Side of the square training images in pixels.")
    add("--train_batch_size", type=int, default=1, help="Batch size per process (per GPU).")
    add("--max_train_steps", type=int, default=1000, help="Number of optimizer steps to train for.")
    add(
        "--gradient_accumulation_steps",
        type=int,
        default=1,
        help="Micro-batches accumulated into one optimizer step.",
    )
    add(
        "--gradient_checkpointing",
        action="store_true",
        help="Recompute activations in the backward pass of the trained models: less memory, ~30%% slower.",
    )
    add("--learning_rate", type=float, default=1e-4, help="Peak learning rate of AdamW.")
    add("--lr_scheduler", type=str, default="constant", choices=LR_SCHEDULERS, help="Learning-rate schedule.")
    add("--lr_warmup_steps", type=int, default=0, help="Optimizer steps of linear warm-up at the start.")
    add("--adam_beta1", type=float, default=0.9, help="AdamW beta1.")
    add("--adam_beta2", type=float, default=0.999, help="AdamW beta2.")
    add("--adam_weight_decay", type=float, default=1e-2, help="AdamW weight decay.")
    add("--adam_epsilon", type=float, default=1e-8, help="AdamW epsilon.")
    add(
        "--max_grad_norm",
        type=float,
        default=1.0,
        help="Clip the gradient norm to this; 0 turns clipping off.",
    )
    add(
        "--mixed_precision",
        type=str,
        default="no",
        choices=("no", "fp16", "bf16"),
        help="Compute dtype on GPU (frozen weights are stored in it too); CPU runs always use float32.",
    )
    add("--allow_tf32", action="store_true", help="Allow TF32 matmuls on Ampere and newer GPUs (faster).")
    add(
        "--dataloader_num_workers",
        type=int,
        default=0,
        help="DataLoader worker processes; 0 loads in the main one.",
    )
    add(
        "--checkpointing_steps",
        type=int,
        default=500,
        help="Save a checkpoint-STEP folder every N optimizer steps.",
    )
    add(
        "--checkpoints_total_limit",
        type=int,
        default=None,
        help="Keep at most this many checkpoints; the oldest are deleted first. Default: keep all.",
    )
    add(
        "--resume_from_checkpoint",
        type=str,
        default=None,
        help="'latest' (the newest complete, undamaged checkpoint in --output_dir, or a fresh start if there is "
        "none) or a checkpoint folder.",
    )
    add(
        "--allow_inexact_resume",
        action="store_true",
        help="Resume from a checkpoint whose RNG state is missing or damaged (the run then does not repeat an "
        "uninterrupted one exactly); without it such a checkpoint is refused.",
    )
    add(
        "--validation_steps",
        type=int,
        default=500,
        help="Build the pipeline and save samples every N steps and after the last one; 0 turns validation off.",
    )
    add(
        "--report_to",
        type=str,
        default="tensorboard",
        choices=("tensorboard", "none"),
        help="Log loss and learning rate to tensorboard (under OUTPUT_DIR/logs) when it is installed.",
    )
    return parser


def check_common_args(args: argparse.Namespace) -> None:
    """Raise InputError, naming the flag, for a value of the shared flags the loop cannot use."""
    at_least = {
        "resolution": 8,
        "train_batch_size": 1,
        "max_train_steps": 1,
        "gradient_accumulation_steps": 1,
        "checkpointing_steps": 1,
        "lr_warmup_steps": 0,
        "dataloader_num_workers": 0,
        "validation_steps": 0,
    }
    for name, low in at_least.items():
        if getattr(args, name) < low:
            raise InputError(f"--{name} must be at least {low}, got {getattr(args, name)}.")
    if args.checkpoints_total_limit is not None and args.checkpoints_total_limit < 1:
        raise InputError(f"--checkpoints_total_limit must be at least 1, got {args.checkpoints_total_limit}.")
    if not args.learning_rate > 0:
        raise InputError(f"--learning_rate must be positive, got {args.learning_rate}.")
    if args.max_grad_norm < 0:
        raise InputError(f"--max_grad_norm must be 0 (off) or positive, got {args.max_grad_norm}.")
    output_dir = Path(args.output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise InputError(f"--output_dir {output_dir} is a file; give a folder.")
    if args.resume_from_checkpoint is None and any(output_dir.glob(f"{CHECKPOINT_PREFIX}*")):
        raise InputError(
            f"{output_dir} already holds checkpoints of an earlier run: pass --resume_from_checkpoint latest "
            "to continue it, or choose another --output_dir."
        )


# -- helpers ---------------------------------------------------------------------------------------


def weight_dtype(accelerator: Accelerator) -> torch.dtype:
    """The dtype frozen weights are stored in: float16 / bfloat16 under mixed precision, else float32."""
    return {"fp16": torch.float16, "bf16": torch.bfloat16}.get(accelerator.mixed_precision, torch.float32)


def _step_seed(seed: int, step: int, micro: int, process: int) -> int:
    """A seed for one micro-batch that depends only on where it sits in the run (not on history)."""
    return int(np.random.SeedSequence([seed, step, micro, process]).generate_state(1)[0])


def _resolved_mixed_precision(requested: str) -> str:
    from accelerate import PartialState

    if requested != "no" and PartialState().device.type == "cpu":
        logger.warning("--mixed_precision %s needs a GPU; this CPU run uses float32.", requested)
        return "no"
    return requested


def _resolved_tracker(requested: str) -> str | None:
    from accelerate.utils import is_tensorboard_available

    if requested == "tensorboard" and not is_tensorboard_available():
        logger.info("tensorboard is not installed: loss and learning rate go to summary.json only.")
        return None
    return None if requested == "none" else requested


def _tracker_config(args: argparse.Namespace) -> dict:
    """The flags tensorboard can show as hyper-parameters (scalars and strings only)."""
    return {k: v for k, v in vars(args).items() if isinstance(v, int | float | str | bool)}


def _json_args(args: argparse.Namespace) -> dict:
    return {
        k: v if isinstance(v, int | float | str | bool | type(None)) else str(v)
        for k, v in vars(args).items()
    }


def _place_models(task: TrainingTask, accelerator: Accelerator, gradient_checkpointing: bool) -> list[str]:
    """Move models to the device, cast frozen weights, set train/eval; return the names of trained ones."""
    dtype = weight_dtype(accelerator)
    trained = [name for name, m in task.models.items() if any(p.requires_grad for p in m.parameters())]
    if not trained:
        raise InputError(
            f"Task {task.name} has no parameter with requires_grad=True, so nothing would train."
        )
    for name, model in task.models.items():
        model.to(accelerator.device)
        for param in model.parameters():
            if not param.requires_grad and param.dtype != dtype:
                param.data = param.data.to(dtype)
        model.train(name in trained)
        if name in trained and gradient_checkpointing:
            if not hasattr(model, "enable_gradient_checkpointing"):
                raise InputError(
                    f"--gradient_checkpointing: model '{name}' ({type(model).__name__}) does not support it; "
                    "drop the flag."
                )
            model.enable_gradient_checkpointing()
    return trained


def _optimizer_groups(task: TrainingTask, trained: list[str], learning_rate: float) -> list[dict]:
    """AdamW's parameter groups: the trained parameters at ``learning_rate`` x their
    ``task.learning_rate_scales`` factor (1 where no key matches), one group per factor, in model order."""
    groups: dict[float, list[torch.nn.Parameter]] = {}
    for name in trained:
        for param_name, param in task.models[name].named_parameters():
            if not param.requires_grad:
                continue
            full_name = f"{name}.{param_name}"
            keys = [key for key in task.learning_rate_scales if full_name.startswith(key)]
            scale = task.learning_rate_scales[max(keys, key=len)] if keys else 1.0
            groups.setdefault(scale, []).append(param)
    return [{"params": params, "lr": learning_rate * scale} for scale, params in groups.items()]


def _run_validation(
    task: TrainingTask, accelerator: Accelerator, trained: list[str], step: int, output_dir: Path
):
    """Run ``task.validate`` on the main process into OUTPUT_DIR/validation/step-STEP."""
    if not accelerator.is_main_process:
        return
    folder = output_dir / "validation" / f"step-{step}"
    folder.mkdir(parents=True, exist_ok=True)
    for name in trained:
        task.models[name].eval()
    with torch.no_grad(), accelerator.autocast():
        task.validate(task.models, step, folder)
    for name in trained:
        task.models[name].train()


# -- the loop --------------------------------------------------------------------------------------


def run_training(args: argparse.Namespace, build_task: TaskBuilder) -> dict:
    """Train the task that ``build_task(args, accelerator)`` returns; return the summary dict.

    ``build_task`` runs after the Accelerator exists and the seed is set, so weight init (e.g. LoRA) is
    reproducible and the builder may use ``accelerator.device`` and :func:`weight_dtype`.
    The summary (also written to ``OUTPUT_DIR/summary.json`` by the main process) holds: ``task``,
    ``steps`` (optimizer steps done), ``start_step`` and ``resumed_from`` (0 / None for a fresh run),
    ``loss_curve`` (mean loss of step i+1 at index i, over micro-batches and processes, resumed runs
    included), ``validated_at``, ``checkpoints``, ``wall_time_s`` and ``seconds_per_step`` of this
    invocation, ``trained_parameters``, ``num_processes``, ``mixed_precision``, ``weights_dir`` and
    ``args``. Raises InputError for unusable flags.
    """
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, set_seed
    from diffusers.optimization import get_scheduler
    from tqdm.auto import tqdm

    started = time.perf_counter()
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    check_common_args(args)
    output_dir = Path(args.output_dir)
    tracker = _resolved_tracker(args.report_to)
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=_resolved_mixed_precision(args.mixed_precision),
        log_with=tracker,
        project_config=ProjectConfiguration(
            project_dir=str(output_dir), logging_dir=str(output_dir / "logs")
        ),
        # Data order = f(seed, epoch) on every process: what lets a resumed epoch skip exactly its used batches.
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=args.seed),
    )
    # Checked before any model is built, for as many RNG files as there are processes.
    resume = resolve_resume(
        args.resume_from_checkpoint,
        output_dir,
        num_processes=accelerator.num_processes,
        allow_inexact_resume=args.allow_inexact_resume,
    )
    resumed_from = resume.folder if resume is not None else None
    # `accelerate launch --gradient_accumulation_steps` or a DeepSpeed config may override the flag.
    accumulation = accelerator.gradient_accumulation_steps
    if args.allow_tf32 and torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = True
    set_seed(args.seed)
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)

    # 1. The task: models on the device, frozen weights cast, the trained parameters.
    task = build_task(args, accelerator)
    trained = _place_models(task, accelerator, args.gradient_checkpointing)
    groups = _optimizer_groups(task, trained, args.learning_rate)
    params = [p for group in groups for p in group["params"]]

    # 2. Optimizer, data, schedule; accelerate wraps them.
    optimizer = torch.optim.AdamW(
        groups,
        lr=args.learning_rate,
        betas=(args.adam_beta1, args.adam_beta2),
        weight_decay=args.adam_weight_decay,
        eps=args.adam_epsilon,
    )
    if len(task.dataset) == 0:
        raise InputError(f"The dataset of {task.name} is empty; check the data folder.")
    loader = DataLoader(
        task.dataset,
        batch_size=args.train_batch_size,
        shuffle=True,
        collate_fn=task.collate_fn,
        num_workers=args.dataloader_num_workers,
    )
    # The prepared scheduler steps once per process at each optimizer step.
    lr_scheduler = get_scheduler(
        args.lr_scheduler,
        optimizer,
        num_warmup_steps=args.lr_warmup_steps * accelerator.num_processes,
        num_training_steps=args.max_train_steps * accelerator.num_processes,
    )
    *wrapped, optimizer, loader, lr_scheduler = accelerator.prepare(
        *[task.models[name] for name in trained], optimizer, loader, lr_scheduler
    )
    step_models = {**task.models, **dict(zip(trained, wrapped))}

    # 3. Checkpoint hooks: the task writes and reads the trained weights; accelerate keeps the rest.
    def save_hook(models: list, weights: list, folder: str) -> None:
        if accelerator.is_main_process:
            task.save_weights(task.models, Path(folder))
        weights.clear()  # otherwise accelerate also writes full copies of the models

    def load_hook(models: list, folder: str) -> None:
        task.load_weights(task.models, Path(folder))
        models.clear()  # loaded; accelerate must not look for full copies

    accelerator.register_save_state_pre_hook(save_hook)
    accelerator.register_load_state_pre_hook(load_hook)

    # 4. Resume.
    global_step, loss_curve, validated_at = 0, [], []
    if resume is not None:
        state = load_checkpoint(accelerator, resume)
        global_step, loss_curve = state["global_step"], state["loss_curve"]
        validated_at = state["validated_at"]
    start_step = global_step
    validating = task.validate is not None and args.validation_steps > 0
    if tracker is not None:
        accelerator.init_trackers(task.name, config=_tracker_config(args))

    # Within an epoch every optimizer step uses `accumulation` batches (only the last may use fewer).
    steps_per_epoch = math.ceil(len(loader) / accumulation)
    epoch, steps_done_in_epoch = divmod(global_step, steps_per_epoch)
    logger.info(
        "Training %s: %d trained parameters, %d examples, %d processes, batch %d x %d accumulation, steps %d -> %d.",
        task.name,
        sum(p.numel() for p in params),
        len(task.dataset),
        accelerator.num_processes,
        args.train_batch_size,
        accumulation,
        global_step,
        args.max_train_steps,
    )

    # 5. The loop.
    progress = tqdm(
        total=args.max_train_steps,
        initial=global_step,
        desc=task.name,
        disable=not accelerator.is_local_main_process,
    )
    loop_started = time.perf_counter()
    micro_losses: list[float] = []
    while global_step < args.max_train_steps:
        loader.set_epoch(epoch)
        batches = loader
        if steps_done_in_epoch:
            batches = accelerator.skip_first_batches(loader, steps_done_in_epoch * accumulation)
            steps_done_in_epoch = 0
        for batch in batches:
            set_seed(_step_seed(args.seed, global_step, len(micro_losses), accelerator.process_index))
            with accelerator.accumulate(*wrapped):
                with accelerator.autocast():
                    loss = task.compute_loss(batch, step_models)
                micro_losses.append(accelerator.reduce(loss.detach().float(), "mean").item())
                if not math.isfinite(micro_losses[-1]):
                    raise FloatingPointError(
                        f"The loss is {micro_losses[-1]} at step {global_step + 1}: lower --learning_rate, "
                        "or use --mixed_precision bf16 instead of fp16."
                    )
                accelerator.backward(loss)
                if accelerator.sync_gradients and args.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(params, args.max_grad_norm)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            if not accelerator.sync_gradients:
                continue

            global_step += 1
            loss_curve.append(sum(micro_losses) / len(micro_losses))
            micro_losses = []
            lr = lr_scheduler.get_last_lr()[0]
            progress.update(1)
            progress.set_postfix(loss=f"{loss_curve[-1]:.4f}", lr=f"{lr:.2e}")
            accelerator.log({"loss": loss_curve[-1], "lr": lr}, step=global_step)
            validate_now = validating and global_step % args.validation_steps == 0
            if validate_now:
                validated_at.append(global_step)
            # Checkpoint before validating: a failing validation must not cost the training progress.
            if global_step % args.checkpointing_steps == 0:
                state = {"global_step": global_step, "loss_curve": loss_curve, "validated_at": validated_at}
                save_checkpoint(accelerator, output_dir, args.checkpoints_total_limit, state)
            if validate_now:
                _run_validation(task, accelerator, trained, global_step, output_dir)
            if global_step >= args.max_train_steps:
                break
        epoch += 1
    progress.close()
    train_seconds = time.perf_counter() - loop_started

    # 6. Final weights, a last validation, the summary.
    accelerator.wait_for_everyone()
    if validating and (not validated_at or validated_at[-1] != global_step):
        _run_validation(task, accelerator, trained, global_step, output_dir)
        validated_at.append(global_step)
    if accelerator.is_main_process:
        task.save_weights(task.models, output_dir)
    steps_run = global_step - start_step
    summary = {
        "task": task.name,
        "steps": global_step,
        "start_step": start_step,
        "resumed_from": str(resumed_from) if resumed_from is not None else None,
        "loss_curve": loss_curve,
        "validated_at": validated_at,
        "checkpoints": [folder.name for folder in list_checkpoints(output_dir)],
        "wall_time_s": time.perf_counter() - started,
        "seconds_per_step": train_seconds / steps_run if steps_run else None,
        "trained_parameters": sum(p.numel() for p in params),
        "num_processes": accelerator.num_processes,
        "mixed_precision": accelerator.mixed_precision,
        "gradient_accumulation_steps": accumulation,
        "weights_dir": str(output_dir),
        "args": _json_args(args),
    }
    if accelerator.is_main_process:
        (output_dir / SUMMARY_NAME).write_text(json.dumps(summary, indent=2))
        logger.info(
            "Done: %d steps in %.1f s, final loss %s; weights in %s.",
            global_step,
            summary["wall_time_s"],
            f"{loss_curve[-1]:.4f}" if loss_curve else "n/a",
            output_dir,
        )
    accelerator.end_training()
    return summary


def script_main(
    build_parser: Callable[[], argparse.ArgumentParser],
    check_args: Callable[[argparse.Namespace], None],
    build_task: TaskBuilder,
    argv: Sequence[str] | None = None,
) -> int:
    """The ``main()`` of every training script: parse, check, train. Our errors (bad flags, unusable
    data, missing weights) print one line on stderr and give exit code 2."""
    args = build_parser().parse_args(argv)
    try:
        check_args(args)
        run_training(args, build_task)
    except KinemaError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
