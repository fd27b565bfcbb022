"""The drag parameter set, spelled once: `DragParams`, whose field metadata drives the CLI flags, the
app's widgets and the run record (as `core.config.Settings` drives env variables and flags).

Fields are named like the CLI flags (``max_side`` is ``--max-side``); the run record's ``arguments``
use the same names. Each field's metadata:

    help        the CLI help text (argparse appends nothing: the text says the default when it matters)
    label       the app's widget label (none: the app labels it itself: strength, per backend)
    ui          (low, high, step) of the app's slider or number input
    limit       the Settings field that caps the value in the app (frames: ``max_frames``)
    table       the entry of ``core.config.LIMITS`` that bounds the value: the slider's range and the
                CLI flag's check (steps)
    choices     the allowed values (argparse choices; the app's options)
    options     the app's options where the CLI takes any value (the working sizes)
    ui_default  the app's starting value where it differs from the CLI default (the working size)
    mini        the app's starting value when the SVD model is ``mini`` (64 px, 8 frames at fps 8: what the
                mini SVD was trained on; fewer steps)

The ranges under ``ui`` are the widgets' limits, not checks: the engines check values
(`apps.drag.backends.render`, `core.engines.warp.animate`) with one message for both front ends.
"""

from __future__ import annotations

import argparse
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from apps.common.cli import limited
from apps.common.examples import MINI_STEPS
from apps.drag.backends import BACKENDS, ENGINES
from core.config import LIMITS
from core.engines.warp import CAMERA_PRESETS, DEFAULT_FRAMES
from core.errors import InputError
from core.eval.learning import MINI_FPS, MINI_FRAMES, MINI_SIDE

# The app's working sizes (long side, px); the CLI takes any --max-side of at least 64.
WORKING_SIDES = (64, 128, 256, 384, 512, 768, 1024)
# What a record written before a field existed ran with: those runs redo exactly.
RECORD_FALLBACKS = {"engine": "sheet", "grow_px": 0, "depth_white": "near"}


def _param(default: Any, help: str, label: str = "", **ui: Any) -> Any:
    return field(default=default, metadata={"help": help, "label": label, **ui})


