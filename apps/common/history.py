"""Run history: the runs one browser session made, for the apps' "Runs" panels (no UI library here).

Results are private to the session that made them (see :mod:`apps.common.gradio` ``served_copies``), so the
history is not a listing of the output folder: each session keeps a :class:`RunHistory` of the run records
(:mod:`apps.common.runs`) its own jobs wrote, and only those are ever listed. The Gradio apps keep one per
session in :class:`apps.common.runs_panel.RunsPanel`; the Streamlit app can keep one in its session state.

:meth:`RunHistory.entries` reads the records again on each call (newest run first): a record that is gone or
damaged since is left out with one sentence saying which run and why, the others are listed. A
:class:`RunEntry` gives what a panel shows: a thumbnail, a one-line summary, the parameters (the record's
JSON) and the files to download; "redo with these settings" is each app's ``job.request_from_record``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from apps.common.runs import RunRecord
from core.errors import InputError, KinemaError
from core.imaging import load_image
from core.video import read_video

THUMB_SIDE = 160  # longest side of a thumbnail (px)
MAX_RUNS = 50  # a session's history keeps its newest runs only
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
VIDEO_SUFFIXES = (".mp4", ".webm", ".gif")


@dataclass(frozen=True)
class RunEntry:
    """One listed run: its record, read from ``record_path`` (the run's folder holds its outputs)."""

    record_path: Path
    record: RunRecord

    @property
    def name(self) -> str:
        """The run's name: its folder's (``YYYYmmdd-HHMMSS-<token>``), as the apps' status lines give it."""
        return self.record_path.parent.name

    @property
    def folder(self) -> Path:
        return self.record_path.parent

    def downloads(self) -> list[Path]:
        """The run's outputs that still exist, in the record's order, then the record itself."""
        outputs = self.record.output_paths(self.folder).values()
        return [path for path in outputs if path.is_file()] + [self.record_path]

    def thumbnail_uint8(self, side: int = THUMB_SIDE) -> np.ndarray | None:
        """(h,w,3) uint8, longest side at most ``side``: the first image output, else the first frame of the
        first video output; None when the run has neither (or they are gone)."""
        files = [path for path in self.downloads() if path.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES]
        for path in files:
            try:
                if path.suffix.lower() in IMAGE_SUFFIXES:
                    picture = load_image(path)
                else:
                    picture = read_video(path, max_frames=1).frames_uint8[0]
            except KinemaError:
                continue  # a damaged output: try the next one
            image = Image.fromarray(picture)
            image.thumbnail((side, side))
            return np.asarray(image)
        return None

    def summary(self) -> str:
        """One line: the run's name, how it was started and how long it took."""
        seconds = sum(self.record.timings_s.values())
        return f"{self.name} ({self.record.action}, {seconds:.1f} s)"

    def parameters_json(self) -> str:
        """The run record as JSON: what was run, with which settings; its ``arguments`` redo the run."""
        return self.record.to_json()


class RunHistory:
    """The runs of one session: the paths of the run records its jobs wrote, newest first (thread-safe).

    Only what :meth:`add` was given is listed, never another session's runs from the same output folder.
    """

    def __init__(self, limit: int = MAX_RUNS) -> None:
        self._limit = limit
        self._lock = threading.Lock()
        self._records: list[Path] = []

    def add(self, record_path: str | Path) -> None:
        """Remember a run by its record (e.g. ``<run folder>/params.json``), as the newest run."""
        path = Path(record_path)
        with self._lock:
            self._records = [path, *(p for p in self._records if p != path)][: self._limit]

    def __len__(self) -> int:
        return len(self._records)

    def entries(self) -> tuple[list[RunEntry], list[str]]:
        """The runs whose records read back, newest first, and one sentence per run left out."""
        with self._lock:
            paths = list(self._records)
        entries, notes = [], []
        for path in paths:
            if not path.is_file():
                notes.append(
                    f"Run {path.parent.name} is not listed: its record is gone (deleted from the output folder)."
                )
                continue
            try:
                entries.append(RunEntry(path, RunRecord.read(path)))
            except InputError as error:
                notes.append(f"Run {path.parent.name} is not listed: {error}")
        return entries, notes

    def get(self, name: str | None) -> RunEntry:
        """This session's run called ``name``; InputError for any other name (whoever else made it)."""
        entries, _ = self.entries()
        for entry in entries:
            if entry.name == name:
                return entry
        raise InputError("Choose one of this session's runs in the Runs list first.")
