"""Procedural scenes with exact ground truth, deterministic by seed.

Two kinds of scene, both rendered with vectorised numpy:

- Image scenes: spheres and cubes standing on a checkered ground plane in front of a back wall, seen by
  a pinhole camera and ray-cast per pixel. `ImageScene.depth` is the exact camera z-depth of the surface
  each pixel centre's ray hits; colour is Lambert shading with a directional light and hard shadows.
- Video scenes: textured flat sprites (discs, squares) that translate and spin over a textured
  background while the camera pans. Textures are continuous functions of surface coordinates, so the
  flow of every pixel is exact: `VideoScene.flow_px[t]` maps frame t to frame t + 1.

Coordinates: pixel centres sit at integer coordinates (x = column, y = row), as cv2.remap expects.
Camera space is x right, y down, z forward.

Occlusion: `flow_px[t]` at a pixel is the motion of the surface point visible there in frame t, whether
or not that point is still visible in frame t + 1. `occluded[t]` marks the pixels whose point is hidden
in frame t + 1 (another sprite covers it, or it leaves the frame); warping frame t + 1 back with the flow
reproduces frame t only where `occluded[t]` is False.

`write_image_depth_folder` and `write_video_folder` write these scenes in the folder layouts the loaders
of `core.data` read, so every loader can be tested on data with known content.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from core.errors import InputError
from core.imaging import save_png16
from core.pointcloud import focal_from_fov
from core.video import write_video

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


# ---------------------------------------------------------------------------------------------------
# Image scenes (ray-cast, exact depth)
# ---------------------------------------------------------------------------------------------------


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
    normal[wall], albedo[wall] = (0.0, 0.0, -1.0), _WALL_COLOR
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


# ---------------------------------------------------------------------------------------------------
# Video scenes (layered sprites, exact flow)
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Texture:
    """A smooth colour texture: a base colour modulated by a sum of plane waves (lengths in px)."""

    color: tuple[float, float, float]
    wave_vectors: tuple[tuple[float, float], ...]  # cycles per pixel, (kx, ky)
    phases: tuple[float, ...]
    tint: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def sample(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """RGB in [0, 255] (float) at surface coordinates (u, v) of any shape -> shape + (3,)."""
        waves = [
            np.sin(2 * np.pi * (kx * u + ky * v) + ph) for (kx, ky), ph in zip(self.wave_vectors, self.phases)
        ]
        # Two pattern channels so the texture varies in colour, not only in brightness.
        a = 0.5 + 0.5 * np.mean(waves[0::2], axis=0)
        b = 0.5 + 0.5 * np.mean(waves[1::2], axis=0)
        rgb = (
            np.asarray(self.color) * (0.35 + 0.65 * a[..., None])
            + 0.25 * np.asarray(self.tint) * b[..., None]
        )
        return 255.0 * np.clip(rgb / 1.25, 0.0, 1.0)


def random_texture(rng: np.random.Generator, color: tuple[float, float, float], n_waves: int = 6) -> Texture:
    """Plane waves of wavelength 6-20 px in spread-out directions, so flow is locally well posed."""
    base = rng.uniform(0, np.pi)
    angles = base + np.arange(n_waves) * np.pi / n_waves + rng.uniform(-0.2, 0.2, n_waves)
    freqs = 1.0 / rng.uniform(6.0, 20.0, n_waves)
    waves = tuple((float(f * np.cos(a)), float(f * np.sin(a))) for f, a in zip(freqs, angles))
    phases = tuple(float(p) for p in rng.uniform(0, 2 * np.pi, n_waves))
    tint = tuple(float(c) for c in rng.uniform(0.2, 1.0, 3))
    return Texture(color, waves, phases, tint)


@dataclass(frozen=True)
class Sprite:
    """A flat textured shape moving in the image plane.

    `center_px` is its centre at frame 0 in background (world) pixel coordinates; it moves by
    `velocity_px` (dx, dy) and turns by `spin_rad` (clockwise on screen, since y points down) per frame.
    `radius_px` is the disc radius or half the square's side.
    """

    shape: Literal["disc", "square"]
    radius_px: float
    center_px: tuple[float, float]
    velocity_px: tuple[float, float]
    color: str
    texture: Texture
    spin_rad: float = 0.0
    angle_rad: float = 0.0


@dataclass(frozen=True)
class VideoSceneSpec:
    """Sprites drawn back to front over a textured background seen through a panning camera.

    The camera window moves by `camera_velocity_px` (dx, dy) per frame over the background, so static
    content moves by minus that on screen.
    """

    size: tuple[int, int]
    n_frames: int
    background: Texture
    sprites: tuple[Sprite, ...] = ()
    camera_velocity_px: tuple[float, float] = (0.0, 0.0)
    fps: float = 8.0
    caption: str = ""


@dataclass
class VideoScene:
    """A rendered video with exact motion ground truth.

    frames_uint8: (T,H,W,3). flow_px: (T-1,H,W,2) float32, (dx, dy) from frame t to t + 1.
    occluded: (T-1,H,W) bool, True where the point seen at t is hidden or out of frame at t + 1.
    layer_ids: (T,H,W) int16, the sprite index seen at each pixel (-1: background).
    tracks_px: (T,K,2) float32 sprite centres (x, y) on screen. track_visible: (T,K) bool, True where
    the centre is inside the frame and the sprite itself is seen there.
    """

    frames_uint8: np.ndarray
    flow_px: np.ndarray
    occluded: np.ndarray
    layer_ids: np.ndarray
    tracks_px: np.ndarray
    track_visible: np.ndarray
    fps: float
    caption: str
    spec: VideoSceneSpec = field(repr=False)


def _rotation(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s], [s, c]])


def _sprite_pose(spec: VideoSceneSpec, sprite: Sprite, t: float) -> tuple[np.ndarray, float]:
    """Screen-space centre (x, y) and angle of `sprite` at frame t."""
    cam = np.asarray(spec.camera_velocity_px) * t
    center = np.asarray(sprite.center_px) + np.asarray(sprite.velocity_px) * t - cam
    return center, sprite.angle_rad + sprite.spin_rad * t


def _sprite_local(points: np.ndarray, center: np.ndarray, angle: float) -> np.ndarray:
    """Screen points (...,2) -> the sprite's own coordinates (...,2) (undo translation, then rotation)."""
    return (points - center) @ _rotation(angle)  # row vectors: p @ R == R^T p


