"""Checkpoint folders of the training loop: ``checkpoint-STEP/`` with accelerate's state (optimizer, schedule,
RNG, the trained weights through the task's save hooks) and ``trainer_state.json``, written last so that a
folder without it is an interrupted save that ``latest`` ignores."""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import InputError

if TYPE_CHECKING:
    from accelerate import Accelerator

logger = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "checkpoint-"
TRAINER_STATE_NAME = "trainer_state.json"


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """Complete ``checkpoint-STEP`` folders in ``output_dir`` (with trainer_state.json), oldest step first."""
    found = []
    for folder in Path(output_dir).glob(f"{CHECKPOINT_PREFIX}*"):
        match = re.fullmatch(rf"{CHECKPOINT_PREFIX}(\d+)", folder.name)
        if match and (folder / TRAINER_STATE_NAME).is_file():
            found.append((int(match.group(1)), folder))
    return [folder for _, folder in sorted(found)]


def resolve_resume(value: str | None, output_dir: Path) -> Path | None:
    """The checkpoint folder ``--resume_from_checkpoint VALUE`` names: None (start anew), the newest complete
    one for "latest" (None when there is none yet), or the given folder, which must be complete."""
    if value is None:
        return None
    if value == "latest":
        checkpoints = list_checkpoints(output_dir)
        if not checkpoints:
            logger.info("No checkpoint in %s yet: starting a new run.", output_dir)
            return None
        return checkpoints[-1]
    folder = Path(value).expanduser()
    if not (folder / TRAINER_STATE_NAME).is_file():
        raise InputError(
            f"--resume_from_checkpoint {value} is not a complete checkpoint folder (no {TRAINER_STATE_NAME}); "
            f"give a {CHECKPOINT_PREFIX}STEP folder written by this loop, or 'latest'."
        )
    return folder


def save_checkpoint(accelerator: Accelerator, output_dir: Path, limit: int | None, state: dict) -> Path:
    """Prune to ``limit - 1`` old checkpoints, then save accelerate's state and trainer_state.json."""
    folder = output_dir / f"{CHECKPOINT_PREFIX}{state['global_step']}"
    if accelerator.is_main_process and limit is not None:
        existing = list_checkpoints(output_dir)
        for old in existing[: max(0, len(existing) - limit + 1)]:
            logger.info("Removing %s (--checkpoints_total_limit %d).", old, limit)
            shutil.rmtree(old)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(folder))  # every process: DeepSpeed shards and per-process RNG files
    if accelerator.is_main_process:
        # Written last: a folder without it is an interrupted save, which `latest` ignores.
        (folder / TRAINER_STATE_NAME).write_text(json.dumps(state))
    accelerator.wait_for_everyone()
    return folder
