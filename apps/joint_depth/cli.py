"""Joint depth + image, headless: the joint-depth app's job from the command line.

    python -m apps.joint_depth.cli --prompt "a red chair"                  # prompt -> image + depth
    python -m apps.joint_depth.cli --image photo.jpg [--prompt "..."]      # image -> depth
    python -m apps.joint_depth.cli --depth depth.png --prompt "..."        # depth map (near = white) -> image

Writes, per sample K, image_K.png, depth_K.png (16-bit, near = white), depth_K_color.png and points_K.ply,
and the run record params.json (apps.common.runs.RunRecord, which apps.joint_depth.job.request_from_record
redoes) into --out (default: a new folder under KINEMA_OUTPUT_DIR/joint_depth/). Without SD weights it runs on
the tiny preset and says so; the joint weights are --weights, else the first folder under
KINEMA_JOINT_WEIGHTS, else the untrained patch. Bad input exits with status 2 and one line on stderr.
Files already in --out are kept (the run is refused) unless --overwrite, and none may be an input; each
file is written under a temporary name and moved into place when complete (SIGTERM included).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from apps.common.cli import INTERRUPTED, Parser, add_overwrite_argument, limited, sigterm_interrupts
from apps.joint_depth import job
from core.config import Settings
from core.errors import KinemaError
from core.outputs import check_outputs
from core.pointcloud import DEFAULT_FAR, DEFAULT_FOV_DEG, DEFAULT_MAX_POINTS, DEFAULT_NEAR

PROG = "python -m apps.joint_depth.cli"
DEFAULTS = job.JointRequest()


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog=PROG, description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    given = parser.add_mutually_exclusive_group()
    given.add_argument(
        "--image", default="", help="image -> depth: the image (any size; cropped to multiples of 64)"
    )
    given.add_argument(
        "--depth", default="", help="depth -> image: a greyscale 8/16-bit depth map, near = white"
    )
    parser.add_argument("--prompt", default="", help="what to generate (optional for --image)")
    parser.add_argument("--negative-prompt", default="", help="what to avoid")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: a new run folder)")
    add_overwrite_argument(parser)
    parser.add_argument(
        "--weights", default=None, help="joint-weights folder (default: see above); '' = untrained"
    )
    parser.add_argument("--height", type=int, default=DEFAULTS.height, help="prompt mode: height in px (x64)")
    parser.add_argument("--width", type=int, default=DEFAULTS.width, help="prompt mode: width in px (x64)")
    parser.add_argument("--side", type=int, default=DEFAULTS.side, help="--image/--depth: longest side (x64)")
    parser.add_argument(
        "--steps",
        type=limited("joint_steps"),
        default=DEFAULTS.steps,
        help=f"inference steps (default {DEFAULTS.steps})",
    )
    parser.add_argument("--guidance", type=float, default=DEFAULTS.guidance, help="classifier-free guidance")
    parser.add_argument("--seed", type=int, default=DEFAULTS.seed, help="random seed")
    parser.add_argument(
        "--batch", type=limited("joint_batch"), default=DEFAULTS.batch, help="samples per run"
    )
    cloud = parser.add_argument_group("point cloud camera (see core.pointcloud)")
    cloud.add_argument("--near", type=float, default=DEFAULT_NEAR, help="near plane")
    cloud.add_argument("--far", type=float, default=DEFAULT_FAR, help="far plane")
    cloud.add_argument("--fov-deg", type=float, default=DEFAULT_FOV_DEG, help="horizontal field of view")
    cloud.add_argument("--max-points", type=int, default=DEFAULT_MAX_POINTS, help="most points per cloud")
    Settings.add_arguments(parser)
    return parser


def request_from_args(args: argparse.Namespace, settings: Settings) -> job.JointRequest:
    """The checked request of the parsed flags (the same checks as the app's). Raises InputError."""
    mode = "image_to_depth" if args.image else "depth_to_image" if args.depth else "joint"
    sizes = {"height": args.height, "width": args.width} if mode == "joint" else {"side": args.side}
    return job.JointRequest.from_ui(
        settings,
        mode=mode,
        prompt=args.prompt,
        negative_prompt=args.negative_prompt,
        steps=args.steps,
        guidance=args.guidance,
        seed=args.seed,
        batch=args.batch,
        near=args.near,
        far=args.far,
        fov_deg=args.fov_deg,
        max_points=args.max_points,
        weights=job.default_weights(settings) if args.weights is None else args.weights,
        input_path=args.image or args.depth,
        **sizes,
    )


def check_out(args: argparse.Namespace, request: job.JointRequest) -> None:
    """Refuse (InputError, before any work) an --out whose files would replace an input or, without
    --overwrite, an earlier run's files. No --out: a new, empty run folder."""
    if args.out is None:
        return
    files = job.planned_files(args.out, request.batch)
    check_outputs(
        [("--out", path) for path in files.downloads()],
        {
            "--image": Path(args.image) if args.image else None,
            "--depth": Path(args.depth) if args.depth else None,
        },
        overwrite=args.overwrite,
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    try:
        with sigterm_interrupts():
            settings = Settings.from_args(args)
            request = request_from_args(args, settings)
            check_out(args, request)
            done = job.run_job(
                request,
                settings,
                args.out,
                command=["python", "-m", "apps.joint_depth.cli", *argv],
                progress=print,
            )
    except KinemaError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; earlier outputs are unchanged.", file=sys.stderr)
        return INTERRUPTED
    for notice in [*done.model.notices, *done.notes]:
        print(notice)
    height, width = done.images_uint8.shape[1:3]
    print(
        f"Wrote {len(done.images_uint8)} sample(s) of {width}x{height} in {done.seconds:.1f} s to {done.files.folder}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