def _inside(sprite: Sprite, local: np.ndarray) -> np.ndarray:
    if sprite.shape == "disc":
        return np.hypot(local[..., 0], local[..., 1]) <= sprite.radius_px
    return np.abs(local).max(-1) <= sprite.radius_px


def _layer_at(spec: VideoSceneSpec, points: np.ndarray, t: int) -> np.ndarray:
    """Index of the front-most sprite covering each screen point at frame t (-1: background)."""
    layer = np.full(points.shape[:-1], -1, dtype=np.int16)
    for k, sprite in enumerate(spec.sprites):
        center, angle = _sprite_pose(spec, sprite, t)
        layer[_inside(sprite, _sprite_local(points, center, angle))] = k
    return layer


def render_video_scene(spec: VideoSceneSpec) -> VideoScene:
    """Render `spec`: frames, exact flow, occlusion masks, layer ids and sprite tracks."""
    height, width = spec.size
    n_frames = spec.n_frames
    if height < 1 or width < 1 or n_frames < 2:
        raise InputError(
            f"A video scene needs a positive size and at least 2 frames, got {spec.size}, {n_frames}."
        )
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    pix = np.stack([xs, ys], -1)
    n_sprites = len(spec.sprites)
    frames = np.empty((n_frames, height, width, 3), dtype=np.uint8)
    layers = np.empty((n_frames, height, width), dtype=np.int16)
    flow = np.empty((n_frames - 1, height, width, 2), dtype=np.float32)
    occluded = np.empty((n_frames - 1, height, width), dtype=bool)
    tracks = np.empty((n_frames, n_sprites, 2), dtype=np.float32)
    visible = np.zeros((n_frames, n_sprites), dtype=bool)
    cam_step = np.asarray(spec.camera_velocity_px, dtype=np.float64)

    for t in range(n_frames):
        cam = cam_step * t
        rgb = spec.background.sample(xs + cam[0], ys + cam[1])
        motion = np.broadcast_to(-cam_step, (height, width, 2)).copy()
        layer = np.full((height, width), -1, dtype=np.int16)
        for k, sprite in enumerate(spec.sprites):
            center, angle = _sprite_pose(spec, sprite, t)
            local = _sprite_local(pix, center, angle)
            mask = _inside(sprite, local)
            rgb[mask] = sprite.texture.sample(local[mask][:, 0], local[mask][:, 1])
            layer[mask] = k
            if t < n_frames - 1:
                next_center, next_angle = _sprite_pose(spec, sprite, t + 1)
                moved = local[mask] @ _rotation(next_angle).T + next_center
                motion[mask] = moved - pix[mask]
            tracks[t, k] = center
        frames[t] = np.clip(np.round(rgb), 0, 255).astype(np.uint8)
        layers[t] = layer
        if t < n_frames - 1:
            flow[t] = motion
        for k in range(n_sprites):
            cx, cy = tracks[t, k]
            ix, iy = int(round(float(cx))), int(round(float(cy)))
            visible[t, k] = 0 <= ix < width and 0 <= iy < height and layer[iy, ix] == k

    for t in range(n_frames - 1):
        target = pix + flow[t]
        in_frame = (
            (target[..., 0] >= -0.5)
            & (target[..., 0] <= width - 0.5)
            & (target[..., 1] >= -0.5)
            & (target[..., 1] <= height - 0.5)
        )
        occluded[t] = ~in_frame | (_layer_at(spec, target, t + 1) != layers[t])

    return VideoScene(
        frames_uint8=frames,
        flow_px=flow,
        occluded=occluded,
        layer_ids=layers,
        tracks_px=tracks,
        track_visible=visible,
        fps=spec.fps,
        caption=spec.caption,
        spec=spec,
    )


