"""Keyframe edit + inbetweening, headless: the keyframe app's job from the command line.

    python -m apps.keyframe.cli --video clip.mp4 --out out.mp4 \\
        [--keyframes uniform:8 | adaptive[:flow|appearance[:THRESHOLD]] | 0,8,16] \\
        [--edit cartoon --param levels=6 | --edit sd --prompt "a watercolour painting"] \\
        [--interp flow|crossfade|svd-trf|svd-lora|flow+svd|flow+svd-lora]
    python -m apps.keyframe.cli --images a.png b.png c.png --out out.mp4 [--loop] [--frames-between 7] \\
        [--interp flow|crossfade|svd-trf|svd-lora|flow+svd|flow+svd-lora]

Writes the result mp4 and its run record next to it (OUT with .json: apps.common.runs.RunRecord, which
apps.keyframe.job.request_from_record redoes), plus a gif, an original | result video and a zip of the
keyframes when asked (--gif, --side-by-side, --keyframes-zip). Before any work the outputs are checked
(`core.outputs.check_outputs`): none may be an input or another output, and existing files are kept unless
--overwrite; each is written under a temporary name and moved into place when complete, so a failed or
killed run (SIGTERM) leaves the earlier outputs intact. Steps are capped by `core.config.LIMITS`.
Limits come from the settings (KINEMA_MAX_FRAMES, KINEMA_MAX_IMAGE_SIDE, KINEMA_MAX_UPLOAD_MB): see
apps/keyframe/video.py. Bad input exits with status 2 and one line on stderr.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from apps.common.cli import INTERRUPTED, Parser, add_overwrite_argument, limited, sigterm_interrupts
from apps.keyframe import job
from apps.keyframe.backends import EDIT_BACKENDS, INTERP_BACKENDS, EditRequest, InterpRequest
from apps.keyframe.keyframes import parse_keyframe_prompts
from apps.keyframe.sequence import DEFAULT_FRAMES_BETWEEN, SequenceRequest, SequenceResult, run_images
from apps.keyframe.video import DEFAULT_WORKING_SIDE
from core.config import Settings
from core.engines.edit import EDITS
from core.errors import InputError, KinemaError
from core.flow import METHODS as FLOW_METHODS
from core.imaging import load_image
from core.outputs import check_outputs

PROG = "python -m apps.keyframe.cli"


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog=PROG,
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Filters and their parameters:\n"
        + "\n".join(
            f"  {e.name}: {', '.join(f'{p.name} ({p.kind}, default {p.default})' for p in e.params) or 'none'}"
            for e in EDITS.values()
        ),
    )
    io = parser.add_argument_group("input and output")
    source = io.add_mutually_exclusive_group(required=True)
    source.add_argument("--video", help="the video: mp4, webm, mov, mkv, avi, gif or a folder of frames")
    source.add_argument(
        "--images",
        nargs="+",
        metavar="IMAGE",
        help="instead of a video: 2+ images of one size, inbetweened A -> B -> C in order with --interp "
        "(no edit step: the images are the keyframes)",
    )
    io.add_argument(
        "--loop", action="store_true", help="with --images: come back to the first image (A -> B -> A)"
    )
    io.add_argument(
        "--frames-between",
        type=int,
        default=DEFAULT_FRAMES_BETWEEN,
        help=f"with --images: frames made between neighbouring images (default {DEFAULT_FRAMES_BETWEEN})",
    )
    io.add_argument("--out", required=True, type=Path, help="the result video (.mp4)")
    io.add_argument(
        "--start", type=float, default=0.0, help="start of the part to use, in seconds (default 0)"
    )
    io.add_argument(
        "--end", type=float, default=None, help="end of the part to use, in seconds (default: the end)"
    )
    io.add_argument(
        "--working-size",
        type=int,
        default=DEFAULT_WORKING_SIDE,
        help=f"longer side in px the job works at; larger videos are downscaled (default {DEFAULT_WORKING_SIDE})",
    )
    io.add_argument(
        "--params", type=Path, default=None, help="the run record (.json; default: OUT with .json)"
    )
    io.add_argument("--gif", type=Path, default=None, help="also write the result as a gif here")
    io.add_argument(
        "--side-by-side", type=Path, default=None, help="also write original | result (.mp4) here"
    )
    io.add_argument(
        "--keyframes-zip",
        type=Path,
        default=None,
        help="also write the keyframes (original and edited PNGs) here (.zip)",
    )
    add_overwrite_argument(io)

    keys = parser.add_argument_group("keyframes")
    keys.add_argument(
        "--keyframes",
        default="uniform:8",
        help="uniform:N (every N frames), adaptive[:flow|appearance[:THRESHOLD]], or frame numbers 0,8,16 "
        "(default uniform:8)",
    )

    edit = parser.add_argument_group("edit")
    edit.add_argument(
        "--edit",
        default="cartoon",
        choices=[*EDITS, *(name for name in EDIT_BACKENDS if name != "filter")],
        help="a filter (no weights; see the list below) or a model backend: "
        + "; ".join(f"{name}: {b.label}" for name, b in EDIT_BACKENDS.items() if name != "filter"),
    )
    edit.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a filter parameter, repeatable (an image parameter takes a file path)",
    )
    edit.add_argument("--prompt", default="", help="sd: the edit, e.g. 'a watercolour painting'")
    edit.add_argument("--negative-prompt", default="", help="sd: what to avoid")
    edit.add_argument(
        "--keyframe-prompt",
        action="append",
        default=[],
        metavar="'FRAME: PROMPT'",
        help="sd: a prompt for one keyframe instead of --prompt, repeatable",
    )
    edit.add_argument(
        "--strength", type=float, default=0.6, help="sd: img2img strength in (0, 1] (default 0.6)"
    )
    edit.add_argument(
        "--guidance", type=float, default=7.5, help="sd: classifier-free guidance (default 7.5)"
    )
    edit.add_argument(
        "--steps", type=limited("edit_steps"), default=30, help="sd: inference steps (default 30)"
    )
    edit.add_argument("--seed", type=int, default=0, help="sd: random seed (default 0)")
    edit.add_argument(
        "--controlnet-scale",
        type=float,
        default=1.0,
        help="sd with --controlnet-model (KINEMA_CONTROLNET_MODEL): weight of the canny ControlNet that keeps "
        "the keyframes' edges, 0..2 (default 1; 0: off)",
    )

    interp = parser.add_argument_group("inbetweening")
    interp.add_argument(
        "--interp",
        default="flow",
        choices=list(INTERP_BACKENDS),
        help="backend (default flow): "
        + "; ".join(f"{name}: {b.label}" for name, b in INTERP_BACKENDS.items()),
    )
    interp.add_argument("--fps", type=float, default=None, help="output frame rate (default: the video's)")
    interp.add_argument(
        "--flow-method", default="dis", choices=FLOW_METHODS, help="flow: estimator (default dis)"
    )
    interp.add_argument(
        "--motion-bucket", type=int, default=127, help="svd: motion conditioning 0..255 (default 127)"
    )
    interp.add_argument(
        "--interp-steps", type=limited("interp_steps"), default=25, help="svd: inference steps (default 25)"
    )
    interp.add_argument("--interp-seed", type=int, default=0, help="svd: random seed (default 0)")
    interp.add_argument(
        "--noise-reinjection",
        type=limited("noise_reinjection"),
        default=0,
        help="svd: repeat each of the first half of the steps N times with fresh noise, so the fused paths "
        "of svd-trf settle into one video (default 0: off; each repeat costs a step)",
    )
    interp.add_argument(
        "--refine-strength",
        type=float,
        default=0.3,
        help="flow+svd, flow+svd-lora: how much SVD repaints the flow frames, in (0, 1]; it runs that share of "
        "the steps (default 0.3)",
    )
    interp.add_argument(
        "--decode-chunk-size",
        type=limited("decode_chunk_size"),
        default=8,
        help="svd: frames the VAE decodes at once (default 8)",
    )
    Settings.add_arguments(parser)
    return parser


def filter_params(edit: str, pairs: list[str], settings: Settings) -> dict[str, Any]:
    """Typed filter parameters from NAME=VALUE strings (values checked by the edit registry later)."""
    if edit == "sd":
        if pairs:
            raise InputError(
                "--param sets filter parameters; the sd edit takes --prompt, --strength and so on."
            )
        return {}
    params = {p.name: p for p in EDITS[edit].params}
    values: dict[str, Any] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep:
            raise InputError(f"--param takes NAME=VALUE, got {pair!r}.")
        if name not in params:
            known = ", ".join(params) or "none"
            raise InputError(f"The {edit} filter has no parameter {name!r}; its parameters: {known}.")
        kind = params[name].kind
        if kind == "image":
            values[name] = load_image(raw, max_side=settings.max_image_side)
        elif kind == "bool":
            if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise InputError(f"--param {name} takes true or false, got {raw!r}.")
            values[name] = raw.lower() in ("true", "1", "yes")
        else:
            try:
                values[name] = int(raw) if kind == "int" else float(raw)
            except ValueError:
                raise InputError(
                    f"--param {name} takes {'a whole number' if kind == 'int' else 'a number'}, got {raw!r}."
                ) from None
    return values


def request_from_args(args: argparse.Namespace, settings: Settings) -> job.KeyframeRequest:
    """The job's request from the parsed flags. Raises InputError for bad filter parameters or prompts."""
    edit = EditRequest(
        backend="filter" if args.edit in EDITS else args.edit,
        filter=args.edit if args.edit in EDITS else "",
        filter_params=filter_params(args.edit, args.param, settings),
        prompt=args.prompt,
        negative_prompt=args.negative_prompt,
        keyframe_prompts=parse_keyframe_prompts("\n".join(args.keyframe_prompt), None),
        strength=args.strength,
        guidance=args.guidance,
        steps=args.steps,
        seed=args.seed,
        controlnet_scale=args.controlnet_scale,
    )
    return job.KeyframeRequest(
        video=args.video,
        start_s=args.start,
        end_s=args.end,
        working_side=args.working_size,
        keyframes=args.keyframes,
        edit=edit,
        interp=interp_from_args(args),
    )


