"""Keyframe edit + inbetweening, headless: the keyframe app's job from the command line.

    python -m apps.keyframe.cli --video clip.mp4 --out out.mp4 \\
        [--keyframes uniform:8 | adaptive[:flow|appearance[:THRESHOLD]] | 0,8,16] \\
        [--edit cartoon --param levels=6 | --edit sd --prompt "a watercolour painting"] \\
        [--interp flow|crossfade|svd-trf|svd-lora]

Writes the result mp4 and a parameters JSON next to it (OUT with .json), plus a gif, an
original | result video and a zip of the keyframes when asked (--gif, --side-by-side, --keyframes-zip).
Limits come from the settings (KINEMA_MAX_FRAMES, KINEMA_MAX_IMAGE_SIDE, KINEMA_MAX_UPLOAD_MB): see
apps/keyframe/workflow.py. Bad input exits with status 2 and one line on stderr.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

from apps.keyframe import workflow
from core.config import Settings
from core.engines.edit import EDITS
from core.engines.interpolate import VideoMotion
from core.engines.keyframes import MODES, SIGNALS, Keyframe, select_keyframes
from core.errors import InputError, KinemaError
from core.flow import METHODS as FLOW_METHODS
from core.imaging import load_image

PROG = "python -m apps.keyframe.cli"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One line on stderr and status 2, like every other bad input."""
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
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
    io.add_argument(
        "--video", required=True, help="the video: mp4, webm, mov, mkv, avi, gif or a folder of frames"
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
        default=workflow.DEFAULT_WORKING_SIDE,
        help=f"longer side in px the job works at; larger videos are downscaled (default {workflow.DEFAULT_WORKING_SIDE})",
    )
    io.add_argument("--params", type=Path, default=None, help="parameters JSON (default: OUT with .json)")
    io.add_argument("--gif", type=Path, default=None, help="also write the result as a gif here")
    io.add_argument(
        "--side-by-side", type=Path, default=None, help="also write original | result (.mp4) here"
    )
    io.add_argument(
        "--keyframes-zip",
        type=Path,
        default=None,
        help="also write the keyframes (original and edited PNGs) here",
    )

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
        choices=[*EDITS, "sd"],
        help="a filter (no weights; see the list below) or 'sd' (Stable Diffusion over all keyframes at once)",
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
    edit.add_argument("--steps", type=int, default=30, help="sd: inference steps (default 30)")
    edit.add_argument("--seed", type=int, default=0, help="sd: random seed (default 0)")

    interp = parser.add_argument_group("inbetweening")
    interp.add_argument(
        "--interp", default="flow", choices=workflow.INTERP_BACKENDS, help="backend (default flow)"
    )
    interp.add_argument("--fps", type=float, default=None, help="output frame rate (default: the video's)")
    interp.add_argument(
        "--flow-method", default="dis", choices=FLOW_METHODS, help="flow: estimator (default dis)"
    )
    interp.add_argument(
        "--motion-bucket", type=int, default=127, help="svd: motion conditioning 0..255 (default 127)"
    )
    interp.add_argument("--interp-steps", type=int, default=25, help="svd: inference steps (default 25)")
    interp.add_argument("--interp-seed", type=int, default=0, help="svd: random seed (default 0)")
    interp.add_argument(
        "--decode-chunk-size", type=int, default=8, help="svd: frames the VAE decodes at once (default 8)"
    )
    Settings.add_arguments(parser)
    return parser


