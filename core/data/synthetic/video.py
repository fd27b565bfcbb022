"""Video scenes: textured sprites moving over a textured background under a panning camera, exact flow."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

from core.data.synthetic.image import PALETTE
from core.errors import InputError


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

    def tracks_norm(self) -> np.ndarray:
        """``tracks_px`` as (T,K,2) float64 in [0,1], the convention of ``core.trajectory`` (pixel centre x at
        (x + 0.5) / W)."""
        height, width = self.frames_uint8.shape[1:3]
        return (self.tracks_px.astype(np.float64) + 0.5) / np.array([width, height])


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


def _margin(size: tuple[int, int]) -> np.ndarray:
    """(x, y) distance from the frame's edges that sprite centres keep."""
    height, width = size
    return np.array([width, height]) * 0.15


def _draw_pan(rng: np.random.Generator, max_pan_px: float) -> np.ndarray:
    """A camera velocity (dx, dy) per frame, mostly horizontal."""
    return rng.uniform(-1, 1, 2) * np.array([max_pan_px, 0.25 * max_pan_px])


def _draw_velocity(
    rng: np.random.Generator,
    start_screen: np.ndarray,
    pan: np.ndarray,
    size: tuple[int, int],
    n_frames: int,
    max_speed_px: float,
) -> tuple[float, float]:
    """A sprite's velocity in background coordinates: a random screen motion of at most `max_speed_px` per
    frame whose end stays inside the margins, plus the camera's pan."""
    height, width = size
    span = max(n_frames - 1, 1)
    margin = _margin(size)
    step = rng.uniform(-1, 1, 2) * max_speed_px / math.sqrt(2)
    end_screen = np.clip(start_screen + step * span, margin, np.array([width, height]) - margin)
    screen_velocity = (end_screen - start_screen) / span
    return float(screen_velocity[0] + pan[0]), float(screen_velocity[1] + pan[1])


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
    pan = _draw_pan(rng, max_pan_px)
    colors = rng.choice(list(PALETTE), size=count, replace=False)
    sprites = []
    for color in colors:
        radius = float(rng.uniform(0.1, 0.2) * min(height, width))
        margin = _margin(size)
        start_screen = rng.uniform(margin, np.array([width, height]) - margin)
        velocity = _draw_velocity(rng, start_screen, pan, size, n_frames, max_speed_px)
        sprites.append(
            Sprite(
                shape="disc" if rng.random() < 0.5 else "square",
                radius_px=radius,
                # Stored in background coordinates (the same as the screen's at frame 0).
                center_px=(float(start_screen[0]), float(start_screen[1])),
                velocity_px=velocity,
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


def redraw_motion(
    spec: VideoSceneSpec, seed: int, max_speed_px: float = 2.0, max_pan_px: float = 1.5
) -> VideoSceneSpec:
    """`spec` with its motion drawn again as `random_video_spec` draws it (a new pan and sprite velocities,
    seeded `seed`), everything seen in frame 0 kept: the same first frame, another clip that could follow it."""
    rng = np.random.default_rng(seed)
    pan = _draw_pan(rng, max_pan_px)
    sprites = tuple(
        replace(
            sprite,
            velocity_px=_draw_velocity(
                rng, np.asarray(sprite.center_px), pan, spec.size, spec.n_frames, max_speed_px
            ),
        )
        for sprite in spec.sprites
    )
    camera = (float(pan[0]), float(pan[1]))
    return replace(spec, sprites=sprites, camera_velocity_px=camera, caption=_video_caption(sprites, camera))


def make_video_scene(
    size: tuple[int, int] = (64, 64), n_frames: int = 8, seed: int = 0, **kwargs: float
) -> VideoScene:
    """A random video scene (see `random_video_spec` for the keyword arguments), identical per seed."""
    return render_video_scene(random_video_spec(size, n_frames, seed, **kwargs))
