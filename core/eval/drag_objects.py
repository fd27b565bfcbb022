"""Do drags move objects? `python -m core.eval.drag_objects` compares the two no-weights drag engines on
held-out synthetic sprite scenes with exact motion, and on real photos.

Scenes (`core.data.synthetic`): textured sprites sliding over a textured background, still camera, no spin
(one drag per sprite carries a translation; the scene's sprite tracks are the drags, started on each
sprite), seeds from `core.eval.learning.held_out_seeds`. Per engine, against the scene's exact flow and
frames:
- object EPE: end-point error of the frame-to-frame flow on the pixels the sprites cover;
- background EPE: the same on the background, which does not move (target <= 0.25 px);
- PSNR of frames 1..T-1 against the scene's frames (what a drag uncovers counts).
Photos: ObjMC (`core.eval.metrics.measure_objmc`) of the fixtures' drags on astronaut and coffee (target
< 1.5 px) and the seconds per clip. Two studies on validation scenes (seeds 500_000+, never the held-out
ones) record how the engine's choices were made:
- `--segmentation`: IoU of GrabCut (the engine's) and of mean-shift + flood fill against the sprite masks of
  30 validation scenes;
- `--grip`: the grip's radius (`core.engines.objects.GRIP_PER_SIDE`). One sprite per scene, 512 px, drags
  of up to 6 px a frame (a photo drag's speed), grabbed 1, 3, 6 or 10 px inside the sprite's edge; per
  radius, the ObjMC of the grabbed points (does a tracker follow them?) and the background EPE (what the
  grip moves that should hold).
"""

from __future__ import annotations

import dataclasses
import time

import cv2
import numpy as np

from core.data.synthetic.video import VideoScene, random_video_spec, render_video_scene
from core.engines.objects import animate_objects, object_layers, segment_object
from core.engines.warp import animate
from core.eval import report
from core.eval.fixtures import WARP_TARGET_PX, drag_photo, drag_requests
from core.eval.learning import held_out_seeds
from core.eval.metrics import measure_objmc, psnr_db
from core.trajectory import Trajectories, Trajectory

BACKGROUND_TARGET_PX = 0.25
OBJECT_TARGET_PX = 1.0
ENGINES = {"sheet": animate, "objects": animate_objects}
VALIDATION_SEED = 500_000  # the segmenter and the grip were chosen on these scenes, never on held-out ones
GRIP_SIDE_PX = 512
GRIP_DEPTHS_PX = (1, 3, 6, 10)
GRIP_RADII_PX = (0, 8, 12, 16, 20, 24, 32)


def still_scene(seed: int, side: int, num_frames: int, **spec_options: float) -> VideoScene:
    """A sprite scene with a still camera and sprites that slide without spinning (`spec_options`: more
    arguments of `random_video_spec`)."""
    spec = random_video_spec((side, side), num_frames, seed, max_pan_px=0.0, **spec_options)
    sprites = tuple(dataclasses.replace(sprite, spin_rad=0.0) for sprite in spec.sprites)
    return render_video_scene(dataclasses.replace(spec, sprites=sprites))


def scene_drags(scene: VideoScene) -> Trajectories:
    """One drag per sprite seen at its centre in frame 0: the sprite's exact track, in drawing order."""
    tracks = scene.tracks_norm()
    return Trajectories(
        tuple(Trajectory(tracks[:, k]) for k in range(tracks.shape[1]) if scene.track_visible[0, k])
    )


def score_scene(scene: VideoScene, engine: str) -> dict[str, float]:
    """{"object_epe", "background_epe", "psnr_db", "seconds"} of one engine on one scene."""
    started = time.perf_counter()
    result = ENGINES[engine](scene.frames_uint8[0], scene_drags(scene), len(scene.frames_uint8))
    seconds = time.perf_counter() - started
    error = np.linalg.norm(result.flow_px - scene.flow_px, axis=-1)
    on_sprites = scene.layer_ids[:-1] >= 0
    return {
        "object_epe": float(error[on_sprites].mean()),
        "background_epe": float(error[~on_sprites].mean()),
        "psnr_db": float(
            np.mean([psnr_db(a, b) for a, b in zip(result.frames_uint8[1:], scene.frames_uint8[1:])])
        ),
        "seconds": seconds,
    }


