"""`make bench-gpu`: every app path at real size on a CUDA GPU, default and low-VRAM mode, in one table + JSON.

It builds the full-size SD1.5 and SVD-XT architectures with random weights (no download), saves them with
``save_pretrained`` as local model folders (plus a flow ControlNet, joint-flow weights, an SVD head+tail LoRA
and joint-depth weights of the same sizes), points the ``KINEMA_*`` settings at them and runs each path the
way a user does: the drag and keyframe CLIs and the joint-depth job, one path at a time with the model caches
emptied in between (as a fresh process would be). Per path: wall time, peak allocated and peak reserved GPU
memory (torch). Three more kinds of rows:

- per-step time against stock SVD / a stock SD 2-image batch, measured in the same run with
  ``callback_on_step_end`` and a CUDA synchronize per step (the issue's ratio targets);
- the full-size VAE's activation peak per frame and pixel, encoding (float32, SVD's upcast) and decoding (fp16),
  which ``core.memory``'s budget constants come from;
- low-VRAM mode (``KINEMA_LOW_VRAM=1``) for every SVD path, with its time as a ratio to the default mode.

Without CUDA it says so and exits 0 (``--tiny`` runs the same script on the CPU with the tiny presets, which is
how the script itself is tested). The JSON is rewritten after every row, so a run cut short keeps its rows.

    python tests/benchmarks/gpu_paths.py [--json bench-results/gpu_paths.json] [--steps 10] [--tiny]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

GIB = 1024**3
# Real sizes: SVD-XT frames at 576x1024, 14 of them; SD at 512x512.
FULL = {"height": 576, "width": 1024, "frames": 14, "sd_side": 512}
TINY = {"height": 64, "width": 128, "frames": 4, "sd_side": 64}


@dataclass
class Row:
    path: str
    mode: str  # "default" or "low-vram"
    wall_s: float
    peak_allocated_gib: float
    peak_reserved_gib: float
    steps: int = 0
    step_s: float = float("nan")
    baseline_step_s: float = float("nan")  # stock SVD / stock SD batch of 2, same run
    note: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def step_ratio(self) -> float:
        return self.step_s / self.baseline_step_s


# -- measuring ----------------------------------------------------------------------------------------------


def _fresh_gpu(device: str) -> None:
    """Forget every cached model and start a new peak, as a fresh process would."""
    from core.models import clear_cache

    clear_cache()
    gc.collect()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peaks(device: str) -> tuple[float, float]:
    if device != "cuda":
        return float("nan"), float("nan")
    return torch.cuda.max_memory_allocated() / GIB, torch.cuda.max_memory_reserved() / GIB


class StepTimer:
    """A ``callback_on_step_end`` that records each denoising step's wall time (CUDA synchronised)."""

    def __init__(self, device: str) -> None:
        self.device, self.times, self._last = device, [], None

    def start(self) -> None:
        self._sync()
        self._last = time.perf_counter()

    def _sync(self) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()

    def __call__(self, pipe, step, timestep, tensors):
        self._sync()
        now = time.perf_counter()
        self.times.append(now - self._last)
        self._last = now
        return tensors

    def median_step(self) -> float:
        """Median step time, the first step (warm-up, encoders) left out when there are more."""
        times = self.times[1:] if len(self.times) > 1 else self.times
        return statistics.median(times) if times else float("nan")


def _timed(device: str, fn: Callable[[], object]) -> tuple[float, object]:
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    result = fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, result


# -- the model folders --------------------------------------------------------------------------------------


