"""Keyframes of the job: the --keyframes spec, hand-edited lists and per-keyframe prompts."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np

from core.engines.interpolate import VideoMotion, estimate_video_motion
from core.engines.keyframes import MODES, SIGNALS, Keyframe, manual_keyframes, select_keyframes
from core.errors import InputError


def optional_number(value: str | float | None, what: str) -> float | None:
    """A number field where empty means "the default": None for empty, else the number (InputError naming
    `what` if it is not one). The app's such fields are text boxes, which show empty as empty, not 0."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        return float(value)
    except ValueError:
        raise InputError(f"{what} must be a number or empty, got {value!r}.") from None


def parse_indices(text: str) -> list[int]:
    """Frame numbers from "0, 8, 16" (commas and/or spaces); InputError for anything else."""
    parts = [p for p in re.split(r"[,\s]+", (text or "").strip()) if p]
    if not parts:
        raise InputError("List at least one keyframe (frame numbers separated by commas, e.g. 0, 8, 16).")
    bad = [p for p in parts if not re.fullmatch(r"\d+", p)]
    if bad:
        raise InputError(f"Keyframes are frame numbers separated by commas; {bad[0]!r} is not one.")
    return [int(p) for p in parts]


def keyframes_from_text(text: str, n_frames: int, suggested: Sequence[Keyframe] = ()) -> list[Keyframe]:
    """The keyframes a user listed, sorted; those also in `suggested` keep its reason."""
    reasons = {k.index: k.reason for k in suggested}
    keys = manual_keyframes(n_frames, parse_indices(text))
    return [Keyframe(k.index, reasons.get(k.index, k.reason)) for k in keys]


def format_indices(indices: Sequence[int]) -> str:
    return ", ".join(str(int(i)) for i in indices)


def parse_keyframe_prompts(text: str, keyframe_indices: Sequence[int] | None) -> dict[int, str]:
    """Per-keyframe prompt overrides, one "FRAME: prompt" per line (blank lines are skipped).

    Raises InputError for a line without "FRAME:", a frame listed twice, or (unless `keyframe_indices` is
    None: the keyframes are not known yet) a frame that is not a keyframe.
    """
    prompts: dict[int, str] = {}
    for number, line in enumerate((text or "").splitlines(), start=1):
        if not line.strip():
            continue
        match = re.fullmatch(r"\s*(\d+)\s*:\s*(.*?)\s*", line)
        if match is None:
            raise InputError(
                f'Per-keyframe prompts are lines "FRAME: prompt"; line {number} is {line.strip()!r}.'
            )
        index, prompt = int(match.group(1)), match.group(2)
        if keyframe_indices is not None:
            check_keyframe_prompts({index: prompt}, keyframe_indices)
        if index in prompts:
            raise InputError(f"Frame {index} has two per-keyframe prompts; keep one.")
        prompts[index] = prompt
    return prompts


def check_keyframe_prompts(prompts: Mapping[int, str], keyframe_indices: Sequence[int]) -> None:
    """InputError for a per-keyframe prompt of a frame that is not a keyframe."""
    for index in prompts:
        if index not in keyframe_indices:
            raise InputError(
                f"Frame {index} has a prompt but is not a keyframe (keyframes: {format_indices(keyframe_indices)})."
            )


def motion_of(frames_uint8: np.ndarray, method: str, progress: bool = False) -> VideoMotion:
    """`estimate_video_motion` (both directions and occlusions), computed once per video and method."""
    return estimate_video_motion(frames_uint8, method, progress)


def choose_keyframes(
    spec: str,
    frames_uint8: np.ndarray,
    flow_method: str,
    suggested: Sequence[Keyframe] = (),
) -> tuple[list[Keyframe], VideoMotion | None]:
    """Keyframes of (T,H,W,3) uint8 frames from a spec; also returns the motion if it had to be estimated.

    spec: "uniform:N" (every N frames), "adaptive[:flow|appearance[:THRESHOLD]]", or frame numbers
    "0, 8, 16" (those also in `suggested` keep its reason). The adaptive flow signal estimates the motion
    with `flow_method`.
    """
    mode, _, rest = spec.partition(":")
    if mode not in MODES or mode == "manual":
        return keyframes_from_text(spec, frames_uint8.shape[0], suggested), None
    if mode == "uniform":
        every = rest or "8"
        if not every.isdigit():
            raise InputError(f"--keyframes uniform:N needs a whole number N, got {every!r}.")
        return select_keyframes(frames_uint8, "uniform", every=int(every)), None
    signal, _, threshold = rest.partition(":")
    signal = signal or "flow"
    if signal not in SIGNALS:
        raise InputError(f"--keyframes adaptive:SIGNAL takes one of {', '.join(SIGNALS)}, got {signal!r}.")
    try:
        value = float(threshold) if threshold else None
    except ValueError:
        raise InputError(f"--keyframes adaptive threshold must be a number, got {threshold!r}.") from None
    motion = motion_of(frames_uint8, flow_method, progress=True) if signal == "flow" else None
    keys = select_keyframes(
        frames_uint8,
        "adaptive",
        signal=signal,
        threshold=value,
        flows_px=None if motion is None else motion.forward_px,
    )
    return keys, motion


def selected_keyframe(keys: list[Keyframe], frame: float | None) -> int:
    """The keyframe the user selected (a frame number from the UI); InputError when none of `keys` is."""
    indices = [k.index for k in keys]
    if frame is None or not float(frame).is_integer() or int(frame) not in indices:
        raise InputError(
            f"Select a keyframe first (click it in the keyframes; keyframes: {format_indices(indices)})."
        )
    return int(frame)