def _meanshift_flood(image_uint8: np.ndarray, point_px: np.ndarray) -> np.ndarray:
    """The segmenter GrabCut was measured against: mean-shift smoothing, then a flood fill from the point."""
    height, width = image_uint8.shape[:2]
    smooth = cv2.pyrMeanShiftFiltering(np.ascontiguousarray(image_uint8), 8, 24)
    mask = np.zeros((height + 2, width + 2), np.uint8)
    seed = (int(round(point_px[0])), int(round(point_px[1])))
    flags = 4 | cv2.FLOODFILL_MASK_ONLY | (255 << 8)
    cv2.floodFill(smooth, mask, seed, 0, (12,) * 3, (12,) * 3, flags)
    return mask[1:-1, 1:-1] > 0


def segmentation_iou(scenes: list[VideoScene]) -> dict[str, float]:
    """Mean IoU of each segmenter against the sprite masks of frame 0, over every sprite seen at its centre."""
    segmenters = {"grabcut": lambda image, point: segment_object(image, point), "meanshift": _meanshift_flood}
    scores: dict[str, list[float]] = {name: [] for name in segmenters}
    for scene in scenes:
        for k in np.flatnonzero(scene.track_visible[0]):
            truth = scene.layer_ids[0] == k
            for name, segment in segmenters.items():
                mask = segment(scene.frames_uint8[0], scene.tracks_px[0, k])
                scores[name].append(float((mask & truth).sum() / (mask | truth).sum()))
    return {name: float(np.mean(values)) for name, values in scores.items()}


def edge_grab(scene: VideoScene, depth_px: float, rng: np.random.Generator) -> Trajectory | None:
    """A drag on the first sprite, started `depth_px` inside its edge (a random such pixel) and following
    the sprite exactly; None when the sprite has no such pixel."""
    height, width = scene.frames_uint8.shape[1:3]
    inside = cv2.distanceTransform((scene.layer_ids[0] == 0).astype(np.uint8), cv2.DIST_L2, 5)
    rows, columns = np.nonzero(np.abs(inside - depth_px) <= 0.5)
    if not len(rows):
        return None
    pick = rng.integers(len(rows))
    track_px = np.array([columns[pick], rows[pick]], float) + scene.tracks_px[:, 0] - scene.tracks_px[0, 0]
    return Trajectory((track_px + 0.5) / (width, height))


def grip_study(scenes: int, num_frames: int) -> dict[str, dict[str, float]]:
    """{grip radius px: {"objmc", "missed", "background_epe"}}: the mean ObjMC of the edge grabs, the share
    of them at or over the ObjMC target and the background EPE (see the module docstring)."""
    rows: dict[int, dict[str, list[float]]] = {
        radius: {"objmc": [], "missed": [], "background_epe": []} for radius in GRIP_RADII_PX
    }
    for i in range(scenes):
        scene = still_scene(VALIDATION_SEED + i, GRIP_SIDE_PX, num_frames, max_speed_px=6.0, n_sprites=1)
        image, still = scene.frames_uint8[0], scene.layer_ids[:-1] < 0
        for depth in GRIP_DEPTHS_PX:
            drag = edge_grab(scene, depth, np.random.default_rng([i, depth]))
            if drag is None:
                continue
            drags, start_px = Trajectories((drag,)), drag.points_norm[0] * image.shape[1::-1] - 0.5
            for radius in GRIP_RADII_PX:
                mask = segment_object(image, start_px, grip_px=radius)
                layers = object_layers(image, drags, masks={0: mask})
                result = animate_objects(image, drags, num_frames, layers=layers)
                objmc = measure_objmc(result.frames_uint8, result.tracks_px)[0].mean_px
                error = np.linalg.norm(result.flow_px - scene.flow_px, axis=-1)
                rows[radius]["objmc"].append(objmc)
                rows[radius]["missed"].append(float(objmc >= WARP_TARGET_PX))
                rows[radius]["background_epe"].append(float(error[still].mean()))
    return {str(r): {k: float(np.mean(v)) for k, v in row.items()} for r, row in rows.items()}