def build_model_folders(root: Path, tiny: bool, device: str) -> dict[str, str]:
    """Save SD1.5, SVD-XT (or the tiny presets), a flow ControlNet, joint-flow weights, an SVD interpolation
    LoRA and joint-depth weights under ``root``; returns the KINEMA_* settings that point at them."""
    from diffusers import StableDiffusionPipeline, StableVideoDiffusionPipeline

    from core.controlnet_svd import SVDFlowControlNet
    from core.flow.encoding import FlowEncoding
    from core.lora import add_lora, save_lora
    from core.models import tiny_sd_components, tiny_svd_components
    from core.patches.joint import apply_joint_patch, remove_joint_patch
    from core.pipelines.joint_sd import JointSDPipeline
    from core.pipelines.svd_flow import DEFAULT_FLOW_ENCODING
    from tests.support.full_architecture import full_architecture_random

    dtype = torch.float32 if tiny else torch.float16
    place = contextlib.nullcontext() if tiny else torch.device(device)
    with place:
        svd = tiny_svd_components() if tiny else full_architecture_random("svd_xt")
        sd = tiny_sd_components() if tiny else full_architecture_random("sd15")
    svd_pipe = StableVideoDiffusionPipeline(**svd).to(dtype=dtype)
    no_checker = {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}
    sd_pipe = StableDiffusionPipeline(**{**no_checker, **sd})
    sd_pipe.to(dtype=dtype)
    svd_pipe.save_pretrained(root / "svd")
    sd_pipe.save_pretrained(root / "sd")

    controlnet = SVDFlowControlNet.from_unet(svd_pipe.unet, vae_scale_factor=svd_pipe.vae_scale_factor)
    controlnet.save_pretrained(root / "svd-controlnet")

    generator = torch.Generator(device="cpu").manual_seed(0)
    with torch.no_grad():
        patch = apply_joint_patch(svd_pipe.unet, 2, joint_lora_rank=4, y_lora_rank=4)
        for param in patch.joint_parameters():
            param.copy_(0.01 * torch.randn(param.shape, generator=generator).to(param))
    patch.save(root / "svd-joint-flow")
    FlowEncoding.from_scale_px(DEFAULT_FLOW_ENCODING.scale_px(1024), 1024).save(root / "svd-joint-flow", 1024)
    remove_joint_patch(svd_pipe.unet)  # the folder is what the app loads

    add_lora(svd_pipe.unet, "interp_lora", rank=4, init=False)
    save_lora(svd_pipe.unet, "interp_lora", root / "svd-lora")

    joint = JointSDPipeline.from_stock(sd_pipe)
    with torch.no_grad():
        for param in joint.joint_patch.joint_parameters():
            param.copy_(0.01 * torch.randn(param.shape, generator=generator).to(param))
    joint.joint_patch.save(root / "joint")
    return {
        "SD_MODEL": str(root / "sd"),
        "SVD_MODEL": str(root / "svd"),
        "SVD_CONTROLNET_MODEL": str(root / "svd-controlnet"),
        "SVD_JOINT_FLOW_MODEL": str(root / "svd-joint-flow"),
    }


def write_inputs(root: Path, size: dict) -> dict[str, Path]:
    """A photo at the SVD size, three drags on it, and a 15-frame pan over the photo as a video."""
    import cv2
    from PIL import Image

    from core.imaging import load_image
    from core.trajectory import Trajectories, Trajectory
    from core.video import write_video

    height, width = size["height"], size["width"]
    photo = load_image(ROOT / "assets" / "images" / "astronaut.jpg")
    wide = cv2.resize(photo, (width + 64, height), interpolation=cv2.INTER_AREA)
    image = root / "photo.png"
    Image.fromarray(np.ascontiguousarray(wide[:, :width])).save(image)
    tracks = root / "drags.json"
    tracks.write_text(
        Trajectories(
            (
                Trajectory([[0.30, 0.40], [0.42, 0.36], [0.50, 0.40]]),
                Trajectory([[0.60, 0.70], [0.66, 0.60]]),
                Trajectory([[0.85, 0.20]]),
            )
        ).to_json()
    )
    video = root / "pan.mp4"
    frames = np.stack([wide[:, 4 * i : 4 * i + width] for i in range(15)])
    write_video(video, frames, 7)
    return {"image": image, "tracks": tracks, "video": video}


# -- the rows ---------------------------------------------------------------------------------------------


def _drag(inputs: dict, backend: str, steps: int, size: dict) -> Callable[[], int]:
    from apps.drag import cli

    argv = ["--image", str(inputs["image"]), "--trajectories", str(inputs["tracks"]), "--backend", backend]
    argv += ["--out", str(inputs["out"] / f"drag-{backend}.mp4"), "--frames", str(size["frames"])]
    argv += ["--max-side", str(size["width"]), "--steps", str(steps), "--quiet", "--overwrite"]  # reruns
    return lambda: cli.main(argv)


def _keyframe(inputs: dict, edit: str, interp: str, steps: int, size: dict) -> Callable[[], int]:
    from apps.keyframe import cli

    argv = ["--video", str(inputs["video"]), "--out", str(inputs["out"] / f"kf-{edit}-{interp}.mp4")]
    argv += ["--working-size", str(size["width"]), "--keyframes", "0,14", "--edit", edit, "--interp", interp]
    argv += ["--prompt", "a watercolour painting", "--steps", str(steps), "--interp-steps", str(steps)]
    argv += ["--overwrite"]  # each path runs more than once
    return lambda: cli.main(argv)


