"""Inputs of the evaluations, all offline: real photos, camera clips over them, and the drag requests.

Photos: scikit-image's astronaut, coffee and chelsea (a dev dependency, imported only inside
`load_photo`). `assets/images/*.jpg` are JPEG copies of the same photos for the apps' sample buttons;
the evaluations read scikit-image's lossless originals, so their numbers do not depend on a JPEG encoder.

Camera clips (`camera_clip`): a camera panning over or zooming into a photo, with sub-pixel motion, for
inbetweening, keyframe editing and the keyframe app's sample video (`apps.keyframe.sample`).

Drag requests (`DRAG_REQUESTS`, `drag_requests`, `drag_photo`): four drags and one anchor per photo,
placed on textured points (the LK tracker of the ObjMC needs texture to lock on).
"""

from __future__ import annotations

import cv2
import numpy as np

from core.errors import InputError
from core.imaging import resize_to_multiple
from core.trajectory import Trajectories, Trajectory

PHOTOS = ("astronaut", "coffee", "chelsea")


def load_photo(name: str, max_side_px: int | None = None) -> np.ndarray:
    """A scikit-image sample photo (one of PHOTOS) as (H,W,3) uint8, optionally shrunk to `max_side_px`."""
    import skimage.data

    if name not in PHOTOS:
        raise InputError(f"Unknown photo {name!r}; choose one of {', '.join(PHOTOS)}.")
    image = getattr(skimage.data, name)()
    if max_side_px is not None and max(image.shape[:2]) > max_side_px:
        scale = max_side_px / max(image.shape[:2])
        size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(image)


# -- camera clips ------------------------------------------------------------------------------------

CAMERA_MOTIONS = ("pan", "zoom")
PAN_PX_PER_FRAME = (2.5, 1.25)
ZOOM_PER_FRAME = 1.015


def camera_clip(photo_uint8: np.ndarray, motion: str, size: int = 256, n_frames: int = 17) -> np.ndarray:
    """A (T,size,size,3) uint8 clip of a camera panning over or zooming into a photo.

    Frame t samples the photo bilinearly at c_t + s_t * (p - centre): for "pan" s_t = 1 and c_t moves by
    `PAN_PX_PER_FRAME` per frame; for "zoom" c_t is fixed and s_t = ZOOM_PER_FRAME ** -t. The photo is
    enlarged first when the path would leave it.
    """
    if motion not in CAMERA_MOTIONS:
        raise InputError(f"Unknown camera motion {motion!r}; choose one of {', '.join(CAMERA_MOTIONS)}.")
    travel = np.abs(PAN_PX_PER_FRAME) * (n_frames - 1) if motion == "pan" else np.zeros(2)
    need_w, need_h = size + travel + 4
    height, width = photo_uint8.shape[:2]
    grow = max(need_w / width, need_h / height, 1.0)
    if grow > 1.0:
        photo_uint8 = cv2.resize(
            photo_uint8, (round(width * grow), round(height * grow)), interpolation=cv2.INTER_CUBIC
        )
        height, width = photo_uint8.shape[:2]
    centre_out = (size - 1) / 2
    start = np.array([(width - 1) / 2, (height - 1) / 2]) - travel / 2 * np.sign(PAN_PX_PER_FRAME)
    frames = []
    for t in range(n_frames):
        if motion == "pan":
            centre, scale = start + np.array(PAN_PX_PER_FRAME) * t, 1.0
        else:
            centre, scale = start, ZOOM_PER_FRAME**-t
        # Output pixel p samples the photo at centre + scale * (p - centre_out).
        affine = np.array(
            [[scale, 0, centre[0] - scale * centre_out], [0, scale, centre[1] - scale * centre_out]]
        )
        frames.append(
            cv2.warpAffine(
                photo_uint8,
                affine,
                (size, size),
                flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                borderMode=cv2.BORDER_REFLECT_101,
            )
        )
    return np.stack(frames)


def pan_keyframes(size: int = 512, count: int = 4, spacing: int = 4) -> np.ndarray:
    """``count`` keyframes, ``spacing`` frames apart, of a pan over the astronaut photo: (K,S,S,3) uint8."""
    clip = camera_clip(load_photo("astronaut"), "pan", size, (count - 1) * spacing + 1)
    return np.ascontiguousarray(clip[::spacing])


# -- drag requests -----------------------------------------------------------------------------------

# The warp engine's ObjMC on these requests stays under this (px); python -m apps.drag.evaluate prints it.
WARP_TARGET_PX = 1.5
# Normalised to the evaluation frame: four drags (polylines) and an anchor per photo.
DRAG_REQUESTS: dict[str, tuple[list[list[float]], ...]] = {
    "astronaut": (
        [[0.42, 0.22], [0.50, 0.20], [0.55, 0.26]],  # hair, up and right
        [[0.32, 0.84], [0.26, 0.78], [0.22, 0.70]],  # badge, up and left
        [[0.72, 0.48], [0.80, 0.44]],  # rocket, right
        [[0.20, 0.40], [0.14, 0.30]],  # flag, up
        [[0.90, 0.88]],  # helmet, pinned
    ),
    "coffee": (
        [[0.34, 0.30], [0.44, 0.26], [0.50, 0.30]],  # cup rim
        [[0.55, 0.70], [0.62, 0.62]],  # spoon
        [[0.10, 0.80], [0.18, 0.86]],  # table grain
        [[0.85, 0.20], [0.78, 0.32]],  # table, top right
        [[0.86, 0.80]],  # saucer, pinned
    ),
}


def drag_requests(photo: str) -> Trajectories:
    """The evaluation trajectories of a photo (one of DRAG_REQUESTS)."""
    if photo not in DRAG_REQUESTS:
        raise InputError(f"Unknown photo {photo!r}; choose one of {', '.join(DRAG_REQUESTS)}.")
    return Trajectories(tuple(Trajectory(points) for points in DRAG_REQUESTS[photo]))


def drag_photo(photo: str, max_side_px: int, size: tuple[int, int] | None = None) -> np.ndarray:
    """The photo as (H,W,3) uint8, centre-cropped to the frame's aspect.

    Without `size`: sides multiples of 64 and long side <= max_side_px, never enlarged. With
    `size` (width, height), e.g. SVD's 1024x576: exactly that size, enlarged (bicubic) if need be.
    """
    image = load_photo(photo)
    if size is None:
        return resize_to_multiple(image, multiple=64, max_side=max_side_px, mode="crop")[0]
    width, height = size
    source_h, source_w = image.shape[:2]
    crop_w, crop_h = (
        min(source_w, round(source_h * width / height)),
        min(source_h, round(source_w * height / width)),
    )
    top, left = (source_h - crop_h) // 2, (source_w - crop_w) // 2
    crop = image[top : top + crop_h, left : left + crop_w]
    shrinking = width * height < crop_w * crop_h
    return cv2.resize(crop, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)
