"""Checkpoint folders of the training loop: written atomically, checked before anything in them is loaded.

Layout: ``OUTPUT_DIR/checkpoint-STEP/`` holds accelerate's state (``optimizer.bin``, ``scheduler.bin``, one
``random_states_P.pkl`` per process, the trained weights through the task's save hooks, DeepSpeed's shards
in sub-folders), ``trainer_state.json`` (``global_step``, ``loss_curve``, ``validated_at``) and
``manifest.json`` (format version, step, and every other file's size and sha256).

Writing: every process saves into ``OUTPUT_DIR/.partial-checkpoint-STEP/``, a name that ``latest`` never
picks; the main process then writes trainer_state.json and, last, the manifest, fsyncs them, and renames
the folder to ``checkpoint-STEP``. A killed save leaves only a ``.partial-`` folder behind, and
``--checkpoints_total_limit`` prunes old checkpoints only once the new one is in place.

Reading: a checkpoint is used only when its files are exactly those of its manifest (none missing, added,
resized or changed) and trainer_state.json holds a consistent step, loss curve and validation steps.
Checksums are compared before any file is unpickled: accelerate's optimizer and RNG files are pickles
(read with ``weights_only``), and the checksum is what tells a damaged or swapped file from ours.
``latest`` takes the newest usable checkpoint and logs one line per newer one it skips, naming the damaged
file; a damaged checkpoint named explicitly is an InputError naming the file. A folder written before
manifests existed (trainer_state.json, no manifest.json) is used with a warning once every file in it has
been read back (JSON parsed, tensors loaded): without checksums that is all that can be checked.

Exact resume needs every process's RNG file: a missing or damaged one is refused unless
``--allow_inexact_resume``, which resumes without it (the damaged file is never read) and warns.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import InputError

if TYPE_CHECKING:
    from accelerate import Accelerator

logger = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "checkpoint-"
PARTIAL_PREFIX = ".partial-"  # + checkpoint-STEP: a save in progress, or one that was killed
TRAINER_STATE_NAME = "trainer_state.json"
MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 1
# What a checkpoint from before manifests must hold besides its RNG files and some .safetensors weights.
LEGACY_REQUIRED = (TRAINER_STATE_NAME, "optimizer.bin", "scheduler.bin")
_STEP_NAME = re.compile(rf"{CHECKPOINT_PREFIX}(\d+)")
_RNG_NAME = re.compile(r"random_states_\d+\.pkl")
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Damage:
    """What is wrong with a checkpoint: ``file`` (relative to the folder, "" for the folder itself) and a
    ``problem`` that completes the sentence "FOLDER/FILE ..."; ``rng`` when the file is an RNG state."""

    folder: str
    file: str
    problem: str

    @property
    def rng(self) -> bool:
        return bool(_RNG_NAME.fullmatch(self.file))

    def __str__(self) -> str:
        return f"{self.folder}/{self.file} {self.problem}" if self.file else f"{self.folder} {self.problem}"


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint chosen for resuming: its folder and the RNG files it resumes without (all damaged or
    missing, allowed by ``--allow_inexact_resume``)."""

    folder: Path
    inexact: tuple[Damage, ...] = ()


def checkpoint_step(folder: Path) -> int | None:
    """STEP of a folder named ``checkpoint-STEP``, else None."""
    match = _STEP_NAME.fullmatch(folder.name)
    return int(match.group(1)) if match else None


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """The ``checkpoint-STEP`` folders in ``output_dir`` that a save completed (manifest, or the
    trainer_state.json of an older save), oldest step first; not checked further (see
    :func:`inspect_checkpoint`), and never symbolic links."""
    found = [
        (checkpoint_step(folder), folder)
        for folder in Path(output_dir).glob(f"{CHECKPOINT_PREFIX}*")
        if checkpoint_step(folder) is not None and folder.is_dir() and not folder.is_symlink()
    ]
    complete = [
        (step, folder)
        for step, folder in found
        if (folder / MANIFEST_NAME).is_file() or (folder / TRAINER_STATE_NAME).is_file()
    ]
    return [folder for _, folder in sorted(complete)]


# -- writing ---------------------------------------------------------------------------------------


