"""Control fidelity of drag-to-video: `python -m apps.drag.evaluate --backend warp|svd` prints ObjMC tables.

ObjMC (`core.metrics`): each requested trajectory's start point is re-tracked through the generated video
(pyramidal Lucas-Kanade, frame to frame) and its distance to the requested position is averaged, per
frame and over frames 1..T-1. Inputs: real photos shipped with scikit-image (a dev dependency, imported
only here), astronaut and coffee, each scaled to multiples of 64 (long side --max-side) with four drags
and one anchor placed on textured points (LK needs texture to lock on).

The same command runs the svd backend (`--svd-model tiny` runs the offline random model: every code
path, meaningless numbers; real weights on a GPU give the comparison, at SVD's frame size with
`--size 1024x576`). Target for the warp backend:
ObjMC < 1.5 px (printed, asserted in tests/unit/test_metrics.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from apps.drag.backends import BACKENDS, render
from apps.drag.cli import TqdmProgress
from core.config import Settings
from core.engines.warp import DEFAULT_FRAMES
from core.errors import InputError, ModelNotAvailable
from core.imaging import resize_to_multiple
from core.metrics import LK_LEVELS, LK_WINDOW_PX, ObjMC, measure_objmc
from core.trajectory import Trajectories, Trajectory

WARP_TARGET_PX = 1.5

# Normalised to the evaluation frame: four drags (polylines) and an anchor per photo.
REQUESTS: dict[str, tuple[list[list[float]], ...]] = {
    "astronaut": (
        [[0.42, 0.22], [0.50, 0.20], [0.55, 0.26]],  # hair, up and right
        [[0.32, 0.84], [0.26, 0.78], [0.22, 0.70]],  # badge, up and left
        [[0.72, 0.48], [0.80, 0.44]],  # rocket, right
        [[0.20, 0.40], [0.14, 0.30]],  # flag, up
        [[0.90, 0.88]],  # helmet, pinned
    ),
    "coffee": (
        [[0.34, 0.30], [0.44, 0.26], [0.50, 0.30]],  # cup rim
        [[0.55, 0.70], [0.62, 0.62]],  # spoon
        [[0.10, 0.80], [0.18, 0.86]],  # table grain
        [[0.85, 0.20], [0.78, 0.32]],  # table, top right
        [[0.86, 0.80]],  # saucer, pinned
    ),
}


def requests(photo: str) -> Trajectories:
    """The evaluation trajectories of a photo (one of REQUESTS)."""
    if photo not in REQUESTS:
        raise InputError(f"Unknown photo {photo!r}; choose one of {', '.join(REQUESTS)}.")
    return Trajectories(tuple(Trajectory(points) for points in REQUESTS[photo]))


def evaluation_image(photo: str, max_side_px: int, size: tuple[int, int] | None = None) -> np.ndarray:
    """The photo as (H,W,3) uint8, centre-cropped to the frame's aspect.

    Without `size`: sides multiples of 64 and long side <= max_side_px, never enlarged. With
    `size` (width, height), e.g. SVD's 1024x576: exactly that size, enlarged (bicubic) if need be.
    """
    from core.flow.evaluate import load_photo

    image = load_photo(photo)
    if size is None:
        return resize_to_multiple(image, multiple=64, max_side=max_side_px, mode="crop")[0]
    width, height = size
    source_h, source_w = image.shape[:2]
    crop_w, crop_h = (
        min(source_w, round(source_h * width / height)),
        min(source_h, round(source_w * height / width)),
    )
    top, left = (source_h - crop_h) // 2, (source_w - crop_w) // 2
    crop = image[top : top + crop_h, left : left + crop_w]
    shrinking = width * height < crop_w * crop_h
    return cv2.resize(crop, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)


def _parse_size(text: str) -> tuple[int, int]:
    """'1024x576' -> (1024, 576); sides positive multiples of 8 (SVD's VAE halves them three times)."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 1024x576, got {text!r}") from None
    if width < 8 or height < 8 or width % 8 or height % 8:
        raise argparse.ArgumentTypeError(f"both sides must be multiples of 8 (at least 8), got {text!r}")
    return width, height


def evaluate_photo(
    photo: str,
    backend: str,
    max_side_px: int,
    settings: Settings,
    size: tuple[int, int] | None = None,
    quiet: bool = False,
    **render_options,
) -> dict:
    """Generate one photo's video with `backend` and score it: {"objmc": ObjMC, ...}."""
    image = evaluation_image(photo, max_side_px, size)
    started = time.perf_counter()
    with TqdmProgress(disable=quiet) as progress:
        video = render(
            backend, image, requests(photo), settings=settings, progress=progress, **render_options
        )
    seconds = time.perf_counter() - started
    score, tracks = measure_objmc(video.frames_uint8, video.warp.tracks_px)
    moves = np.linalg.norm(video.warp.tracks_px[:, -1] - video.warp.tracks_px[:, 0], axis=1)
    return {
        "objmc": score,
        "reliable": tracks.reliable[:, -1],
        "moves_px": moves,
        "size_hw": image.shape[:2],
        "seconds": seconds,
    }


def _photo_table(photo: str, result: dict) -> str:
    score: ObjMC = result["objmc"]
    height, width = result["size_hw"]
    names = [f"{'anchor' if move == 0 else 'drag'}{i + 1}" for i, move in enumerate(result["moves_px"])]
    lines = [
        f"{photo} ({width}x{height}, {result['seconds']:.1f} s)",
        f"{'frame':>7} " + " ".join(f"{n:>8}" for n in names) + f" {'mean':>8}",
    ]
    for t in range(1, score.distances_px.shape[1]):
        cells = " ".join(f"{d:>8.3f}" for d in score.distances_px[:, t])
        lines.append(f"{t:>7} {cells} {score.per_frame_px[t]:>8.3f}")
    lines.append(
        f"{'ObjMC':>7} " + " ".join(f"{d:>8.3f}" for d in score.per_track_px) + f" {score.mean_px:>8.3f}"
    )
    lines.append(f"{'moved':>7} " + " ".join(f"{m:>8.1f}" for m in result["moves_px"]))
    lost = [n for n, ok in zip(names, result["reliable"]) if not ok]
    if lost:
        lines.append(f"  tracker unsure (forward-backward > 1 px) for: {', '.join(lost)}")
    return "\n".join(lines)


def _summary_table(results: dict[str, dict]) -> str:
    photos = list(results)
    per_frame = np.stack([results[p]["objmc"].per_frame_px for p in photos])
    lines = [
        "per-frame ObjMC (px), mean over trajectories",
        f"{'frame':>7} " + " ".join(f"{p:>10}" for p in photos) + f" {'mean':>10}",
    ]
    for t in range(1, per_frame.shape[1]):
        lines.append(
            f"{t:>7} "
            + " ".join(f"{v:>10.3f}" for v in per_frame[:, t])
            + f" {per_frame[:, t].mean():>10.3f}"
        )
    overall = [results[p]["objmc"].mean_px for p in photos]
    lines.append(f"{'ObjMC':>7} " + " ".join(f"{v:>10.3f}" for v in overall) + f" {np.mean(overall):>10.3f}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m apps.drag.evaluate", description=__doc__.split("\n\n")[0], allow_abbrev=False
    )
    parser.add_argument("--backend", choices=list(BACKENDS), default="warp", help="the engine to score")
    parser.add_argument("--photos", nargs="+", choices=list(REQUESTS), default=list(REQUESTS))
    parser.add_argument("--frames", type=int, default=DEFAULT_FRAMES, help="frames per video (14)")
    parser.add_argument("--max-side", type=int, default=512, help="long side of the video in px (512)")
    parser.add_argument(
        "--size", type=_parse_size, default=None, help="exact frame size WxH instead, e.g. 1024x576 for SVD"
    )
    parser.add_argument("--fps", type=int, default=7, help="svd: fps conditioning (7)")
    parser.add_argument("--strength", type=float, default=0.4, help="svd: SDEdit strength (0.4)")
    parser.add_argument("--steps", type=int, default=25, help="svd: denoising steps of the schedule (25)")
    parser.add_argument("--seed", type=int, default=0, help="svd: random seed (0)")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers to this JSON file")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    Settings.add_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_args(args)
        options = {"num_frames": args.frames, "quiet": args.quiet}
        if args.backend == "svd":
            options.update(
                fps=args.fps, strength=args.strength, num_inference_steps=args.steps, seed=args.seed
            )
        results = {
            photo: evaluate_photo(photo, args.backend, args.max_side, settings, args.size, **options)
            for photo in args.photos
        }
    except (InputError, ModelNotAvailable) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    model = (
        f", model {settings.svd_model}, strength {args.strength}, {args.steps} steps"
        if args.backend == "svd"
        else ""
    )
    print(
        f"\nObjMC (px, lower is better) of the {args.backend} backend{model}: {args.frames} frames; tracker "
        f"pyramidal LK ({LK_WINDOW_PX} px window, {LK_LEVELS} levels), frame 0 excluded."
    )
    for photo, result in results.items():
        print("\n" + _photo_table(photo, result))
    print("\n" + _summary_table(results))
    if args.backend == "warp":
        print(f"target (warp): ObjMC < {WARP_TARGET_PX} px")
    if args.json is not None:
        payload = {
            "backend": args.backend,
            "frames": args.frames,
            "svd_model": settings.svd_model if args.backend == "svd" else None,
            "photos": {
                photo: {
                    "size_hw": list(r["size_hw"]),
                    "objmc_px": r["objmc"].mean_px,
                    "per_track_px": r["objmc"].per_track_px.tolist(),
                    "per_frame_px": r["objmc"].per_frame_px.tolist(),
                    "moves_px": r["moves_px"].tolist(),
                }
                for photo, r in results.items()
            },
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
