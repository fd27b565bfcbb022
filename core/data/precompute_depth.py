"""precompute-depth: fill `depth/` beside an image folder with a depth-estimation model.

    python -m core.data.precompute_depth --images DATA/images --model depth-anything/Depth-Anything-V2-Small-hf

Writes `depth/NAME.png` (16-bit, the default) or `depth/NAME.npy` for every image `images/NAME.*`, in
the convention `core.data.image_depth` reads: disparity (larger = nearer). Relative models (DPT,
Depth Anything) already predict relative inverse depth; the output of metric models (ZoeDepth, the
metric Depth Anything checkpoints) is inverted. A 16-bit PNG stores the map scaled to its own
[min, max], which the loader's per-image normalisation does not mind.

The model is any transformers "depth-estimation" checkpoint: a hub id (read from the local cache only
when HF_HUB_OFFLINE=1) or a folder written by `save_pretrained`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from core.config import Settings
from core.data.image_depth import IMAGE_SUFFIXES
from core.errors import InputError, KinemaError, ModelNotAvailable
from core.imaging import load_image, save_png16
from core.models import hub_offline

# image uint8 (H,W,3) -> disparity float32 (H,W), larger = nearer, at the image's resolution.
DepthEstimator = Callable[[np.ndarray], np.ndarray]


def load_depth_estimator(model: str, device: str = "auto") -> DepthEstimator:
    """A transformers depth-estimation pipeline wrapped as a `DepthEstimator`.

    Raises ModelNotAvailable (naming --model) when the weights cannot be found.
    """
    from PIL import Image
    from transformers import pipeline

    local = Path(model).expanduser()
    try:
        pipe = pipeline(
            "depth-estimation",
            model=str(local) if local.exists() else model,
            device=Settings(device=device).resolved_device(),
            local_files_only=hub_offline() or local.exists(),
        )
    except (OSError, ValueError, KeyError) as err:
        why = "offline and not in the cache" if hub_offline() else str(err).split("\n")[0]
        raise ModelNotAvailable(
            f"Depth model '{model}' is not available ({why}): pass --model a local folder written by "
            "save_pretrained or the hub id of a depth-estimation model in your Hugging Face cache."
        ) from err
    config = pipe.model.config
    metric = getattr(config, "depth_estimation_type", None) == "metric" or config.model_type == "zoedepth"

    def estimate(image_uint8: np.ndarray) -> np.ndarray:
        predicted = pipe(Image.fromarray(image_uint8))["predicted_depth"]
        values = predicted.detach().float().cpu().numpy().squeeze()
        if metric:
            with np.errstate(divide="ignore"):
                values = np.where(values > 0, 1.0 / values, 0.0)
        return values.astype(np.float32)

    return estimate


def list_images(images_dir: str | Path) -> tuple[Path, list[Path]]:
    """The images folder (`images_dir`, or `images_dir/images` when given the dataset root) and its images."""
    images_dir = Path(images_dir)
    if (images_dir / "images").is_dir():
        images_dir = images_dir / "images"
    if not images_dir.is_dir():
        raise InputError(f"--images {images_dir} is not a folder; pass the folder that holds the images.")
    paths = sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise InputError(f"--images {images_dir} holds no .jpg or .png images.")
    return images_dir, paths


def depth_dir_for(images_dir: Path) -> Path:
    """`root/depth` for `root/images`: the layout `ImageDepthFolder` reads."""
    return images_dir.parent / "depth"


def precompute_depth(
    images_dir: str | Path,
    estimator: DepthEstimator,
    out_dir: str | Path | None = None,
    fmt: str = "png",
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, int]:
    """Write one disparity map per image of `images_dir` into `out_dir` (default: the sibling depth/).

    Existing maps are kept unless `overwrite`. Unreadable images are reported and skipped. Returns the
    counts {"written", "existing", "unreadable"}.
    """
    if fmt not in ("png", "npy"):
        raise InputError(f"--format must be 'png' or 'npy', got {fmt!r}.")
    images_dir, paths = list_images(images_dir)
    out_dir = Path(out_dir) if out_dir is not None else depth_dir_for(images_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = {"written": 0, "existing": 0, "unreadable": 0}
    for path in tqdm(paths, desc="depth", unit="image", disable=not progress):
        target = out_dir / f"{path.stem}.{fmt}"
        if target.exists() and not overwrite:
            counts["existing"] += 1
            continue
        try:
            image_uint8 = load_image(path)
        except InputError as err:
            tqdm.write(f"skipping {path.name}: {err}")
            counts["unreadable"] += 1
            continue
        disparity = np.asarray(estimator(image_uint8), dtype=np.float32)
        if fmt == "npy":
            np.save(target, disparity)
        else:
            low, high = float(disparity.min()), float(disparity.max())
            save_png16(target, (disparity - low) / (high - low) if high > low else np.zeros_like(disparity))
        counts["written"] += 1
    return counts


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m core.data.precompute_depth",
        description="Fill depth/ beside an image folder with a transformers depth-estimation model.",
    )
    parser.add_argument(
        "--images", required=True, type=Path, help="Folder of .jpg/.png images (or its parent)."
    )
    parser.add_argument(
        "--model", required=True, help="Depth-estimation model: hub id (cached when offline) or local folder."
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="Output folder (default: depth/ beside the images)."
    )
    parser.add_argument("--format", choices=("png", "npy"), default="png", help="16-bit PNG or float32 .npy.")
    parser.add_argument("--overwrite", action="store_true", help="Recompute maps that already exist.")
    parser.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cuda, mps or cpu.")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        list_images(args.images)  # fail on a wrong folder before spending time on the model
        estimator = load_depth_estimator(args.model, args.device)
        counts = precompute_depth(args.images, estimator, args.out, args.format, args.overwrite)
    except KinemaError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(
        f"depth maps: {counts['written']} written, {counts['existing']} already there, {counts['unreadable']} unreadable"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
