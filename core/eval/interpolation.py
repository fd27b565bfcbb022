"""How well inbetweening reconstructs held-out frames: `python -m core.eval.interpolation`.

With the identity edit, a perfect inbetweener returns the original video, so the held-out frames
(every frame that is not a keyframe) measure propagation quality directly. Clips, all offline:
- camera motion over real photos (scikit-image astronaut and coffee): a pan (a window sliding by
  (2.5, 1.25) px per frame, sub-pixel) and a zoom (1.5% per frame about a fixed point);
- the synthetic moving-object videos of `core.data.synthetic` (textured sprites moving and spinning
  over a textured background while the camera pans, so objects occlude and reveal the background).

Metrics (`core.eval.metrics.held_out_scores`): PSNR (dB) and SSIM (Wang et al. 2004, scikit-image's
`structural_similarity`, 7x7 window, per colour channel) of each held-out frame against the original,
averaged over the held-out frames.
"""

from __future__ import annotations

import time

import numpy as np

from core.data.synthetic import make_video_scene
from core.engines.edit import EDITS, apply_edit
from core.engines.interpolate import crossfade, estimate_video_motion, interpolate_flow
from core.engines.keyframes import uniform_keyframes
from core.eval import report
from core.eval.fixtures import CAMERA_MOTIONS, camera_clip, load_photo
from core.eval.metrics import held_out_scores


def clips(size: int, n_frames: int, synthetic_seeds: tuple[int, ...]) -> dict[str, np.ndarray]:
    """The evaluation clips by name: camera motions over photos, then synthetic moving objects."""
    out = {}
    for photo in ("astronaut", "coffee"):
        image = load_photo(photo)
        for motion in CAMERA_MOTIONS:
            out[f"{photo}/{motion}"] = camera_clip(image, motion, size, n_frames)
    for seed in synthetic_seeds:
        scene = make_video_scene((size, size), n_frames, seed, max_speed_px=3.0, max_pan_px=2.0)
        out[f"synthetic/seed{seed}"] = scene.frames_uint8
    return out


# The flow backend with its per-pixel confidences switched on one by one (the last is the default).
FLOW_VARIANTS: dict[str, dict] = {
    "flow, time weights": {"occlusion_aware": False, "photometric_sigma": None},
    "flow, +occlusion": {"photometric_sigma": None},
    "flow": {},
}
METHOD_NAMES = ("crossfade", *FLOW_VARIANTS)


def evaluate(
    frames_uint8: np.ndarray, spacings: tuple[int, ...], edit: str = "identity", method: str = "dis"
) -> dict[int, dict[str, tuple[float, float]]]:
    """Scores of every inbetweener: {spacing: {method name: (PSNR dB, SSIM)}} over held-out frames.

    The keyframes get `edit` (default parameters); the target of a held-out frame is the same edit
    applied to the original frame (the original itself for "identity"). The motion is estimated once
    and shared by every spacing and method.
    """
    motion = estimate_video_motion(frames_uint8, method)
    target = apply_edit(frames_uint8, edit)
    n_frames = frames_uint8.shape[0]
    results = {}
    for spacing in spacings:
        keys = [k.index for k in uniform_keyframes(n_frames, spacing)]
        edited = target[keys]
        videos = {"crossfade": crossfade(n_frames, keys, edited)}
        for name, options in FLOW_VARIANTS.items():
            videos[name] = interpolate_flow(frames_uint8, keys, edited, motion=motion, **options)
        results[spacing] = {name: held_out_scores(video, target, keys) for name, video in videos.items()}
    return results


def main(argv: list[str] | None = None) -> int:
    parser = report.parser("interpolation", __doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="clip side in px")
    parser.add_argument("--frames", type=int, default=17, help="frames per clip")
    parser.add_argument("--spacings", type=int, nargs="+", default=[4, 8], help="keyframe spacings to test")
    parser.add_argument("--synthetic-seeds", type=int, nargs="*", default=[0, 1, 2], help="synthetic scenes")
    parser.add_argument("--method", default="dis", help="flow estimator (core.flow.METHODS)")
    parser.add_argument(
        "--edit",
        default="identity",
        choices=[name for name, e in EDITS.items() if None not in e.defaults().values()],
        help="edit of the keyframes (default parameters); the target is that edit of every original frame",
    )
    args = parser.parse_args(argv)

    start = time.perf_counter()
    scores = {
        name: evaluate(frames, tuple(args.spacings), args.edit, args.method)
        for name, frames in clips(args.size, args.frames, tuple(args.synthetic_seeds)).items()
    }
    means = {
        spacing: {
            m: tuple(float(np.mean([by_clip[spacing][m][i] for by_clip in scores.values()])) for i in (0, 1))
            for m in METHOD_NAMES
        }
        for spacing in args.spacings
    }
    seconds = time.perf_counter() - start

    def row(name: str, spacing: int, cells: dict[str, tuple[float, float]]) -> list:
        return [name, spacing, *(f"{cells[m][0]:.2f} / {cells[m][1]:.3f}" for m in METHOD_NAMES)]

    print(
        f"Held-out frames, edit {args.edit!r}, {args.frames} frames of {args.size}x{args.size}, "
        f"flow {args.method}; cells: PSNR dB / SSIM"
    )
    columns = [("clip", "<20"), ("K", ">2")] + [(m, ">20") for m in METHOD_NAMES]
    rows = [row(name, k, by_spacing[k]) for name, by_spacing in scores.items() for k in by_spacing]
    print(report.table(columns, rows, [row("mean", k, means[k]) for k in means]))
    print(f"\n{seconds:.1f} s")

    def as_json(cells: dict[str, tuple[float, float]]) -> dict[str, dict[str, float]]:
        return {m: {"psnr_db": psnr, "ssim": ssim} for m, (psnr, ssim) in cells.items()}

    report.write_json(
        args.json,
        {
            "evaluation": "interpolation",
            "settings": {
                k: vars(args)[k] for k in ("size", "frames", "spacings", "synthetic_seeds", "method", "edit")
            },
            "clips": {
                name: {str(k): as_json(c) for k, c in by_spacing.items()}
                for name, by_spacing in scores.items()
            },
            "mean": {str(k): as_json(c) for k, c in means.items()},
            "seconds": seconds,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