def photo_objmc(photo: str, max_side_px: int, num_frames: int) -> dict[str, float]:
    """ObjMC and seconds of the object engine on a fixture photo and its drags (segmentation included)."""
    image, drags = drag_photo(photo, max_side_px), drag_requests(photo)
    started = time.perf_counter()
    layers = object_layers(image, drags)
    result = animate_objects(
        image,
        drags,
        num_frames,
        layers=layers,
    )
    seconds = time.perf_counter() - started
    return {"objmc": measure_objmc(result.frames_uint8, result.tracks_px)[0].mean_px, "seconds": seconds}


def main(argv: list[str] | None = None) -> int:
    parser = report.parser("drag_objects", __doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=12, help="held-out scenes (default 12)")
    parser.add_argument("--side", type=int, default=256, help="scene side in px (default 256)")
    parser.add_argument("--frames", type=int, default=14, help="frames per clip (default 14, SVD's)")
    parser.add_argument("--photo-side", type=int, default=512, help="long side of the photos (default 512)")
    parser.add_argument("--segmentation", action="store_true", help="also compare the segmenters")
    parser.add_argument("--grip", type=int, default=0, metavar="N", help="also the grip study on N scenes")
    args = parser.parse_args(argv)

    scenes = [still_scene(seed, args.side, args.frames) for seed in held_out_seeds(args.scenes)]
    results: dict = {"scenes": {}, "photos": {}}
    rows = []
    for engine in ENGINES:
        scores = [score_scene(scene, engine) for scene in scenes]
        mean = {key: float(np.mean([s[key] for s in scores])) for key in scores[0]}
        spread = {key: float(np.std([s[key] for s in scores])) for key in scores[0]}
        results["scenes"][engine] = {"mean": mean, "std": spread}
        rows.append(
            (
                engine,
                f"{mean['object_epe']:.2f} ± {spread['object_epe']:.2f}",
                f"{mean['background_epe']:.3f} ± {spread['background_epe']:.3f}",
                f"{mean['psnr_db']:.1f} ± {spread['psnr_db']:.1f}",
                f"{mean['seconds']:.2f}",
            )
        )
    print(
        f"Sprite scenes: {args.scenes} held-out, {args.side} px, {args.frames} frames, still camera "
        f"(targets: object EPE <= {OBJECT_TARGET_PX} px, background EPE <= {BACKGROUND_TARGET_PX} px)"
    )
    columns = [
        ("engine", "<8"),
        ("object EPE px", ">14"),
        ("background EPE px", ">18"),
        ("PSNR dB", ">12"),
        ("s", ">6"),
    ]
    print(report.table(columns, rows))
    photo_rows = []
    for photo in ("astronaut", "coffee"):
        scores = photo_objmc(photo, args.photo_side, args.frames)
        results["photos"][photo] = scores
        photo_rows.append((photo, f"{scores['objmc']:.2f}", f"{scores['seconds']:.2f}"))
    print(
        f"\nPhotos, object engine ({args.photo_side} px, {args.frames} frames; target ObjMC < {WARP_TARGET_PX} px)"
    )
    print(report.table([("photo", "<10"), ("ObjMC px", ">9"), ("s", ">6")], photo_rows))
    if args.segmentation:
        validation = [still_scene(VALIDATION_SEED + i, args.side, 2) for i in range(30)]
        iou = segmentation_iou(validation)
        results["segmentation_iou"] = iou
        print(
            "\nSegmenter IoU on the sprites of 30 validation scenes: "
            + ", ".join(f"{k} {v:.3f}" for k, v in iou.items())
        )
    if args.grip:
        grip = grip_study(args.grip, args.frames)
        results["grip"] = grip
        print(
            f"\nGrip radius on {args.grip} validation scenes ({GRIP_SIDE_PX} px, one sprite grabbed "
            f"{', '.join(map(str, GRIP_DEPTHS_PX))} px inside its edge)"
        )
        columns = [
            ("grip px", ">8"),
            ("ObjMC px", ">9"),
            (f"ObjMC >= {WARP_TARGET_PX}", ">12"),
            ("bg EPE px", ">10"),
        ]
        print(
            report.table(
                columns,
                [
                    (r, f"{g['objmc']:.2f}", f"{g['missed']:.0%}", f"{g['background_epe']:.4f}")
                    for r, g in grip.items()
                ],
            )
        )
    report.write_json(args.json, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
