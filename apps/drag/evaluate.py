"""Control fidelity of drag-to-video: `python -m apps.drag.evaluate --backends warp svd ...` prints an ObjMC table.

ObjMC (`core.eval.metrics`): each requested trajectory's start point is re-tracked through the generated
video (pyramidal Lucas-Kanade, frame to frame) and its distance to the requested position is averaged, per
frame and over frames 1..T-1. Inputs (`core.eval.fixtures`): real photos shipped with scikit-image,
astronaut and coffee, each scaled to multiples of 64 (long side --max-side) with four drags and one anchor
placed on textured points (LK needs texture to lock on).

Every backend of `apps.drag.backends` runs on the same photos and drags (default: every backend whose
weights are configured; one that fails to load is then skipped with its reason, while a backend named
in --backends must load). One table: per backend and photo a row per trajectory (its distance per frame,
its ObjMC, how far it was dragged, whether the tracker stayed sure of it) and a mean row (the photo's
ObjMC and seconds), then per backend its mean over the photos. A model set to 'tiny' (offline random
weights) runs every code path with meaningless numbers, and the output says so; real weights on a GPU
give the comparison, at SVD's frame size with `--size 1024x576`. Target for the warp backend: ObjMC <
1.5 px (printed, asserted in tests/unit/test_eval_metrics.py). This evaluation lives with the app, not in
`core.eval`, because it renders through the app's backend registry (`apps.drag.backends`).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from apps.drag.backends import BACKENDS, available_backends, load, render
from apps.drag.cli import TqdmProgress
from core.config import Settings
from core.engines.warp import DEFAULT_FRAMES
from core.errors import InputError, ModelNotAvailable
from core.eval import report
from core.eval.fixtures import DRAG_REQUESTS, WARP_TARGET_PX, drag_photo, drag_requests
from core.eval.metrics import LK_LEVELS, LK_WINDOW_PX, measure_objmc
from core.models import TINY


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
    image = drag_photo(photo, max_side_px, size)
    started = time.perf_counter()
    with TqdmProgress(disable=quiet) as progress:
        video = render(
            backend, image, drag_requests(photo), settings=settings, progress=progress, **render_options
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


def objmc_table(results: dict[str, dict[str, dict]]) -> str:
    """The one table of the run: {backend: {photo: evaluate_photo(...)}} -> text (see the module docstring)."""
    num_frames = next(iter(next(iter(results.values())).values()))["objmc"].distances_px.shape[1]
    columns = [
        ("backend", f"<{max(map(len, results))}"),
        ("photo", "<10"),
        ("track", "<8"),
        *((f"{t}", ">8.3f") for t in range(1, num_frames)),
        ("ObjMC", ">8.3f"),
        ("moved", ">8.1f"),
        ("seconds", ">8.1f"),
        ("tracker", "<7"),
    ]
    rows, summary = [], []
    for name, by_photo in results.items():
        for photo, result in by_photo.items():
            score = result["objmc"]
            for i, (move, sure) in enumerate(zip(result["moves_px"], result["reliable"])):
                track = f"{'anchor' if move == 0 else 'drag'}{i + 1}"
                distances = score.distances_px[i, 1:]
                rows.append(
                    [
                        name,
                        photo,
                        track,
                        *distances,
                        score.per_track_px[i],
                        move,
                        None,
                        "ok" if sure else "unsure",
                    ]
                )
            rows.append(
                [name, photo, "mean", *score.per_frame_px[1:], score.mean_px, None, result["seconds"], None]
            )
        per_frame = np.mean([r["objmc"].per_frame_px[1:] for r in by_photo.values()], axis=0)
        overall = np.mean([r["objmc"].mean_px for r in by_photo.values()])
        seconds = sum(r["seconds"] for r in by_photo.values())
        summary.append([name, "all", "mean", *per_frame, overall, None, seconds, None])
    return report.table(columns, rows, summary)


def _models(name: str, settings: Settings) -> dict[str, str]:
    """The weights a backend runs: {Settings field: value}."""
    return {field: str(getattr(settings, field)) for field in BACKENDS[name].models}


def _describe(name: str, settings: Settings, args: argparse.Namespace) -> str:
    """What a backend ran with, for the lines above the table."""
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
    parser = report.parser("drag_objmc", __doc__.split("\n\n")[0], prog="python -m apps.drag.evaluate")
    parser.add_argument(
        "--backends",
        "--backend",
        nargs="+",
        choices=list(BACKENDS),
        default=None,
        help="the engines to score (default: every backend whose weights are configured)",
    )
    parser.add_argument("--photos", nargs="+", choices=list(DRAG_REQUESTS), default=list(DRAG_REQUESTS))
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

    sizes = {photo: r["size_hw"] for by_photo in results.values() for photo, r in by_photo.items()}
    print(
        f"\nObjMC (px, lower is better): {args.frames} frames; tracker pyramidal LK ({LK_WINDOW_PX} px window, "
        f"{LK_LEVELS} levels), frame 0 excluded; columns 1..{args.frames - 1}: distance of the tracked to the "
        "requested point in that frame; tracker 'unsure': the forward-backward check missed by > 1 px.\nPhotos: "
        + ", ".join(f"{photo} {w}x{h}" for photo, (h, w) in sizes.items())
        + "."
    )
    for name in results:
        print(f"{name} backend{_describe(name, settings, args)}")
    print("\n" + objmc_table(results))
    tiny = [name for name in results if TINY in _models(name, settings).values()]
    if tiny:
        print(
            f"NOTE: {', '.join(tiny)} ran '{TINY}' random weights: those rows show that the code runs, "
            "their numbers mean nothing."
        )
    for name, why in skipped.items():
        print(f"skipped {name}: {why}")
    if "warp" in results:
        print(f"target (warp): ObjMC < {WARP_TARGET_PX} px")
    report.write_json(
        args.json,
        {
            "evaluation": "drag_objmc",
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
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
