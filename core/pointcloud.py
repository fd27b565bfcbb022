"""Depth maps -> coloured point clouds -> PLY files (numpy only).

The joint pipeline returns relative disparity in [0,1] (near = 1) with no metric scale, so turning it into
3-D points needs two choices, both explicit parameters:

- depth range: disparity d maps to z-depth z by interpolating inverse depth between a far and a near plane,
  ``1/z = d/near + (1 - d)/far``: d = 1 lies on the near plane, d = 0 on the far plane, and inverse depth
  (what disparity is, up to scale and shift) stays linear in d. Defaults: near 1, far 10 scene units.
- camera: a pinhole with horizontal field of view ``fov_deg`` (default 60, about a phone camera's main lens),
  square pixels and the principal point at the image centre; pixel centres sit at integer coordinates, the
  convention of :mod:`core.data.synthetic`, so its exact-depth scenes back-project onto their true geometry.

Points are in the OpenGL / glTF convention that PLY viewers (and gr.Model3D) expect: x right, y up, z towards
the viewer; the camera sits at the origin and looks down -z. Large maps are subsampled on a regular pixel
grid to at most ``max_points`` points.

PLY files are binary little-endian with one ``vertex`` element: float x, y, z and uchar red, green, blue
(15 bytes a point); no faces, so viewers draw them as a point cloud.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.errors import InputError

DEFAULT_NEAR = 1.0
DEFAULT_FAR = 10.0
DEFAULT_FOV_DEG = 60.0
DEFAULT_MAX_POINTS = 100_000

_VERTEX = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")])
_PROPERTIES = [
    "property float x",
    "property float y",
    "property float z",
    "property uchar red",
    "property uchar green",
    "property uchar blue",
]
_FORMAT = "format binary_little_endian 1.0"
_COMMENT = (
    "comment Kinema point cloud: x right, y up, z towards the viewer; camera at the origin looking down -z"
)


def focal_from_fov(width: int, fov_deg: float) -> float:
    """Focal length in pixels of the pinhole camera above with horizontal field of view `fov_deg`.

    The one definition of the camera model: :mod:`core.data.synthetic` renders its scenes with it.
    """
    return 0.5 * width / math.tan(math.radians(fov_deg) / 2)


@dataclass(frozen=True)
class PointCloud:
    """N coloured points: ``points`` float32 (N,3) (x right, y up, z towards the viewer), ``colors_uint8`` (N,3)."""

    points: np.ndarray
    colors_uint8: np.ndarray

    def __post_init__(self) -> None:
        points, colors = self.points, self.colors_uint8
        if points.ndim != 2 or points.shape[1] != 3 or points.dtype != np.float32:
            raise InputError(f"Points must be float32 (N,3), got {points.dtype} {points.shape}.")
        if colors.shape != points.shape or colors.dtype != np.uint8:
            raise InputError(f"Colours must be uint8 {points.shape}, got {colors.dtype} {colors.shape}.")

    def __len__(self) -> int:
        return self.points.shape[0]


def _check_range(near: float, far: float) -> None:
    if not (math.isfinite(near) and math.isfinite(far) and 0 < near < far):
        raise InputError(f"The depth range needs 0 < near < far (finite), got near={near}, far={far}.")


def disparity_to_depth(
    disparity_unit: np.ndarray, *, near: float = DEFAULT_NEAR, far: float = DEFAULT_FAR
) -> np.ndarray:
    """Relative disparity (H,W) in [0,1], near = 1 -> float32 z-depth (H,W) in [near, far].

    ``1/z = d/near + (1 - d)/far``; values outside [0,1] are clipped, non-finite ones stay NaN.
    """
    _check_range(near, far)
    disparity = np.asarray(disparity_unit, dtype=np.float64)
    if disparity.ndim != 2 or disparity.size == 0:
        raise InputError(f"A disparity map must have shape (H,W), got {disparity.shape}.")
    d = np.clip(disparity, 0.0, 1.0)  # NaN stays NaN
    return (1.0 / (d / near + (1.0 - d) / far)).astype(np.float32)


def grid_stride(height: int, width: int, max_points: int) -> int:
    """The smallest pixel stride s with ceil(H/s) * ceil(W/s) <= ``max_points``."""
    if max_points < 1:
        raise InputError(f"max_points must be at least 1, got {max_points}.")
    stride = max(1, math.ceil(math.sqrt(height * width / max_points)))
    while math.ceil(height / stride) * math.ceil(width / stride) > max_points:
        stride += 1
    return stride


def depth_to_point_cloud(
    image_uint8: np.ndarray,
    disparity_unit: np.ndarray,
    *,
    near: float = DEFAULT_NEAR,
    far: float = DEFAULT_FAR,
    fov_deg: float = DEFAULT_FOV_DEG,
    max_points: int = DEFAULT_MAX_POINTS,
) -> PointCloud:
    """Back-project an image (H,W,3) uint8 and its disparity (H,W) in [0,1] (near = 1) to coloured points.

    Pixels on the grid of :func:`grid_stride` (rows and columns 0, s, 2s, ...) with finite disparity become
    one point each, coloured by their pixel; see the module docstring for the depth range and the camera.
    """
    image_uint8 = np.asarray(image_uint8)
    if image_uint8.ndim != 3 or image_uint8.shape[2] != 3 or image_uint8.dtype != np.uint8:
        raise InputError(f"The image must be uint8 (H,W,3), got {image_uint8.dtype} {image_uint8.shape}.")
    height, width = image_uint8.shape[:2]
    if np.shape(disparity_unit) != (height, width):
        raise InputError(
            f"The depth map is {np.shape(disparity_unit)} but the image is {(height, width)}: they must match."
        )
    if not (math.isfinite(fov_deg) and 0 < fov_deg < 180):
        raise InputError(f"The field of view must be between 0 and 180 degrees, got {fov_deg}.")
    stride = grid_stride(height, width, max_points)
    z = disparity_to_depth(disparity_unit[::stride, ::stride], near=near, far=far).astype(np.float64)
    rows, cols = np.mgrid[0:height:stride, 0:width:stride].astype(np.float64)
    focal = focal_from_fov(width, fov_deg)
    x_right = (cols - (width - 1) / 2) * z / focal
    y_down = (rows - (height - 1) / 2) * z / focal
    points = np.stack([x_right, -y_down, -z], axis=-1)  # camera (x right, y down, z forward) -> y up, z back
    valid = np.isfinite(z)
    return PointCloud(
        points=points[valid].astype(np.float32),
        colors_uint8=np.ascontiguousarray(image_uint8[::stride, ::stride][valid]),
    )


def write_ply(path: str | Path, cloud: PointCloud) -> Path:
    """Write ``cloud`` as a binary little-endian PLY point cloud (see the module docstring); returns the path."""
    path = Path(path)
    if path.suffix.lower() != ".ply":
        raise InputError(f"A point cloud is saved as .ply, got {path.name}.")
    vertices = np.empty(len(cloud), dtype=_VERTEX)
    for axis, name in enumerate("xyz"):
        vertices[name] = cloud.points[:, axis]
    for channel, name in enumerate(("red", "green", "blue")):
        vertices[name] = cloud.colors_uint8[:, channel]
    header = "\n".join(["ply", _FORMAT, _COMMENT, f"element vertex {len(cloud)}", *_PROPERTIES])
    with open(path, "wb") as file:
        file.write(f"{header}\nend_header\n".encode("ascii"))
        file.write(vertices.tobytes())
    return path


def read_ply(path: str | Path) -> PointCloud:
    """Read a PLY written by :func:`write_ply` (binary little-endian, float xyz, uchar rgb).

    Raises InputError for any other layout, a truncated file or trailing data.
    """
    name = Path(path).name
    data = Path(path).read_bytes()
    end = data.find(b"end_header\n")
    if not data.startswith(b"ply\n") or end < 0:
        raise InputError(f"{name} is not a PLY file (no 'ply' ... 'end_header' header).")
    lines = [
        line for line in data[:end].decode("ascii", "replace").splitlines() if not line.startswith("comment")
    ]
    count_field = lines[2].removeprefix("element vertex ") if len(lines) > 2 else ""
    if lines[:2] != ["ply", _FORMAT] or lines[3:] != _PROPERTIES or not count_field.isdigit():
        raise InputError(f"{name} is not a point cloud in the layout write_ply writes.")
    count = int(count_field)
    body = data[end + len(b"end_header\n") :]
    if len(body) != count * _VERTEX.itemsize:
        raise InputError(
            f"{name} declares {count} points ({count * _VERTEX.itemsize} bytes) but holds {len(body)} bytes."
        )
    vertices = np.frombuffer(body, dtype=_VERTEX, count=count)
    return PointCloud(
        points=np.stack([vertices[axis] for axis in "xyz"], axis=1).astype(np.float32),
        colors_uint8=np.stack([vertices[channel] for channel in ("red", "green", "blue")], axis=1),
    )
