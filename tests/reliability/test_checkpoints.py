"""Training resume on the damaged-checkpoint corpus (tests/reliability/checkpoint_damage.py).

One real tiny ``sd_lora`` run (module fixture) leaves checkpoint-2 and checkpoint-4; each case damages a copy
of checkpoint-4 and goes through three entry points: ``--resume_from_checkpoint latest`` falls back to
checkpoint-2 and logs one line naming the damage; the damaged folder named explicitly is refused with one
clear sentence naming the file; the training CLI given it exits 2 with that sentence. In every case nothing
the user had is deleted or changed. Then real resumes: a fallback that repeats the run exactly and keeps the
damaged folder, the RNG state that needs --allow_inexact_resume, and a checkpoint of other model flags.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

import pytest
import safetensors.torch
import torch
from accelerate.state import AcceleratorState, GradientState

from core.data.synthetic import write_image_depth_folder
from core.errors import InputError
from core.training import checkpoints, sd_lora
from core.training.common import SUMMARY_NAME
from tests.reliability.checkpoint_damage import (
    DATA_FILES,
    MANIFEST_NAME,
    RNG_NAME,
    WEIGHTS_NAME,
    checkpoint_case_names,
    damage_checkpoint,
)
from tests.reliability.corpus import assert_clear_message

PREVIOUS, NEWEST = "checkpoint-2", "checkpoint-4"
FLAGS = (
    "--pretrained_model", "tiny",
    "--resolution", "16",
    "--train_batch_size", "1",
    "--max_train_steps", "4",
    "--checkpointing_steps", "2",
    "--validation_steps", "0",
    "--report_to", "none",
    "--seed", "0",
)  # fmt: skip
CASES = checkpoint_case_names()
REFUSED = [name for name, refuse in CASES.items() if refuse]


def _reset_accelerate() -> None:
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


def _train(data_dir: Path, output_dir: Path, *extra: str, capsys=None) -> tuple[int, str]:
    """sd_lora's ``main`` in this process: (exit code, stderr when ``capsys`` is given)."""
    try:
        code = sd_lora.main([*FLAGS, "--data_dir", str(data_dir), "--output_dir", str(output_dir), *extra])
    finally:
        _reset_accelerate()
    return code, capsys.readouterr().err if capsys is not None else ""


@pytest.fixture(scope="module")
def good_run(tmp_path_factory) -> tuple[Path, Path]:
    """(data folder, output folder of a 4-step run with its two checkpoints)."""
    data_dir = tmp_path_factory.mktemp("data")
    write_image_depth_folder(data_dir, n=2, size=(16, 16), seed=0)
    output_dir = tmp_path_factory.mktemp("good") / "run"
    assert _train(data_dir, output_dir)[0] == 0
    assert sorted(p.name for p in (output_dir / NEWEST).iterdir()) == sorted((*DATA_FILES, MANIFEST_NAME))
    assert [p.name for p in checkpoints.list_checkpoints(output_dir)] == [PREVIOUS, NEWEST]
    return data_dir, output_dir