def _joint(root: Path, mode: str, steps: int, size: dict) -> Callable[[], object]:
    from apps.joint_depth import job
    from core.config import Settings

    def run():
        settings = Settings.from_env()
        model = job.load_model(settings, str(root / "joint"))
        side = size["sd_side"]
        request = job.JointRequest.from_ui(
            settings, mode=mode, prompt="a red chair", steps=steps, height=side, width=side, side=side
        )
        given = {}
        if mode == "image_to_depth":
            given["image_uint8"] = job.prepare_image(root / "inputs" / "photo.png", settings, side)
        if mode == "depth_to_image":
            given["depth_unit"] = np.tile(np.linspace(0, 1, side, dtype=np.float32), (side, 1))
        return job.run(model, request, **given)

    return run


SVD_PATHS = (
    "drag svd",
    "drag svd-controlnet",
    "drag svd-joint-flow",
    "keyframe svd-trf",
    "keyframe svd-lora",
    "keyframe sd edit + svd-trf",
)


def path_runs(root: Path, inputs: dict, steps: int, size: dict) -> dict[str, tuple[Callable, dict]]:
    """Path name -> (run, extra KINEMA_* settings for it)."""
    lora = {"SVD_INTERP_LORA": str(root / "svd-lora")}
    return {
        "drag warp": (_drag(inputs, "warp", steps, size), {}),
        "drag svd": (_drag(inputs, "svd", steps, size), {}),
        "drag svd-controlnet": (_drag(inputs, "svd-controlnet", steps, size), {}),
        "drag svd-joint-flow": (_drag(inputs, "svd-joint-flow", steps, size), {}),
        "keyframe sd edit": (_keyframe(inputs, "sd", "flow", steps, size), {}),
        "keyframe svd-trf": (_keyframe(inputs, "identity", "svd-trf", steps, size), {}),
        "keyframe svd-lora": (_keyframe(inputs, "identity", "svd-lora", steps, size), lora),
        # SD edits first, then SVD fills in: both models in one job (does the job hold both at once?)
        "keyframe sd edit + svd-trf": (_keyframe(inputs, "sd", "svd-trf", steps, size), {}),
        "joint joint": (_joint(root, "joint", steps, size), {}),
        "joint image_to_depth": (_joint(root, "image_to_depth", steps, size), {}),
        "joint depth_to_image": (_joint(root, "depth_to_image", steps, size), {}),
    }


def run_path(name: str, run: Callable, env: dict, mode: str, device: str) -> Row:
    saved = {k: os.environ.get(f"KINEMA_{k}") for k in (*env, "LOW_VRAM")}
    os.environ.update({f"KINEMA_{k}": v for k, v in env.items()})
    os.environ["KINEMA_LOW_VRAM"] = "1" if mode == "low-vram" else "0"
    _fresh_gpu(device)
    try:
        wall, code = _timed(device, run)
        note = "" if code in (0, None) or not isinstance(code, int) else f"exit status {code}"
    except Exception as error:  # a row that fails is reported, the others still run
        wall, note = float("nan"), f"{type(error).__name__}: {str(error)[:200]}"
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(f"KINEMA_{k}", None)
            else:
                os.environ[f"KINEMA_{k}"] = v
    allocated, reserved = _peaks(device)
    return Row(name, mode, round(wall, 3), round(allocated, 3), round(reserved, 3), note=note)


