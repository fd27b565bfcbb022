"""Example inputs made by code: the synthetic scenes on which the ``mini`` models work, for all three apps.

The mini SD and SVD (``KINEMA_SD_MODEL=mini``, ``KINEMA_SVD_MODEL=mini``; :mod:`core.models.presets`) and their
controls were trained from scratch on the synthetic scenes of :mod:`core.data.synthetic` at 64 px; on photos
they make noise-like pictures, on these scenes the controls visibly act. Every example here is a HELD-OUT
scene (:func:`core.eval.learning.held_out_seeds`: seeds no mini model was trained on), rendered at
``MINI_SIDE`` px:

- :func:`mini_drag_example`: the first frame of a sprite clip, and the scene's exact sprite tracks as drags
  (:func:`scene_trajectories`), for the drag app;
- :func:`mini_image_example`: an image scene, its disparity (16-bit PNG, near = white) and its caption, for
  the joint-depth app;
- :func:`mini_clip_example`: a longer sprite clip (mp4), for the keyframe app's inbetweening.

Files are rendered on first use (milliseconds; identical bytes every time, so nothing generated is committed)
through :func:`write_once` into :data:`EXAMPLE_FOLDER`: a private folder this process creates with a random
name (``tempfile.mkdtemp``, mode 0700) and removes at exit, so no other local user can plant files there first.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import PIL.Image

from core.data.synthetic import VideoScene, disparity_of, make_image_scene, make_video_scene
from core.eval.learning import MINI_FPS, MINI_FRAMES, MINI_SIDE, held_out_seeds
from core.imaging import save_png16
from core.models.presets import MINI
from core.outputs import atomic_path
from core.trajectory import Trajectories, Trajectory
from core.video import write_video

EXAMPLE_FOLDER = Path(tempfile.mkdtemp(prefix="kinema-examples-"))
atexit.register(shutil.rmtree, EXAMPLE_FOLDER, ignore_errors=True)
MINI_EXAMPLE_LABEL = "synthetic scene for the mini models"
# What the apps say where they name a mini model.
MINI_DESCRIPTION = (
    f"toy models trained from scratch on synthetic {MINI_SIDE} px scenes (`make prove`) to prove the training "
    f"code, not replacements for SD/SVD: use the examples marked '{MINI_EXAMPLE_LABEL}'; photos and "
    "other prompts are outside what they learned"
)
# The first held-out scene: three sprites that stay in view (drag, keyframe) / three objects (joint depth).
MINI_SEED = held_out_seeds(1)[0]
# The denoising steps the apps start at on the mini models: enough for a 64 px toy sample, quick on a CPU.
MINI_STEPS = 15
# The keyframe example's length: two SVD segments of MINI_FRAMES frames (keyframes 0, 7 and 14).
MINI_CLIP_FRAMES = 2 * MINI_FRAMES - 1


def is_mini(model: str) -> bool:
    """Whether a model setting names the mini preset (the apps then start at its size, frames and steps)."""
    return model == MINI


def write_once(path: Path, write: Callable[[Path], object]) -> Path:
    """Write ``path`` with ``write(partial)`` through a temporary name unless it exists (requests served at
    the same time may race); returns ``path``."""
    if not path.is_file():
        with atomic_path(path) as partial:
            write(partial)
    return path


def image_scene_files(folder: Path, size: tuple[int, int], seed: int, stem: str) -> tuple[Path, Path, str]:
    """(image PNG, 16-bit disparity PNG scaled to [0, 1], caption) of the image scene of ``seed`` at ``size``
    (H, W), written into ``folder`` as ``STEM.png`` and ``STEM_depth.png`` if missing."""
    scene = make_image_scene(size, seed)
    disparity = disparity_of(scene.depth)
    disparity_unit = (disparity - disparity.min()) / np.ptp(disparity)
    image = write_once(folder / f"{stem}.png", lambda p: PIL.Image.fromarray(scene.image_uint8).save(p))
    depth = write_once(folder / f"{stem}_depth.png", lambda p: save_png16(p, disparity_unit))
    return image, depth, scene.caption


def mini_image_example(folder: Path = EXAMPLE_FOLDER) -> tuple[Path, Path, str]:
    """The held-out image scene at ``MINI_SIDE`` px: (image PNG, disparity PNG, caption)."""
    return image_scene_files(folder, (MINI_SIDE, MINI_SIDE), MINI_SEED, f"mini_scene_{MINI_SEED}")


def mini_video_scene(n_frames: int = MINI_FRAMES) -> VideoScene:
    """The held-out sprite clip of ``n_frames`` frames at ``MINI_SIDE`` px and ``MINI_FPS``."""
    return make_video_scene((MINI_SIDE, MINI_SIDE), n_frames, MINI_SEED, fps=MINI_FPS)


def scene_trajectories(scene: VideoScene) -> Trajectories:
    """The scene's exact sprite tracks as drags: one trajectory per sprite through its centre in every frame.

    Sprites move at a constant velocity on screen, so resampling a trajectory
    by arc length to the clip's frames gives the track back.
    """
    tracks_norm = scene.tracks_norm()
    return Trajectories(tuple(Trajectory(tracks_norm[:, k]) for k in range(tracks_norm.shape[1])))


def mini_drag_example(folder: Path = EXAMPLE_FOLDER) -> tuple[Path, Trajectories]:
    """The held-out sprite clip's first frame (PNG) and its sprite tracks (:func:`scene_trajectories`)."""
    scene = mini_video_scene()
    image = write_once(
        folder / f"mini_clip_{MINI_SEED}_first_frame.png",
        lambda p: PIL.Image.fromarray(scene.frames_uint8[0]).save(p, format="PNG"),
    )
    return image, scene_trajectories(scene)


def mini_clip_example(folder: Path = EXAMPLE_FOLDER) -> Path:
    """The held-out sprite clip of ``MINI_CLIP_FRAMES`` frames at ``MINI_FPS`` as an mp4."""
    scene = mini_video_scene(MINI_CLIP_FRAMES)
    return write_once(
        folder / f"mini_clip_{MINI_SEED}_{MINI_CLIP_FRAMES}f.mp4",
        lambda p: write_video(p, scene.frames_uint8, scene.fps),
    )
