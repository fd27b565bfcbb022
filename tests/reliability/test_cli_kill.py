"""The kill test: SIGTERM while a CLI writes its video leaves the previous output intact and no partial file.

A first run writes good outputs; a second, bigger run to the same --out (with --overwrite) is started as a
real process and sent SIGTERM the moment its temporary mp4 appears, i.e. while ffmpeg writes it. The CLI must
exit with the interrupted status, the earlier video and record must be byte-identical, and no temporary
file may be left (in particular none under the final name).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from apps.common.cli import INTERRUPTED
from apps.drag import cli as drag_cli
from core.outputs import PARTIAL_MARK
from core.video import read_video
from tests.reliability.cli_runs import GOOD_TRAJECTORIES, run_cli

ROOT = Path(__file__).resolve().parents[2]


def _wait_for(pattern: str, folder: Path, process: subprocess.Popen, timeout_s: float) -> Path | None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and process.poll() is None:
        found = list(folder.glob(pattern))
        if found:
            return found[0]
        time.sleep(0.005)
    return None


def test_sigterm_while_writing_keeps_the_previous_output(tmp_path, capsys):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (1024, 1024, 3), dtype=np.uint8)).save(tmp_path / "noise.png")
    (tmp_path / "drag.json").write_text(GOOD_TRAJECTORIES)
    out = tmp_path / "out" / "video.mp4"
    record = out.with_name("video.params.json")
    argv = ["--image", tmp_path / "noise.png", "--trajectories", tmp_path / "drag.json", "--out", out]
    code, stderr = run_cli(drag_cli.main, [*argv, "--frames", "2", "--max-side", "64", "--quiet"], capsys)
    assert code == 0, stderr
    earlier = {path: path.read_bytes() for path in (out, record)}

    # Noise at 512 px: ffmpeg takes a good part of a second to encode it, ample time to be interrupted.
    big = [*argv, "--frames", "24", "--max-side", "512", "--quiet", "--overwrite"]
    process = subprocess.Popen(
        [sys.executable, "-m", "apps.drag.cli", *map(str, big)],
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        partial = _wait_for(f".video{PARTIAL_MARK}*.mp4", out.parent, process, timeout_s=240)
        assert partial is not None, f"no temporary mp4 appeared: {process.communicate()}"
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == INTERRUPTED, stderr
    assert stderr.strip().splitlines()[-1] == "interrupted; earlier outputs are unchanged.", stderr
    assert {path: path.read_bytes() for path in (out, record)} == earlier
    assert sorted(p.name for p in out.parent.iterdir()) == ["video.mp4", "video.params.json"]
    assert len(read_video(out).frames_uint8) == 2  # still the first run's readable video