def interp_from_args(args: argparse.Namespace) -> InterpRequest:
    """The inbetweening request from the parsed flags."""
    return InterpRequest(
        backend=args.interp,
        fps=args.fps,
        flow_method=args.flow_method,
        motion_bucket=args.motion_bucket,
        steps=args.interp_steps,
        seed=args.interp_seed,
        decode_chunk_size=args.decode_chunk_size,
        noise_reinjection=args.noise_reinjection,
        refine_strength=args.refine_strength,
    )


def output_files(args: argparse.Namespace) -> job.OutputFiles:
    """Where the parsed flags say to write. Raises InputError (before any work) when an output would
    replace an input, another output or, without --overwrite, an existing file."""
    files = job.OutputFiles(
        args.out,
        args.params or args.out.with_suffix(".json"),
        args.gif,
        args.side_by_side,
        args.keyframes_zip,
    )
    named = {
        "--out": files.video_mp4,
        "--params" if args.params else "the run record": files.params_json,
        "--gif": files.video_gif,
        "--side-by-side": files.side_by_side_mp4,
        "--keyframes-zip": files.keyframes_zip,
    }
    images = {f"--param {p.partition('=')[0]}": Path(p.partition("=")[2]) for p in args.param}
    # A filter's image parameters are saved beside the record, so that the record redoes the run.
    copies = [
        (
            f"the copy of --param {param.name}",
            job.filter_image_path(files.params_json.parent, args.edit, param.name),
        )
        for param in (EDITS[args.edit].params if args.edit in EDITS else ())
        if param.kind == "image" and f"--param {param.name}" in images
    ]
    sources = {"--video": Path(args.video)} if args.video else {f"--images {p}": Path(p) for p in args.images}
    check_outputs(
        [(flag, path) for flag, path in named.items() if path is not None] + copies,
        {**sources, **{flag: path for flag, path in images.items() if path.is_file()}},
        overwrite=args.overwrite,
        suffixes={
            "--out": (".mp4",),
            "--params": (".json",),
            "--gif": (".gif",),
            "--side-by-side": (".mp4",),
            "--keyframes-zip": (".zip",),
        },
    )
    return files


def run(args: argparse.Namespace, settings: Settings, argv: list[str]) -> job.JobResult | SequenceResult:
    """The whole job (the video's, or with --images the chain's); returns what it wrote. Raises InputError / ModelNotAvailable on bad input."""
    if args.images and args.side_by_side:
        raise InputError("--side-by-side shows a video beside its result: it needs --video, not --images.")
    if args.video and (args.loop or args.frames_between != DEFAULT_FRAMES_BETWEEN):
        raise InputError("--loop and --frames-between chain images: they need --images, not --video.")
    files = output_files(args)
    command = ["python", "-m", "apps.keyframe.cli", *argv]
    if args.images:
        return run_images(
            SequenceRequest(
                tuple(args.images), args.frames_between, args.loop, args.working_size, interp_from_args(args)
            ),
            settings,
            files,
            command=command,
            say=print,
        )
    return job.run(
        request_from_args(args, settings),
        settings,
        files,
        command=command,
        say=print,
    )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    try:
        with sigterm_interrupts():
            settings = Settings.from_args(args)
            run(args, settings, argv)
    except KinemaError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; earlier outputs are unchanged.", file=sys.stderr)
        return INTERRUPTED
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
