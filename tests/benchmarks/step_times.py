"""The step times behind ``core.estimate.FIGURES``: seconds per denoising step per frame, by kind, model and side.

Each row runs the pipeline a user's job runs (the joint SD pair, the SD keyframe edit over 2 keyframes at
strength 1, one SVD inbetweening pass of 8 frames) for a few steps, times every step with
``callback_on_step_end`` and reports the median of the steps after the first (which also encodes). Run it on
the device to measure, with the thread count the apps get, and copy the rows into ``FIGURES``:

    OMP_NUM_THREADS=1 python tests/benchmarks/step_times.py [--device cpu] [--models tiny mini] [--sides 64 128]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from core.config import Settings  # noqa: E402
from core.estimate import device_name  # noqa: E402

SVD_FRAMES, EDIT_KEYFRAMES = 8, 2


class StepTimes:
    """A ``callback_on_step_end`` (and, as ``on_step_end``, a stand-in cancel token) recording step times."""

    def __init__(self, device: str) -> None:
        self.device, self.times = device, []
        self._last = time.perf_counter()

    def _sync(self) -> None:
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()

    def __call__(self, pipe, step, timestep, tensors) -> dict:
        self._sync()
        now = time.perf_counter()
        self.times.append(now - self._last)
        self._last = now
        return {}

    on_step_end = __call__

    def median(self) -> float:
        return statistics.median(self.times[1:] or self.times)


def measure(kind: str, settings: Settings, side: int, steps: int) -> float:
    """Seconds per step per frame of ``kind`` ("joint", "sd-edit", "svd") at side x side px."""
    from core.models import load_pipeline

    rng = np.random.default_rng(0)
    timer = StepTimes(settings.resolved_device())
    if kind == "joint":
        from apps.joint_depth import job

        model = job.load_model(settings, "")
        model.pipeline.set_progress_bar_config(disable=True)
        job.run(model, job.JointRequest(prompt="a cat", steps=steps, height=side, width=side), cancel=timer)
        return timer.median()
    if kind == "sd-edit":
        from core.pipelines.keyframe_edit import KeyframeEditPipeline

        pipe = load_pipeline("sd", settings, pipeline_cls=KeyframeEditPipeline)
        pipe.set_progress_bar_config(disable=True)
        keys = rng.integers(0, 255, (EDIT_KEYFRAMES, side, side, 3), dtype=np.uint8)
        pipe(
            keyframes=keys,
            prompt="a cat",
            strength=1.0,
            num_inference_steps=steps,
            seed=0,
            callback_on_step_end=timer,
        )
        return timer.median() / EDIT_KEYFRAMES
    from core.pipelines.svd_interpolate import SVDInterpolatePipeline

    pipe = load_pipeline("svd", settings, pipeline_cls=SVDInterpolatePipeline)
    pipe.set_progress_bar_config(disable=True)
    a, b = rng.integers(0, 255, (2, side, side, 3), dtype=np.uint8)
    pipe(a, b, mode="svd-lora", num_frames=SVD_FRAMES, num_inference_steps=steps, output_type="np",
         generator=torch.Generator().manual_seed(0), callback_on_step_end=timer)  # fmt: skip
    return timer.median() / SVD_FRAMES


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="torch device to measure on")
    parser.add_argument("--models", nargs="+", default=["tiny", "mini"], help="model settings (sd and svd)")
    parser.add_argument("--kinds", nargs="+", default=["joint", "sd-edit", "svd"])
    parser.add_argument("--sides", nargs="+", type=int, default=[64, 128], help="square sides in px")
    parser.add_argument("--steps", type=int, default=4, help="steps per run (the first is not counted)")
    args = parser.parse_args(argv)
    for model in args.models:
        settings = Settings(sd_model=model, svd_model=model, device=args.device)
        device = device_name(settings.resolved_device())
        for kind in args.kinds:
            for side in args.sides:
                unit_s = measure(kind, settings, side, args.steps)
                print(f'Figure("{device}", "{kind}", "{model}", {side}, {unit_s:.4g}, _CPU),', flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
