"""Video clip datasets for the two folder layouts the research used: Panda-70M and WebVid.

Panda-70M layout (`PandaVideoDataset`)::

    root/metadata.csv | metadata.json | metadata.jsonl
    root/videos/ID.mp4          (or root/ID.mp4 when there is no videos/ folder)

One row per clip: an id column (`clip_id`, `videoID`, `video_id`, `id` or `key`; the file is ID plus
a video extension), a caption column (`caption` or `text`) and an optional `timestamp`. A timestamp
is a [start, end] pair ("0:00:05.120" or seconds) that selects that span of the file. The raw
Panda-70M table, one row per source video with a *list* of timestamp pairs and a list of captions,
is read as one clip per pair.

WebVid layout (`WebVidDataset`)::

    root/results.csv            (any name; the only .csv in root, or pass csv_path)
    root/PAGE_DIR/VIDEOID.mp4

Columns `videoid`, `page_dir` (optional: files directly in root without it) and `name` (the caption;
the column or its values may be missing).

Items: `pixel_values` float32 (T,3,H,W) in [-1,1]; `fps` float, the source rate divided by the frame
stride; `caption` str (`default_caption`, "" unless given, when the metadata has none).

Broken clips: a missing file is skipped when the dataset is built; an unreadable file, one too short
for `sample_n_frames` at the stride, or a malformed metadata row is skipped when first met, and the
item moves on to the next index (see `core.data.base.SkippingDataset`). `skipped` maps each skipped
clip to the reason.
"""

from __future__ import annotations

import ast
import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from core.data.base import SkippingDataset, plan_cover_crop
from core.errors import InputError
from core.imaging import apply_resize, to_signed
from core.video import probe_video, read_video

VIDEO_SUFFIXES = (".mp4", ".webm", ".mkv", ".mov", ".avi", ".gif")
_ID_COLUMNS = ("clip_id", "videoID", "video_id", "id", "key")
_CAPTION_COLUMNS = ("caption", "text")


@dataclass(frozen=True)
class ClipRecord:
    """One clip: a video file, its caption and optionally the span [start_s, end_s) of the file."""

    path: Path
    caption: str
    start_s: float | None = None
    end_s: float | None = None

    @property
    def label(self) -> str:
        if self.start_s is None and self.end_s is None:
            return str(self.path)
        return f"{self.path} [{self.start_s or 0:g}s-{'end' if self.end_s is None else f'{self.end_s:g}s'}]"


