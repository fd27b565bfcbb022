"""Examples of the joint-depth app: prompts, the sample photos in assets/images/, and two synthetic scenes.

The synthetic scenes (:func:`core.data.synthetic.make_image_scene`: spheres and cubes on a checkered floor)
have exact depth, so they are examples for all three tabs: the image for image -> depth, its disparity as a
16-bit PNG (near = white) for depth -> image, the caption as a prompt. Seed 3 at 256 px suits any model; the
held-out scene at 64 px (:func:`apps.common.examples.mini_image_example`) is the one the ``mini`` models were
made for. Both are rendered on first use into a temporary folder (identical bytes every time), so nothing
generated is committed.
"""

from __future__ import annotations

from pathlib import Path

from apps.common.examples import EXAMPLE_FOLDER, image_scene_files

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_IMAGES = sorted((ROOT / "assets" / "images").glob("*.jpg"))
SCENE_SEED = 3
SCENE_SIZE = (256, 256)

PROMPTS = [
    "a cosy reading corner with an armchair and a floor lamp, warm evening light",
    "a mountain lake at sunrise, pine trees in the foreground",
    "a red vintage car parked on a cobblestone street",
]


def synthetic_scene_files(folder: Path = EXAMPLE_FOLDER) -> tuple[Path, Path, str]:
    """(image PNG, 16-bit disparity PNG, caption) of the 256 px example scene, written into ``folder`` if
    missing."""
    return image_scene_files(folder, SCENE_SIZE, SCENE_SEED, "scene")
