"""Folder writers: the scenes in the layouts the loaders of core.data read."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from core.data.synthetic.image import make_image_scene
from core.data.synthetic.video import make_video_scene
from core.errors import InputError
from core.imaging import save_png16
from core.video import write_video


def disparity_of(depth: np.ndarray) -> np.ndarray:
    """Depth (H,W) float, +inf where nothing was hit -> disparity 1/depth (H,W) float32, 0 at infinity."""
    with np.errstate(divide="ignore"):
        return np.where(np.isfinite(depth) & (depth > 0), 1.0 / depth, 0.0).astype(np.float32)


def write_image_depth_folder(
    root: str | Path,
    n: int,
    size: tuple[int, int] = (64, 64),
    seed: int = 0,
    depth_format: Literal["png", "npy"] = "png",
) -> list[Path]:
    """Write `n` image scenes as `root/images/NAME.png`, `root/depth/NAME.(png|npy)`, `root/metadata.jsonl`.

    Depth is stored as disparity (1/z, larger = nearer), the convention of `core.data.image_depth`: a
    16-bit PNG scaled to the image's max, or an exact float32 .npy. metadata.jsonl rows are
    {"file_name": "images/NAME.png", "text": caption} (HF imagefolder's format). Scene i uses seed
    `seed + i`. Returns the image paths.
    """
    if depth_format not in ("png", "npy"):
        raise InputError(f"depth_format must be 'png' or 'npy', got {depth_format!r}.")
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "depth").mkdir(parents=True, exist_ok=True)
    paths = []
    rows = []
    for i in range(n):
        scene = make_image_scene(size, seed + i)
        name = f"scene_{i:05d}"
        image_path = root / "images" / f"{name}.png"
        _save_rgb_png(image_path, scene.image_uint8)
        disparity = disparity_of(scene.depth)
        if depth_format == "png":
            # Scaled to the image's own maximum: the loaders' normalisation is affine-invariant anyway.
            save_png16(root / "depth" / f"{name}.png", disparity / max(float(disparity.max()), 1e-12))
        else:
            np.save(root / "depth" / f"{name}.npy", disparity)
        paths.append(image_path)
        rows.append({"file_name": f"images/{name}.png", "text": scene.caption})
    with open(root / "metadata.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    return paths


def _save_rgb_png(path: Path, image_uint8: np.ndarray) -> None:
    if not cv2.imwrite(str(path), image_uint8[..., ::-1]):  # cv2 wants BGR
        raise OSError(f"Could not write {path}; check that its folder exists and is writable.")


def write_video_folder(
    root: str | Path,
    n: int,
    layout: Literal["panda", "webvid"] = "panda",
    size: tuple[int, int] = (64, 64),
    n_frames: int = 16,
    fps: float = 8.0,
    seed: int = 0,
    captions: bool = True,
) -> list[Path]:
    """Write `n` synthetic clips (mp4 via core.video) in a loader layout; returns the clip paths.

    layout "panda": `root/videos/CLIP_ID.mp4` and `root/metadata.csv` (clip_id, caption).
    layout "webvid": `root/PAGE_DIR/VIDEOID.mp4` and `root/results.csv` (videoid, name, page_dir,
    duration); `captions=False` leaves the name column empty, as in some WebVid copies.
    Scene i uses seed `seed + i`.
    """
    if layout not in ("panda", "webvid"):
        raise InputError(f"layout must be 'panda' or 'webvid', got {layout!r}.")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    paths = []
    for i in range(n):
        scene = make_video_scene(size, n_frames, seed + i, fps=fps)
        caption = scene.caption if captions else ""
        if layout == "panda":
            clip_id = f"clip_{i:05d}"
            path = root / "videos" / f"{clip_id}.mp4"
            rows.append({"clip_id": clip_id, "caption": caption})
        else:
            videoid = str(1000 + i)
            page_dir = f"{(i // 50) * 50 + 1:06d}_{(i // 50 + 1) * 50:06d}"
            path = root / page_dir / f"{videoid}.mp4"
            rows.append(
                {"videoid": videoid, "name": caption, "page_dir": page_dir, "duration": n_frames / fps}
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        write_video(path, scene.frames_uint8, fps)
        paths.append(path)
    table = root / ("metadata.csv" if layout == "panda" else "results.csv")
    with open(table, "w", newline="", encoding="utf-8") as f:
        columns = ["clip_id", "caption"] if layout == "panda" else ["videoid", "name", "page_dir", "duration"]
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return paths
