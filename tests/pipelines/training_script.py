"""Run a training script as a user would (a real subprocess, like diffusers' example tests)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from core.training.common import SUMMARY_NAME

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
