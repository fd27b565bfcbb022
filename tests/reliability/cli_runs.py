"""Running the three CLIs in-process for the reliability suites, and the checks every such run must pass.

`run_cli` calls a CLI's ``main(argv)`` and returns its status and stderr; `Snapshot` records every file and
folder under some roots (size and modification time), so a test can say exactly what a run added or changed;
`assert_refused` is the one check of a refusal: status 2, one clear sentence on stderr, nothing written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from core.video import write_video
from tests.reliability.corpus import assert_clear_message, good_clip_uint8, good_image_uint8

GOOD_TRAJECTORIES = '{"format": "kinema.trajectories", "version": 1, "trajectories": [{"points_norm": [[0.2, 0.5], [0.6, 0.5]]}]}'
# The environment of every CLI run: offline tiny models on the CPU, nothing read from the user's settings.
CLI_ENV = {"KINEMA_SD_MODEL": "tiny", "KINEMA_SVD_MODEL": "tiny", "KINEMA_DEVICE": "cpu"}
CLEARED_ENV = ("JOINT_WEIGHTS", "SVD_INTERP_LORA", "MAX_FRAMES", "MAX_IMAGE_SIDE", "MAX_UPLOAD_MB")


@dataclass(frozen=True)
class GoodInputs:
    """Valid inputs of every CLI, in one folder: a picture, a 16-bit depth map, trajectories, a clip."""

    folder: Path
    image: Path
    depth: Path
    trajectories: Path
    video: Path


def write_good_inputs(folder: Path) -> GoodInputs:
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(good_image_uint8()).save(folder / "picture.png")
    Image.fromarray(good_image_uint8()[..., 0].astype(np.uint16) * 257).save(folder / "depth.png")
    (folder / "drag.json").write_text(GOOD_TRAJECTORIES)
    write_video(folder / "clip.mp4", good_clip_uint8(), 8.0)
    return GoodInputs(
        folder, folder / "picture.png", folder / "depth.png", folder / "drag.json", folder / "clip.mp4"
    )


def set_cli_env(monkeypatch, tmp_path: Path) -> None:
    """Offline tiny models, default limits, and a throwaway output folder and working directory."""
    for name in CLEARED_ENV:
        monkeypatch.delenv(f"KINEMA_{name}", raising=False)
    for name, value in CLI_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("KINEMA_OUTPUT_DIR", str(tmp_path / "default_outputs"))
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")


def run_cli(main, argv, capsys) -> tuple[int, str]:
    """``main(argv)`` with every argument as a string; (exit status, stderr)."""
    capsys.readouterr()
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit_:
        code = exit_.code
    return code, capsys.readouterr().err


class Snapshot:
    """Every path under `roots` with its size and modification time (ns): a rewrite with the same bytes
    still shows, and so does a new or removed file."""

    def __init__(self, *roots: Path) -> None:
        self.roots = roots
        self.entries = self._take()

    def _take(self) -> dict[Path, tuple[int, int]]:
        entries = {}
        for root in self.roots:
            for path in [root, *root.rglob("*")] if root.exists() else []:
                stat = path.lstat()
                entries[path] = (stat.st_size, stat.st_mtime_ns) if path.is_file() else (0, 0)
        return entries

    def changes(self) -> list[Path]:
        """Paths added, removed or rewritten since the snapshot."""
        now = self._take()
        return sorted(p for p in now.keys() | self.entries.keys() if now.get(p) != self.entries.get(p))


def assert_refused(code: int, stderr: str, snapshot: Snapshot, *, forbidden: tuple[str, ...] = ()) -> None:
    """Status 2, one clear sentence on stderr, and nothing under the snapshot's roots written."""
    assert code == 2, f"status {code}: {stderr}"
    assert_clear_message(stderr, forbidden=forbidden)
    assert snapshot.changes() == [], f"a refused run wrote {snapshot.changes()}"


def assert_only_under(snapshot: Snapshot, folder: Path) -> list[Path]:
    """Every change since the snapshot lies under `folder` (the run's output folder); returns them, and
    no temporary file is left."""
    changes = snapshot.changes()
    outside = [p for p in changes if not p.is_relative_to(folder)]
    assert outside == [], f"written outside the output folder: {outside}"
    assert not [p for p in changes if ".partial-" in p.name], f"temporary files left: {changes}"
    return changes
