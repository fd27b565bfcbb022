"""Image + depth pairs from a plain folder, for training joint image/depth models.

Layout (what `core.data.synthetic.write_image_depth_folder` and `precompute-depth` write)::

    root/images/NAME.jpg | NAME.jpeg | NAME.png
    root/depth/NAME.png  (16-bit greyscale)  or  NAME.npy  (float, 2-D)
    root/metadata.jsonl  or  root/metadata.csv   (optional captions)

The metadata file follows Hugging Face's "imagefolder" format: one row per image with `file_name`
(relative to root, e.g. "images/NAME.png") and the caption in `text` (or `caption`). Images without
a caption get `default_caption` ("" unless given). Images without a depth map are skipped and counted.

Depth convention. Stored maps hold *disparity* (inverse depth: larger = nearer) up to an unknown
positive scale and offset. That is what MiDaS / DPT / Depth Anything predict (relative inverse depth)
and what `python -m core.data.precompute_depth` writes. Maps holding depth (larger = farther, e.g.
metric depth) load with `stored="depth"`: they are inverted to 1/depth first, non-positive values
counting as infinitely far. Each map is then normalised on its own, after resizing and cropping, by an
affine map that sends its 2nd percentile to -1 and its 98th percentile to +1, clipped to [-1, 1]:
near = +1, far = -1, the same orientation as a white-is-near depth image. The percentiles make it
robust to a few outlier pixels and to the unknown scale and offset. The result is replicated to 3
channels so the image VAE can encode it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from core.data.base import SkippingDataset, plan_cover_crop
from core.data.image_folder import read_metadata_rows
from core.errors import InputError
from core.imaging import ResizeInfo, apply_resize, load_image, load_png16, to_signed

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
DEPTH_SUFFIXES = (".npy", ".png")  # .npy first: exact floats beat 16-bit quantisation


def normalize_disparity(disparity: np.ndarray, percentiles: tuple[float, float] = (2.0, 98.0)) -> np.ndarray:
    """Disparity (H,W), any scale and offset (larger = nearer) -> float32 (H,W) in [-1, 1], near = +1.

    The `percentiles` of the finite values map to -1 and +1 and the rest is clipped. Non-finite values
    count as the far end (-1). When the percentiles coincide the min and max are used; a constant map
    gives all zeros (it carries no depth information).
    """
    if disparity.ndim != 2 or disparity.size == 0:
        raise InputError(f"A depth map must have shape (H,W), got {disparity.shape}.")
    values = disparity.astype(np.float64)
    finite = np.isfinite(values)
    if not finite.any():
        return np.zeros(values.shape, np.float32)
    low, high = np.percentile(values[finite], percentiles)
    if high <= low:
        low, high = values[finite].min(), values[finite].max()
    if high <= low:
        return np.zeros(values.shape, np.float32)
    signed = 2.0 * (np.where(finite, values, low) - low) / (high - low) - 1.0
    return np.clip(signed, -1.0, 1.0).astype(np.float32)


def load_depth_map(path: str | Path) -> np.ndarray:
    """Read a stored depth map: a greyscale PNG (-> [0,1]) or a 2-D float .npy (values as stored)."""
    path = Path(path)
    if path.suffix.lower() == ".png":
        return load_png16(path)
    if path.suffix.lower() != ".npy":
        raise InputError(f"A depth map must be a .png or .npy file, got {path.name}.")
    try:
        array = np.load(path, allow_pickle=False)  # never unpickle user files
    except (OSError, ValueError, EOFError) as err:
        raise InputError(f"The depth file {path.name} is not a readable .npy array.") from err
    array = np.squeeze(array)
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.number):
        raise InputError(
            f"The depth file {path.name} must hold a 2-D numeric array, got {array.shape} {array.dtype}."
        )
    return array.astype(np.float32)


def read_captions(root: Path) -> dict[str, str]:
    """Captions by file name (relative to root, '/'-separated) from metadata.jsonl or metadata.csv."""
    rows = read_metadata_rows(root) or []
    captions = {}
    for row in rows:
        name = row.get("file_name")
        text = row.get("text", row.get("caption"))
        if name and isinstance(text, str):
            captions[Path(str(name)).as_posix()] = text
    return captions


class ImageDepthFolder(SkippingDataset):
    """Image + depth pairs from `root` (layout and depth convention in the module docstring).

    Items: `pixel_values` float32 (3,H,W) in [-1,1]; `depth_values` float32 (3,H,W) in [-1,1] (the
    normalised disparity in each channel, near = +1); `caption` str.

    Args:
        root: folder with `images/` and `depth/`.
        sample_size: output (H, W), or one int for a square. Image and depth are cut to the largest box
            of that aspect and resized to it (the same box for both).
        crop: "center" or "random" placement of that box.
        stored: "disparity" (default; larger = nearer) or "depth" (larger = farther).
        percentiles: the low / high percentiles that map to -1 / +1.
        default_caption: the caption of images the metadata file does not list.
        seed: with `crop="random"`, makes item i's crop the same every time; None draws fresh ones.
    """

    def __init__(
        self,
        root: str | Path,
        sample_size: int | tuple[int, int] = 512,
        crop: Literal["center", "random"] = "center",
        stored: Literal["disparity", "depth"] = "disparity",
        percentiles: tuple[float, float] = (2.0, 98.0),
        default_caption: str = "",
        seed: int | None = None,
    ):
        self.root = Path(root)
        self.sample_size = (sample_size, sample_size) if isinstance(sample_size, int) else tuple(sample_size)
        if len(self.sample_size) != 2 or min(self.sample_size) < 1:
            raise InputError(f"sample_size must be a positive int or (height, width), got {sample_size}.")
        if crop not in ("center", "random"):
            raise InputError(f"crop must be 'center' or 'random', got {crop!r}.")
        if stored not in ("disparity", "depth"):
            raise InputError(f"stored must be 'disparity' or 'depth', got {stored!r}.")
        if not 0 <= percentiles[0] < percentiles[1] <= 100:
            raise InputError(f"percentiles must satisfy 0 <= low < high <= 100, got {percentiles}.")
        self.crop, self.stored, self.percentiles, self.seed = crop, stored, percentiles, seed
        images_dir, depth_dir = self.root / "images", self.root / "depth"
        if not images_dir.is_dir():
            raise InputError(f"{self.root} has no images/ folder; put the images in {images_dir}.")
        captions = read_captions(self.root)
        self._pairs: list[tuple[Path, Path]] = []
        self._captions: list[str] = []
        missing: dict[str, str] = {}
        for image_path in sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
            depth_path = next(
                (
                    depth_dir / (image_path.stem + s)
                    for s in DEPTH_SUFFIXES
                    if (depth_dir / (image_path.stem + s)).is_file()
                ),
                None,
            )
            if depth_path is None:
                missing[str(image_path)] = f"no depth map depth/{image_path.stem}.png or .npy"
                continue
            self._pairs.append((image_path, depth_path))
            rel = image_path.relative_to(self.root).as_posix()
            self._captions.append(captions.get(rel, captions.get(image_path.name, default_caption)))
        super().__init__([str(p) for p, _ in self._pairs], "image", str(self.root), missing)

    def _load(self, index: int) -> dict[str, Any]:
        image_path, depth_path = self._pairs[index]
        image_uint8 = load_image(image_path)
        depth = load_depth_map(depth_path)
        if self.stored == "depth":
            with np.errstate(divide="ignore"):
                depth = np.where(np.isfinite(depth) & (depth > 0), 1.0 / depth, 0.0).astype(np.float32)
        height, width = image_uint8.shape[:2]
        if depth.shape != (height, width):
            # Estimators often predict at their own resolution; bring the map onto the image's grid.
            whole = ResizeInfo(depth.shape, (0, 0, *depth.shape), (height, width), (0, 0, 0, 0))
            depth = apply_resize(depth, whole)
        rng = np.random.default_rng((self.seed, index)) if self.seed is not None else None
        plan = plan_cover_crop((height, width), self.sample_size, self.crop, rng)
        depth_signed = normalize_disparity(apply_resize(depth, plan), self.percentiles)
        return {
            "pixel_values": to_signed(apply_resize(image_uint8, plan)),
            "depth_values": torch.from_numpy(depth_signed)[None].expand(3, -1, -1).contiguous(),
            "caption": self._captions[index],
        }