def _snapshot(root: Path) -> dict[str, str]:
    """Every path under ``root`` (links not followed) -> its content's digest, a link's target, or "dir"."""
    found = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder, name)
            key = str(path.relative_to(root))
            if path.is_symlink():
                found[key] = f"-> {os.readlink(path)}"
            elif path.is_dir():
                found[key] = "dir"
            else:
                found[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


@pytest.fixture
def damaged(request, good_run, tmp_path):
    """(case, output folder): a copy of the good run with case ``request.param`` applied."""
    output_dir = tmp_path / "run"
    shutil.copytree(good_run[1], output_dir, symlinks=True)
    (tmp_path / "elsewhere").mkdir()
    case = damage_checkpoint(output_dir, NEWEST, request.param, tmp_path / "elsewhere")
    before = _snapshot(tmp_path)
    yield case, output_dir
    assert _snapshot(tmp_path) == before, "a file the user had was deleted or changed"


@pytest.mark.parametrize("damaged", list(CASES), indirect=True)
def test_latest_falls_back_and_says_why(damaged, caplog):
    case, output_dir = damaged
    with caplog.at_level(logging.INFO, logger=checkpoints.__name__):
        chosen = checkpoints.resolve_resume("latest", output_dir)
    if not case.refuse:
        assert chosen.folder == output_dir / NEWEST
        return
    assert chosen.folder == output_dir / PREVIOUS and chosen.inexact == ()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    about = [line for line in warnings if case.mention in line]
    assert len(about) == 1, warnings
    assert_clear_message(about[0])
    assert f"Resuming from {PREVIOUS}" in caplog.text


@pytest.mark.parametrize("damaged", list(CASES), indirect=True)
def test_named_damaged_checkpoint_is_refused_naming_the_file(damaged):
    case, output_dir = damaged
    if not case.refuse:
        assert checkpoints.resolve_resume(str(case.target), output_dir).folder == case.target
        return
    with pytest.raises(InputError) as refused:
        checkpoints.resolve_resume(str(case.target), output_dir)
    assert_clear_message(str(refused.value))
    assert case.mention in str(refused.value)


@pytest.mark.parametrize("damaged", REFUSED, indirect=True)
def test_cli_exits_2_with_one_line(damaged, good_run, capsys):
    case, output_dir = damaged
    code, err = _train(good_run[0], output_dir, "--resume_from_checkpoint", str(case.target), capsys=capsys)
    assert code == 2
    assert err.startswith("error: ") and case.mention in err
    assert_clear_message(err)


@pytest.mark.parametrize("damaged", ["file:optimizer.bin:random_bytes"], indirect=True)
def test_checksums_are_compared_before_anything_is_unpickled(damaged, monkeypatch):
    case, output_dir = damaged

    def no_unpickling(*args, **kwargs):
        raise AssertionError("torch.load ran on a checkpoint that has a manifest")

    monkeypatch.setattr(torch, "load", no_unpickling)
    assert checkpoints.resolve_resume("latest", output_dir).folder == output_dir / PREVIOUS
    with pytest.raises(InputError, match="optimizer.bin does not match its checksum"):
        checkpoints.resolve_resume(str(case.target), output_dir)


@pytest.mark.parametrize("damaged", ["legacy:optimizer.bin:truncated"], indirect=True)
def test_legacy_checkpoints_are_read_back_and_used_with_a_warning(damaged, caplog):
    _, output_dir = damaged
    with caplog.at_level(logging.WARNING, logger=checkpoints.__name__):
        chosen = checkpoints.resolve_resume("latest", output_dir)
    assert chosen.folder == output_dir / PREVIOUS
    assert f"{PREVIOUS} has no {MANIFEST_NAME} (saved by an earlier version)" in caplog.text


def _run_copy(good_run, tmp_path) -> Path:
    output_dir = tmp_path / "run"
    shutil.copytree(good_run[1], output_dir)
    return output_dir


def test_every_process_needs_its_rng_state(good_run, tmp_path):
    output_dir = _run_copy(good_run, tmp_path)
    with pytest.raises(InputError, match="random_states_1.pkl is missing .* --allow_inexact_resume"):
        checkpoints.resolve_resume(str(output_dir / NEWEST), output_dir, num_processes=2)
    with pytest.raises(InputError, match="no usable checkpoint"):
        checkpoints.resolve_resume("latest", output_dir, num_processes=2)
    chosen = checkpoints.resolve_resume("latest", output_dir, num_processes=2, allow_inexact_resume=True)
    assert chosen.folder == output_dir / NEWEST
    assert [d.file for d in chosen.inexact] == ["random_states_1.pkl"]


def test_fallback_resume_repeats_the_run_and_keeps_the_damaged_folder(good_run, tmp_path, capsys, caplog):
    """checkpoint-4's optimizer state is damaged: latest resumes from checkpoint-2, steps 3-4 come out as
    in the good run, bit for bit, and the damaged folder is kept aside when the new checkpoint-4 is saved."""
    data_dir, good_dir = good_run
    output_dir = _run_copy(good_run, tmp_path)
    damaged_bytes = (output_dir / NEWEST / "optimizer.bin").read_bytes()[:100]
    (output_dir / NEWEST / "optimizer.bin").write_bytes(damaged_bytes)
    code, err = _train(data_dir, output_dir, "--resume_from_checkpoint", "latest", capsys=capsys)
    assert code == 0, err
    assert f"Skipping {NEWEST}: {NEWEST}/optimizer.bin has 100 bytes" in caplog.text
    summary = json.loads((output_dir / SUMMARY_NAME).read_text())
    good = json.loads((good_dir / SUMMARY_NAME).read_text())
    assert (summary["start_step"], summary["steps"]) == (2, 4)
    assert summary["loss_curve"] == good["loss_curve"]
    expected = safetensors.torch.load_file(good_dir / WEIGHTS_NAME)
    got = safetensors.torch.load_file(output_dir / WEIGHTS_NAME)
    assert expected.keys() == got.keys() and all(torch.equal(expected[k], got[k]) for k in expected)
    assert checkpoints.inspect_checkpoint(output_dir / NEWEST) == []
    (kept,) = output_dir.glob(f"{NEWEST}.replaced-*")
    assert (kept / "optimizer.bin").read_bytes() == damaged_bytes
    assert not list(output_dir.glob(f"{checkpoints.PARTIAL_PREFIX}*"))


def test_damaged_rng_state_needs_allow_inexact_resume(good_run, tmp_path, capsys, caplog, monkeypatch):
    import accelerate.checkpointing

    data_dir, _ = good_run
    loaded = []  # the files accelerate read

    def recorded_load(path, *args, **kwargs):
        result = load(path, *args, **kwargs)  # accelerate tries the RNG file even when there is none
        loaded.append(Path(path).name)
        return result

    load = accelerate.checkpointing.load
    monkeypatch.setattr(accelerate.checkpointing, "load", recorded_load)
    output_dir = _run_copy(good_run, tmp_path)
    # Swapped for checkpoint-2's: a valid pickle, but not the one the manifest lists.
    rng_file = output_dir / NEWEST / RNG_NAME
    shutil.copyfile(output_dir / PREVIOUS / RNG_NAME, rng_file)
    named = ("--resume_from_checkpoint", str(output_dir / NEWEST), "--max_train_steps", "5")
    code, err = _train(data_dir, output_dir, *named, capsys=capsys)
    assert code == 2 and "--allow_inexact_resume" in err and RNG_NAME in err
    assert_clear_message(err)
    code, err = _train(data_dir, output_dir, *named, "--allow_inexact_resume", capsys=capsys)
    assert code == 0, err
    assert f"{NEWEST}/{RNG_NAME} has " in caplog.text  # a pickle of another size
    assert "exact resume is lost" in caplog.text
    assert "optimizer.bin" in loaded and RNG_NAME not in loaded  # the damaged pickle was never read
    assert json.loads((output_dir / SUMMARY_NAME).read_text())["start_step"] == 4
    assert rng_file.read_bytes() == (output_dir / PREVIOUS / RNG_NAME).read_bytes()  # left as it was


def test_checkpoint_of_other_model_flags_is_one_sentence(good_run, tmp_path, capsys):
    data_dir, _ = good_run
    output_dir = _run_copy(good_run, tmp_path)
    extra = ("--resume_from_checkpoint", "latest", "--rank", "2", "--max_train_steps", "5")
    code, err = _train(data_dir, output_dir, *extra, capsys=capsys)
    assert code == 2 and f"{NEWEST} does not fit this run" in err
    assert_clear_message(err)


def test_a_save_killed_before_its_manifest_leaves_only_a_partial_folder(
    good_run, tmp_path, monkeypatch, caplog
):
    """The second save dies after accelerate wrote its files: no checkpoint-4 appears, latest ignores the
    partial folder (saying so) and resumes from checkpoint-2, and the next save of step 4 replaces it."""
    data_dir, good_dir = good_run
    output_dir = tmp_path / "run"
    write_manifest = checkpoints.write_manifest

    def killed_at_step_4(folder, step):
        if step == 4:
            raise KeyboardInterrupt  # what a kill looks like from inside: the save stops here
        write_manifest(folder, step)

    monkeypatch.setattr(checkpoints, "write_manifest", killed_at_step_4)
    with pytest.raises(KeyboardInterrupt):
        _train(data_dir, output_dir)
    monkeypatch.undo()
    assert [p.name for p in checkpoints.list_checkpoints(output_dir)] == [PREVIOUS]
    assert not (output_dir / NEWEST).exists() and (output_dir / f".partial-{NEWEST}" / RNG_NAME).is_file()
    assert _train(data_dir, output_dir, "--resume_from_checkpoint", "latest")[0] == 0
    assert f"Ignoring .partial-{NEWEST}: a checkpoint save that was interrupted." in caplog.text
    assert (
        json.loads((output_dir / SUMMARY_NAME).read_text())["loss_curve"]
        == json.loads((good_dir / SUMMARY_NAME).read_text())["loss_curve"]
    )
    assert checkpoints.inspect_checkpoint(output_dir / NEWEST) == []
    assert not (output_dir / f".partial-{NEWEST}").exists()