class VideoClipDataset(SkippingDataset):
    """Clips from a list of `ClipRecord`s, sampled to fixed-size frame stacks.

    Args:
        records: the clips.
        sample_size: output (H, W) or one int for a square; frames are cut to the largest box of that
            aspect (the same box in every frame) and resized to it.
        sample_n_frames: frames per item.
        sample_stride: take every k-th source frame. Or give `target_fps` instead: the stride becomes
            round(source fps / target_fps), at least 1 (the item's `fps` says what came out).
            Neither: stride 1.
        crop: "center" or "random" placement of the spatial box.
        clip_start: where the frame window starts within the clip: "random", "center" or "first".
        default_caption: the caption of clips without one.
        seed: makes item i's random choices the same every time; None draws fresh ones.
        source: where the records came from, for messages.
        skipped: records already dropped (label -> reason), counted in `skipped`.
    """

    def __init__(
        self,
        records: list[ClipRecord],
        sample_size: int | tuple[int, int] = 256,
        sample_n_frames: int = 16,
        sample_stride: int | None = None,
        target_fps: float | None = None,
        crop: Literal["center", "random"] = "center",
        clip_start: Literal["random", "center", "first"] = "random",
        default_caption: str = "",
        seed: int | None = None,
        source: str = "the clip list",
        skipped: dict[str, str] | None = None,
    ):
        self.sample_size = (sample_size, sample_size) if isinstance(sample_size, int) else tuple(sample_size)
        if len(self.sample_size) != 2 or min(self.sample_size) < 1:
            raise InputError(f"sample_size must be a positive int or (height, width), got {sample_size}.")
        if sample_n_frames < 1:
            raise InputError(f"sample_n_frames must be at least 1, got {sample_n_frames}.")
        if sample_stride is not None and target_fps is not None:
            raise InputError("Give either sample_stride or target_fps, not both.")
        if sample_stride is not None and sample_stride < 1:
            raise InputError(f"sample_stride must be at least 1, got {sample_stride}.")
        if target_fps is not None and not (target_fps > 0 and math.isfinite(target_fps)):
            raise InputError(f"target_fps must be a positive number, got {target_fps}.")
        if crop not in ("center", "random"):
            raise InputError(f"crop must be 'center' or 'random', got {crop!r}.")
        if clip_start not in ("random", "center", "first"):
            raise InputError(f"clip_start must be 'random', 'center' or 'first', got {clip_start!r}.")
        self.records = records
        self.sample_n_frames = sample_n_frames
        self.sample_stride, self.target_fps = sample_stride, target_fps
        self.crop, self.clip_start, self.seed = crop, clip_start, seed
        self.default_caption = default_caption
        super().__init__([r.label for r in records], "clip", source, skipped)

    def _stride_for(self, source_fps: float) -> int:
        if self.target_fps is not None:
            return max(1, round(source_fps / self.target_fps))
        return self.sample_stride or 1

    def _load(self, index: int) -> dict[str, Any]:
        record = self.records[index]
        total, fps, size_hw = probe_video(record.path)
        first = 0 if record.start_s is None else max(0, math.ceil(record.start_s * fps - 1e-6))
        end = total if record.end_s is None else min(total, math.floor(record.end_s * fps + 1e-6))
        stride = self._stride_for(fps)
        need = (self.sample_n_frames - 1) * stride + 1
        if end - first < need:
            raise InputError(
                f"too short: {end - first} frames, {self.sample_n_frames} frames at stride {stride} need {need}."
            )
        rng = np.random.default_rng((self.seed, index)) if self.seed is not None else np.random.default_rng()
        slack = end - first - need
        offset = {"first": 0, "center": slack // 2, "random": int(rng.integers(0, slack + 1))}[
            self.clip_start
        ]
        clip = read_video(record.path, num_frames=self.sample_n_frames, stride=stride, start=first + offset)
        plan = plan_cover_crop(clip.size_hw, self.sample_size, self.crop, rng)
        return {
            "pixel_values": to_signed(apply_resize(clip.frames_uint8, plan)),
            "fps": float(clip.fps),
            "caption": record.caption or self.default_caption,
        }


# -- Panda-70M ---------------------------------------------------------------------------------------


def _seconds(value: object) -> float:
    """'H:MM:SS.mmm', 'MM:SS', '12.5' or a number -> seconds."""
    if isinstance(value, int | float):
        return float(value)
    parts = str(value).strip().split(":")
    if not 1 <= len(parts) <= 3:
        raise ValueError(f"not a time: {value!r}")
    seconds = 0.0
    for part in parts:
        seconds = seconds * 60 + float(part)
    return seconds


def _literal(value: object) -> object:
    """A cell that may hold a Python/JSON literal written as text (lists in Panda-70M's CSV)."""
    if isinstance(value, str) and value.strip()[:1] in "[(":
        return ast.literal_eval(value.strip())  # literals only, never code
    return value


def _read_table(path: Path) -> list[dict[str, Any]]:
    try:
        if path.suffix.lower() == ".csv":
            with open(path, newline="", encoding="utf-8") as f:
                return list(csv.DictReader(f))
        text = path.read_text(encoding="utf-8")
        if path.suffix.lower() == ".jsonl":
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            rows = json.loads(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, csv.Error) as err:
        raise InputError(
            f"The metadata file {path} cannot be read ({err}); fix it or pass another one."
        ) from err
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise InputError(f"The metadata file {path} must hold a list of objects, one per clip.")
    return rows


def _find_file(folder: Path, stem: str) -> Path | None:
    return next((folder / (stem + s) for s in VIDEO_SUFFIXES if (folder / (stem + s)).is_file()), None)


