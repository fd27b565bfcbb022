"""Run a training script as a user would (a real subprocess, like diffusers' example tests), the module fixtures
of its data and one full run, and the checks every script's run passes: the loss falls, checkpoints keep the
trainer state and the weights, a resumed run reaches the same weights bit for bit, bad flags exit 2 with one
sentence."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from accelerate.state import AcceleratorState, GradientState

from core.training.checkpoints import TRAINER_STATE_NAME
from core.training.common import SUMMARY_NAME, TrainingTask

ROOT = Path(__file__).resolve().parents[2]


def run_script(module: str, *flags: str) -> dict:
    """`python -m MODULE FLAGS` on one thread, offline; asserts success and returns its summary.json.

    One thread: tiny models spend their time in per-op thread syncs otherwise, and the reload tests
    reproduce validation samples bit for bit only on the thread count they were rendered with.
    """
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", module, *flags],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    output_dir = Path(flags[flags.index("--output_dir") + 1])
    return json.loads((output_dir / SUMMARY_NAME).read_text())


@dataclass(frozen=True)
class TrainingScript:
    """A ``core.training`` script under test.

    Attributes:
        module: the script's module (``build_parser``, ``check_args``, ``build_task``, ``main``).
        flags: its tiny test run's flags, without ``--data_dir`` and ``--output_dir``.
        read_weights: the trained weights in a folder (a checkpoint or the output), by name.
    """

    module: ModuleType
    flags: tuple[str, ...]
    read_weights: Callable[[Path], dict[str, torch.Tensor]]

    @property
    def name(self) -> str:
        return self.module.__name__.rsplit(".", 1)[-1]

    @property
    def steps(self) -> int:
        return int(self.flags[self.flags.index("--max_train_steps") + 1])

    def argv(self, data_dir: Path, output_dir: Path, *extra: str) -> list[str]:
        """The flags, the folders, then ``extra`` (later flags win)."""
        return [*self.flags, "--data_dir", str(data_dir), "--output_dir", str(output_dir), *extra]

    def train(self, data_dir: Path, output_dir: Path, *extra: str) -> dict:
        """Run the script as a subprocess (:func:`run_script`); its summary.json."""
        return run_script(self.module.__name__, *self.argv(data_dir, output_dir, *extra))

    def task(self, data_dir: Path, output_dir: Path, *extra: str) -> tuple[argparse.Namespace, TrainingTask]:
        """The checked flags and the task the script builds from them, in this process."""
        args = self.module.build_parser().parse_args(self.argv(data_dir, output_dir, *extra))
        self.module.check_args(args)
        return args, self.module.build_task(args, accelerator=None)


def module_fixtures(script: TrainingScript, write_data: Callable[[Path], object]):
    """Module-scoped fixtures for a test module to bind as ``data_dir, full_run = module_fixtures(SCRIPT, write)``:
    ``data_dir``, a folder ``write_data`` fills, and ``full_run``, ``(summary, output folder)`` of one run of
    ``script`` on it."""

    @pytest.fixture(scope="module")
    def data_dir(tmp_path_factory) -> Path:
        root = tmp_path_factory.mktemp("data")
        write_data(root)
        return root

    @pytest.fixture(scope="module")
    def full_run(data_dir, tmp_path_factory) -> tuple[dict, Path]:
        output_dir = tmp_path_factory.mktemp(script.name)
        return script.train(data_dir, output_dir), output_dir

    return data_dir, full_run


def assert_same_tensors(expected: dict[str, torch.Tensor], got: dict[str, torch.Tensor]) -> None:
    """The same names and, bit for bit, the same tensors."""
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key


def assert_loss_falls(script: TrainingScript, summary: dict, below: float) -> None:
    """The run took every step, and its last quarter's mean loss is under ``below`` x the first quarter's."""
    curve = summary["loss_curve"]
    quarter = script.steps // 4
    first, last = np.mean(curve[:quarter]), np.mean(curve[-quarter:])
    print(
        f"{script.name} loss: first quarter {first:.4f}, last quarter {last:.4f} "
        f"({summary['seconds_per_step']:.2f} s/step)"
    )
    assert len(curve) == script.steps and summary["steps"] == script.steps
    assert last < below * first


def assert_checkpoints(
    script: TrainingScript, summary: dict, output_dir: Path, kept: tuple[int, int]
) -> dict[str, torch.Tensor]:
    """Exactly the checkpoints of steps ``kept`` are left (the newest two), the older one records its step
    and loss curve, and the output folder holds the newer one's weights, every trained parameter. Returns
    those weights."""
    names = [f"checkpoint-{step}" for step in kept]
    assert summary["checkpoints"] == names
    assert sorted(p.name for p in output_dir.glob("checkpoint-*")) == sorted(names)
    state = json.loads((output_dir / names[0] / TRAINER_STATE_NAME).read_text())
    assert state["global_step"] == kept[0] and state["loss_curve"] == summary["loss_curve"][: kept[0]]
    final = script.read_weights(output_dir)
    assert_same_tensors(final, script.read_weights(output_dir / names[-1]))
    assert sum(v.numel() for v in final.values()) == summary["trained_parameters"]
    return final


def assert_resume_reaches_the_same_weights(
    script: TrainingScript, full_run: tuple[dict, Path], data_dir: Path, resumed_dir: Path, from_step: int
) -> None:
    """A second run given only ``full_run``'s checkpoint ``from_step`` (as if the run had stopped there) and
    ``--resume_from_checkpoint latest`` repeats the remaining losses and ends at the same weights, bit for bit.
    It skips validation, which touches no weight."""
    summary, output_dir = full_run
    checkpoint = f"checkpoint-{from_step}"
    resumed_dir.mkdir()
    shutil.copytree(output_dir / checkpoint, resumed_dir / checkpoint)
    resumed = script.train(
        data_dir, resumed_dir, "--resume_from_checkpoint", "latest", "--validation_steps", "0"
    )
    assert (resumed["start_step"], resumed["steps"]) == (from_step, script.steps)
    assert resumed["resumed_from"] == str(resumed_dir / checkpoint)
    assert resumed["loss_curve"] == summary["loss_curve"]
    assert_same_tensors(script.read_weights(output_dir), script.read_weights(resumed_dir))


def bad_flags_error(
    script: TrainingScript, data_dir: Path, output_dir: Path, capsys, *extra: str, in_training: bool = False
) -> str:
    """``main()`` on the test flags and ``extra`` exits 2, prints one line on stderr and writes nothing;
    returns that line. An error found ``in_training`` (once the loop has started: a missing model) may leave
    the output folder, empty."""
    try:
        assert script.module.main(script.argv(data_dir, output_dir, *extra)) == 2
    finally:
        # A run that failed in training had set up accelerate's process-wide state; later tests need it fresh.
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    if in_training:
        assert not output_dir.exists() or not any(output_dir.iterdir())
    else:
        assert not output_dir.exists()
    return err