def _fsync(path: Path) -> None:
    """Flush a file's or a folder's (its entries') data to disk."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _entries(folder: Path) -> dict[str, Path]:
    """Everything under ``folder`` except sub-folders (files and symbolic links), by relative POSIX name.
    Symbolic links to folders are listed and not followed."""
    entries = {}
    for root, dirs, files in os.walk(folder):
        for name in files + [d for d in dirs if Path(root, d).is_symlink()]:
            path = Path(root, name)
            entries[path.relative_to(folder).as_posix()] = path
    return entries


def write_manifest(folder: Path, step: int) -> None:
    """Write ``manifest.json`` (format, step, every file's size and sha256) into a finished checkpoint
    ``folder``, after flushing every file and folder under it to disk."""
    files = {}
    for name, path in sorted(_entries(folder).items()):
        if name == MANIFEST_NAME:
            continue  # the one being (re)written
        _fsync(path)
        files[name] = {"size": path.stat().st_size, "sha256": _sha256(path)}
    text = json.dumps({"format": MANIFEST_FORMAT, "step": step, "files": files}, indent=1)
    with (folder / MANIFEST_NAME).open("w") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())
    for root, _, _ in os.walk(folder):
        _fsync(Path(root))


def _prune(output_dir: Path, limit: int) -> None:
    existing = list_checkpoints(output_dir)
    for old in existing[: max(0, len(existing) - limit)]:
        logger.info("Removing %s (--checkpoints_total_limit %d).", old.name, limit)
        shutil.rmtree(old)


def save_checkpoint(accelerator: Accelerator, output_dir: Path, limit: int | None, state: dict) -> Path:
    """Save accelerate's state and trainer_state.json (``state``) as ``output_dir/checkpoint-STEP``, atomically
    (see the module docstring), then prune to ``limit`` checkpoints. Every process must call it. A folder
    already named checkpoint-STEP (damaged, or from a run resumed from an older step) is kept, renamed
    ``checkpoint-STEP.replaced-TIME``."""
    final = output_dir / f"{CHECKPOINT_PREFIX}{state['global_step']}"
    partial = output_dir / f"{PARTIAL_PREFIX}{final.name}"
    if accelerator.is_main_process and partial.exists():
        shutil.rmtree(partial)  # an earlier save of this step that was killed
    accelerator.wait_for_everyone()
    accelerator.save_state(str(partial))  # every process: its RNG file, DeepSpeed shards
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (partial / TRAINER_STATE_NAME).write_text(json.dumps(state))
        write_manifest(partial, state["global_step"])
        if final.exists() or final.is_symlink():
            kept = final.with_name(f"{final.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}")
            logger.warning("%s already exists: kept as %s.", final.name, kept.name)
            final.rename(kept)
        os.replace(partial, final)
        _fsync(output_dir)
        if limit is not None:
            _prune(output_dir, limit)
    accelerator.wait_for_everyone()
    return final


# -- checking --------------------------------------------------------------------------------------


def _trainer_state_problem(text: str) -> str | None:
    """Why trainer_state.json's text cannot be resumed from, or None."""
    try:
        state = json.loads(text)
    except ValueError:
        return "is not valid JSON"
    if not isinstance(state, dict):
        return "does not hold a JSON object"
    for key, kind in (("global_step", int), ("loss_curve", list), ("validated_at", list)):
        if key not in state:
            return f"has no {key}"
        if isinstance(state[key], bool) or not isinstance(state[key], kind):
            return f"has a {key} that is not {'a whole number' if kind is int else 'a list'}"
    step, curve, validated = state["global_step"], state["loss_curve"], state["validated_at"]
    if step < 1:
        return f"has global_step {step}, not a step a checkpoint is saved at"
    if len(curve) != step or not all(
        isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) for x in curve
    ):
        return f"has a loss_curve that is not {step} finite numbers"
    if not all(isinstance(x, int) and not isinstance(x, bool) and 1 <= x <= step for x in validated):
        return f"has a validated_at that is not a list of steps up to {step}"
    return None


def _unreadable(path: Path) -> bool:
    """Whether a file of a checkpoint without manifest fails to read back (by its suffix)."""
    from accelerate.utils import load

    try:
        if path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".safetensors":
            from safetensors.torch import load_file

            load_file(path)
        elif path.suffix in (".bin", ".pkl", ".pt"):
            load(path, map_location="cpu")  # weights_only: no code runs
    except Exception:  # noqa: BLE001 - whatever a damaged file raises, it is damaged
        return True
    return False


def _inside(name: str) -> bool:
    """Whether a manifest's file name stays inside the checkpoint folder."""
    parts = Path(name).parts
    return bool(parts) and not Path(name).is_absolute() and ".." not in parts