def panda_records(
    root: Path, metadata: Path | None = None, video_dir: Path | None = None
) -> tuple[list[ClipRecord], dict[str, str]]:
    """Clip records of a Panda-70M style folder and the rows skipped while reading it (label -> reason)."""
    if metadata is None:
        names = ("metadata.csv", "metadata.json", "metadata.jsonl")
        metadata = next((root / n for n in names if (root / n).is_file()), None)
        if metadata is None:
            raise InputError(f"{root} has no {', '.join(names)}; pass metadata= the clip table.")
    if video_dir is None:
        video_dir = root / "videos" if (root / "videos").is_dir() else root
    records: list[ClipRecord] = []
    skipped: dict[str, str] = {}
    rows = _read_table(metadata)
    id_column = next((c for c in _ID_COLUMNS if rows and c in rows[0]), None)
    if rows and id_column is None:
        raise InputError(
            f"The metadata file {metadata} has no clip id column (one of {', '.join(_ID_COLUMNS)})."
        )
    for number, row in enumerate(rows, 1):
        clip_id = str(row.get(id_column) or "").strip()
        label = f"{metadata.name} row {number} ({clip_id or 'no id'})"
        try:
            caption = next((row[c] for c in _CAPTION_COLUMNS if row.get(c) is not None), "")
            stamp = _literal(row.get("timestamp") or None)
            if not clip_id:
                raise ValueError("no clip id")
            path = _find_file(video_dir, clip_id)
            if path is None:
                skipped[str(video_dir / clip_id) + ".*"] = "missing file: no video file with that id"
                continue
            if isinstance(stamp, list | tuple) and stamp and isinstance(stamp[0], list | tuple):
                # Raw Panda-70M: parallel lists of spans and captions.
                captions = _literal(caption)
                if not isinstance(captions, list | tuple) or len(captions) != len(stamp):
                    raise ValueError(f"{len(stamp)} timestamps need a list of {len(stamp)} captions")
                spans = list(zip(stamp, captions))
            else:
                spans = [(stamp, caption)]
            for span, text in spans:
                start, end = (None, None) if span is None else (_seconds(span[0]), _seconds(span[1]))
                records.append(ClipRecord(path, str(text or ""), start, end))
        except (ValueError, SyntaxError, TypeError, IndexError) as err:
            skipped[label] = f"malformed metadata row: {err}"
    return records, skipped


class PandaVideoDataset(VideoClipDataset):
    """Clips of a Panda-70M style folder (layout in the module docstring).

    `metadata`: the clip table (default: root/metadata.csv, .json or .jsonl); `video_dir`: where the
    files are (default: root/videos, or root). Other arguments as `VideoClipDataset`.
    """

    def __init__(
        self,
        root: str | Path,
        metadata: str | Path | None = None,
        video_dir: str | Path | None = None,
        **sampling: Any,
    ):
        root = Path(root)
        records, skipped = panda_records(
            root, None if metadata is None else Path(metadata), None if video_dir is None else Path(video_dir)
        )
        super().__init__(records, source=str(root), skipped=skipped, **sampling)


# -- WebVid ------------------------------------------------------------------------------------------


def webvid_records(root: Path, csv_path: Path | None = None) -> tuple[list[ClipRecord], dict[str, str]]:
    """Clip records of a WebVid style folder and the rows skipped while reading it (label -> reason)."""
    if csv_path is None:
        tables = sorted(root.glob("*.csv"))
        if len(tables) != 1:
            found = "no .csv" if not tables else f"{len(tables)} .csv files"
            raise InputError(f"{root} has {found}; pass csv_path= the WebVid results table.")
        csv_path = tables[0]
    rows = _read_table(csv_path)
    if rows and "videoid" not in rows[0]:
        raise InputError(f"The WebVid table {csv_path} has no videoid column.")
    records: list[ClipRecord] = []
    skipped: dict[str, str] = {}
    for number, row in enumerate(rows, 1):
        videoid = str(row.get("videoid") or "").strip()
        if not videoid:
            skipped[f"{csv_path.name} row {number}"] = "malformed metadata row: no videoid"
            continue
        folder = root / str(row.get("page_dir") or "").strip()
        path = _find_file(folder, videoid)
        if path is None:
            skipped[str(folder / videoid) + ".*"] = "missing file: no video file with that id"
            continue
        records.append(ClipRecord(path, str(row.get("name") or "")))
    return records, skipped


class WebVidDataset(VideoClipDataset):
    """Clips of a WebVid style folder (layout in the module docstring).

    `csv_path`: the results table (default: the only .csv in root). Other arguments as
    `VideoClipDataset`.
    """

    def __init__(self, root: str | Path, csv_path: str | Path | None = None, **sampling: Any):
        root = Path(root)
        records, skipped = webvid_records(root, None if csv_path is None else Path(csv_path))
        super().__init__(records, source=str(root), skipped=skipped, **sampling)
