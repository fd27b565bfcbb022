"""A global camera move (pan, zoom, rotation) that the dense maps of `core.trajectory.flow` add everywhere.

Positions are pixel centres (px), y down; the move is described by where frame 0's content is at the
last frame and ramps over the clip by `fraction` = t / (N-1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from core.errors import InputError


@dataclass(frozen=True)
class CameraMotion:
    """A global camera move over the whole clip, ramped linearly from frame 0 to the last frame.

    Attributes:
        pan_x, pan_y: how far the content moves by the last frame, as a fraction of the image width /
            height (+x right, +y down).
        zoom: content scale at the last frame about the image centre (> 1 zooms in); frames in
            between use zoom ** (t / (N-1)), a constant zoom speed.
        rotate_deg: content rotation at the last frame about the image centre, in degrees, clockwise
            on screen (y points down).
    """

    pan_x: float = 0.0
    pan_y: float = 0.0
    zoom: float = 1.0
    rotate_deg: float = 0.0

    def __post_init__(self) -> None:
        values = (self.pan_x, self.pan_y, self.zoom, self.rotate_deg)
        if not all(isinstance(v, int | float) and math.isfinite(v) for v in values):
            raise InputError(f"Camera motion values must be finite numbers, got {values}.")
        if self.zoom <= 0:
            raise InputError(f"Camera zoom must be positive (1 = no zoom), got {self.zoom}.")

    def _frame(self, fraction: float, height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(2x2 linear map, centre, shift) of frame `fraction` in [0,1]: x' = c + A (x - c) + shift."""
        scale = self.zoom**fraction
        angle = math.radians(self.rotate_deg * fraction)
        linear = scale * np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        centre = np.array([(width - 1) / 2, (height - 1) / 2])
        shift = fraction * np.array([self.pan_x * width, self.pan_y * height])
        return linear, centre, shift

    def forward(self, points_px: np.ndarray, fraction: float, height: int, width: int) -> np.ndarray:
        """Displacement (...,2) in px of pixel-centre points at frame `fraction` of the clip."""
        linear, centre, shift = self._frame(fraction, height, width)
        return (points_px - centre) @ (linear - np.eye(2)).T + shift

    def backward(self, points_px: np.ndarray, fraction: float, height: int, width: int) -> np.ndarray:
        """b(q) such that content at q in frame `fraction` came from q + b(q) in frame 0 (exact inverse)."""
        linear, centre, shift = self._frame(fraction, height, width)
        source = (points_px - centre - shift) @ np.linalg.inv(linear).T + centre
        return source - points_px