def step_rows(device: str, steps: int, size: dict) -> list[Row]:
    """Per-step time of the trajectory pipeline (strength 0.4) and the flow ControlNet against stock SVD, and of
    the joint SD pair against a stock SD batch of 2, in one process on the configured models."""
    import PIL.Image

    from core.config import Settings
    from core.controlnet_svd import flow_condition
    from core.models import load_pipeline, load_svd_controlnet
    from core.pipelines.joint_sd import JointSDPipeline
    from core.pipelines.svd_trajectory import SVDTrajectoryPipeline

    settings = Settings.from_env()
    height, width, frames = size["height"], size["width"], size["frames"]
    guide = np.full((frames, height, width, 3), 128, np.uint8)
    image = PIL.Image.fromarray(guide[0])
    common = {
        "num_frames": frames,
        "num_inference_steps": steps,
        "decode_chunk_size": 2,
        "output_type": "latent",
    }

    def measure(name: str, baseline: float, call: Callable[[StepTimer], object]) -> Row:
        _fresh_gpu(device)
        timer = StepTimer(device)
        timer.start()
        wall, _ = _timed(device, lambda: call(timer))
        allocated, reserved = _peaks(device)
        return Row(name, "default", round(wall, 3), round(allocated, 3), round(reserved, 3), len(timer.times),
                   timer.median_step(), baseline)  # fmt: skip

    def generator():
        return torch.Generator("cpu").manual_seed(0)

    rows = []
    stock = measure(
        "step: stock SVD",
        float("nan"),
        lambda t: load_pipeline("svd", settings)(
            image, generator=generator(), callback_on_step_end=t, **common, height=height, width=width
        ),
    )
    stock.baseline_step_s = stock.step_s
    rows.append(stock)
    rows.append(
        measure(
            "step: trajectory (strength 1)",
            stock.step_s,
            lambda t: load_pipeline("svd", settings, SVDTrajectoryPipeline)(
                image, guide, strength=1.0, generator=generator(), callback_on_step_end=t, **common
            ),
        )
    )

    def controlnet_call(t: StepTimer):
        pipe = load_pipeline("svd", settings, SVDTrajectoryPipeline)
        pipe.controlnet = load_svd_controlnet(settings)
        tracks = np.array([[[0.3, 0.4]] * frames], np.float32) + np.linspace(0, 0.1, frames)[None, :, None]
        condition = flow_condition(tracks, height, width, flow_scale_px=pipe.controlnet.config.flow_scale_px)
        return pipe(image, guide, strength=1.0, flow_condition=condition, generator=generator(),
                    callback_on_step_end=t, **common)  # fmt: skip

    rows.append(measure("step: flow ControlNet", stock.step_s, controlnet_call))

    side = size["sd_side"]
    sd_common = {"num_inference_steps": steps, "height": side, "width": side, "output_type": "latent"}
    stock_sd = measure(
        "step: stock SD batch of 2",
        float("nan"),
        lambda t: load_pipeline("sd", settings)(
            "a red chair", num_images_per_prompt=2, callback_on_step_end=t, generator=generator(), **sd_common
        ),
    )
    stock_sd.baseline_step_s = stock_sd.step_s
    rows.append(stock_sd)
    rows.append(
        measure(
            "step: joint SD pair",
            stock_sd.step_s,
            lambda t: JointSDPipeline.from_stock(load_pipeline("sd", settings))(
                "a red chair", mode="joint", seed=0, callback_on_step_end=t, **sd_common
            ),
        )
    )
    return rows