@dataclass(frozen=True)
class DragParams:
    """Every choice behind one drag run except the inputs (see `apps.drag.job.DragRequest`)."""

    backend: str = _param(
        "warp",
        "warp (no weights), svd, svd-controlnet or svd-joint-flow (experimental); see above",
        "Backend",
        choices=tuple(BACKENDS),
    )
    engine: str = _param(
        "objects",
        "what a drag moves: objects (the object under its start, rigidly; the background holds) or sheet "
        "(the whole picture, as a smooth field: today's warp; --radius and --region-mask apply to it) "
        "(default objects)",
        "Drags move",
        choices=ENGINES,
    )
    grow_px: int = _param(
        0,
        "objects engine: grow (or, negative, shrink) each object's mask by this many px (default 0)",
        "Grow / shrink the objects (px)",
        ui=(-30, 30, 1),
    )
    depth_white: str = _param(
        "near",
        "objects engine, with a depth map: what its white means, near (a disparity map, as the joint app "
        "writes) or far (a depth map) (default near)",
        "White in the depth map is",
        choices=("near", "far"),
    )
    frames: int = _param(
        DEFAULT_FRAMES,
        f"number of frames (default {DEFAULT_FRAMES})",
        "Frames",
        ui=(2, None, 1),
        limit="max_frames",
        mini=MINI_FRAMES,
    )
    fps: int = _param(
        7,
        "frame rate of the video and SVD's fps (default 7)",
        "Frames per second",
        ui=(1, 30, 1),
        mini=MINI_FPS,
    )
    motion_bucket: int | None = _param(
        None, "SVD motion_bucket_id (default: from the trajectories)", "Motion bucket", ui=(1, 255, 1)
    )
    strength: float | None = _param(
        None,
        "svd, svd-controlnet: how far SVD may depart from the warp, 0..1 (default 0.4 for svd, "
        "1 for svd-controlnet: the ControlNet alone)",
        # The label is the backend's (`Backend.strength_label`): it means something else per backend.
        ui=(0.0, 1.0, 0.05),
    )
    steps: int = _param(
        25,
        "svd: denoising steps of the full schedule (25)",
        "Steps",
        ui=(LIMITS["drag_steps"].low, LIMITS["drag_steps"].high, 1),
        table="drag_steps",
        mini=MINI_STEPS,
    )
    controlnet_scale: float = _param(
        1.0, "svd-controlnet: conditioning scale (1.0)", "ControlNet scale", ui=(0.0, 2.0, 0.05)
    )
    noise_aug: float = _param(
        0.02, "svd: noise_aug_strength (0.02)", "Noise augmentation", ui=(0.0, 0.3, 0.01)
    )
    seed: int = _param(0, "svd: random seed (0)", "Seed", ui=(0, 2**31 - 1, 1))
    resize: str = _param("crop", "fit to multiples of 64 by crop or pad", "Resize", choices=("crop", "pad"))
    max_side: int = _param(
        1024,
        "longest side of the video in px (1024)",
        "Working size (long side, px)",
        options=WORKING_SIDES,
        ui_default=512,
        limit="max_image_side",
        mini=MINI_SIDE,
    )
    camera: str = _param(
        "none", "camera move added to the drags", "Camera move", choices=("none", *CAMERA_PRESETS)
    )
    radius: float | None = _param(
        None,
        "sheet engine: smallest reach of a drag in px (default 0.1 x the shorter side)",
        "Reach (px)",
        ui=(4, 512, 1),
    )

    # -- the CLI -----------------------------------------------------------------------------------

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser, names: tuple[str, ...] | None = None) -> None:
        """One ``--flag`` per field (those in `names`; default all), typed from the annotation, with the
        field's default and choices."""
        hints = typing.get_type_hints(cls)
        for f in fields(cls):
            if names is not None and f.name not in names:
                continue
            options: dict[str, Any] = {"default": f.default, "help": f.metadata["help"]}
            if "choices" in f.metadata:
                options["choices"] = list(f.metadata["choices"])
            elif "table" in f.metadata:
                options["type"] = limited(f.metadata["table"])
            else:
                options["type"] = _value_type(hints[f.name])
            parser.add_argument("--" + f.name.replace("_", "-"), dest=f.name, **options)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> DragParams:
        return cls(**{f.name: getattr(args, f.name) for f in fields(cls)})

    # -- the record --------------------------------------------------------------------------------

    def to_arguments(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_arguments(cls, arguments: dict[str, Any], source: str = "the run record") -> DragParams:
        """The parameters a record's ``arguments`` name (other keys are the inputs or front-end options);
        a field added since the record was written takes `RECORD_FALLBACKS` (what the run used)."""
        arguments = {**RECORD_FALLBACKS, **arguments}
        missing = [f.name for f in fields(cls) if f.name not in arguments]
        if missing:
            raise InputError(f"{source} is damaged: its arguments lack {', '.join(missing)}.")
        return cls(**{f.name: arguments[f.name] for f in fields(cls)})

    # -- the app -----------------------------------------------------------------------------------

    @classmethod
    def widget(cls, name: str, mini: bool = False) -> Widget:
        """What the app's widget for field `name` shows: label, limits, start value, choices (or options).
        `mini`: the start value for the mini SVD where it has its own."""
        f = {f.name: f for f in fields(cls)}[name]
        low, high, step = f.metadata.get("ui", (None, None, None))
        default = f.metadata.get("ui_default", f.default)
        return Widget(
            label=f.metadata["label"],
            help=f.metadata["help"],
            low=low,
            high=high,
            step=step,
            default=f.metadata.get("mini", default) if mini else default,
            choices=f.metadata.get("choices", f.metadata.get("options")),
            limit=f.metadata.get("limit"),
        )


@dataclass(frozen=True)
class Widget:
    """One parameter as the app shows it (see the module docstring for where each value comes from)."""

    label: str
    help: str
    low: Any
    high: Any
    step: Any
    default: Any
    choices: tuple | None
    limit: str | None


def _value_type(hint: Any) -> type:
    """int for ``int`` and ``int | None``, and so on."""
    if isinstance(hint, types.UnionType):
        (hint,) = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    return hint
