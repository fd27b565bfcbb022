"""Captioned images from a plain folder, for text-to-image training (``python -m core.training.sd_lora``).

Layout (Hugging Face's "imagefolder" with a metadata file, what ``write_image_depth_folder`` writes too)::

    root/metadata.jsonl  or  root/metadata.csv   one row per image: file_name (relative to root) + caption
    root/images/NAME.png | .jpg | .jpeg          or any path a row names

With a metadata file the rows decide which images are used (so other pictures in the folder, e.g. depth
maps, are not); the caption is the row's ``caption_column`` ("text" by default, as in the diffusers
examples). A row without that column gets ``default_caption``; a file where no row has it is rejected, as
that is a wrong column name. Without a metadata file every image in ``root/images/`` (or in ``root`` when
there is no such folder) is used with ``default_caption``. Rows naming missing files are skipped and
counted; unreadable images are skipped when first met (``core.data.base.SkippingDataset``).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Literal

import numpy as np

from core.data.base import SkippingDataset, plan_cover_crop
from core.errors import InputError
from core.imaging import apply_resize, load_image, to_signed

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
METADATA_NAMES = ("metadata.jsonl", "metadata.csv")


def read_metadata_rows(root: str | Path) -> list[dict[str, Any]] | None:
    """The rows of ``root/metadata.jsonl`` (first) or ``root/metadata.csv``; None when there is neither.

    Raises InputError, naming the line, for a line that is not a JSON object.
    """
    root = Path(root)
    jsonl, table = (root / name for name in METADATA_NAMES)
    if jsonl.is_file():
        rows = []
        for number, line in enumerate(jsonl.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise InputError(
                    f"{jsonl} line {number} is not valid JSON; fix or remove that line."
                ) from err
            if not isinstance(row, dict):
                raise InputError(f"{jsonl} line {number} must be a JSON object with file_name and a caption.")
            rows.append(row)
        return rows
    if table.is_file():
        with open(table, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    return None


class ImageCaptionFolder(SkippingDataset):
    """Images and captions from ``root`` (layout in the module docstring).

    Items: ``pixel_values`` float32 (3,H,W) in [-1,1]; ``caption`` str.

    Args:
        root: the folder.
        sample_size: output (H, W), or one int for a square; each image is cut to the largest box of that
            aspect and resized to it.
        caption_column: the metadata column holding the caption.
        crop: "center" or "random" placement of that box.
        default_caption: the caption of images without one.
        seed: with ``crop="random"``, makes item i's crop the same every time; None draws fresh ones.
    """

    def __init__(
        self,
        root: str | Path,
        sample_size: int | tuple[int, int] = 512,
        caption_column: str = "text",
        crop: Literal["center", "random"] = "center",
        default_caption: str = "",
        seed: int | None = None,
    ):
        self.root = Path(root)
        self.sample_size = (sample_size, sample_size) if isinstance(sample_size, int) else tuple(sample_size)
        if len(self.sample_size) != 2 or min(self.sample_size) < 1:
            raise InputError(f"sample_size must be a positive int or (height, width), got {sample_size}.")
        if crop not in ("center", "random"):
            raise InputError(f"crop must be 'center' or 'random', got {crop!r}.")
        if not self.root.is_dir():
            raise InputError(f"{self.root} is not a folder; give the folder holding the images.")
        self.crop, self.seed = crop, seed
        self._paths: list[Path] = []
        self._captions: list[str] = []
        missing: dict[str, str] = {}
        rows = read_metadata_rows(self.root)
        if rows is None:
            folder = self.root / "images" if (self.root / "images").is_dir() else self.root
            for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
                self._paths.append(path)
                self._captions.append(default_caption)
        else:
            if rows and not any(caption_column in row for row in rows):
                raise InputError(
                    f"No row of {self.root}'s metadata has a '{caption_column}' column (columns: "
                    f"{sorted(rows[0])}); choose the caption column."
                )
            for number, row in enumerate(rows, 1):
                name = str(row.get("file_name") or "").strip()
                path = self.root / name
                if not name or not path.is_file():
                    missing[f"metadata row {number} ({name or 'no file_name'})"] = "missing image file"
                    continue
                caption = row.get(caption_column)
                self._paths.append(path)
                self._captions.append(caption if isinstance(caption, str) and caption else default_caption)
        super().__init__([str(p) for p in self._paths], "image", str(self.root), missing)

    @property
    def captions(self) -> list[str]:
        """The caption of each item, in order."""
        return list(self._captions)

    def _load(self, index: int) -> dict[str, Any]:
        image_uint8 = load_image(self._paths[index])
        rng = np.random.default_rng((self.seed, index)) if self.seed is not None else None
        plan = plan_cover_crop(image_uint8.shape[:2], self.sample_size, self.crop, rng)
        return {"pixel_values": to_signed(apply_resize(image_uint8, plan)), "caption": self._captions[index]}