def vae_rows(device: str, size: dict) -> list[Row]:
    """Activation peak of the SVD VAE per frame and pixel: encode (float32) 1 and 2 frames, decode 1, 2, 4."""
    from core.config import Settings
    from core.models import load_pipeline

    pipe = load_pipeline("svd", Settings.from_env())
    height, width = size["height"], size["width"]
    rows = []
    for stage, chunks in (("encode", (1, 2)), ("decode", (1, 2, 4))):
        for chunk in chunks:
            gc.collect()
            if device == "cuda":
                torch.cuda.empty_cache()
            vae = pipe.vae.to(torch.float32 if stage == "encode" else pipe.unet.dtype)
            with torch.no_grad():
                if stage == "encode":
                    x = torch.zeros(chunk, 3, height, width, device=device, dtype=vae.dtype)
                    call = lambda x=x, vae=vae: vae.encode(x).latent_dist.mode()  # noqa: E731
                else:
                    x = torch.zeros(chunk, 4, height // 8, width // 8, device=device, dtype=vae.dtype)
                    call = lambda x=x, vae=vae, chunk=chunk: vae.decode(x, num_frames=chunk).sample  # noqa: E731
                before = torch.cuda.memory_allocated() if device == "cuda" else 0
                if device == "cuda":
                    torch.cuda.reset_peak_memory_stats()
                wall, _ = _timed(device, call)
                peak = (torch.cuda.max_memory_allocated() - before) if device == "cuda" else 0
            per_pixel = peak / (chunk * height * width)
            rows.append(
                Row(f"vae {stage} x{chunk}", "default", round(wall, 3), round(peak / GIB, 3), float("nan"),
                    note=f"{per_pixel:.0f} B per frame-pixel", extra={"bytes_per_frame_pixel": per_pixel})
            )  # fmt: skip
    pipe.vae.to(pipe.unet.dtype)
    return rows


def print_table(rows: list[Row]) -> None:
    header = f"{'path':<28} {'mode':<9} {'wall s':>8} {'peak alloc GiB':>14} {'peak resv GiB':>13} {'step s':>8} {'x base':>7}  note"
    print("\n" + header + "\n" + "-" * len(header))
    for r in rows:
        ratio = f"{r.step_ratio:7.3f}" if r.steps else " " * 7
        step = f"{r.step_s:8.4f}" if r.steps else " " * 8
        print(f"{r.path:<28} {r.mode:<9} {r.wall_s:8.2f} {r.peak_allocated_gib:14.2f} {r.peak_reserved_gib:13.2f} "
              f"{step} {ratio}  {r.note}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=ROOT / "bench-results" / "gpu_paths.json")
    parser.add_argument(
        "--steps", type=int, default=10, help="denoising steps per path (the peaks do not depend on it)"
    )
    parser.add_argument(
        "--step-rows-steps",
        type=int,
        default=25,
        help="denoising steps of the per-step rows (median of all but the first)",
    )
    parser.add_argument(
        "--tiny", action="store_true", help="tiny presets on the CPU: checks the script itself"
    )
    parser.add_argument("--work", type=Path, default=Path("/tmp/kinema-gpu-paths"))
    parser.add_argument("--paths", nargs="*", help="only these paths (names as in the table)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["steps", "vae", "low-vram"])
    args = parser.parse_args(argv)
    if not args.tiny and not torch.cuda.is_available():
        print(
            "gpu_paths: no CUDA device here; skipped (run it on a GPU machine, or --tiny to check the script)."
        )
        return 0
    device = "cpu" if args.tiny else "cuda"
    size = TINY if args.tiny else FULL
    os.environ.update({"KINEMA_DEVICE": device, "HF_HUB_OFFLINE": "1"})
    args.work.mkdir(parents=True, exist_ok=True)
    (args.work / "inputs").mkdir(exist_ok=True)
    (args.work / "out").mkdir(exist_ok=True)
    started = time.perf_counter()
    models_s, env = _timed(device, lambda: build_model_folders(args.work, args.tiny, device))
    os.environ.update({f"KINEMA_{k}": v for k, v in env.items()})
    inputs = {**write_inputs(args.work / "inputs", size), "out": args.work / "out"}
    print(f"models built and saved in {models_s:.1f} s", flush=True)
    meta = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu", "torch": torch.__version__,
            "size": size, "steps": args.steps, "models_s": round(models_s, 1)}  # fmt: skip
    rows: list[Row] = []

    def record(new: list[Row]) -> None:
        rows.extend(new)
        for r in new:
            print(
                f"  {r.path} [{r.mode}]: {r.wall_s:.2f} s, peak {r.peak_allocated_gib:.2f} GiB {r.note}",
                flush=True,
            )
        args.json.parent.mkdir(parents=True, exist_ok=True)
        body = [{**asdict(r), "step_ratio": r.step_ratio if r.steps else None} for r in rows]
        args.json.write_text(
            json.dumps({**meta, "wall_s": round(time.perf_counter() - started, 1), "rows": body}, indent=1)
        )

    # Most wanted first, so a run cut short by a lent machine's time still answers the memory question.
    runs = path_runs(args.work, inputs, args.steps, size)
    chosen = [p for p in runs if not args.paths or p in args.paths]
    svd_paths = [p for p in chosen if p in SVD_PATHS]
    if "vae" not in args.skip:
        record(vae_rows(device, size))
    for name in svd_paths:
        record([run_path(name, *runs[name], "default", device)])
    if "low-vram" not in args.skip:
        for name in svd_paths:
            row = run_path(name, *runs[name], "low-vram", device)
            default = next(r for r in rows if r.path == name and r.mode == "default")
            row.extra["time_vs_default"] = round(row.wall_s / default.wall_s, 3)
            row.note = (row.note + f" time x{row.extra['time_vs_default']:.2f} default").strip()
            record([row])
    if "steps" not in args.skip:
        record(step_rows(device, args.step_rows_steps, size))
    for name in (p for p in chosen if p not in SVD_PATHS):
        record([run_path(name, *runs[name], "default", device)])
    _fresh_gpu(device)
    print_table(rows)
    print(f"\n{len(rows)} rows in {time.perf_counter() - started:.0f} s; JSON: {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