def _manifest_damage(folder: Path, entries: dict[str, Path]) -> list[Damage]:
    """Damage found by comparing ``entries`` with the manifest: missing, extra, resized, changed files."""
    damage = []

    def found(file: str, problem: str) -> None:
        damage.append(Damage(folder.name, file, problem))

    try:
        manifest = json.loads((folder / MANIFEST_NAME).read_text())
        files, step = manifest["files"], manifest["step"]
        valid = (
            manifest["format"] == MANIFEST_FORMAT
            and isinstance(step, int)
            and isinstance(files, dict)
            and all(
                isinstance(v, dict)
                and isinstance(v.get("size"), int)
                and _SHA256.fullmatch(str(v.get("sha256")))
                for v in files.values()
            )
            and all(_inside(name) for name in files)
        )
    except (ValueError, KeyError, TypeError):
        valid = False
    if not valid:
        found(MANIFEST_NAME, f"is not a format-{MANIFEST_FORMAT} manifest written by this loop")
        return damage
    if TRAINER_STATE_NAME not in files:
        found(TRAINER_STATE_NAME, f"is not listed in {MANIFEST_NAME}")
    if checkpoint_step(folder) not in (None, step):
        found(MANIFEST_NAME, f"is for step {step}, not this folder's")
    for name, expected in files.items():
        path = entries.get(name)
        if path is None:
            found(name, "is missing")
        elif path.is_symlink():
            found(name, "is a symbolic link, not a file this loop wrote")
        elif path.stat().st_size != expected["size"]:
            found(name, f"has {path.stat().st_size} bytes where {MANIFEST_NAME} says {expected['size']}")
        elif _sha256(path) != expected["sha256"]:
            found(name, f"does not match its checksum in {MANIFEST_NAME}")
    for name in sorted(set(entries) - set(files) - {MANIFEST_NAME}):
        found(name, f"is not listed in {MANIFEST_NAME}")
    return damage


def _legacy_damage(folder: Path, entries: dict[str, Path]) -> list[Damage]:
    """Damage of a checkpoint from before manifests: required files missing, files that fail to read."""
    damage = [Damage(folder.name, name, "is missing") for name in LEGACY_REQUIRED if name not in entries]
    if not any(name.endswith(".safetensors") for name in entries):
        damage.append(Damage(folder.name, "", "holds no .safetensors weights"))
    for name, path in sorted(entries.items()):
        if path.is_symlink():
            damage.append(Damage(folder.name, name, "is a symbolic link, not a file this loop wrote"))
        elif _unreadable(path):
            damage.append(Damage(folder.name, name, "cannot be read back (damaged or truncated)"))
    return damage


def inspect_checkpoint(folder: Path, num_processes: int = 1) -> list[Damage]:
    """Everything wrong with checkpoint ``folder`` for a run on ``num_processes`` processes (see the module
    docstring); empty when it can be resumed from exactly. Reads every file once (checksums); unpickles
    none of a checkpoint with manifest."""
    if folder.is_symlink():
        return [Damage(folder.name, "", "is a symbolic link; copy the checkpoint folder instead")]
    if not folder.is_dir():
        return [Damage(folder.name, "", "is not a folder")]
    if folder.name.startswith(PARTIAL_PREFIX):
        return [Damage(folder.name, "", "is a save that was interrupted (no manifest.json)")]
    entries = _entries(folder)
    if MANIFEST_NAME in entries:
        damage = _manifest_damage(folder, entries)
    elif TRAINER_STATE_NAME not in entries:
        return [
            Damage(
                folder.name, "", f"is not a complete checkpoint (no {MANIFEST_NAME}, no {TRAINER_STATE_NAME})"
            )
        ]
    else:
        damage = _legacy_damage(folder, entries)
    if not any(d.file == TRAINER_STATE_NAME for d in damage):
        text = (folder / TRAINER_STATE_NAME).read_text(errors="replace")
        problem = _trainer_state_problem(text)
        if problem is None and checkpoint_step(folder) not in (None, json.loads(text)["global_step"]):
            problem = "is for another step than this folder's"
        if problem:
            damage.append(Damage(folder.name, TRAINER_STATE_NAME, problem))
    damaged = {d.file for d in damage}
    for process in range(num_processes):
        name = f"random_states_{process}.pkl"
        if name not in entries and name not in damaged:
            damage.append(Damage(folder.name, name, f"is missing (the RNG state of process {process})"))
    return damage


# -- choosing and loading --------------------------------------------------------------------------


def _usable(damage: list[Damage], allow_inexact_resume: bool) -> bool:
    return not damage or (allow_inexact_resume and all(d.rng for d in damage))


