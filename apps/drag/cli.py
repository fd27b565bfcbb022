"""Drag-to-video without a browser: image + trajectories JSON -> video.

    python -m apps.drag.cli --image photo.jpg --trajectories drag.json --out out/video.mp4 \\
        [--backend warp|svd|svd-controlnet|svd-joint-flow] [--frames 14] [--fps 7] [--motion-bucket B] \\
        [--strength S] [--controlnet-scale 1.0] [--steps 25] [--seed 0] [--resize crop|pad] \\
        [--max-side 1024] [--camera zoom_in] [--region-mask mask.png] \\
        [--flow-out out/flow.mp4] [--gif]  + settings flags (--svd-model, --device, ...; see --help)

The trajectories file is what `core.trajectory.Trajectories.to_json()` writes (the drag app's
"trajectories.json"), in coordinates normalised to the --image as given. The image is scaled so its
long side is at most --max-side and its sides are multiples of 64: "crop" cuts the few pixels that do
not fit (trajectories are mapped into the cropped frame), "pad" letterboxes by repeating the edges.

Backends (`apps.drag.backends`): "warp" (`core.engines.warp`, instant, no weights); "svd" (the warp as
the guide of `core.pipelines.svd_trajectory.SVDTrajectoryPipeline`, weights from --svd-model /
KINEMA_SVD_MODEL; --strength default 0.4); "svd-controlnet" (the same pipeline with the trained flow
ControlNet from --svd-controlnet-model / KINEMA_SVD_CONTROLNET_MODEL; --strength default 1, the pure
ControlNet; --controlnet-scale); "svd-joint-flow" (experimental: joint video + flow from
--svd-joint-flow-model / KINEMA_SVD_JOINT_FLOW_MODEL; --flow-out then writes its generated flow). A
backend whose weights are not configured exits with status 2 and one line naming the setting.

Beside the video, `<out stem>.params.json` records every argument, the resolved values (motion bucket,
video size, settings) and the trajectories themselves, so the run can be redone. Bad input or missing
weights print one line on stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import fields
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from apps.drag import backends
from apps.drag.backends import RenderProgress
from core.config import Settings
from core.engines.warp import CAMERA_PRESETS, DEFAULT_FRAMES
from core.errors import InputError, ModelNotAvailable
from core.flow import render_flow_video
from core.imaging import ResizeInfo, apply_resize, load_image, plan_resize
from core.trajectory import Trajectories, Trajectory
from core.video import write_video

PARAMS_FORMAT = "kinema.drag.cli.parameters"
VIDEO_SUFFIXES = (".mp4", ".gif")


class TqdmProgress:
    """Drives one tqdm bar per stage of `apps.drag.backends.render` (warp frames, then denoising steps).

    Bars open on a stage's first event, so input errors print no empty bar; use as a context manager
    so the last one closes.
    """

    def __init__(self, disable: bool = False) -> None:
        self.disable = disable
        self.bar: tqdm | None = None
        self.stage: str | None = None

    def __call__(self, event: RenderProgress) -> None:
        if self.bar is None or event.stage != self.stage:
            self.close()
            unit = "frame" if event.stage == "warp" else "step"
            self.bar = tqdm(total=event.total, desc=event.stage, unit=unit, disable=self.disable)
            self.stage = event.stage
        self.bar.update(event.done - self.bar.n)
        if event.done >= event.total:  # closed now, so its time excludes what comes next (loading)
            self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.bar = self.stage = None

    def __enter__(self) -> TqdmProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- files ---------------------------------------------------------------------------------------------


def load_trajectories(path: str | Path) -> Trajectories:
    """A trajectories file written by `Trajectories.to_json()`; InputError when missing or invalid."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"The trajectory file {path} does not exist.")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"The trajectory file {path} cannot be read as text.") from err
    return Trajectories.from_json(text)


