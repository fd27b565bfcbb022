"""Image scenes: spheres and cubes on a checkered ground before a wall, ray-cast per pixel, exact depth."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from core.errors import InputError
from core.pointcloud import focal_from_fov

# Named colours (RGB in [0,1]) so captions can name what is drawn.
PALETTE: dict[str, tuple[float, float, float]] = {
    "red": (0.85, 0.15, 0.12),
    "green": (0.16, 0.70, 0.22),
    "blue": (0.15, 0.30, 0.88),
    "yellow": (0.92, 0.82, 0.12),
    "orange": (0.95, 0.50, 0.08),
    "purple": (0.55, 0.20, 0.75),
    "cyan": (0.10, 0.75, 0.80),
    "white": (0.92, 0.92, 0.92),
}

_GROUND_COLORS = ((0.62, 0.62, 0.60), (0.38, 0.38, 0.37))
_WALL_COLOR = (0.70, 0.78, 0.86)
_AMBIENT = 0.3


@dataclass(frozen=True)
class Sphere:
    """A sphere in world coordinates (scene units; x right, y down, z forward from the camera)."""

    center: tuple[float, float, float]
    radius: float
    color: str

    @property
    def noun(self) -> str:
        return "sphere"


@dataclass(frozen=True)
class Box:
    """A box with half extents `half_size`, turned by `yaw_rad` about the vertical (y) axis."""

    center: tuple[float, float, float]
    half_size: tuple[float, float, float]
    color: str
    yaw_rad: float = 0.0

    @property
    def noun(self) -> str:
        return "cube" if len(set(self.half_size)) == 1 else "box"


@dataclass(frozen=True)
class ImageSceneSpec:
    """What to render: objects, the two planes, the camera and the light.

    `ground_y`: the ground is the plane y = ground_y (the camera's height above it, y points down);
    None leaves it out. `wall_z`: a back wall at world z = wall_z; None leaves it out (rays that hit
    nothing get depth +inf). `pitch_deg` tilts the camera down. `light_dir` points towards the light.
    """

    objects: tuple[Sphere | Box, ...] = ()
    ground_y: float | None = 1.0
    wall_z: float | None = 12.0
    fov_deg: float = 60.0
    pitch_deg: float = 0.0
    light_dir: tuple[float, float, float] = (-0.45, -1.0, -0.55)
    caption: str = ""
    wall_color: tuple[float, float, float] = _WALL_COLOR


@dataclass
class ImageScene:
    """A rendered image scene.

    image_uint8: (H,W,3) uint8. depth: (H,W) float32 camera z-depth in scene units (+inf where no
    surface is hit). focal_px: focal length in pixels (principal point at the image centre).
    """

    image_uint8: np.ndarray
    depth: np.ndarray
    caption: str
    focal_px: float
    spec: ImageSceneSpec


def camera_rays(size: tuple[int, int], fov_deg: float, pitch_deg: float = 0.0) -> np.ndarray:
    """World-space ray directions (H,W,3) float64 through the pixel centres, scaled so camera z = 1.

    With this scaling a hit at ray parameter t lies at camera z-depth t, whatever the pitch.
    """
    height, width = size
    focal = focal_from_fov(width, fov_deg)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    dirs_cam = np.stack(
        [(xs - (width - 1) / 2) / focal, (ys - (height - 1) / 2) / focal, np.ones_like(xs)], -1
    )
    # Pitching down turns the forward axis towards +y (down) in world space.
    a = math.radians(pitch_deg)
    rot = np.array([[1.0, 0.0, 0.0], [0.0, math.cos(a), math.sin(a)], [0.0, -math.sin(a), math.cos(a)]])
    return dirs_cam @ rot.T


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise dot product of (N,3) / (3,) arrays (matrix-vector products where one side is (3,))."""
    if a.ndim == 1:
        return b @ a
    if b.ndim == 1:
        return a @ b
    return np.einsum("ij,ij->i", a, b)


def _sphere_roots(
    origin: np.ndarray, dirs: np.ndarray, center: tuple[float, float, float], radius: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(discriminant, near root, far root) of |origin + t*dirs - center| = radius, for (N,3) or (3,) rays."""
    oc = origin - np.asarray(center)
    a = _dot(dirs, dirs)
    b = _dot(dirs, oc)
    c = _dot(oc, oc) - radius**2
    disc = b * b - a * c
    sq = np.sqrt(np.maximum(disc, 0.0))
    return disc, (-b - sq) / a, (-b + sq) / a


def _box_rotation(box: Box) -> np.ndarray:
    """Box frame -> world (a turn about the vertical axis); its transpose maps world -> box frame."""
    c, s = math.cos(box.yaw_rad), math.sin(box.yaw_rad)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _hit_box(origin: np.ndarray, dirs: np.ndarray, box: Box) -> np.ndarray:
    """Entry parameter of each ray into the box (inf on a miss), by the slab test in the box's frame."""
    rot = _box_rotation(box)
    o_local = (origin - np.asarray(box.center)) @ rot
    d_local = dirs @ rot
    n = max(len(o_local) if o_local.ndim == 2 else 0, len(d_local) if d_local.ndim == 2 else 0)
    o_local = np.broadcast_to(o_local, (n, 3))
    d_local = np.broadcast_to(d_local, (n, 3))
    t_enter = np.full(n, -np.inf)
    t_exit = np.full(n, np.inf)
    # One axis at a time: reductions over a length-3 last axis are slow in numpy. A zero direction
    # component gives +-inf bounds, which the comparisons handle as "inside or outside the slab".
    for k, half in enumerate(box.half_size):
        with np.errstate(divide="ignore", invalid="ignore"):
            t1 = (-half - o_local[:, k]) / d_local[:, k]
            t2 = (half - o_local[:, k]) / d_local[:, k]
        t_enter = np.maximum(t_enter, np.minimum(t1, t2))
        t_exit = np.minimum(t_exit, np.maximum(t1, t2))
    return np.where((t_exit >= t_enter) & (t_enter > 1e-6), t_enter, np.inf)


def _hit_object(origin: np.ndarray, dirs: np.ndarray, obj: Sphere | Box, n: int) -> np.ndarray:
    """Nearest positive hit parameter (n,) of rays origin + t*dirs with `obj`, inf on a miss.

    Boxes are tested only on the rays that meet their bounding sphere.
    """
    if isinstance(obj, Sphere):
        disc, near, _ = _sphere_roots(origin, dirs, obj.center, obj.radius)
        return np.broadcast_to(np.where((disc >= 0) & (near > 1e-6), near, np.inf), (n,))
    disc, _, far = _sphere_roots(origin, dirs, obj.center, float(np.linalg.norm(obj.half_size)))
    candidates = np.flatnonzero(np.broadcast_to((disc >= 0) & (far > 1e-6), (n,)))
    t = np.full(n, np.inf)
    if candidates.size:
        pick = lambda x: x[candidates] if x.ndim == 2 else x  # noqa: E731
        t[candidates] = _hit_box(pick(origin), pick(dirs), obj)
    return t


def _object_normals(points: np.ndarray, obj: Sphere | Box) -> np.ndarray:
    """Outward unit normals (N,3) at surface points (N,3) of `obj`."""
    if isinstance(obj, Sphere):
        return (points - np.asarray(obj.center)) / obj.radius
    rot = _box_rotation(obj)
    local = (points - np.asarray(obj.center)) @ rot
    axis = np.argmax(np.abs(local) / np.asarray(obj.half_size), axis=1)  # the face the point lies on
    normal_local = np.zeros_like(local)
    normal_local[np.arange(len(local)), axis] = np.sign(local[np.arange(len(local)), axis])
    return normal_local @ rot.T


def render_image_scene(spec: ImageSceneSpec, size: tuple[int, int]) -> ImageScene:
    """Ray-cast `spec` at `size` = (H, W): exact z-depth, Lambert colour with hard shadows."""
    height, width = size
    if height < 1 or width < 1:
        raise InputError(f"Image size must be positive, got {size}.")
    dirs = camera_rays(size, spec.fov_deg, spec.pitch_deg).reshape(-1, 3)
    n = len(dirs)
    origin = np.zeros(3)
    # Surface ids: -1 nothing, 0 wall, 1 ground, 2 + i object i. Keep the nearest hit per ray.
    depth = np.full(n, np.inf)
    surface = np.full(n, -1, dtype=np.int16)
    with np.errstate(divide="ignore"):
        if spec.wall_z is not None:
            t = np.where(dirs[:, 2] > 0, spec.wall_z / dirs[:, 2], np.inf)
            surface[t < depth], depth = 0, np.minimum(depth, t)
        if spec.ground_y is not None:
            t = np.where(dirs[:, 1] > 0, spec.ground_y / dirs[:, 1], np.inf)
            surface[t < depth], depth = 1, np.minimum(depth, t)
    for i, obj in enumerate(spec.objects):
        t = _hit_object(origin, dirs, obj, n)
        surface[t < depth], depth = 2 + i, np.minimum(depth, t)

    # Normals and colours only where each surface is the one seen.
    normal = np.zeros((n, 3))
    albedo = np.zeros((n, 3))
    points = np.where(np.isfinite(depth), depth, 0.0)[:, None] * dirs
    wall, ground = surface == 0, surface == 1
    normal[wall], albedo[wall] = (0.0, 0.0, -1.0), spec.wall_color
    normal[ground] = (0.0, -1.0, 0.0)
    checker = (np.floor(points[ground, 0] / 0.5) + np.floor(points[ground, 2] / 0.5)).astype(np.int64) % 2
    albedo[ground] = np.asarray(_GROUND_COLORS)[checker]
    for i, obj in enumerate(spec.objects):
        seen = surface == 2 + i
        normal[seen] = _object_normals(points[seen], obj)
        albedo[seen] = PALETTE[obj.color]

    light = np.asarray(spec.light_dir, dtype=np.float64)
    light /= np.linalg.norm(light)
    lambert = np.clip(normal @ light, 0.0, None)
    # Hard shadows: a lit surface point is dark when a ray towards the light meets an object first.
    facing = np.flatnonzero(lambert > 0)
    starts = points[facing] + 1e-4 * normal[facing]
    blocked = np.zeros(len(facing), dtype=bool)
    for obj in spec.objects:
        blocked |= np.isfinite(_hit_object(starts, light, obj, len(facing)))
    lambert[facing[blocked]] = 0.0
    rgb = albedo * (_AMBIENT + (1.0 - _AMBIENT) * lambert)[:, None]
    image_uint8 = np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8).reshape(height, width, 3)
    return ImageScene(
        image_uint8=image_uint8,
        depth=depth.reshape(height, width).astype(np.float32),
        caption=spec.caption,
        focal_px=focal_from_fov(width, spec.fov_deg),
        spec=spec,
    )


def _image_caption(objects: tuple[Sphere | Box, ...]) -> str:
    """'a red sphere left of a blue cube' (objects named left to right by their centre's x / z)."""
    ordered = sorted(objects, key=lambda o: o.center[0] / o.center[2])
    names = [f"a {o.color} {o.noun}" for o in ordered]
    if len(names) == 1:
        return f"{names[0]} on a checkered floor"
    if len(names) == 2:
        return f"{names[0]} left of {names[1]}"
    return f"{', '.join(names[:-1])} and {names[-1]}, from left to right"


def random_image_spec(seed: int, n_objects: int | None = None) -> ImageSceneSpec:
    """A random scene of 1-3 (or `n_objects`) spheres and cubes resting on the ground, in view."""
    rng = np.random.default_rng(seed)
    count = int(rng.integers(1, 4)) if n_objects is None else n_objects
    if count < 0 or count > len(PALETTE):
        raise InputError(f"n_objects must be between 0 and {len(PALETTE)}, got {n_objects}.")
    fov_deg, ground_y = 60.0, 1.0
    colors = rng.choice(list(PALETTE), size=count, replace=False)
    objects: list[Sphere | Box] = []
    footprints: list[tuple[float, float, float]] = []
    for color in colors:
        for _ in range(100):  # rejection sampling: objects must not intersect
            size = float(rng.uniform(0.35, 0.7))
            z = float(rng.uniform(3.5, 7.0))
            x = float(rng.uniform(-0.55, 0.55)) * z * math.tan(math.radians(fov_deg) / 2)
            if all(math.hypot(x - fx, z - fz) > 1.5 * (size + fs) for fx, fz, fs in footprints):
                break
        footprints.append((x, z, size))
        if rng.random() < 0.5:
            objects.append(Sphere((x, ground_y - size, z), size, str(color)))
        else:
            yaw = float(rng.uniform(0, math.pi / 2))
            objects.append(Box((x, ground_y - size, z), (size, size, size), str(color), yaw))
    caption = _image_caption(tuple(objects)) if objects else "an empty checkered floor"
    return ImageSceneSpec(
        objects=tuple(objects),
        ground_y=ground_y,
        fov_deg=fov_deg,
        pitch_deg=float(rng.uniform(5.0, 15.0)),
        caption=caption,
    )


def make_image_scene(
    size: tuple[int, int] = (256, 256), seed: int = 0, n_objects: int | None = None
) -> ImageScene:
    """A random image scene, identical for identical arguments."""
    return render_image_scene(random_image_spec(seed, n_objects), size)