def _direction_word(v: tuple[float, float] | np.ndarray, still: float = 0.25) -> str:
    dx, dy = float(v[0]), float(v[1])
    if math.hypot(dx, dy) < still:
        return ""
    if abs(dx) >= abs(dy):
        return "right" if dx > 0 else "left"
    return "down" if dy > 0 else "up"


def _video_caption(sprites: tuple[Sprite, ...], camera_velocity: tuple[float, float]) -> str:
    parts = []
    for s in sprites:
        noun = "disc" if s.shape == "disc" else "square"
        word = _direction_word(s.velocity_px)
        parts.append(f"a {s.color} {noun} moving {word}" if word else f"a {s.color} {noun} standing still")
    text = " and ".join(parts) if parts else "a textured wall"
    pan = _direction_word(camera_velocity)
    return f"{text}, the camera panning {pan}" if pan else text


def random_video_spec(
    size: tuple[int, int] = (64, 64),
    n_frames: int = 8,
    seed: int = 0,
    n_sprites: int | None = None,
    max_speed_px: float = 2.0,
    max_pan_px: float = 1.5,
    fps: float = 8.0,
) -> VideoSceneSpec:
    """Random sprites whose centres stay in frame, at most `max_speed_px` per frame, and a pan."""
    rng = np.random.default_rng(seed)
    height, width = size
    count = int(rng.integers(1, 4)) if n_sprites is None else n_sprites
    if count < 0 or count > len(PALETTE):
        raise InputError(f"n_sprites must be between 0 and {len(PALETTE)}, got {n_sprites}.")
    span = max(n_frames - 1, 1)
    pan = rng.uniform(-1, 1, 2) * np.array([max_pan_px, 0.25 * max_pan_px])
    colors = rng.choice(list(PALETTE), size=count, replace=False)
    sprites = []
    for color in colors:
        radius = float(rng.uniform(0.1, 0.2) * min(height, width))
        margin = np.array([width, height]) * 0.15
        start_screen = rng.uniform(margin, np.array([width, height]) - margin)
        step = rng.uniform(-1, 1, 2) * max_speed_px / math.sqrt(2)
        end_screen = np.clip(start_screen + step * span, margin, np.array([width, height]) - margin)
        screen_velocity = (end_screen - start_screen) / span
        sprites.append(
            Sprite(
                shape="disc" if rng.random() < 0.5 else "square",
                radius_px=radius,
                # Stored in background coordinates: the screen motion plus the pan.
                center_px=(float(start_screen[0]), float(start_screen[1])),
                velocity_px=(float(screen_velocity[0] + pan[0]), float(screen_velocity[1] + pan[1])),
                color=str(color),
                texture=random_texture(rng, PALETTE[str(color)]),
                spin_rad=float(rng.uniform(-0.05, 0.05)),
                angle_rad=float(rng.uniform(0, np.pi)),
            )
        )
    background = random_texture(rng, (0.55, 0.5, 0.45))
    camera = (float(pan[0]), float(pan[1]))
    return VideoSceneSpec(
        size=(height, width),
        n_frames=n_frames,
        background=background,
        sprites=tuple(sprites),
        camera_velocity_px=camera,
        fps=fps,
        caption=_video_caption(tuple(sprites), camera),
    )


def make_video_scene(
    size: tuple[int, int] = (64, 64), n_frames: int = 8, seed: int = 0, **kwargs: float
) -> VideoScene:
    """A random video scene (see `random_video_spec` for the keyword arguments), identical per seed."""
    return render_video_scene(random_video_spec(size, n_frames, seed, **kwargs))


