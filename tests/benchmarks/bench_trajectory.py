"""Trajectories -> dense backward maps -> warped 14-frame video at 576x1024 (SVD's frame size).

Five trajectories (four drags and an anchor) on the astronaut photo stretched to 1024x576.
Rows:
- the drag app's warp preview (`core.engines.warp.preview_video`: the warp engine on a copy at most
  384 px long, frames enlarged back) against `animate` at full resolution (maps, fill and flow), and
  how far its frames are from animate's (PSNR) against animate's frames shrunk to the preview's size
  and enlarged back (what the resolution alone costs);
- the bare pipeline (resample, backward maps, 14 backward warps) against the same pipeline with the maps
  evaluated at every pixel (the naive per-pixel RBF: same kernel, no coarse grid, no upsampling);
- the maps alone, against the per-pixel maps;
- what the coarse grid costs in accuracy: mean |coarse - per-pixel| over all pixels and frames,
  against the mean displacement it approximates;
- the object engine (`core.engines.objects`: each drag moves the object under it) as a live preview (no
  flow, objects segmented once per image and cached, as the app does) against the warp preview, and its
  segmentation of the objects against one full `animate_objects` clip.

Run: .venv/bin/python tests/benchmarks/run.py trajectory
"""

from __future__ import annotations

import cv2
import numpy as np
from harness import Row, median_seconds

from core.engines.objects import animate_objects, object_layers
from core.engines.warp import PREVIEW_VIDEO_SIDE_PX, animate, preview_video
from core.eval.fixtures import load_photo
from core.eval.metrics import psnr_db
from core.flow import backward_warp
from core.trajectory import Trajectories, Trajectory, backward_flow

HEIGHT, WIDTH, FRAMES = 576, 1024, 14


def _trajectories() -> Trajectories:
    return Trajectories(
        (
            Trajectory([[0.39, 0.20], [0.33, 0.17], [0.30, 0.22]]),
            Trajectory([[0.73, 0.44], [0.80, 0.40], [0.85, 0.30]]),
            Trajectory([[0.33, 0.73], [0.25, 0.70], [0.20, 0.60]]),
            Trajectory([[0.61, 0.86], [0.66, 0.80]]),
            Trajectory([[0.52, 0.45]]),
        )
    )


def _video(image: np.ndarray, trajectories: Trajectories, grid_step: int) -> np.ndarray:
    tracks = trajectories.tracks_norm(FRAMES, (WIDTH, HEIGHT))
    maps = backward_flow(tracks, HEIGHT, WIDTH, grid_step=grid_step)
    return np.stack([image] + [backward_warp(image, maps[t]) for t in range(1, FRAMES)])


def run() -> list[Row]:
    image = cv2.resize(load_photo("astronaut"), (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA)
    trajectories = _trajectories()
    tracks = trajectories.tracks_norm(FRAMES, (WIDTH, HEIGHT))
    video_s = median_seconds(lambda: _video(image, trajectories, 8), repeat=7)
    maps_s = median_seconds(lambda: backward_flow(tracks, HEIGHT, WIDTH), repeat=7)
    # The per-pixel baseline takes seconds: one timed run each is plenty.
    naive_video_s = median_seconds(lambda: _video(image, trajectories, 1), repeat=1, warmup=0)
    naive_maps_s = median_seconds(
        lambda: backward_flow(tracks, HEIGHT, WIDTH, grid_step=1), repeat=1, warmup=0
    )
    preview_s = median_seconds(lambda: preview_video(image, trajectories, FRAMES), repeat=7)
    animate_s = median_seconds(lambda: animate(image, trajectories, FRAMES), repeat=3)
    preview = preview_video(image, trajectories, FRAMES)
    full = animate(image, trajectories, FRAMES).frames_uint8
    small_size = (PREVIEW_VIDEO_SIDE_PX, round(HEIGHT * PREVIEW_VIDEO_SIDE_PX / WIDTH))
    resampled = np.stack(
        [cv2.resize(cv2.resize(f, small_size, interpolation=cv2.INTER_AREA), (WIDTH, HEIGHT)) for f in full]
    )
    coarse = backward_flow(tracks, HEIGHT, WIDTH)
    fine = backward_flow(tracks, HEIGHT, WIDTH, grid_step=1)
    error_px = float(np.linalg.norm(coarse - fine, axis=-1).mean())
    motion_px = float(np.linalg.norm(fine, axis=-1).mean())
    segment_s = median_seconds(lambda: object_layers(image, trajectories), repeat=1, warmup=0)
    layers = object_layers(image, trajectories)
    objects_preview_s = median_seconds(
        lambda: animate_objects(image, trajectories, FRAMES, layers=layers, with_flow=False), repeat=5
    )
    objects_s = median_seconds(lambda: animate_objects(image, trajectories, FRAMES, layers=layers), repeat=3)
    name = "trajectory_576x1024"
    return [
        Row(name, "warp preview, 5 tracks -> 14 frames", preview_s * 1e3, "ms", "animate (full resolution)",
            animate_s * 1e3, "<= 100 ms on 2 cores"),
        Row(name, "warp preview PSNR vs animate", psnr_db(preview[1:], full[1:]), "dB", "animate resampled",
            psnr_db(resampled[1:], full[1:]), "close to the baseline"),
        Row(name, "5 tracks -> 14-frame video", video_s * 1e3, "ms", "per-pixel maps", naive_video_s * 1e3,
            "<= 150 ms on 2 cores"),
        Row(name, "backward maps (grid step 8)", maps_s * 1e3, "ms", "per-pixel maps", naive_maps_s * 1e3),
        Row(name, "mean map error vs per-pixel", error_px, "px", "mean displacement", motion_px,
            "a small fraction of the motion"),
        Row(name, "object preview, 5 tracks -> 14 frames", objects_preview_s * 1e3, "ms", "warp preview",
            preview_s * 1e3, "interactive (a few hundred ms)"),
        Row(name, "object segmentation (once per image)", segment_s * 1e3, "ms", "object clip with flow",
            objects_s * 1e3),
    ]  # fmt: skip
