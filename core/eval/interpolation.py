"""How well inbetweening reconstructs held-out frames: `python -m core.engines.evaluate_interpolation`.

With the identity edit, a perfect inbetweener returns the original video, so the held-out frames
(every frame that is not a keyframe) measure propagation quality directly. Clips, all offline:
- camera motion over real photos (scikit-image astronaut and coffee): a pan (a window sliding by
  (2.5, 1.25) px per frame, sub-pixel) and a zoom (1.5% per frame about a fixed point);
- the synthetic moving-object videos of `core.data.synthetic` (textured sprites moving and spinning
  over a textured background while the camera pans, so objects occlude and reveal the background).

Metrics: PSNR (dB) and SSIM (Wang et al. 2004, scikit-image's `structural_similarity`, 7x7 window,
per colour channel) of each held-out frame against the original, averaged over the held-out frames.
scikit-image is a dev dependency: this module imports it only inside its functions, so the engines
never need it at run time.
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np

from core.engines.edit import EDITS, apply_edit
from core.engines.interpolate import crossfade, estimate_video_motion, interpolate_flow
from core.engines.keyframes import uniform_keyframes
from core.errors import InputError
from core.flow.evaluate import load_photo

CAMERA_MOTIONS = ("pan", "zoom")
PAN_PX_PER_FRAME = (2.5, 1.25)
ZOOM_PER_FRAME = 1.015


def camera_clip(photo_uint8: np.ndarray, motion: str, size: int = 256, n_frames: int = 17) -> np.ndarray:
    """A (T,size,size,3) uint8 clip of a camera panning over or zooming into a photo.

    Frame t samples the photo bilinearly at c_t + s_t * (p - centre): for "pan" s_t = 1 and c_t moves by
    `PAN_PX_PER_FRAME` per frame; for "zoom" c_t is fixed and s_t = ZOOM_PER_FRAME ** -t. The photo is
    enlarged first when the path would leave it.
    """
    if motion not in CAMERA_MOTIONS:
        raise InputError(f"Unknown camera motion {motion!r}; choose one of {', '.join(CAMERA_MOTIONS)}.")
    travel = np.abs(PAN_PX_PER_FRAME) * (n_frames - 1) if motion == "pan" else np.zeros(2)
    need_w, need_h = size + travel + 4
    height, width = photo_uint8.shape[:2]
    grow = max(need_w / width, need_h / height, 1.0)
    if grow > 1.0:
        photo_uint8 = cv2.resize(
            photo_uint8, (round(width * grow), round(height * grow)), interpolation=cv2.INTER_CUBIC
        )
        height, width = photo_uint8.shape[:2]
    centre_out = (size - 1) / 2
    start = np.array([(width - 1) / 2, (height - 1) / 2]) - travel / 2 * np.sign(PAN_PX_PER_FRAME)
    frames = []
    for t in range(n_frames):
        if motion == "pan":
            centre, scale = start + np.array(PAN_PX_PER_FRAME) * t, 1.0
        else:
            centre, scale = start, ZOOM_PER_FRAME**-t
        # Output pixel p samples the photo at centre + scale * (p - centre_out).
        affine = np.array(
            [[scale, 0, centre[0] - scale * centre_out], [0, scale, centre[1] - scale * centre_out]]
        )
        frames.append(
            cv2.warpAffine(
                photo_uint8,
                affine,
                (size, size),
                flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                borderMode=cv2.BORDER_REFLECT_101,
            )
        )
    return np.stack(frames)


def psnr_db(a_uint8: np.ndarray, b_uint8: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of two uint8 images of the same shape (inf when equal)."""
    from skimage.metrics import peak_signal_noise_ratio

    return float(peak_signal_noise_ratio(a_uint8, b_uint8, data_range=255))


def ssim(a_uint8: np.ndarray, b_uint8: np.ndarray) -> float:
    """Structural similarity in [-1, 1] of two uint8 RGB images (H,W,3) (1 when equal)."""
    from skimage.metrics import structural_similarity

    return float(structural_similarity(a_uint8, b_uint8, data_range=255, channel_axis=2))


def held_out_scores(
    video_uint8: np.ndarray, original_uint8: np.ndarray, keyframe_indices: list[int]
) -> tuple[float, float]:
    """Mean PSNR (dB) and mean SSIM over the frames that are not keyframes."""
    held_out = [t for t in range(original_uint8.shape[0]) if t not in set(keyframe_indices)]
    if not held_out:
        raise InputError("Every frame is a keyframe; nothing is held out to score.")
    psnrs = [psnr_db(video_uint8[t], original_uint8[t]) for t in held_out]
    ssims = [ssim(video_uint8[t], original_uint8[t]) for t in held_out]
    return float(np.mean(psnrs)), float(np.mean(ssims))


def clips(size: int, n_frames: int, synthetic_seeds: tuple[int, ...]) -> dict[str, np.ndarray]:
    """The evaluation clips by name: camera motions over photos, then synthetic moving objects."""
    from core.data.synthetic import make_video_scene

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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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
    print(
        f"Held-out frames, edit {args.edit!r}, {args.frames} frames of {args.size}x{args.size}, "
        f"flow {args.method}; cells: PSNR dB / SSIM"
    )
    header = f"{'clip':<20} {'K':>2} " + " ".join(f"{name:>20}" for name in METHOD_NAMES)
    print(header + "\n" + "-" * len(header))
    table: dict[int, dict[str, list[tuple[float, float]]]] = {}

    def row(name: str, spacing: int, scores: dict[str, tuple[float, float]]) -> str:
        cells = " ".join(f"{scores[m][0]:>13.2f} / {scores[m][1]:.3f}" for m in METHOD_NAMES)
        return f"{name:<20} {spacing:>2} {cells}"

    for name, frames in clips(args.size, args.frames, tuple(args.synthetic_seeds)).items():
        for spacing, scores in evaluate(frames, tuple(args.spacings), args.edit, args.method).items():
            print(row(name, spacing, scores), flush=True)
            for m in METHOD_NAMES:
                table.setdefault(spacing, {}).setdefault(m, []).append(scores[m])
    print("-" * len(header))
    for spacing, by_method in table.items():
        means = {
            m: (float(np.mean([s[0] for s in v])), float(np.mean([s[1] for s in v])))
            for m, v in by_method.items()
        }
        print(row("mean", spacing, means))
    print(f"\n{time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
