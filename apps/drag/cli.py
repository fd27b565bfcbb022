"""Drag-to-video without a browser: image + trajectories JSON -> video.

    python -m apps.drag.cli --image photo.jpg --trajectories drag.json --out out/video.mp4 \\
        [--backend warp|svd|svd-controlnet|svd-joint-flow] [--frames 14] [--fps 7] [--motion-bucket B] \\
        [--strength S] [--controlnet-scale 1.0] [--steps 25] [--seed 0] [--resize crop|pad] \\
        [--max-side 1024] [--camera zoom_in] [--engine objects|sheet] [--grow-px 0] \\
        [--object-mask 1=mask.png] [--depth depth.png] [--depth-white near|far] [--radius R] \\
        [--region-mask mask.png] [--flow-out out/flow.mp4] \\
        [--side-by-side out/sbs.mp4] [--gif] [--overwrite]  + settings flags (--svd-model, --device, ...; see --help)

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

--engine objects (default) moves the object under each drag's start and holds the background
(`core.engines.objects`; SAM segments when KINEMA_SAM_MODEL is set, GrabCut otherwise; --grow-px grows or
shrinks the objects; --object-mask N=PATH gives drag N's object as painted; --depth PATH, a greyscale depth
map of the image such as the joint app's 16-bit depth PNG, puts the nearer objects in front, white being
near unless --depth-white far); --engine sheet is the
whole-picture warp, shaped by --radius and --region-mask.

The job (`apps.drag.job`) is the app's: one request, one render, one run record. Beside the video,
`<out stem>.params.json` is that record (`apps.common.runs.RunRecord`): the command, every flag as
parsed, the resolved values (motion bucket, video size, ...) and the trajectories themselves, the
settings and the outputs; `apps.drag.job.request_from_record` redoes the run from it. Bad input or
missing weights print one line on stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm.auto import tqdm

from apps.common.cli import INTERRUPTED, Parser, add_overwrite_argument, sigterm_interrupts
from apps.drag.backends import RenderProgress
from apps.drag.job import DragOutputs, DragRequest, run
from apps.drag.params import DragParams
from core.config import Settings
from core.errors import InputError, ModelNotAvailable
from core.outputs import check_outputs

PROG = "python -m apps.drag.cli"
VIDEO_SUFFIXES = (".mp4", ".gif")
UNITS = {"warp": "frame", "svd": "step", "write": "video"}


class TqdmProgress:
    """Drives one tqdm bar per stage of a drag run (warp frames, denoising steps, videos written).

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
            self.bar = tqdm(
                total=event.total, desc=event.stage, unit=UNITS[event.stage], disable=self.disable
            )
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


# -- command line ----------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog=PROG, description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--image", required=True, type=Path, help="the picture to animate (png, jpg, ...)")
    parser.add_argument(
        "--trajectories", required=True, type=Path, help="trajectories JSON (Trajectories.to_json format)"
    )
    parser.add_argument("--region-mask", type=Path, default=None, help="motion brush image: white moves")
    parser.add_argument(
        "--object-mask",
        action="append",
        default=[],
        metavar="N=PATH",
        help="objects engine: drag N (1-based, the app's numbering) moves the white part of this image (at "
        "--image's size) instead of the object found under it; repeat for several drags",
    )
    parser.add_argument(
        "--depth",
        type=Path,
        default=None,
        help="objects engine: a greyscale 8/16-bit depth map at --image's size (the joint app's depth PNG); "
        "the nearer objects are drawn in front (default: the later drawn drag's)",
    )
    parser.add_argument("--out", required=True, type=Path, help="the video to write (.mp4 or .gif)")
    parser.add_argument(
        "--flow-out",
        type=Path,
        default=None,
        help="also write the flow video here (the warp's; svd-joint-flow: the generated one)",
    )
    parser.add_argument("--gif", action="store_true", help="also write a .gif beside --out")
    parser.add_argument(
        "--side-by-side",
        type=Path,
        default=None,
        help="also write the side by side here (trajectories | video | motion, .mp4 or .gif)",
    )
    add_overwrite_argument(parser)
    DragParams.add_arguments(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    Settings.add_arguments(parser)
    return parser


def object_masks_of(args: argparse.Namespace) -> tuple[tuple[int, Path], ...]:
    """The --object-mask flags as (drag index, path) pairs; InputError for one that is not N=PATH."""
    pairs = {}
    for flag in args.object_mask:
        number, _, path = flag.partition("=")
        if not (number.strip().isdigit() and int(number) >= 1 and path):
            raise InputError(f"--object-mask takes N=PATH with N a drag number from 1, got {flag!r}.")
        pairs[int(number) - 1] = Path(path)
    return tuple(sorted(pairs.items()))


def outputs_of(args: argparse.Namespace) -> DragOutputs:
    """Where the parsed flags say to write: --out, --flow-out, --side-by-side, a .gif beside --out, the record
    beside it.

    Raises InputError (before any work) when one of them would replace an input, another output or,
    without --overwrite, an existing file.
    """
    gif = args.out.with_suffix(".gif") if args.gif and args.out.suffix.lower() != ".gif" else None
    outputs = DragOutputs(
        video=args.out,
        record=args.out.with_name(args.out.stem + ".params.json"),
        flow=args.flow_out,
        gif=gif,
        side_by_side=args.side_by_side,
    )
    named = {
        "--out": outputs.video,
        "--flow-out": outputs.flow,
        "--gif": outputs.gif,
        "--side-by-side": outputs.side_by_side,
        "the run record": outputs.record,
    }
    inputs = {
        "--image": args.image,
        "--trajectories": args.trajectories,
        "--region-mask": args.region_mask,
        "--depth": args.depth,
    }
    inputs.update({f"--object-mask {index + 1}": path for index, path in object_masks_of(args)})
    check_outputs(
        [(flag, path) for flag, path in named.items() if path is not None],
        inputs,
        overwrite=args.overwrite,
        suffixes={"--out": VIDEO_SUFFIXES, "--flow-out": VIDEO_SUFFIXES, "--side-by-side": VIDEO_SUFFIXES},
    )
    return outputs


def run_cli(args: argparse.Namespace, argv: list[str]) -> DragOutputs:
    """Do what the parsed `argv` ask (the drag job, with tqdm bars); return where it wrote."""
    settings = Settings.from_args(args)
    outputs = outputs_of(args)
    if args.max_side < 64:
        raise InputError(f"--max-side must be at least 64 px, got {args.max_side}.")
    request = DragRequest(
        args.image,
        args.trajectories,
        DragParams.from_args(args),
        args.region_mask,
        object_masks_of(args),
        args.depth,
    )
    with TqdmProgress(disable=args.quiet) as progress:
        run(
            request,
            outputs,
            settings,
            action="cli",
            command=["python", "-m", "apps.drag.cli", *argv],
            front_end_arguments={k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            progress=progress,
        )
    return outputs


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    try:
        with sigterm_interrupts():
            outputs = run_cli(args, argv)
    except (InputError, ModelNotAvailable) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # e.g. an output folder that cannot be written
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; earlier outputs are unchanged.", file=sys.stderr)
        return INTERRUPTED
    for name, path in {**outputs.files(), "record": outputs.record}.items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