def fit_trajectories(trajectories: Trajectories, info: ResizeInfo) -> Trajectories:
    """Map trajectories normalised to a source image into the frame `apply_resize(..., info)` makes.

    Crop: positions are re-normalised to the crop box (points cut off end at its edge). Pad: they are
    moved into the letterboxed picture.
    """
    source_h, source_w = info.source_hw
    top, left, crop_h, crop_w = info.crop_box
    pad_top, _, pad_left, _ = info.padding
    out_h, out_w = info.output_hw
    scaled_h, scaled_w = info.scaled_hw
    origin = np.array([left, top], dtype=np.float64)
    crop = np.array([crop_w, crop_h], dtype=np.float64)
    source = np.array([source_w, source_h], dtype=np.float64)
    offset = np.array([pad_left, pad_top], dtype=np.float64)
    scaled = np.array([scaled_w, scaled_h], dtype=np.float64)
    out = np.array([out_w, out_h], dtype=np.float64)
    items = []
    for trajectory in trajectories:
        in_crop = (trajectory.points_norm * source - origin) / crop
        items.append(Trajectory((offset + np.clip(in_crop, 0.0, 1.0) * scaled) / out))
    return Trajectories(tuple(items))


def _load_region_mask(
    path: str | Path, source_hw: tuple[int, int], info: ResizeInfo, max_side: int
) -> np.ndarray:
    """A motion-brush mask image (white = moves) at the video size, (H,W) bool."""
    mask = load_image(path, max_side=max_side).max(axis=2)
    if mask.shape != source_hw:
        raise InputError(
            f"The region mask is {mask.shape[1]}x{mask.shape[0]} px but the image is "
            f"{source_hw[1]}x{source_hw[0]}; draw the mask on the same image."
        )
    return apply_resize(mask, info, pad_mode="constant", pad_value=0) >= 128


def _check_out(path: Path, what: str) -> None:
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise InputError(f"{what} must end in .mp4 or .gif, got {path.name}.")


# -- command line ----------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m apps.drag.cli", description=__doc__.split("\n\n")[0], allow_abbrev=False
    )
    parser.add_argument("--image", required=True, type=Path, help="the picture to animate (png, jpg, ...)")
    parser.add_argument(
        "--trajectories", required=True, type=Path, help="trajectories JSON (Trajectories.to_json format)"
    )
    parser.add_argument("--out", required=True, type=Path, help="the video to write (.mp4 or .gif)")
    parser.add_argument(
        "--backend",
        choices=list(backends.BACKENDS),
        default="warp",
        help="warp (no weights), svd, svd-controlnet or svd-joint-flow (experimental); see above",
    )
    parser.add_argument("--frames", type=int, default=DEFAULT_FRAMES, help="number of frames (default 14)")
    parser.add_argument(
        "--fps", type=int, default=7, help="frame rate of the video and SVD's fps (default 7)"
    )
    parser.add_argument(
        "--motion-bucket",
        type=int,
        default=None,
        help="SVD motion_bucket_id (default: from the trajectories)",
    )
    parser.add_argument(
        "--strength",
        type=float,
        default=None,
        help="svd, svd-controlnet: how far SVD may depart from the warp, 0..1 (default 0.4 for svd, "
        "1 for svd-controlnet: the ControlNet alone)",
    )
    parser.add_argument(
        "--steps", type=int, default=25, help="svd: denoising steps of the full schedule (25)"
    )
    parser.add_argument(
        "--controlnet-scale", type=float, default=1.0, help="svd-controlnet: conditioning scale (1.0)"
    )
    parser.add_argument("--noise-aug", type=float, default=0.02, help="svd: noise_aug_strength (0.02)")
    parser.add_argument("--seed", type=int, default=0, help="svd: random seed (0)")
    parser.add_argument(
        "--resize", choices=("crop", "pad"), default="crop", help="fit to multiples of 64 by crop or pad"
    )
    parser.add_argument("--max-side", type=int, default=1024, help="longest side of the video in px (1024)")
    parser.add_argument(
        "--camera", choices=("none", *CAMERA_PRESETS), default="none", help="camera move added to the drags"
    )
    parser.add_argument("--region-mask", type=Path, default=None, help="motion brush image: white moves")
    parser.add_argument("--radius", type=float, default=None, help="smallest reach of a drag in px")
    parser.add_argument(
        "--flow-out",
        type=Path,
        default=None,
        help="also write the flow video here (the warp's; svd-joint-flow: the generated one)",
    )
    parser.add_argument("--gif", action="store_true", help="also write a .gif beside --out")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    Settings.add_arguments(parser)
    return parser