def choose_keyframes(
    spec: str, video: workflow.LoadedVideo, flow_method: str
) -> tuple[list[Keyframe], VideoMotion | None]:
    """Keyframes from a --keyframes spec; also returns the motion if it had to be estimated."""
    frames = video.frames_uint8
    mode, _, rest = spec.partition(":")
    if mode not in MODES or mode == "manual":
        return workflow.keyframes_from_text(spec, video.num_frames), None
    if mode == "uniform":
        every = rest or "8"
        if not every.isdigit():
            raise InputError(f"--keyframes uniform:N needs a whole number N, got {every!r}.")
        return select_keyframes(frames, "uniform", every=int(every)), None
    signal, _, threshold = rest.partition(":")
    signal = signal or "flow"
    if signal not in SIGNALS:
        raise InputError(f"--keyframes adaptive:SIGNAL takes one of {', '.join(SIGNALS)}, got {signal!r}.")
    try:
        value = float(threshold) if threshold else None
    except ValueError:
        raise InputError(f"--keyframes adaptive threshold must be a number, got {threshold!r}.") from None
    motion = workflow.motion_of(frames, flow_method, progress=True) if signal == "flow" else None
    keys = select_keyframes(
        frames,
        "adaptive",
        signal=signal,
        threshold=value,
        flows_px=None if motion is None else motion.forward_px,
    )
    return keys, motion


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


def run(args: argparse.Namespace, settings: Settings) -> workflow.OutputFiles:
    """The whole job; returns the files written. Raises InputError / ModelNotAvailable on bad input."""
    if args.out.suffix.lower() != ".mp4":
        raise InputError(f"--out must be an .mp4 file, got {args.out.name}.")
    edit_request = workflow.EditRequest(
        backend="sd" if args.edit == "sd" else "filter",
        filter=args.edit if args.edit != "sd" else "",
        filter_params=filter_params(args.edit, args.param, settings),
        prompt=args.prompt,
        negative_prompt=args.negative_prompt,
        strength=args.strength,
        guidance=args.guidance,
        steps=args.steps,
        seed=args.seed,
    )
    interp_request = workflow.InterpRequest(
        backend=args.interp,
        fps=args.fps,
        flow_method=args.flow_method,
        motion_bucket=args.motion_bucket,
        steps=args.interp_steps,
        seed=args.interp_seed,
        decode_chunk_size=args.decode_chunk_size,
    ).check()
    for note in workflow.backend_notes(interp_request, settings):
        print(note)
    if edit_request.backend == "filter":
        edit_request.check()  # bad filter parameters fail before any decoding
    timings: dict[str, float] = {}

    started = time.perf_counter()
    video = workflow.load_video(
        args.video, settings, start_s=args.start, end_s=args.end, working_side=args.working_size
    )
    timings["load"] = time.perf_counter() - started
    height, width = video.size_hw
    print(
        f"Loaded {video.num_frames} frames of {width}x{height} at {video.fps:.3g} fps from {video.source_name}."
    )
    for notice in video.notices:
        print(notice)

    keys, motion = choose_keyframes(args.keyframes, video, args.flow_method)
    indices = [k.index for k in keys]
    print(f"Keyframes: {workflow.format_indices(indices)}.")
    keyframe_prompts = workflow.parse_keyframe_prompts("\n".join(args.keyframe_prompt), indices)
    edit_request = dataclasses.replace(edit_request, keyframe_prompts=keyframe_prompts).check()

    started = time.perf_counter()
    edited = workflow.edit_keyframes(
        video.frames_uint8[indices], indices, edit_request, settings, progress=True
    )
    timings["edit"] = time.perf_counter() - started

    started = time.perf_counter()
    if interp_request.backend == "flow" and motion is None:
        motion = workflow.motion_of(video.frames_uint8, interp_request.flow_method, progress=True)
    result = workflow.inbetween(
        video.frames_uint8,
        indices,
        edited,
        interp_request,
        settings,
        fps=video.fps,
        motion=motion,
        progress=True,
    )
    timings["inbetween"] = time.perf_counter() - started

    fps = interp_request.fps or video.fps
    record = workflow.job_record(
        video, keys, dict.fromkeys(indices, edit_request.record()), interp_request, settings, fps, timings
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    files = workflow.write_outputs(
        args.out,
        result,
        video.frames_uint8,
        fps,
        indices,
        edited,
        record,
        gif=args.gif,
        side_by_side_mp4=args.side_by_side,
        keyframes_zip=args.keyframes_zip,
        params_json=args.params,
    )
    print(f"Wrote {result.shape[0]} frames at {fps:.3g} fps: {', '.join(str(p) for p in files.paths())}")
    return files


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_args(args)
        run(args, settings)
    except KinemaError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