def _refusal(damage: list[Damage]) -> str:
    """The end of the sentence that refuses a checkpoint with this damage."""
    if all(d.rng for d in damage):
        return "so it cannot resume exactly; pass --allow_inexact_resume to resume without that RNG state"
    return "so it cannot be resumed from"


def resolve_resume(
    value: str | None, output_dir: Path, num_processes: int = 1, allow_inexact_resume: bool = False
) -> Checkpoint | None:
    """The checkpoint ``--resume_from_checkpoint VALUE`` names, checked (:func:`inspect_checkpoint`): None to
    start anew (no VALUE, or "latest" with no checkpoint yet), the newest usable checkpoint for "latest"
    (each newer one skipped is logged with its damage), or the given folder. Raises InputError, naming the
    damaged file, for a damaged folder given by name and when "latest" finds only damaged ones."""
    if value is None:
        return None
    if value != "latest":
        folder = Path(value).expanduser()
        if not folder.exists() and not folder.is_symlink():
            raise InputError(
                f"--resume_from_checkpoint: {folder.name} does not exist; give a checkpoint-STEP folder or 'latest'."
            )
        damage = inspect_checkpoint(folder, num_processes)
        if not _usable(damage, allow_inexact_resume):
            raise InputError(f"--resume_from_checkpoint: {damage[0]}, {_refusal(damage)}.")
        return _chosen(folder, damage, "as named")
    for partial in sorted(output_dir.glob(f"{PARTIAL_PREFIX}{CHECKPOINT_PREFIX}*")):
        logger.warning("Ignoring %s: a checkpoint save that was interrupted.", partial.name)
    candidates = sorted(
        (p for p in output_dir.glob(f"{CHECKPOINT_PREFIX}*") if checkpoint_step(p) is not None),
        key=checkpoint_step,
        reverse=True,
    )
    if not candidates:
        logger.info("No checkpoint in %s yet: starting a new run.", output_dir)
        return None
    newest_damage = None
    for folder in candidates:
        damage = inspect_checkpoint(folder, num_processes)
        if _usable(damage, allow_inexact_resume):
            return _chosen(folder, damage, "the newest usable checkpoint in --output_dir")
        newest_damage = newest_damage or damage
        logger.warning("Skipping %s: %s, %s.", folder.name, damage[0], _refusal(damage))
    raise InputError(
        f"--resume_from_checkpoint latest: no usable checkpoint in --output_dir (the newest: {newest_damage[0]}, "
        f"{_refusal(newest_damage)}); give a checkpoint folder or another --output_dir."
    )


def _chosen(folder: Path, damage: list[Damage], why: str) -> Checkpoint:
    if not (folder / MANIFEST_NAME).is_file():
        logger.warning(
            "%s has no %s (saved by an earlier version): its files were read back but cannot be checksummed.",
            folder.name,
            MANIFEST_NAME,
        )
    for d in damage:
        logger.warning("%s: resuming without it (--allow_inexact_resume), so exact resume is lost.", d)
    logger.info("Resuming from %s (%s).", folder.name, why)
    return Checkpoint(folder, tuple(damage))


@contextlib.contextmanager
def _without(folder: Path, names: set[str]) -> Iterator[Path]:
    """``folder`` itself, or when it holds any of ``names``, a temporary folder of links to everything else
    in it: what accelerate loads when it must not read those files."""
    if not any((folder / name).exists() for name in names):
        yield folder
        return
    with tempfile.TemporaryDirectory(prefix="kinema-resume-") as view:
        for entry in folder.iterdir():
            if entry.name not in names:
                (Path(view) / entry.name).symlink_to(entry.resolve())
        yield Path(view)


def load_checkpoint(accelerator: Accelerator, checkpoint: Checkpoint) -> dict:
    """Load a checked checkpoint into the prepared objects of ``accelerator`` (weights through the load
    hooks, optimizer, schedule, RNG unless skipped) and return its trainer_state.json. Raises InputError
    when the checkpoint does not fit this run's models or optimizer (other model flags)."""
    import torch

    skipped = {d.file for d in checkpoint.inexact}
    with _without(checkpoint.folder, skipped) as folder:
        try:
            accelerator.load_state(str(folder))
        except torch.OutOfMemoryError:
            raise  # a RuntimeError too, but not a mismatch
        except (RuntimeError, ValueError, KeyError, IndexError, OSError) as err:
            raise InputError(
                f"{checkpoint.folder.name} does not fit this run's trained weights or optimizer; resume with "
                "the model flags it was trained with (e.g. --rank), or start another --output_dir."
            ) from err
    return json.loads((checkpoint.folder / TRAINER_STATE_NAME).read_text())
