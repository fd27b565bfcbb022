"""Consistency of SD keyframe editing: `python -m core.eval.keyframe_edit` prints the warp error of each way.

The figure (`core.eval.metrics.warp_errors`): the flow between consecutive *original* keyframes carries
edited keyframe i onto keyframe i+1, and the mean absolute difference (0..255 levels, all channels) to
edited keyframe i+1 is taken over the pixels the forward-backward check trusts. Lower is more consistent;
the original keyframes' own figure is the floor set by flow and interpolation error. The keyframes are a
camera pan over the astronaut photo (`core.eval.fixtures.pan_keyframes`); the ways to edit them are
:class:`core.pipelines.keyframe_edit.KeyframeEditPipeline` with each cross-frame mode against editing each
keyframe alone. ``--sd-model tiny`` runs offline with random weights: the numbers then only show that the
path runs.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from core.config import Settings
from core.errors import KinemaError
from core.eval import report
from core.eval.fixtures import pan_keyframes
from core.eval.metrics import keyframe_flows, warp_errors
from core.models import load_pipeline
from core.pipelines.keyframe_edit import KeyframeEditPipeline


def evaluate_consistency(
    pipeline: KeyframeEditPipeline,
    keyframes_uint8: np.ndarray,
    prompt: str,
    *,
    strength: float = 0.6,
    guidance_scale: float = 7.5,
    num_inference_steps: int = 30,
    seed: int = 0,
    anchor_index: int = 0,
    flow_method: str = "dis",
) -> dict[str, dict[str, Any]]:
    """Consistency figure (mean warp error, grey levels) of each way to edit ``keyframes_uint8``.

    Ways: "original" (no edit: the floor), "alone" (one call per keyframe with the same seed, what stock
    img2img gives), and one batched call per cross-frame mode ("none", "anchor", "all"). Returns
    ``{way: {"figure": float, "per_pair": list[float], "seconds": float, "edited": uint8 (K,H,W,3)}}``.
    """
    flows = keyframe_flows(keyframes_uint8, flow_method)
    settings = {
        "strength": strength,
        "guidance_scale": guidance_scale,
        "num_inference_steps": num_inference_steps,
        "seed": seed,
        "anchor_index": anchor_index,
    }

    def alone() -> np.ndarray:
        return np.concatenate(
            [
                pipeline(prompt, frame[None], cross_frame="none", **{**settings, "anchor_index": 0}).images
                for frame in keyframes_uint8
            ]
        )

    runs: dict[str, Callable[[], np.ndarray]] = {"original": lambda: keyframes_uint8, "alone": alone}
    for mode in ("none", "anchor", "all"):
        runs[mode] = lambda mode=mode: pipeline(prompt, keyframes_uint8, cross_frame=mode, **settings).images
    results = {}
    for way, run in runs.items():
        start = time.perf_counter()
        edited = run()
        seconds = time.perf_counter() - start
        per_pair = warp_errors(edited, flows)
        results[way] = {
            "figure": float(per_pair.mean()),
            "per_pair": per_pair.tolist(),
            "seconds": seconds,
            "edited": edited,
        }
    return results


def main(argv: list[str] | None = None) -> int:
    parser = report.parser("keyframe_edit", __doc__.splitlines()[0])
    parser.add_argument("--prompt", default="a watercolour painting of an astronaut", help="the edit")
    parser.add_argument("--size", type=int, default=512, help="keyframe side in px (a multiple of 8)")
    parser.add_argument("--keyframes", type=int, default=4, help="number of keyframes")
    parser.add_argument("--spacing", type=int, default=4, help="frames between keyframes in the pan")
    parser.add_argument("--strength", type=float, default=0.6, help="img2img strength in (0, 1]")
    parser.add_argument("--guidance", type=float, default=7.5, help="classifier-free guidance scale")
    parser.add_argument("--steps", type=int, default=30, help="inference steps of the full schedule")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--anchor", type=int, default=0, help="anchor keyframe for cross_frame='anchor'")
    parser.add_argument("--flow", default="dis", help="flow estimator (core.flow.METHODS)")
    Settings.add_arguments(parser)
    args = parser.parse_args(argv)

    try:
        settings = Settings.from_args(args)
        pipeline = load_pipeline("sd", settings, pipeline_cls=KeyframeEditPipeline)
        pipeline.set_progress_bar_config(disable=True)
        results = evaluate_consistency(
            pipeline,
            pan_keyframes(args.size, args.keyframes, args.spacing),
            args.prompt,
            strength=args.strength,
            guidance_scale=args.guidance,
            num_inference_steps=args.steps,
            seed=args.seed,
            anchor_index=args.anchor,
            flow_method=args.flow,
        )
    except KinemaError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(
        f"Warp error between consecutive edited keyframes along the original flow ({args.flow}), grey levels "
        f"0..255, lower is more consistent.\nModel {settings.sd_model}, {args.keyframes} keyframes of "
        f"{args.size}x{args.size} ({args.spacing} frames apart in a pan over the astronaut photo), "
        f"prompt {args.prompt!r}, strength {args.strength}, guidance {args.guidance}, {args.steps} steps, "
        f"seed {args.seed}."
    )
    columns = [("way", "<10"), ("figure", ">8.2f"), ("per pair", "<30"), ("seconds", ">8.2f")]
    rows = [
        [way, r["figure"], " ".join(f"{e:.2f}" for e in r["per_pair"]), r["seconds"]]
        for way, r in results.items()
    ]
    print(report.table(columns, rows))
    report.write_json(
        args.json,
        {
            "evaluation": "keyframe_edit",
            "sd_model": settings.sd_model,
            "settings": {
                key: getattr(args, key)
                for key in "prompt size keyframes spacing strength guidance steps seed anchor flow".split()
            },
            "ways": {
                way: {key: r[key] for key in ("figure", "per_pair", "seconds")} for way, r in results.items()
            },
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
