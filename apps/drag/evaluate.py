"""Control fidelity of drag-to-video: `python -m apps.drag.evaluate --backends warp svd ...` prints ObjMC tables.

ObjMC (`core.metrics`): each requested trajectory's start point is re-tracked through the generated video
(pyramidal Lucas-Kanade, frame to frame) and its distance to the requested position is averaged, per
frame and over frames 1..T-1. Inputs: real photos shipped with scikit-image (a dev dependency, imported
only here), astronaut and coffee, each scaled to multiples of 64 (long side --max-side) with four drags
and one anchor placed on textured points (LK needs texture to lock on).

Every backend of `apps.drag.backends` runs on the same photos and drags (default: every backend whose
weights are configured; one that fails to load is then skipped with its reason, while a backend named
in --backends must load). Each gets its per-photo and per-frame tables; one summary table closes the
run: a row per backend, ObjMC per photo, their mean and the seconds. A model set to 'tiny' (offline
random weights) runs every code path with meaningless numbers, and the output says so; real weights
on a GPU give the comparison, at SVD's frame size with `--size 1024x576`. Target for the warp backend:
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

from apps.drag.backends import BACKENDS, available_backends, load, render
from apps.drag.cli import TqdmProgress
from core.config import Settings
from core.engines.warp import DEFAULT_FRAMES
from core.errors import InputError, ModelNotAvailable
from core.imaging import resize_to_multiple
from core.metrics import LK_LEVELS, LK_WINDOW_PX, ObjMC, measure_objmc
from core.models import TINY
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


def _backend_table(results: dict[str, dict[str, dict]]) -> str:
    """One row per backend: ObjMC (px) per photo, their mean, and the seconds of all its renders."""
    photos = list(next(iter(results.values())))
    width = max(len(name) for name in results) + 2
    lines = [
        "ObjMC (px) per backend",
        f"{'backend':<{width}}" + " ".join(f"{p:>10}" for p in photos) + f" {'mean':>10} {'seconds':>8}",
    ]
    for name, by_photo in results.items():
        scores = [by_photo[p]["objmc"].mean_px for p in photos]
        seconds = sum(by_photo[p]["seconds"] for p in photos)
        lines.append(
            f"{name:<{width}}"
            + " ".join(f"{v:>10.3f}" for v in scores)
            + f" {np.mean(scores):>10.3f} {seconds:>8.1f}"
        )
    return "\n".join(lines)


def _models(name: str, settings: Settings) -> dict[str, str]:
    """The weights a backend runs: {Settings field: value}."""
    return {field: str(getattr(settings, field)) for field in BACKENDS[name].models}


def _describe(name: str, settings: Settings, args: argparse.Namespace) -> str:
    """What a backend ran with, for its table's header."""
    backend = BACKENDS[name]
    parts = [f"{field} {value}" for field, value in _models(name, settings).items()]
    if backend.default_strength is not None:
        parts.append(f"strength {backend.default_strength if args.strength is None else args.strength}")
    if name == "svd-controlnet":
        parts.append(f"ControlNet scale {args.controlnet_scale}")
    if backend.models:
        parts.append(f"{args.steps} steps")
    return "".join(f", {part}" for part in parts)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m apps.drag.evaluate", description=__doc__.split("\n\n")[0], allow_abbrev=False
    )
    parser.add_argument(
        "--backends",
        "--backend",
        nargs="+",
        choices=list(BACKENDS),
        default=None,
        help="the engines to score (default: every backend whose weights are configured)",
    )
    parser.add_argument("--photos", nargs="+", choices=list(REQUESTS), default=list(REQUESTS))
    parser.add_argument("--frames", type=int, default=DEFAULT_FRAMES, help="frames per video (14)")
    parser.add_argument("--max-side", type=int, default=512, help="long side of the video in px (512)")
    parser.add_argument(
        "--size", type=_parse_size, default=None, help="exact frame size WxH instead, e.g. 1024x576 for SVD"
    )
    parser.add_argument("--fps", type=int, default=7, help="SVD backends: fps conditioning (7)")
    parser.add_argument(
        "--strength", type=float, default=None, help="SDEdit strength (default: each backend's own)"
    )
    parser.add_argument(
        "--controlnet-scale", type=float, default=1.0, help="svd-controlnet: conditioning scale (1.0)"
    )
    parser.add_argument("--steps", type=int, default=25, help="SVD backends: denoising steps (25)")
    parser.add_argument("--seed", type=int, default=0, help="SVD backends: random seed (0)")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers to this JSON file")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    Settings.add_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    results: dict[str, dict[str, dict]] = {}
    skipped: dict[str, str] = {}
    try:
        settings = Settings.from_args(args)
        names = args.backends or [b.name for b in available_backends(settings)]
        options = {
            "num_frames": args.frames,
            "fps": args.fps,
            "strength": args.strength,
            "controlnet_scale": args.controlnet_scale,
            "num_inference_steps": args.steps,
            "seed": args.seed,
            "quiet": args.quiet,
        }
        for name in dict.fromkeys(names):
            try:
                pipeline = load(name, settings)  # once for all photos
            except ModelNotAvailable as err:
                if args.backends:  # asked for by name: it must run
                    raise
                skipped[name] = str(err)
                continue
            results[name] = {
                photo: evaluate_photo(
                    photo, name, args.max_side, settings, args.size, pipeline=pipeline, **options
                )
                for photo in args.photos
            }
    except (InputError, ModelNotAvailable) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not results:
        print("error: no backend could run: " + " ".join(skipped.values()), file=sys.stderr)
        return 2

    for name, by_photo in results.items():
        print(
            f"\nObjMC (px, lower is better) of the {name} backend{_describe(name, settings, args)}: "
            f"{args.frames} frames; tracker pyramidal LK ({LK_WINDOW_PX} px window, {LK_LEVELS} levels), "
            "frame 0 excluded."
        )
        for photo, result in by_photo.items():
            print("\n" + _photo_table(photo, result))
        print("\n" + _summary_table(by_photo))
    tiny = [name for name in results if TINY in _models(name, settings).values()]
    print()
    if tiny:
        print(
            f"NOTE: {', '.join(tiny)} ran '{TINY}' random weights: those rows show that the code runs, "
            "their numbers mean nothing."
        )
    print(_backend_table(results))
    for name, why in skipped.items():
        print(f"skipped {name}: {why}")
    if "warp" in results:
        print(f"target (warp): ObjMC < {WARP_TARGET_PX} px")
    if args.json is not None:
        payload = {
            "frames": args.frames,
            "backends": {
                name: {
                    "models": _models(name, settings),
                    "objmc_px": float(np.mean([r["objmc"].mean_px for r in by_photo.values()])),
                    "seconds": sum(r["seconds"] for r in by_photo.values()),
                    "photos": {
                        photo: {
                            "size_hw": list(r["size_hw"]),
                            "objmc_px": r["objmc"].mean_px,
                            "per_track_px": r["objmc"].per_track_px.tolist(),
                            "per_frame_px": r["objmc"].per_frame_px.tolist(),
                            "moves_px": r["moves_px"].tolist(),
                            "seconds": r["seconds"],
                        }
                        for photo, r in by_photo.items()
                    },
                }
                for name, by_photo in results.items()
            },
            "skipped": skipped,
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
