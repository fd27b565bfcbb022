"""What every folder dataset shares: skip broken items, count them, never crash an epoch."""

from __future__ import annotations

import logging
from typing import Any, Literal

import numpy as np
from torch.utils.data import Dataset

from core.errors import InputError
from core.imaging import ResizeInfo

logger = logging.getLogger(__name__)


class SkippingDataset(Dataset):
    """A map-style dataset over `labels` (one per item, e.g. its file path) that skips broken items.

    Subclasses implement `_load(index) -> dict` and raise InputError (or OSError / ValueError) for an
    item that cannot be used. `__getitem__(i)` then tries i + 1, i + 2, ... (wrapping around), so the
    substitute is deterministic, remembers the broken index, and logs one warning per broken item.
    `skipped` maps each skipped label to the reason; items dropped at construction (e.g. a missing
    file) are in it too. With DataLoader workers each worker keeps its own `skipped`.
    """

    def __init__(self, labels: list[str], kind: str, source: str, skipped: dict[str, str] | None = None):
        self._labels = labels
        self._kind = kind  # "clip", "image": for messages
        self._source = source
        self._broken: set[int] = set()
        self.skipped: dict[str, str] = {}
        for label, reason in (skipped or {}).items():
            self._skip(label, reason)
        if not labels:
            raise InputError(f"No usable {kind} in {source}: {self._summary()}.")

    def _load(self, index: int) -> dict[str, Any]:
        raise NotImplementedError

    def _skip(self, label: str, reason: str) -> None:
        if label not in self.skipped:
            logger.warning("Skipping %s %s: %s", self._kind, label, reason)
        self.skipped[label] = reason

    def _summary(self) -> str:
        if not self.skipped:
            return "it lists none"
        return f"{len(self.skipped)} skipped, e.g. {next(iter(self.skipped.items()))[1]}"

    def skip_report(self) -> str:
        """One line per skipped item ('label: reason'), after a count; empty string if none."""
        if not self.skipped:
            return ""
        lines = [f"{len(self.skipped)} {self._kind}(s) skipped in {self._source}:"]
        lines += [f"  {label}: {reason}" for label, reason in self.skipped.items()]
        return "\n".join(lines)

    def __len__(self) -> int:
        return len(self._labels)

    def __getitem__(self, index: int) -> dict[str, Any]:
        n = len(self._labels)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} items")
        index %= n
        for step in range(n):
            j = (index + step) % n
            if j in self._broken:
                continue
            try:
                return self._load(j)
            except (OSError, ValueError) as err:  # InputError is a ValueError
                self._broken.add(j)
                self._skip(self._labels[j], str(err))
        raise InputError(f"No usable {self._kind} in {self._source}: {self._summary()}.")


def plan_cover_crop(
    source_hw: tuple[int, int],
    target_hw: tuple[int, int],
    crop: Literal["center", "random"] = "center",
    rng: np.random.Generator | None = None,
) -> ResizeInfo:
    """Plan for `core.imaging.apply_resize`: cut the largest box of the target's aspect, then resize it.

    The box is centred (`crop="center"`) or placed uniformly at random with `rng` (`crop="random"`);
    the whole target is covered, nothing is padded.
    """
    if crop not in ("center", "random"):
        raise InputError(f"crop must be 'center' or 'random', got {crop!r}.")
    (height, width), (out_h, out_w) = source_hw, target_hw
    if min(height, width, out_h, out_w) < 1:
        raise InputError(f"Cannot crop a {height}x{width} image to {out_h}x{out_w}.")
    crop_h = min(height, max(1, round(width * out_h / out_w)))
    crop_w = min(width, max(1, round(height * out_w / out_h)))
    if crop == "random":
        rng = rng or np.random.default_rng()
        top, left = int(rng.integers(0, height - crop_h + 1)), int(rng.integers(0, width - crop_w + 1))
    else:
        top, left = (height - crop_h) // 2, (width - crop_w) // 2
    return ResizeInfo(
        source_hw=(height, width),
        crop_box=(top, left, crop_h, crop_w),
        scaled_hw=(out_h, out_w),
        padding=(0, 0, 0, 0),
    )
