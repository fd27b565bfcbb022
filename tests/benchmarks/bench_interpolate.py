"""Flow inbetweening throughput at 512x512: frames/s, with the motion reused and computed from scratch.

Clip: 17 frames of a camera pan over the astronaut photo, keyframes every 8 frames, identity edit.
Rows:
- inbetweening with the video's motion already estimated (what a new edit of the same video costs)
  against the plain cross-fade;
- the whole job, motion estimation included (flow both ways + occlusion masks, once per video; the
  two directions, and then the keyframe gaps, run at once on two threads), against naive per-frame
  recomputation: for every inbetween frame, estimate the motion of its keyframe gap again and
  propagate;
- the whole job with the ULTRAFAST DIS preset (no variational refinement) against the default preset.
"""

from __future__ import annotations

import numpy as np
from harness import Row, median_seconds

from core.engines.interpolate import crossfade, estimate_video_motion, interpolate_flow
from core.engines.keyframes import uniform_keyframes
from core.eval.fixtures import camera_clip, load_photo

SIZE_PX = 512
N_FRAMES = 17
SPACING = 8
TARGET = ">= 10 frames/s at 512x512 on 2 cores"


def _naive_per_frame(frames_uint8: np.ndarray, keys: list[int], edited_uint8: np.ndarray) -> np.ndarray:
    out = np.empty_like(frames_uint8)
    out[keys] = edited_uint8
    for k, (a, b) in enumerate(zip(keys, keys[1:])):
        segment = frames_uint8[a : b + 1]
        for t in range(a + 1, b):
            motion = estimate_video_motion(segment)
            out[t] = interpolate_flow(segment, [0, b - a], edited_uint8[k : k + 2], motion=motion)[t - a]
    return out


def run() -> list[Row]:
    frames = camera_clip(load_photo("astronaut"), "pan", SIZE_PX, N_FRAMES)
    keys = [k.index for k in uniform_keyframes(N_FRAMES, SPACING)]
    edited = frames[keys]
    motion = estimate_video_motion(frames)

    reused_s = median_seconds(lambda: interpolate_flow(frames, keys, edited, motion=motion), repeat=5)
    crossfade_s = median_seconds(lambda: crossfade(N_FRAMES, keys, edited), repeat=5)
    full_s = median_seconds(lambda: interpolate_flow(frames, keys, edited), repeat=3)
    fast_s = median_seconds(lambda: interpolate_flow(frames, keys, edited, method="dis_ultrafast"), repeat=3)
    naive_s = median_seconds(lambda: _naive_per_frame(frames, keys, edited), repeat=1, warmup=0)
    return [
        Row(
            "interpolate_flow",
            "frames/s, motion reused",
            N_FRAMES / reused_s,
            "fps",
            "crossfade",
            N_FRAMES / crossfade_s,
            TARGET,
        ),
        Row(
            "interpolate_flow",
            "frames/s, motion estimated once",
            N_FRAMES / full_s,
            "fps",
            "naive per-frame motion",
            N_FRAMES / naive_s,
            TARGET,
        ),
        Row(
            "interpolate_flow",
            "frames/s, dis_ultrafast, estimated once",
            N_FRAMES / fast_s,
            "fps",
            "the same with dis (medium)",
            N_FRAMES / full_s,
            TARGET,
        ),
    ]