def _params(args: argparse.Namespace, argv: list[str], settings: Settings, extra: dict) -> dict:
    arguments = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    return {
        "format": PARAMS_FORMAT,
        "version": 1,
        "command": ["python", "-m", "apps.drag.cli", *argv],
        "arguments": arguments,
        "settings": {f.name: str(getattr(settings, f.name)) for f in fields(settings)},
        **extra,
    }


def run(args: argparse.Namespace, argv: list[str]) -> dict:
    """Do what the parsed `argv` ask; return the parameters record (also written beside the video)."""
    started = time.perf_counter()
    settings = Settings.from_args(args)
    backends.require(args.backend, settings)  # unconfigured weights: say so before any work
    _check_out(args.out, "--out")
    if args.flow_out is not None:
        _check_out(args.flow_out, "--flow-out")
    if args.max_side < 64:
        raise InputError(f"--max-side must be at least 64 px, got {args.max_side}.")
    trajectories = load_trajectories(args.trajectories)
    source = load_image(args.image, max_side=settings.max_image_side)
    info = plan_resize(*source.shape[:2], multiple=64, max_side=args.max_side, mode=args.resize)
    image = apply_resize(source, info, pad_mode="edge")
    region_mask = None
    if args.region_mask is not None:
        region_mask = _load_region_mask(args.region_mask, source.shape[:2], info, settings.max_image_side)

    with TqdmProgress(disable=args.quiet) as progress:
        video = backends.render(
            args.backend,
            image,
            fit_trajectories(trajectories, info),
            num_frames=args.frames,
            fps=args.fps,
            motion_bucket_id=args.motion_bucket,
            strength=args.strength,
            controlnet_scale=args.controlnet_scale,
            num_inference_steps=args.steps,
            noise_aug_strength=args.noise_aug,
            seed=args.seed,
            camera=args.camera,
            region_mask=region_mask,
            radius_px=args.radius,
            settings=settings,
            progress=progress,
        )

    args.out.parent.mkdir(parents=True, exist_ok=True)
    outputs = {"video": str(write_video(args.out, video.frames_uint8, args.fps))}
    if args.gif and args.out.suffix.lower() != ".gif":
        outputs["gif"] = str(write_video(args.out.with_suffix(".gif"), video.frames_uint8, args.fps))
    if args.flow_out is not None:
        args.flow_out.parent.mkdir(parents=True, exist_ok=True)
        outputs["flow"] = str(write_video(args.flow_out, render_flow_video(video.flow_px), args.fps))
    height, width = image.shape[:2]
    record = _params(
        args,
        argv,
        settings,
        {
            "video_size": [width, height],
            "source_size": [source.shape[1], source.shape[0]],
            "motion_bucket_id": video.motion_bucket_id,
            "strength": video.strength,
            "controlnet_scale": video.controlnet_scale,
            "trajectories": json.loads(trajectories.to_json()),
            "outputs": outputs,
            "seconds": round(time.perf_counter() - started, 3),
        },
    )
    params_path = args.out.with_name(args.out.stem + ".params.json")
    params_path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    record["outputs"]["params"] = str(params_path)
    return record


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    try:
        record = run(args, argv)
    except (InputError, ModelNotAvailable) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # e.g. an output folder that cannot be written
        print(f"error: {err}", file=sys.stderr)
        return 1
    for name, path in record["outputs"].items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
