"""Depth consistency of the joint pipeline: `python -m core.eval.joint_depth` prints AbsRel and delta1.

On synthetic scenes with exact depth (:func:`core.data.synthetic.make_image_scene`) the depth
:class:`core.pipelines.joint_sd.JointSDPipeline` generates from the scene's image is compared with the true
disparity, and, with ``--depth-model``, a depth estimator's disparity of a ``joint`` image with the depth
generated beside it; both by :func:`core.eval.metrics.ssi_absrel_delta1` (scale-and-shift-invariant
AbsRel, delta1). The joint trainer (:mod:`core.training.joint_lora`) reports the same figure at validation.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np

from core.config import Settings
from core.data.synthetic import disparity_of, make_image_scene
from core.errors import KinemaError
from core.eval import report
from core.eval.metrics import ssi_absrel_delta1
from core.models import load_pipeline
from core.models.state import JointWeights, attached
from core.pipelines.joint_sd import JointSDPipeline

# image uint8 (H,W,3) -> disparity float (H,W), larger = nearer (core.data.precompute_depth.DepthEstimator).
DepthEstimator = Callable[[np.ndarray], np.ndarray]


def _resized_to(disparity: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if disparity.shape == shape:
        return disparity
    return cv2.resize(disparity.astype(np.float32), (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)


def evaluate_depth_consistency(
    pipeline: JointSDPipeline,
    *,
    samples: int = 4,
    size: int = 512,
    num_inference_steps: int = 30,
    guidance_scale: float = 7.5,
    seed: int = 0,
    estimator: DepthEstimator | None = None,
) -> dict[str, dict[str, Any]]:
    """The consistency figure: (AbsRel, delta1) of generated depth, by :func:`~core.eval.metrics.ssi_absrel_delta1`.

    On ``samples`` synthetic scenes (``make_image_scene((size, size), seed + i)``, prompt = the scene's
    caption):

    - "image_to_depth vs truth": depth generated from the scene's image against its exact disparity;
    - "flat map vs truth": a constant map against the same truth (no information: the floor to beat);
    - with ``estimator``: "joint: depth vs estimator" (a ``joint`` sample's depth against the estimator's
      disparity of the image generated with it: the issue's consistency metric) and "estimator vs truth"
      (the estimator's own error on the scenes: how far its verdict can be trusted).

    Every call uses ``seed + i``. Returns ``{row: {"absrel": mean, "delta1": mean, "per_sample":
    [(absrel, delta1), ...], "seconds": float}}``.
    """
    scenes = [make_image_scene((size, size), seed + i) for i in range(samples)]
    truths = [disparity_of(scene.depth) for scene in scenes]
    settings = {"num_inference_steps": num_inference_steps, "guidance_scale": guidance_scale}

    def image_to_depth(i: int) -> tuple[np.ndarray, np.ndarray]:
        scene = scenes[i]
        out = pipeline(scene.caption, image=scene.image_uint8, seed=seed + i, **settings)
        return out.depth[0], truths[i]

    def flat(i: int) -> tuple[np.ndarray, np.ndarray]:
        return np.full(truths[i].shape, 0.5, np.float32), truths[i]

    runs: dict[str, Callable[[int], tuple[np.ndarray, np.ndarray]]] = {
        "image_to_depth vs truth": image_to_depth,
        "flat map vs truth": flat,
    }
    if estimator is not None:

        def joint_vs_estimator(i: int) -> tuple[np.ndarray, np.ndarray]:
            out = pipeline(scenes[i].caption, height=size, width=size, seed=seed + i, **settings)
            estimated = np.asarray(estimator(out.images[0]), dtype=np.float32)
            return out.depth[0], _resized_to(estimated, out.depth[0].shape)

        def estimator_vs_truth(i: int) -> tuple[np.ndarray, np.ndarray]:
            estimated = np.asarray(estimator(scenes[i].image_uint8), dtype=np.float32)
            return _resized_to(estimated, truths[i].shape), truths[i]

        runs["joint: depth vs estimator"] = joint_vs_estimator
        runs["estimator vs truth"] = estimator_vs_truth
    results = {}
    for row, run in runs.items():
        start = time.perf_counter()
        per_sample = [ssi_absrel_delta1(*run(i)) for i in range(samples)]
        results[row] = {
            "absrel": float(np.mean([a for a, _ in per_sample])),
            "delta1": float(np.mean([d for _, d in per_sample])),
            "per_sample": per_sample,
            "seconds": time.perf_counter() - start,
        }
    return results


def main(argv: list[str] | None = None) -> int:
    parser = report.parser("joint_depth", __doc__.splitlines()[0])
    parser.add_argument(
        "--depth-model",
        default=None,
        help="transformers depth-estimation model (hub id or folder) for the joint-sample consistency rows",
    )
    parser.add_argument("--samples", type=int, default=4, help="synthetic scenes to evaluate on")
    parser.add_argument("--size", type=int, default=512, help="side of the scenes in px (a multiple of 8)")
    parser.add_argument("--steps", type=int, default=30, help="inference steps")
    parser.add_argument("--guidance", type=float, default=7.5, help="classifier-free guidance scale")
    parser.add_argument("--seed", type=int, default=0, help="seed of scene i and its sample: SEED + i")
    Settings.add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_args(args)
        weights = settings.joint_weights or None  # --joint-weights / KINEMA_JOINT_WEIGHTS
        pipeline = load_pipeline("sd", settings, pipeline_cls=JointSDPipeline)
        pipeline.set_progress_bar_config(disable=True)
        estimator = None
        if args.depth_model:
            from core.data.precompute_depth import load_depth_estimator

            estimator = load_depth_estimator(args.depth_model, settings.device)
        with attached(pipeline.unet, JointWeights(weights or "")):
            results = evaluate_depth_consistency(
                pipeline,
                samples=args.samples,
                size=args.size,
                num_inference_steps=args.steps,
                guidance_scale=args.guidance,
                seed=args.seed,
                estimator=estimator,
            )
    except KinemaError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(
        "Depth consistency: scale-and-shift-invariant AbsRel (lower is better) and delta1 < 1.25 (higher is "
        f"better).\nModel {settings.sd_model}, joint weights {weights or 'none (untrained patch)'}, depth "
        f"model {args.depth_model or 'none'}; {args.samples} synthetic scenes of {args.size}x{args.size}, "
        f"{args.steps} steps, guidance {args.guidance}, seed {args.seed}."
    )
    columns = [("comparison", "<28"), ("AbsRel", ">8.4f"), ("delta1", ">8.4f"), ("seconds", ">8.2f")]
    rows = [[name, r["absrel"], r["delta1"], r["seconds"]] for name, r in results.items()]
    print(report.table(columns, rows))
    report.write_json(
        args.json,
        {
            "evaluation": "joint_depth",
            "sd_model": settings.sd_model,
            "joint_weights": str(weights) if weights else None,
            "depth_model": args.depth_model,
            "settings": {key: getattr(args, key) for key in ("samples", "size", "steps", "guidance", "seed")},
            "rows": results,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
