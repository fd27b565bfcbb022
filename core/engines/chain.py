"""Chaining bare images (no video): A -> B -> C ..., and loops A -> B -> A.

The images are the keyframes of a timeline that `chain_layout` lays out: image k sits at frame
k (frames_between + 1), with `frames_between` generated frames between neighbours. A loop appends the first
image to the chain, so the result runs A -> B -> ... -> A: its first and last frames are both A. Any
inbetweening backend fills the timeline (`apps.keyframe.backends.inbetween_images`): the cross-fade and the
SVD backends as for a video's keyframes; the flow backend with `morph_flow`, since without a video the only
motion there is is the one between the two images themselves.

`morph_flow` estimates the flow both ways between two images and, for a frame at time s in (0, 1), pulls
each image to s along the flow scaled to s (the quadratic approximation of Jiang et al., "Super SloMo",
2018: F_s->0 = -(1-s) s F_01 + s^2 F_10, F_s->1 = (1-s)^2 F_01 - s (1-s) F_10) and blends the two by time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.checks import check_rgb_uint8
from core.errors import InputError
from core.flow import estimate_flow, warp_field

MIN_IMAGES = 2


@dataclass(frozen=True)
class ChainLayout:
    """Where the images of a chain sit: `keyframe_indices` (one per image, a loop's first image again at
    the end) on a timeline of `num_frames` frames; `image_order` the image shown at each keyframe."""

    keyframe_indices: tuple[int, ...]
    num_frames: int
    image_order: tuple[int, ...]


def _too_few(count: int) -> str:
    return f"Chaining needs at least {MIN_IMAGES} images (A -> B, or A -> B -> A with loop), got {count}."


def check_images(images_uint8: list[np.ndarray] | np.ndarray) -> np.ndarray:
    """Validate the images of a chain: at least 2, RGB uint8, all of one size. Returns (K,H,W,3) uint8.

    Raises InputError with one sentence naming the first problem (too few images, an image of another
    size, not an RGB image).
    """
    if len(images_uint8) < MIN_IMAGES:
        raise InputError(_too_few(len(images_uint8)))
    for k, image in enumerate(images_uint8):
        check_rgb_uint8(image, f"image {k + 1}")
    height, width = images_uint8[0].shape[:2]
    for k, image in enumerate(images_uint8[1:], start=2):
        if image.shape[:2] != (height, width):
            raise InputError(
                f"Image {k} is {image.shape[1]}x{image.shape[0]} but image 1 is {width}x{height}: "
                "all images of a chain must have one size."
            )
    return np.stack(images_uint8)


def chain_layout(num_images: int, frames_between: int, loop: bool = False) -> ChainLayout:
    """The timeline of a chain of `num_images` images with `frames_between` (>= 1) frames between neighbours.

    Frames: (K - 1)(frames_between + 1) + 1 for K keyframes, K = num_images, or num_images + 1 with `loop`.
    """
    if (
        isinstance(frames_between, bool)
        or not isinstance(frames_between, int | np.integer)
        or frames_between < 1
    ):
        raise InputError(
            f"Frames between images must be a whole number of at least 1, got {frames_between!r}."
        )
    if num_images < MIN_IMAGES:
        raise InputError(_too_few(num_images))
    order = tuple(range(num_images)) + ((0,) if loop else ())
    stride = int(frames_between) + 1
    indices = tuple(k * stride for k in range(len(order)))
    return ChainLayout(indices, indices[-1] + 1, order)


def morph_flow(
    head_uint8: np.ndarray, tail_uint8: np.ndarray, frames_between: int, method: str = "dis"
) -> np.ndarray:
    """The frames between two images along the flow between them (see the module docstring).

    Args:
        head_uint8, tail_uint8: (H,W,3) uint8 RGB of one size, sides >= 16 px.
        frames_between: frames to make, >= 1.
        method: flow estimator (`core.flow.METHODS`).

    Returns:
        (frames_between,H,W,3) uint8: the frames at s = i / (frames_between + 1), i = 1 .. frames_between.
    """
    forward_px = estimate_flow(head_uint8, tail_uint8, method)
    backward_px = estimate_flow(tail_uint8, head_uint8, method)
    head, tail = head_uint8.astype(np.float32), tail_uint8.astype(np.float32)
    frames = np.empty((frames_between, *head_uint8.shape), np.uint8)
    for i in range(frames_between):
        s = (i + 1) / (frames_between + 1)
        to_head_px = -(1 - s) * s * forward_px + s * s * backward_px
        to_tail_px = (1 - s) ** 2 * forward_px - s * (1 - s) * backward_px
        blend = (1 - s) * warp_field(head, to_head_px) + s * warp_field(tail, to_tail_px)
        frames[i] = np.clip(np.rint(blend), 0, 255).astype(np.uint8)
    return frames
