"""Accuracy of the flow estimators against known flow: `python -m core.eval.flow` prints an EPE table.

Two kinds of ground truth, both offline (the images ship with scikit-image, a dev dependency):
- Known motions of real photos (astronaut, coffee, chelsea): frame b is made from frame a with
  `backward_warp` along a known map, and the true flow a -> b is that map's inverse. Motions: an integer
  shift, a sub-pixel shift, a zoom, a rotation, a smooth local bump and a smooth random field.
- Middlebury 2014 "motorcycle" (a real stereo pair): the flow left -> right is (-disparity, 0) where
  the disparity is known.

EPE (`core.eval.metrics.endpoint_error`) is the mean Euclidean distance in px between estimated and true
flow over valid pixels: away from the border and with p + flow(p) inside the other frame. Flow is a -> b
(t -> t+1), the convention of `core.flow`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from core.errors import InputError, ModelNotAvailable
from core.eval import report
from core.eval.fixtures import PHOTOS, load_photo
from core.eval.metrics import endpoint_error
from core.flow import METHODS, backward_warp, estimate_flow, resize_flow

MOTIONS = ("shift_int", "shift_subpx", "zoom", "rotation", "bump", "smooth_random")
BORDER_MARGIN_PX = 16


@dataclass(frozen=True)
class FlowCase:
    """Two frames and the true flow between them. frames (H,W,3) uint8; flow_px (H,W,2) a -> b."""

    name: str
    frame_a_uint8: np.ndarray
    frame_b_uint8: np.ndarray
    flow_px: np.ndarray
    valid: np.ndarray  # (H,W) bool: pixels where the truth is known and inside both frames


BackwardMap = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def _backward_map(motion: str, height: int, width: int) -> BackwardMap:
    """The map g with frame_b(q) = frame_a(q + g(q)), as a function of float coordinates (x, y) in px.

    Analytic everywhere, so the true flow is exact even where it points outside the frame. Sizes
    scale with the image, except the shifts (fixed px).
    """
    cx, cy, side = (width - 1) / 2, (height - 1) / 2, min(height, width)
    if motion == "shift_int":
        return lambda x, y: (np.full_like(x, -3.0), np.full_like(y, 2.0))
    if motion == "shift_subpx":
        return lambda x, y: (np.full_like(x, -1.4), np.full_like(y, 0.6))
    if motion == "zoom":  # zoom in by 6% about the centre
        return lambda x, y: ((x - cx) * (1 / 1.06 - 1), (y - cy) * (1 / 1.06 - 1))
    if motion == "rotation":  # 4 degrees about the centre
        c, s = np.cos(np.radians(4.0)), np.sin(np.radians(4.0))
        return lambda x, y: (cx + c * (x - cx) + s * (y - cy) - x, cy - s * (x - cx) + c * (y - cy) - y)
    if motion == "bump":  # one region pushed down-right, peak 3% of the side, still elsewhere

        def bump(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            r2 = ((x - 0.6 * width) ** 2 + (y - 0.45 * height) ** 2) / (0.15 * side) ** 2
            amount = 0.03 * side * np.exp(-r2 / 2)
            return -0.8 * amount, -0.6 * amount

        return bump
    if motion == "smooth_random":  # 4 random plane waves per axis (seeded), at most 2% of the side
        rng = np.random.default_rng(0)
        freq = rng.uniform(-1.5, 1.5, (2, 4, 2)) * 2 * np.pi / side  # up to 1.5 cycles per side
        phase = rng.uniform(0, 2 * np.pi, (2, 4))
        amplitude = 0.02 * side / 4 * rng.uniform(0.5, 1.0, (2, 4))

        def waves(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return tuple(
                sum(a * np.sin(f[0] * x + f[1] * y + p) for a, f, p in zip(amplitude[i], freq[i], phase[i]))
                for i in range(2)
            )

        return waves
    raise InputError(f"Unknown motion {motion!r}; choose one of {', '.join(MOTIONS)}.")


def _valid_mask(flow_px: np.ndarray, margin_px: int) -> np.ndarray:
    h, w = flow_px.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w]
    tx, ty = xs + flow_px[..., 0], ys + flow_px[..., 1]
    inside_a = (xs >= margin_px) & (xs < w - margin_px) & (ys >= margin_px) & (ys < h - margin_px)
    inside_b = (tx >= margin_px) & (tx <= w - 1 - margin_px) & (ty >= margin_px) & (ty <= h - 1 - margin_px)
    return inside_a & inside_b


def synthetic_case(image_uint8: np.ndarray, motion: str, name: str = "") -> FlowCase:
    """Move a photo by a known motion (one of MOTIONS) with `backward_warp`; return frames and truth.

    The true forward flow f solves f(p) = -g(p + f(p)) for the backward map g; the fixed-point
    iteration converges (to 1e-7 px) because every map here changes by much less than 1 px per px.
    """
    h, w = image_uint8.shape[:2]
    back = _backward_map(motion, h, w)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    frame_b = backward_warp(
        image_uint8, np.stack(back(xs, ys), axis=-1).astype(np.float32), border="replicate"
    )
    fx, fy = np.zeros_like(xs), np.zeros_like(ys)
    for _ in range(100):
        gx, gy = back(xs + fx, ys + fy)
        change = max(np.abs(fx + gx).max(), np.abs(fy + gy).max())
        fx, fy = -gx, -gy
        if change < 1e-7:
            break
    flow_px = np.stack([fx, fy], axis=-1).astype(np.float32)
    return FlowCase(name or motion, image_uint8, frame_b, flow_px, _valid_mask(flow_px, BORDER_MARGIN_PX))


def motorcycle_case(scale: float = 1.0) -> FlowCase:
    """Middlebury 2014 motorcycle (500x741 as shipped by scikit-image), left -> right, optionally scaled.

    True flow is (-disparity, 0) where the disparity is finite and positive. When scaled, a pixel stays
    valid only if every source pixel it averages was valid.
    """
    import skimage.data

    left, right, disparity = skimage.data.stereo_motorcycle()
    known = np.isfinite(disparity) & (disparity > 0)
    flow_px = np.zeros((*disparity.shape, 2), np.float32)
    flow_px[..., 0] = -np.where(known, disparity, 0)
    known_frac = known.astype(np.float32)
    if scale != 1.0:
        h, w = round(left.shape[0] * scale), round(left.shape[1] * scale)
        left, right = (cv2.resize(im, (w, h), interpolation=cv2.INTER_AREA) for im in (left, right))
        flow_px = resize_flow(flow_px, (h, w))
        known_frac = cv2.resize(known_frac, (w, h), interpolation=cv2.INTER_AREA)
    valid = (known_frac > 0.999) & _valid_mask(flow_px, 0)
    return FlowCase("motorcycle", left, right, flow_px, valid)


def all_cases(max_side_px: int | None = None) -> list[FlowCase]:
    """Every synthetic motion of every photo, then motorcycle (photos shrunk to `max_side_px` if given)."""
    cases = []
    for photo in PHOTOS:
        image = load_photo(photo, max_side_px)
        cases += [synthetic_case(image, motion, f"{photo}/{motion}") for motion in MOTIONS]
    scale = 1.0 if max_side_px is None else min(1.0, max_side_px / 741)
    return cases + [motorcycle_case(scale)]


def main(argv: list[str] | None = None) -> int:
    parser = report.parser("flow", __doc__.splitlines()[0])
    parser.add_argument(
        "--methods", nargs="+", default=list(METHODS), choices=METHODS, help="estimators to compare"
    )
    parser.add_argument("--max-side", type=int, default=None, help="shrink images to this longest side (px)")
    args = parser.parse_args(argv)

    cases = all_cases(args.max_side)
    epe, seconds, skipped = {}, {}, {}
    for method in args.methods:
        try:
            start = time.perf_counter()
            epe[method] = [
                endpoint_error(estimate_flow(c.frame_a_uint8, c.frame_b_uint8, method), c.flow_px, c.valid)
                for c in cases
            ]
            seconds[method] = (time.perf_counter() - start) / len(cases)
        except ModelNotAvailable as err:
            skipped[method] = str(err)
            print(f"{method}: skipped: {err}")
    synthetic = [i for i, c in enumerate(cases) if c.name != "motorcycle"]
    mean_synthetic = {m: float(np.mean([errors[i] for i in synthetic])) for m, errors in epe.items()}
    speeds = [float(np.linalg.norm(c.flow_px, axis=2)[c.valid].mean()) for c in cases]

    print(f"\nEnd-point error (px, lower is better); sizes: {args.max_side or 'full'}")
    columns = [("case", "<28"), ("|true| mean", ">11.2f")] + [(m, ">13.3f") for m in epe]
    rows = [
        [case.name, speed, *(epe[m][i] for m in epe)] for i, (case, speed) in enumerate(zip(cases, speeds))
    ]
    summary = [
        ["mean (synthetic)", None, *mean_synthetic.values()],
        ["seconds / pair", None, *seconds.values()],
    ]
    print(report.table(columns, rows, summary))
    report.write_json(
        args.json,
        {
            "evaluation": "flow",
            "max_side_px": args.max_side,
            "true_mean_px": {case.name: speed for case, speed in zip(cases, speeds)},
            "methods": {
                m: {
                    "epe_px": dict(zip((c.name for c in cases), epe[m])),
                    "mean_synthetic_px": mean_synthetic[m],
                    "seconds_per_pair": seconds[m],
                }
                for m in epe
            },
            "skipped": skipped,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
