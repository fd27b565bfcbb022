"""Per-step cost of our SVD pipelines against diffusers' stock StableVideoDiffusionPipeline.

Every variant is built over the same component objects. A step's time is the interval between two
consecutive ``callback_on_step_end`` calls (the UNet call(s), the scheduler step and our frame pinning),
collected over rounds that alternate the variants. The row's value is the fastest step: a step is the
same deterministic work every time and other processes on a shared machine only add to it (on a loaded
2-core machine the same stock step took 3.0 to 11 s, so medians compared noise): the minimum is the
least disturbed measurement of each variant. Torch runs on one thread while this benchmark runs (the
ratio is the point): with two threads on a shared machine, OpenMP's spinning workers turned other
processes' load into 0.6x to 3x swings between variants that run the same UNet call.
``output_type="latent"``: encoding and decoding run once per call and are not part of a step.

Variants: ``svd_trajectory`` at strength 1 (every step runs), ``flow+svd`` (the keyframe app's refinement of
the flow frames: the same pipeline from a guide at strength ``FLOW_SVD_STRENGTH``), ``flow+svd-lora`` (that
refinement conditioned on both keyframes: the interpolation pipeline in svd-lora mode from the same guide and
strength; the LoRA's extra matrices are not attached, as in ``svd-lora``), ``svd-trf`` (two UNet calls per step:
expect about 2x), ``svd-lora`` (one call, head-and-tail conditioning) and ``svd-controlnet``
(``svd_trajectory`` at strength 1 with a flow ControlNet built by ``SVDFlowControlNet.from_unet`` and
a flow condition: one ControlNet call, the UNet's encoder and mid block again, beside each UNet call).

Sizes:
    tiny  core.models' tiny SVD components, 64x64 pixels, 4 frames, 4 steps.
    full  the SVD-XT UNet (1.5B parameters) and temporal VAE with random weights, 64x64 pixels (8x8
          latents), 3 frames, 3 steps. The image encoder is a small CLIP ViT (hidden size 32) with
          SVD's 1024-d projection: it runs once per call, outside the steps, so the 630M-parameter
          ViT-H would only add build time and memory.

Run: .venv/bin/python tests/benchmarks/run.py svd_pipelines
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch
from diffusers import StableVideoDiffusionPipeline
from harness import Row
from PIL import Image
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

from core.controlnet_svd import DEFAULT_FLOW_SCALE_PX, SVDFlowControlNet, flow_condition
from core.models import tiny_svd_components
from core.pipelines.svd_interpolate import SVDInterpolatePipeline
from core.pipelines.svd_trajectory import SVDTrajectoryPipeline
from tests.support.full_architecture import full_architecture_random

SIZES = {"tiny": {"pixels": 64, "frames": 4, "steps": 4}, "full": {"pixels": 64, "frames": 3, "steps": 3}}
ROUNDS = 4
TARGETS = {
    "svd_trajectory": "<= 1.03x",
    "svd-trf": "~2x (2 UNet calls)",
    "svd-lora": "<= 1.03x",
    "svd-controlnet": "<= 1.6x (+ encoder and mid block)",
    "flow+svd": "<= 1.03x",
    "flow+svd-lora": "<= 1.03x",
}
# flow+svd's (and flow+svd-lora's) SDEdit strength here: the last 3 of 4 steps (tiny), 2 of 3 (full) run, so a call has 2 or 1
# step intervals (the keyframe app's default, 0.3, would run one step and measure none).
FLOW_SVD_STRENGTH = 0.7


def _full_components() -> dict:
    components = tiny_svd_components(0)
    components.update(full_architecture_random("svd_xt", components=("unet", "vae")))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        small_vit = CLIPVisionConfig(
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=224,
            patch_size=16,
            projection_dim=1024,
        )
        components["image_encoder"] = CLIPVisionModelWithProjection(small_vit).eval()
    return components


def _variants(components: dict, pixels: int, frames: int, steps: int) -> dict[str, Callable]:
    """variant -> call(callback) running one generation with ``callback_on_step_end=callback``."""
    rng = np.random.default_rng(0)
    head, tail = rng.integers(0, 256, (2, pixels, pixels, 3), dtype=np.uint8)
    guide = np.stack([np.roll(head, k, axis=1) for k in range(frames)])
    stock = StableVideoDiffusionPipeline(**components)
    trajectory = SVDTrajectoryPipeline(**components)
    interpolate = SVDInterpolatePipeline(**components)
    controlnet = SVDFlowControlNet.from_unet(components["unet"], vae_scale_factor=trajectory.vae_scale_factor)
    controlled = SVDTrajectoryPipeline(**components, controlnet=controlnet.eval())
    for pipe in (stock, trajectory, interpolate, controlled):
        pipe.set_progress_bar_config(disable=True)
    # One track across the frames, a quarter of the width in all.
    track = np.stack([np.linspace(0.25, 0.5, frames), np.full(frames, 0.5)], axis=1)[None]
    cond = flow_condition(track, pixels, pixels, flow_scale_px=DEFAULT_FLOW_SCALE_PX)
    common = {"num_inference_steps": steps, "output_type": "latent"}

    def seeded() -> torch.Generator:
        return torch.Generator().manual_seed(0)

    return {
        "stock": lambda cb: stock(
            Image.fromarray(head),
            height=pixels,
            width=pixels,
            num_frames=frames,
            generator=seeded(),
            callback_on_step_end=cb,
            **common,
        ),  # fmt: skip
        "svd_trajectory": lambda cb: trajectory(
            head, guide, strength=1.0, generator=seeded(), callback_on_step_end=cb, **common
        ),
        "svd-trf": lambda cb: interpolate(
            head,
            tail,
            mode="svd-trf",
            num_frames=frames,
            generator=seeded(),
            callback_on_step_end=cb,
            **common,
        ),
        "svd-lora": lambda cb: interpolate(
            head,
            tail,
            mode="svd-lora",
            num_frames=frames,
            generator=seeded(),
            callback_on_step_end=cb,
            **common,
        ),
        "svd-controlnet": lambda cb: controlled(
            head, strength=1.0, flow_condition=cond, generator=seeded(), callback_on_step_end=cb, **common
        ),
        # The keyframe app's flow+svd: the flow frames between two keyframes as the guide, at low strength.
        "flow+svd": lambda cb: trajectory(
            head, guide, strength=FLOW_SVD_STRENGTH, generator=seeded(), callback_on_step_end=cb, **common
        ),
        "flow+svd-lora": lambda cb: interpolate(
            head,
            tail,
            mode="svd-lora",
            guide_video=guide,
            strength=FLOW_SVD_STRENGTH,
            generator=seeded(),
            callback_on_step_end=cb,
            **common,
        ),
    }


def _step_intervals(call: Callable) -> list[float]:
    stamps: list[float] = []

    def stamp(pipe, i, t, callback_kwargs):
        stamps.append(time.perf_counter())
        return {}

    with torch.no_grad():
        call(stamp)
    return [later - earlier for earlier, later in zip(stamps, stamps[1:])]


def _fastest_step_seconds(variants: dict[str, Callable]) -> dict[str, float]:
    for call in variants.values():  # warm-up
        _step_intervals(call)
    intervals: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(ROUNDS):
        for name, call in variants.items():
            intervals[name].extend(_step_intervals(call))
    return {name: min(values) for name, values in intervals.items()}


def run() -> list[Row]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _rows()
    finally:
        torch.set_num_threads(threads)


def _rows() -> list[Row]:
    rows = []
    for size, shape in SIZES.items():
        components = tiny_svd_components(0) if size == "tiny" else _full_components()
        seconds = _fastest_step_seconds(_variants(components, **shape))
        del components
        name = f"svd_pipelines_{size}_{shape['pixels']}px_{shape['frames']}f"
        for variant, target in TARGETS.items():
            rows.append(
                Row(
                    name,
                    f"fastest step, {variant}",
                    seconds[variant],
                    "s",
                    "stock SVD step",
                    seconds["stock"],
                    target,
                )
            )
    return rows