# ---------------------------------------------------------------------------------------------------
# Folder writers (the layouts core.data's loaders read)
# ---------------------------------------------------------------------------------------------------


def disparity_of(depth: np.ndarray) -> np.ndarray:
    """Depth (H,W) float, +inf where nothing was hit -> disparity 1/depth (H,W) float32, 0 at infinity."""
    with np.errstate(divide="ignore"):
        return np.where(np.isfinite(depth) & (depth > 0), 1.0 / depth, 0.0).astype(np.float32)


def write_image_depth_folder(
    root: str | Path,
    n: int,
    size: tuple[int, int] = (64, 64),
    seed: int = 0,
    depth_format: Literal["png", "npy"] = "png",
) -> list[Path]:
    """Write `n` image scenes as `root/images/NAME.png`, `root/depth/NAME.(png|npy)`, `root/metadata.jsonl`.

    Depth is stored as disparity (1/z, larger = nearer), the convention of `core.data.image_depth`: a
    16-bit PNG scaled to the image's max, or an exact float32 .npy. metadata.jsonl rows are
    {"file_name": "images/NAME.png", "text": caption} (HF imagefolder's format). Scene i uses seed
    `seed + i`. Returns the image paths.
    """
    if depth_format not in ("png", "npy"):
        raise InputError(f"depth_format must be 'png' or 'npy', got {depth_format!r}.")
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "depth").mkdir(parents=True, exist_ok=True)
    paths = []
    rows = []
    for i in range(n):
        scene = make_image_scene(size, seed + i)
        name = f"scene_{i:05d}"
        image_path = root / "images" / f"{name}.png"
        _save_rgb_png(image_path, scene.image_uint8)
        disparity = disparity_of(scene.depth)
        if depth_format == "png":
            # Scaled to the image's own maximum: the loaders' normalisation is affine-invariant anyway.
            save_png16(root / "depth" / f"{name}.png", disparity / max(float(disparity.max()), 1e-12))
        else:
            np.save(root / "depth" / f"{name}.npy", disparity)
        paths.append(image_path)
        rows.append({"file_name": f"images/{name}.png", "text": scene.caption})
    with open(root / "metadata.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    return paths


def _save_rgb_png(path: Path, image_uint8: np.ndarray) -> None:
    if not cv2.imwrite(str(path), image_uint8[..., ::-1]):  # cv2 wants BGR
        raise OSError(f"Could not write {path}; check that its folder exists and is writable.")


def write_video_folder(
    root: str | Path,
    n: int,
    layout: Literal["panda", "webvid"] = "panda",
    size: tuple[int, int] = (64, 64),
    n_frames: int = 16,
    fps: float = 8.0,
    seed: int = 0,
    captions: bool = True,
) -> list[Path]:
    """Write `n` synthetic clips (mp4 via core.video) in a loader layout; returns the clip paths.

    layout "panda": `root/videos/CLIP_ID.mp4` and `root/metadata.csv` (clip_id, caption).
    layout "webvid": `root/PAGE_DIR/VIDEOID.mp4` and `root/results.csv` (videoid, name, page_dir,
    duration); `captions=False` leaves the name column empty, as in some WebVid copies.
    Scene i uses seed `seed + i`.
    """
    if layout not in ("panda", "webvid"):
        raise InputError(f"layout must be 'panda' or 'webvid', got {layout!r}.")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    paths = []
    for i in range(n):
        scene = make_video_scene(size, n_frames, seed + i, fps=fps)
        caption = scene.caption if captions else ""
        if layout == "panda":
            clip_id = f"clip_{i:05d}"
            path = root / "videos" / f"{clip_id}.mp4"
            rows.append({"clip_id": clip_id, "caption": caption})
        else:
            videoid = str(1000 + i)
            page_dir = f"{(i // 50) * 50 + 1:06d}_{(i // 50 + 1) * 50:06d}"
            path = root / page_dir / f"{videoid}.mp4"
            rows.append(
                {"videoid": videoid, "name": caption, "page_dir": page_dir, "duration": n_frames / fps}
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        write_video(path, scene.frames_uint8, fps)
        paths.append(path)
    table = root / ("metadata.csv" if layout == "panda" else "results.csv")
    with open(table, "w", newline="", encoding="utf-8") as f:
        columns = ["clip_id", "caption"] if layout == "panda" else ["videoid", "name", "page_dir", "duration"]
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return paths
