"""Optical flow <-> RGB image encoding, so that an image/video diffusion model can generate flow.

The encoding (version "signed-sqrt-v1")
    A flow field (H,W,2) in px becomes an RGB image (H,W,3) in [-1,1], the range SD / SVD VAEs take:

        channel 0 = compand(dx / scale_px)
        channel 1 = compand(dy / scale_px)
        channel 2 = 0                                  (reserved: mid grey, ignored by the decoder)
        compand(a) = sign(a) * sqrt(min(|a|, 1))

    The signed square root spends the image's levels where flow mostly is: near zero. One step of
    the image value v is worth 2 |v| scale_px px, so a uint8 step (2/255 in v) costs at most
    ~2 * scale_px / 255 px at full scale and (1/255)^2 * scale_px px at rest, against a constant
    scale_px / 255 for a linear map. Components beyond +-scale_px clip to +-scale_px (each component
    clips on its own, so a clipped vector keeps the sign of each component, not its direction).
    Decoding squares back: flow = sign(v) * v^2 * scale_px, the exact inverse on |d| <= scale_px;
    images outside [-1,1] (a VAE may overshoot) are clamped first, and NaN decodes to zero motion.

    Why the third channel is a constant and not, say, the magnitude: a redundant channel only helps
    if the decoder fuses it with the other two, and whether that beats plain decoding depends on the
    VAE's error statistics, which we cannot measure without the real weights. A constant keeps the
    decoder exact and simple and lets the VAE spend nothing on that channel. The decoder ignores it,
    so a later version may use it without changing decode of channels 0 and 1.

The scale
    `scale_px` should be relative to the frame size: a LoRA trained with +-16 px at 512 px width
    sees +-32 px motions at 1024 px. `FlowEncoding` stores `scale_of_width` (scale_px / width) and
    gives `scale_px(width)` for any width; it is saved as `flow_encoding.json` next to a flow LoRA.

The frames of a flow video
    A model encodes and generates a T-frame clip's flow as a T-frame flow video (frame 0 zero, frame
    t+1 the motion t -> t+1), the layout `core.flow` defines beside its flow-index convention, with
    `core.flow.flows_to_video` / `video_to_flows` to convert. `core.trajectory.sparse_flow` has the
    same layout, so a user's sparse flow and a generated flow video line up frame for frame.

Round-trip errors: `python -m core.eval.flow_encoding` prints the measured table.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

from core.errors import InputError
from core.imaging import signed_to_uint8, uint8_to_signed

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)

ENCODING_NAME = "signed-sqrt-v1"
FLOW_ENCODING_FILE = "flow_encoding.json"


def _check_scale(scale_px: float) -> float:
    if isinstance(scale_px, bool) or not isinstance(scale_px, int | float) or not (0 < scale_px < math.inf):
        raise InputError(f"The flow scale must be a positive number of pixels, got {scale_px!r}.")
    return float(scale_px)


def _check_channels(x: np.ndarray | torch.Tensor, channels: int, what: str) -> None:
    if not isinstance(x, np.ndarray | torch.Tensor):
        raise InputError(f"{what} must be a numpy array or torch tensor, got {type(x).__name__}.")
    if x.ndim < 1 or x.shape[-1] != channels:
        raise InputError(f"{what} must have shape (...,H,W,{channels}), got {tuple(x.shape)}.")


def _float32(x: ArrayT) -> ArrayT:
    return x.to(torch.float32) if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float32)


def encode_flow(flows_px: ArrayT, scale_px: float) -> ArrayT:
    """Flow in px -> RGB image in [-1,1] (see the module docstring).

    Args:
        flows_px: (...,H,W,2) float (dx, dy) in px, finite; numpy or torch.
        scale_px: the flow component (px) that maps to +-1; larger components clip.

    Returns:
        (...,H,W,3) float32 in [-1,1], the same kind (numpy / torch, device) as the input.
    """
    _check_channels(flows_px, 2, "flows_px")
    scale_px = _check_scale(scale_px)
    flows = _float32(flows_px)
    # numpy computes in float64; torch stays in float32 (it may live on a device without float64).
    if isinstance(flows, torch.Tensor):
        if not bool(torch.isfinite(flows).all()):
            raise InputError("flows_px contains NaN or infinite values; mask them out before encoding.")
        ratio = flows / scale_px
        coded = torch.sign(ratio) * torch.sqrt(ratio.abs().clamp(max=1.0))
        return torch.cat([coded, torch.zeros_like(coded[..., :1])], dim=-1)
    if not np.all(np.isfinite(flows)):
        raise InputError("flows_px contains NaN or infinite values; mask them out before encoding.")
    ratio = flows.astype(np.float64) / scale_px
    coded = np.sign(ratio) * np.sqrt(np.minimum(np.abs(ratio), 1.0))
    return np.concatenate([coded, np.zeros_like(coded[..., :1])], axis=-1).astype(np.float32)


def decode_flow(images: ArrayT, scale_px: float) -> ArrayT:
    """RGB image in [-1,1] -> flow in px, the inverse of `encode_flow` (channel 2 ignored).

    Args:
        images: (...,H,W,3) float in [-1,1] (e.g. a VAE decode moved channel-last); values outside
            are clamped, NaN decodes to 0.
        scale_px: the scale the images were encoded with.

    Returns:
        (...,H,W,2) float32 (dx, dy) in px, the same kind (numpy / torch, device) as the input.
    """
    _check_channels(images, 3, "images")
    scale_px = _check_scale(scale_px)
    if isinstance(images, torch.Tensor):
        coded = torch.nan_to_num(_float32(images[..., :2]), nan=0.0).clamp(-1.0, 1.0)
        return torch.sign(coded) * coded.square() * scale_px
    coded = np.clip(np.nan_to_num(np.asarray(images[..., :2], dtype=np.float64), nan=0.0), -1.0, 1.0)
    return (np.sign(coded) * np.square(coded) * scale_px).astype(np.float32)


def encode_flow_uint8(flows_px: np.ndarray, scale_px: float) -> np.ndarray:
    """Flow in px -> uint8 RGB image (...,H,W,3) for saving (`encode_flow` then core.imaging's rounding)."""
    return signed_to_uint8(encode_flow(flows_px, scale_px))


def decode_flow_uint8(images_uint8: np.ndarray, scale_px: float) -> np.ndarray:
    """uint8 RGB image (...,H,W,3) -> flow (...,H,W,2) float32 px; error bound: `uint8_error_bound_px`."""
    _check_channels(images_uint8, 3, "images_uint8")
    return decode_flow(uint8_to_signed(images_uint8), scale_px)


def uint8_error_bound_px(component_px: np.ndarray | float, scale_px: float) -> np.ndarray:
    """Largest error (px) a uint8 round trip can put on a flow component of this size.

    Rounding moves the image value v = compand(d / s) by |e| <= 1/255, and the decoded component
    moves by s |(v+e)^2 - v^2| <= s (2 |v| + 1/255) / 255: 2 s / 255 (+ s / 255^2) at full scale,
    s / 255^2 at rest. core.imaging reads the levels back in float32, which adds at most
    2^-23 to v, hence the s 2^-21 slack. Components beyond the scale clip: this does not bound them.
    """
    scale_px = _check_scale(scale_px)
    level = np.sqrt(np.minimum(np.abs(np.asarray(component_px, dtype=np.float64)) / scale_px, 1.0))
    return scale_px * ((2.0 * level + 1.0 / 255.0) / 255.0 + 2.0**-21)


@dataclass(frozen=True)
class FlowEncoding:
    """The flow scale a model was trained with, relative to the frame width.

    `scale_of_width` is scale_px / width at training time; `scale_px(width)` gives the scale for
    frames of another width, so flow in px grows with the resolution like the motion it describes.
    """

    scale_of_width: float

    def __post_init__(self) -> None:
        value = self.scale_of_width
        if isinstance(value, bool) or not isinstance(value, int | float) or not (0 < value < math.inf):
            raise InputError(f"scale_of_width must be a positive number, got {value!r}.")

    @classmethod
    def from_scale_px(cls, scale_px: float, width: int) -> FlowEncoding:
        """The encoding whose scale is `scale_px` at frames `width` px wide."""
        if isinstance(width, bool) or not isinstance(width, int | np.integer) or width < 1:
            raise InputError(f"width must be a positive number of pixels, got {width!r}.")
        return cls(_check_scale(scale_px) / int(width))

    def scale_px(self, width: int) -> float:
        """The scale in px for frames `width` px wide."""
        if isinstance(width, bool) or not isinstance(width, int | np.integer) or width < 1:
            raise InputError(f"width must be a positive number of pixels, got {width!r}.")
        return self.scale_of_width * int(width)

    def save(self, folder: str | Path, width: int) -> Path:
        """Write `flow_encoding.json` into `folder` (created); `width` records the training width."""
        path = Path(folder) / FLOW_ENCODING_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "encoding": ENCODING_NAME,
            "scale_of_width": self.scale_of_width,
            "scale_px": self.scale_px(width),
            "width": int(width),
        }
        path.write_text(json.dumps(record, indent=2) + "\n")
        return path

    @classmethod
    def load(cls, folder: str | Path) -> FlowEncoding:
        """Read `flow_encoding.json` from `folder` (or the file itself); InputError if absent or invalid."""
        path = Path(folder)
        if path.is_dir():
            path = path / FLOW_ENCODING_FILE
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise InputError(f"Cannot read the flow encoding {path}: {err}.") from err
        if not isinstance(record, dict) or record.get("encoding") != ENCODING_NAME:
            raise InputError(f"{path} is not a {ENCODING_NAME} flow encoding.")
        return cls(record.get("scale_of_width"))
