"""Settings: one object for model locations, device, dtype, limits and the output folder.

Every field reads an environment variable named ``KINEMA_<FIELD>`` (e.g. ``KINEMA_SD_MODEL``) and can
be overridden from the command line with ``--<field-with-dashes>`` (e.g. ``--sd-model``). Precedence:
CLI flag > environment variable > default.

Model fields take a hub id (``stable-diffusion-v1-5/stable-diffusion-v1-5``), a local folder written by
``save_pretrained``, or ``tiny``: deterministic random-weight tiny models built offline (for tests and
for machines without weights; outputs are noise-like, but every code path runs). ``mini`` names the toy
models ``make prove`` trains from scratch on synthetic 64 px scenes (``assets/models/mini/``): the preset for
``sd_model`` / ``svd_model``, and for the trained-weights fields (:data:`MINI_WEIGHTS`) the folder of that
trainer's mini run, which the settings hold from then on.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Literal

from core.errors import InputError

ENV_PREFIX = "KINEMA_"

Device = Literal["auto", "cuda", "mps", "cpu"]
Dtype = Literal["auto", "float16", "bfloat16", "float32"]
Offload = Literal["none", "model", "sequential"]
# Trained-weights settings -> the trainer whose mini run `mini` names (assets/models/mini/TRAINER).
MINI_WEIGHTS = {
    "svd_controlnet_model": "svd_flow_controlnet",
    "svd_joint_flow_model": "svd_joint_flow",
    "joint_weights": "joint_lora",
    "svd_interp_lora": "svd_interp_lora",
}


@dataclass(frozen=True)
class Limit:
    """An inclusive range of one request value; `what` names the value in messages ("SD edit steps")."""

    low: float
    high: float
    what: str
    whole: bool = True  # a whole number (steps, sizes) rather than any number (guidance)

    def check(self, value: object, name: str | None = None) -> int | float:
        """`value` as a number in [low, high]; InputError naming `name` (default: `what`) otherwise.
        Integral floats pass as whole numbers (UI number fields send floats)."""
        number = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        if not number or (self.whole and value != int(value)) or not self.low <= value <= self.high:
            kind, low, high = (
                ("a whole number", f"{self.low:.0f}", f"{self.high:.0f}")
                if self.whole
                else ("a number", f"{self.low:g}", f"{self.high:g}")
            )
            raise InputError(f"{name or self.what} must be {kind} from {low} to {high}, got {value!r}.")
        return int(value) if self.whole else float(value)


# The one table of request limits: the apps' widgets show these ranges, the jobs and CLIs refuse values
# beyond them. Limits a deployment sets (max_frames, max_image_side) are Settings fields; see Settings.limit.
LIMITS = MappingProxyType(
    {
        "drag_steps": Limit(1, 50, "SVD denoising steps"),
        "edit_steps": Limit(1, 100, "SD edit steps"),
        "interp_steps": Limit(1, 100, "SVD inbetweening steps"),
        "decode_chunk_size": Limit(1, 25, "Decode chunk size"),
        "noise_reinjection": Limit(0, 8, "Noise re-injection repeats"),  # each repeat costs a step more
        "joint_steps": Limit(1, 150, "Steps"),
        "joint_guidance": Limit(0.0, 30.0, "Guidance", whole=False),
        "joint_batch": Limit(1, 8, "Batch size"),
        "joint_max_points": Limit(1, 1_000_000, "Max points"),
        "side": Limit(64, 2048, "Side"),  # any generated or working image side, px
    }
)


@dataclass(frozen=True)
class Settings:
    """Process-wide configuration. Build it with :meth:`from_env` or :meth:`from_args`."""

    sd_model: str = field(
        default="stable-diffusion-v1-5/stable-diffusion-v1-5",
        metadata={"help": "Stable Diffusion 1.5 weights: hub id, local folder, 'tiny' or 'mini'."},
    )
    svd_model: str = field(
        default="stabilityai/stable-video-diffusion-img2vid-xt",
        metadata={"help": "Stable Video Diffusion weights: hub id, local folder, 'tiny' or 'mini'."},
    )
    controlnet_model: str = field(
        default="", metadata={"help": "Optional ControlNet weights (hub id or local folder)."}
    )
    svd_controlnet_model: str = field(
        default="",
        metadata={
            "help": "Flow ControlNet for SVD (folder written by core.training.svd_flow_controlnet, 'tiny' or 'mini'); "
            "empty: the drag app's ControlNet backend is not offered."
        },
    )
    svd_joint_flow_model: str = field(
        default="",
        metadata={
            "help": "Joint video+flow weights for SVD (folder written by core.training.svd_joint_flow, 'tiny' or "
            "'mini'); empty: the drag app's experimental joint-flow backend is not offered."
        },
    )
    joint_weights: str = field(
        default="",
        metadata={
            "help": "Joint depth+image weights: a folder written by core.training.joint_lora (or a checkpoint-N "
            "in it), a folder of such folders, or 'mini'; empty: the joint-depth app's patch is untrained."
        },
    )
    svd_interp_lora: str = field(
        default="",
        metadata={
            "help": "SVD head+tail inbetweening LoRA (folder or .safetensors written by "
            "core.training.svd_interp_lora, or 'mini'); empty: the keyframe app's svd-lora backend runs stock SVD "
            "and its flow+svd-lora backend is not offered."
        },
    )
    sam_model: str = field(
        default="",
        metadata={
            "help": "Optional SAM segmenter for the object-aware drags (transformers' SamModel: a hub id such "
            "as facebook/sam-vit-base, a folder with its processor config, or 'tiny'); empty: GrabCut."
        },
    )
    device: Device = field(default="auto", metadata={"help": "auto (cuda > mps > cpu), cuda, mps or cpu."})
    dtype: Dtype = field(default="auto", metadata={"help": "auto (float16 on cuda, float32 elsewhere)."})
    offload: Offload = field(
        default="none", metadata={"help": "CPU offload: none, model (per component) or sequential."}
    )
    low_vram: bool = field(
        default=False,
        metadata={
            "help": "Low-VRAM mode for GPUs with 8 GB: model offload, UNet forward chunking and smaller VAE "
            "chunks (slower)."
        },
    )
    output_dir: Path = field(default=Path("outputs"), metadata={"help": "Where results are written."})
    max_image_side: int = field(default=2048, metadata={"help": "Largest accepted image side in pixels."})
    max_frames: int = field(default=64, metadata={"help": "Largest number of frames a request may ask for."})
    max_upload_mb: int = field(default=200, metadata={"help": "Largest accepted upload in MiB."})

    # -- construction ------------------------------------------------------------------------------

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: object) -> Settings:
        """Read ``KINEMA_*`` variables (unset ones keep their defaults), then apply ``overrides``."""
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for f in fields(cls):
            raw = environ.get(ENV_PREFIX + f.name.upper())
            if raw is not None and raw != "":
                values[f.name] = raw
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**{k: _coerce(k, v) for k, v in values.items()})

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """Add one ``--flag`` per field (default None, so unset flags fall back to env/defaults)."""
        group = parser.add_argument_group("settings (also KINEMA_* environment variables)")
        for f in fields(cls):
            env = ENV_PREFIX + f.name.upper()
            # A switch for a bool (--low-vram), a value for the rest; unset stays None either way.
            kind = {"action": "store_const", "const": True} if isinstance(f.default, bool) else {}
            group.add_argument(
                "--" + f.name.replace("_", "-"),
                dest=f.name,
                default=None,
                help=f"{f.metadata['help']} [env {env}; default {f.default}]",
                **kind,
            )

    @classmethod
    def from_args(cls, args: argparse.Namespace, environ: dict[str, str] | None = None) -> Settings:
        """Settings from parsed CLI args (see :meth:`add_arguments`) on top of the environment."""
        return cls.from_env(environ, **{f.name: getattr(args, f.name, None) for f in fields(cls)})

    def replace(self, **changes: object) -> Settings:
        return dataclasses.replace(self, **{k: _coerce(k, v) for k, v in changes.items()})

    def __post_init__(self) -> None:
        for name, allowed in (("device", Device), ("dtype", Dtype), ("offload", Offload)):
            value = getattr(self, name)
            if value not in allowed.__args__:
                raise InputError(
                    f"Setting {name}={value!r} is not valid; use one of {', '.join(allowed.__args__)} "
                    f"({ENV_PREFIX}{name.upper()} or --{name})."
                )
        for name in ("max_image_side", "max_frames", "max_upload_mb"):
            if getattr(self, name) <= 0:
                raise InputError(f"Setting {name} must be positive, got {getattr(self, name)}.")
        from core.models.presets import MINI, MINI_FOLDER  # here: core.models imports this module

        for name, trainer in MINI_WEIGHTS.items():
            if getattr(self, name) == MINI:
                object.__setattr__(self, name, str(MINI_FOLDER / trainer))

    # -- derived values ----------------------------------------------------------------------------

    def resolved_device(self) -> str:
        """The torch device to use: the configured one, or cuda > mps > cpu when 'auto'."""
        import torch

        if self.device != "auto":
            return self.device
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"

    def resolved_dtype(self):
        """The torch dtype: the configured one, or float16 on cuda and float32 elsewhere when 'auto'."""
        import torch

        if self.dtype == "auto":
            return torch.float16 if self.resolved_device() == "cuda" else torch.float32
        return getattr(torch, self.dtype)

    def limit(self, name: str) -> Limit:
        """The limit `name` of :data:`LIMITS`; "side" capped by this deployment's ``max_image_side``."""
        limit = LIMITS[name]
        if name == "side":
            return dataclasses.replace(limit, high=min(limit.high, self.max_image_side))
        return limit

    @property
    def max_upload_bytes(self) -> int:
        return self.max_upload_mb * 1024 * 1024


def _coerce(name: str, value: object) -> object:
    """Convert a string from the environment or the CLI to the field's type."""
    if not isinstance(value, str):
        return value
    kind = {f.name: f.default for f in fields(Settings)}[name]
    if isinstance(kind, bool):
        return value.lower() in ("1", "true", "yes", "on")
    if isinstance(kind, int):
        try:
            return int(value)
        except ValueError:
            raise InputError(
                f"Setting {name} must be an integer, got {value!r} ({ENV_PREFIX}{name.upper()})."
            ) from None
    if isinstance(kind, Path):
        return Path(value).expanduser()
    return value
