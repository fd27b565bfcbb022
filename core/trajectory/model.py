"""Trajectories: the data model, its JSON file, Gradio clicks, and resampling to frames.

Coordinates
    A trajectory is a polyline of points in normalised image coordinates (`points_norm`, float64 in
    [0, 1]): x to the right, y down, (0, 0) the top-left corner of the image and (1, 1) its bottom-right
    corner (outer edges of the corner pixels). In an image W px wide, pixel i covers [i, i+1) in those
    units times W, so the flow maps of `core.trajectory.flow`, which use pixel-centre coordinates like
    cv2.remap, place a point at x_px = x_norm * W - 0.5. A trajectory of one point, or whose points all
    coincide, is a static anchor: the image is pinned there.

Degenerate input (the contract)
    - NaN or infinite coordinates, a non-positive image size: `InputError`.
    - A file (`Trajectories.from_json`) holds JSON numbers only (no booleans, strings or nulls), at most
      MAX_TRACKS trajectories of at most MAX_POINTS points, and no deep nesting; anything else: `InputError`.
    - Points outside the image are clipped to [0, 1]: a stroke that leaves the picture ends at its edge.
    - A zero-length path (repeated clicks on one pixel) is an anchor.
    - `from_clicks` with no clicks raises `InputError`; an empty `Trajectories` is valid, the caller
      decides whether that is an error.

Timing
    Each trajectory moves during its `Timing`: from `start` to `end`, fractions of the clip (0 = the first
    frame, 1 = the last), still before and after, with linear or ease-in-out speed along the path. The default
    (0, 1, linear) spreads the path evenly over the whole clip; two objects can move one after the other.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.interpolate import PchipInterpolator

from core.checks import check_size
from core.errors import InputError

JSON_FORMAT = "kinema.trajectories"
JSON_VERSION = 2  # 2 adds each trajectory's timing; version 1 files (no timing) are read as before
EASINGS = ("linear", "ease-in-out")
MAX_TRACKS = 256  # per file: far more than anyone draws, few enough that every backend stays fast
MAX_POINTS = 4096  # per trajectory: a hand-drawn stroke has tens to hundreds

# Segments shorter than this (in the arc-length metric) carry no arc length and are dropped.
_MIN_SEGMENT = 1e-9


def _as_points(points: Any, what: str) -> np.ndarray:
    """(K,2) float64 copy of `points`; InputError when not finite numbers of that shape."""
    try:
        array = np.array(points, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise InputError(f"{what} must be a list of [x, y] number pairs.") from err
    if array.ndim == 1 and array.size == 2:
        array = array[None, :]
    if array.ndim != 2 or array.shape[1] != 2 or array.shape[0] == 0:
        raise InputError(f"{what} must be a non-empty list of [x, y] pairs, got shape {array.shape}.")
    if not np.all(np.isfinite(array)):
        raise InputError(f"{what} contains NaN or infinite coordinates; draw the trajectory again.")
    return array


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass(frozen=True)
class Timing:
    """When a trajectory moves: from `start` to `end` (fractions of the clip, 0 <= start < end <= 1), with
    `easing` "linear" (constant speed) or "ease-in-out" (starting and stopping smoothly)."""

    start: float = 0.0
    end: float = 1.0
    easing: str = "linear"

    def __post_init__(self) -> None:
        if not all(_is_number(v) and math.isfinite(v) for v in (self.start, self.end)):
            raise InputError(
                f"A trajectory's start and end must be numbers, got {self.start!r} and {self.end!r}."
            )
        if not 0.0 <= self.start < self.end <= 1.0:
            raise InputError(
                f"A trajectory must start before it ends, within the clip (0 to 1), got {self.start} to {self.end}."
            )
        if self.easing not in EASINGS:
            raise InputError(
                f"A trajectory's easing must be one of {', '.join(EASINGS)}, got {self.easing!r}."
            )
        object.__setattr__(self, "start", float(self.start))
        object.__setattr__(self, "end", float(self.end))

    def fractions(self, num_frames: int) -> np.ndarray:
        """(N,) float64 in [0,1]: how much of the path is covered at each frame (0 at the first, 1 at the last)."""
        clip = np.linspace(0.0, 1.0, num_frames)
        local = np.clip((clip - self.start) / (self.end - self.start), 0.0, 1.0)
        return local if self.easing == "linear" else 0.5 - 0.5 * np.cos(np.pi * local)


@dataclass(frozen=True, eq=False)
class Trajectory:
    """One polyline in normalised image coordinates; a single point (or zero length) is an anchor.

    Attributes:
        points_norm: (K,2) float64 in [0,1], (x, y), x right and y down, K >= 1. Construction clips
            points outside the image to [0,1] and raises InputError on NaN/inf; the array is read-only.
        timing: when it moves (see `Timing`); an anchor ignores it.
    """

    points_norm: np.ndarray
    timing: Timing = Timing()

    def __post_init__(self) -> None:
        points = np.clip(_as_points(self.points_norm, "A trajectory"), 0.0, 1.0)
        points.setflags(write=False)
        object.__setattr__(self, "points_norm", points)
        if not isinstance(self.timing, Timing):
            raise InputError("A trajectory's timing must be a Timing.")

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Trajectory)
            and np.array_equal(self.points_norm, other.points_norm)
            and self.timing == other.timing
        )

    def __hash__(self) -> int:
        return hash((self.points_norm.tobytes(), self.timing))

    def length(self, image_size: tuple[int, int] | None = None) -> float:
        """Arc length: in pixels of an image of `image_size` (width, height), else in normalised units."""
        deltas = np.diff(self.points_norm, axis=0) * _metric(image_size)
        return float(np.linalg.norm(deltas, axis=1).sum())

    @property
    def is_anchor(self) -> bool:
        """True when the trajectory does not move (one point, or all points equal)."""
        return bool(np.all(self.points_norm == self.points_norm[0]))

    def resample(self, num_frames: int, image_size: tuple[int, int] | None = None) -> np.ndarray:
        """Positions at `num_frames` frames along a PCHIP curve, evenly spaced in arc length over its timing.

        The curve interpolates the polyline's vertices with a shape-preserving cubic (scipy
        PchipInterpolator) over cumulative arc length s, one interpolant per coordinate: between two
        vertices each coordinate stays between the vertices' values and is monotone, so the curve
        neither overshoots nor backtracks, and frame positions advance monotonically along the drawn
        path. Frame 0 is the first point and the last frame the last point, exactly. An anchor (or a
        zero-length path) stays put.

        Args:
            num_frames: N >= 1.
            image_size: (width, height) in px to measure arc length on screen, so the speed is uniform
                in pixels whatever the aspect ratio; None measures it in normalised units.

        Returns:
            (N,2) float64 in [0,1].
        """
        return resample_polyline(self.points_norm, num_frames, image_size, self.timing)


@dataclass(frozen=True)
class Trajectories:
    """An ordered set of trajectories (tracks and anchors) for one image.

    Build with `from_canvas_json`, `from_clicks` (one trajectory) or `Trajectories.from_json`.
    """

    items: tuple[Trajectory, ...] = ()

    def __post_init__(self) -> None:
        items = tuple(self.items)
        if not all(isinstance(item, Trajectory) for item in items):
            raise InputError("Trajectories holds Trajectory objects only.")
        object.__setattr__(self, "items", items)

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[Trajectory]:
        return iter(self.items)

    def __getitem__(self, index: int) -> Trajectory:
        return self.items[index]

    @property
    def anchors(self) -> Trajectories:
        return Trajectories(tuple(t for t in self.items if t.is_anchor))

    @property
    def moving(self) -> Trajectories:
        return Trajectories(tuple(t for t in self.items if not t.is_anchor))

    def tracks_norm(self, num_frames: int, image_size: tuple[int, int] | None = None) -> np.ndarray:
        """Every trajectory resampled to `num_frames` (see `Trajectory.resample`).

        Returns:
            (M,N,2) float64 in [0,1]; (0,N,2) for an empty set.
        """
        _check_num_frames(num_frames)
        if not self.items:
            return np.zeros((0, num_frames, 2))
        return np.stack([t.resample(num_frames, image_size) for t in self.items])

    def to_json(self) -> str:
        """Serialise as `{"format": "kinema.trajectories", "version": 2, "trajectories": [{"points_norm": [[x,
        y], ...], "start": 0.0, "end": 1.0, "easing": "linear"}, ...]}`."""
        entries = [
            {
                "points_norm": t.points_norm.tolist(),
                "start": t.timing.start,
                "end": t.timing.end,
                "easing": t.timing.easing,
            }
            for t in self.items
        ]
        payload = {"format": JSON_FORMAT, "version": JSON_VERSION, "trajectories": entries}
        return json.dumps(payload)

    @classmethod
    def from_json(cls, text: str | bytes) -> Trajectories:
        """Inverse of `to_json` (exact round trip); reads version 1 files (no timing: the default one).
        InputError on anything else or a newer version."""
        if isinstance(text, str):
            text = text.removeprefix("\ufeff")  # a byte-order mark some editors write
        try:
            payload = json.loads(text)
        except RecursionError as err:
            raise InputError("The trajectory file is nested far too deeply to be a trajectory file.") from err
        except (TypeError, ValueError) as err:
            raise InputError("The trajectory file is not valid JSON.") from err
        if not isinstance(payload, dict) or payload.get("format") != JSON_FORMAT:
            raise InputError(f"The file is not a trajectory file (expected format {JSON_FORMAT!r}).")
        version = payload.get("version")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise InputError(f"The trajectory file has no valid version (got {version!r}).")
        if version > JSON_VERSION:
            raise InputError(
                f"The trajectory file has version {version}; this Kinema reads up to {JSON_VERSION}. "
                "Update Kinema to open it."
            )
        entries = payload.get("trajectories")
        if not isinstance(entries, list):
            raise InputError("The trajectory file has no 'trajectories' list.")
        if len(entries) > MAX_TRACKS:
            raise InputError(
                f"The trajectory file has {len(entries)} trajectories; at most {MAX_TRACKS} are allowed."
            )
        items = []
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict) or "points_norm" not in entry:
                raise InputError(f"Trajectory {i} in the file has no 'points_norm'.")
            what = f"Trajectory {i} in the file"
            timing = {key: entry[key] for key in ("start", "end", "easing") if key in entry}
            if version == 1 and timing:
                raise InputError(f"{what} has timing, which version 1 files do not have; set version 2.")
            try:
                parsed_timing = Timing(**timing)
            except InputError as error:
                raise InputError(f"{what}: {error}") from None
            items.append(Trajectory(_json_points(entry["points_norm"], what), parsed_timing))
        return cls(tuple(items))


def _json_points(points: Any, what: str) -> np.ndarray:
    """The `points_norm` of a file: a list of at most MAX_POINTS [x, y] pairs of JSON numbers, nothing else
    (no booleans, strings or nulls that numpy would turn into numbers)."""
    if not isinstance(points, list) or not all(
        isinstance(point, list) and len(point) == 2 and all(map(_is_number, point)) for point in points
    ):
        raise InputError(f"{what} must be a list of [x, y] number pairs.")
    if len(points) > MAX_POINTS:
        raise InputError(f"{what} has {len(points)} points; at most {MAX_POINTS} are allowed.")
    return _as_points(points, what)


def _metric(image_size: tuple[int, int] | None) -> np.ndarray:
    """Per-axis scale from normalised units to the arc-length metric."""
    if image_size is None:
        return np.ones(2)
    width, height = check_size(image_size, "image_size")
    return np.array([width, height], dtype=np.float64)


def _check_num_frames(num_frames: Any) -> int:
    if isinstance(num_frames, bool) or not isinstance(num_frames, int | np.integer) or num_frames < 1:
        raise InputError(f"The number of frames must be a positive integer, got {num_frames!r}.")
    return int(num_frames)


def resample_polyline(
    points_norm: np.ndarray,
    num_frames: int,
    image_size: tuple[int, int] | None = None,
    timing: Timing = Timing(),
) -> np.ndarray:
    """Resample a (K,2) polyline to `num_frames` positions; see `Trajectory.resample`."""
    num_frames = _check_num_frames(num_frames)
    points = _as_points(points_norm, "A trajectory")
    metric = _metric(image_size)
    steps = np.linalg.norm(np.diff(points, axis=0) * metric, axis=1)
    keep = np.concatenate([[True], steps > _MIN_SEGMENT])
    last = points[-1]
    points, steps = points[keep], steps[keep[1:]]
    if len(points) == 1:
        return np.repeat(points, num_frames, axis=0)
    points[-1] = last  # when the last point was a near-duplicate, end exactly on it anyway
    arc = np.concatenate([[0.0], np.cumsum(steps)])
    # PCHIP divides by segment slopes; a denormal-small slope overflows to a harmless zero derivative.
    with np.errstate(over="ignore", divide="ignore"):
        covered = (
            np.linspace(0.0, arc[-1], num_frames)
            if timing == Timing()
            else timing.fractions(num_frames) * arc[-1]
        )
        out = PchipInterpolator(arc, points, axis=0)(covered)
    out[covered == arc[-1]] = points[-1]
    out[covered == 0.0] = points[0]  # last, so that a single frame is the start
    return np.clip(out, 0.0, 1.0)


def from_clicks(clicks_px: Sequence[Sequence[float]], image_size: tuple[int, int]) -> Trajectory:
    """One trajectory through clicked pixels, in order (Gradio `SelectData.index` = [x, y]).

    Args:
        clicks_px: [[x, y], ...] pixel indices (or sub-pixel positions) in an image of `image_size`,
            e.g. the displayed image; pixel (x, y) maps to its centre ((x + 0.5) / W, (y + 0.5) / H).
            One click is an anchor.
        image_size: (width, height) of the image the clicks refer to.

    Returns:
        A Trajectory; clicks outside the image are clipped to its edge.
    """
    width, height = check_size(image_size, "image_size")
    if clicks_px is None or len(clicks_px) == 0:
        raise InputError("Click at least one point on the image to make a trajectory.")
    clicks = _as_points(clicks_px, "The clicked points")
    return Trajectory((clicks + 0.5) / np.array([width, height]))
