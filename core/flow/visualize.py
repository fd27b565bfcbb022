"""Flow to colour with the Middlebury colour coding (Baker et al. 2011): hue = direction, saturation = speed.

The wheel has 55 colours in six ramps between red, yellow, green, cyan, blue and magenta
(15, 6, 4, 11, 13 and 6 steps). Zero motion is white; motion of `max_magnitude` is the fully
saturated wheel colour: right is red, down yellow-orange, left cyan, up blue-violet. Beyond
`max_magnitude` the saturated colour is darkened to 75%.
"""

from __future__ import annotations

import numpy as np

from core.checks import check_flow, check_flow_stack
from core.errors import InputError

# (steps, start colour, end colour); within a ramp one channel changes by floor(255 * i / steps).
_RAMPS = (
    (15, (1, 0, 0), (1, 1, 0)),  # red -> yellow
    (6, (1, 1, 0), (0, 1, 0)),  # yellow -> green
    (4, (0, 1, 0), (0, 1, 1)),  # green -> cyan
    (11, (0, 1, 1), (0, 0, 1)),  # cyan -> blue
    (13, (0, 0, 1), (1, 0, 1)),  # blue -> magenta
    (6, (1, 0, 1), (1, 0, 0)),  # magenta -> red
)


def color_wheel() -> np.ndarray:
    """The 55 wheel colours, (55,3) float64 in [0,1], starting at red."""
    parts = []
    for steps, start, end in _RAMPS:
        ramp = np.floor(255 * np.arange(steps) / steps)[:, None]
        parts.append(255 * np.array(start) + (np.array(end) - np.array(start)) * ramp)
    return np.concatenate(parts) / 255


_WHEEL = color_wheel()


def _check_max_magnitude(max_magnitude: float | None) -> None:
    if max_magnitude is not None and not (np.isfinite(max_magnitude) and max_magnitude > 0):
        raise InputError(f"max_magnitude must be a positive number of pixels, got {max_magnitude!r}.")


def _colorize(flow_px: np.ndarray, max_magnitude: float) -> np.ndarray:
    radius = np.linalg.norm(flow_px, axis=-1) / max_magnitude
    # Angle measured so that right (+x) starts the wheel at red and the wheel turns clockwise on screen.
    angle = np.arctan2(-flow_px[..., 1], -flow_px[..., 0]) / np.pi  # [-1, 1]
    position = (angle + 1) / 2 * (len(_WHEEL) - 1)
    k0 = np.floor(position).astype(np.int64)
    k1 = (k0 + 1) % len(_WHEEL)
    frac = (position - k0)[..., None]
    colour = (1 - frac) * _WHEEL[k0] + frac * _WHEEL[k1]
    inside = (radius <= 1)[..., None]
    colour = np.where(inside, 1 - radius[..., None] * (1 - colour), 0.75 * colour)
    return np.floor(255 * colour).astype(np.uint8)


def flow_to_color(flow_px: np.ndarray, max_magnitude: float | None = None) -> np.ndarray:
    """Colour-code a flow field.

    Args:
        flow_px: (H,W,2) float flow (dx, dy) in pixels.
        max_magnitude: speed in px shown fully saturated; default the largest speed in `flow_px`.
            Pass one value for every frame of a video so colours compare across frames.

    Returns:
        (H,W,3) uint8 RGB in [0,255].
    """
    flow_px = check_flow(flow_px)
    _check_max_magnitude(max_magnitude)
    if max_magnitude is None:
        max_magnitude = float(np.linalg.norm(flow_px, axis=2).max()) or 1.0
    return _colorize(flow_px, max_magnitude)


def render_flow_video(flows_px: np.ndarray, max_magnitude: float | None = None) -> np.ndarray:
    """Colour-code a flow video with one scale for all frames.

    Args:
        flows_px: (N,H,W,2) float flows in pixels (e.g. from `estimate_video_flow`).
        max_magnitude: shared saturation speed in px; default the largest speed over all frames.

    Returns:
        (N,H,W,3) uint8 RGB frames.
    """
    flows_px = check_flow_stack(flows_px)
    _check_max_magnitude(max_magnitude)
    if max_magnitude is None:
        max_magnitude = float(np.linalg.norm(flows_px, axis=3).max()) or 1.0
    return np.stack([_colorize(flow, max_magnitude) for flow in flows_px])


def flow_legend(size_px: int = 128) -> np.ndarray:
    """A (size,size,3) uint8 key to the colours: the disc's edge is the saturation speed, centre is 0."""
    if not isinstance(size_px, int) or size_px < 2:
        raise InputError(f"legend size must be an integer of at least 2 px, got {size_px!r}.")
    centre = (size_px - 1) / 2
    ys, xs = np.mgrid[0:size_px, 0:size_px].astype(np.float32)
    return _colorize(np.stack([xs - centre, ys - centre], axis=-1), max(centre, 1.0))
