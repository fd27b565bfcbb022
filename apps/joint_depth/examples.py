"""Examples of the joint-depth app: prompts, the sample photos in assets/images/, and a synthetic scene.

The synthetic scene (:func:`core.data.synthetic.make_image_scene`, seed 3, three spheres on a checkered floor)
has exact depth, so it is an example for all three tabs: its image for image -> depth, its disparity as a
16-bit PNG (near = white) for depth -> image. Both files are rendered on first use into a temporary folder
(about 30 ms; identical bytes every time), so nothing generated is committed.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import PIL.Image

from core.data.synthetic import disparity_of, make_image_scene
from core.imaging import save_png16

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_IMAGES = sorted((ROOT / "assets" / "images").glob("*.jpg"))
EXAMPLE_FOLDER = Path(tempfile.gettempdir()) / "kinema-joint-depth-examples"
SCENE_SEED = 3
SCENE_SIZE = (256, 256)

PROMPTS = [
    "a cosy reading corner with an armchair and a floor lamp, warm evening light",
    "a mountain lake at sunrise, pine trees in the foreground",
    "a red vintage car parked on a cobblestone street",
]


def _write_once(path: Path, write) -> Path:
    """Write ``path`` through a temporary name unless it exists (apps started together may race)."""
    if not path.is_file():
        partial = path.with_name(f".{path.stem}.{os.getpid()}{path.suffix}")
        write(partial)
        os.replace(partial, path)
    return path


def synthetic_scene_files(folder: Path = EXAMPLE_FOLDER) -> tuple[Path, Path, str]:
    """(image PNG, 16-bit disparity PNG, caption) of the example scene, written into ``folder`` if missing."""
    scene = make_image_scene(SCENE_SIZE, SCENE_SEED)
    folder.mkdir(parents=True, exist_ok=True)
    disparity = disparity_of(scene.depth)
    disparity_unit = (disparity - disparity.min()) / np.ptp(disparity)
    image = _write_once(folder / "scene.png", lambda p: PIL.Image.fromarray(scene.image_uint8).save(p))
    depth = _write_once(folder / "scene_depth.png", lambda p: save_png16(p, disparity_unit))
    return image, depth, scene.caption
