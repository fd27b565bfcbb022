"""Pixels and value ranges: conversions, loading, resizing to a multiple of 64, colour maps.

Value ranges (the names say which one a value is in):
    uint8     integers 0..255, the format pixels cross module boundaries in
    unit      float in [0, 1]
    signed    float in [-1, 1], what SD / SVD VAEs take and return

Public API (numpy or torch in, the same kind out, for the elementwise conversions):
    uint8_to_unit(x)  unit_to_uint8(x)  unit_to_signed(x)  signed_to_unit(x)
    uint8_to_signed(x)  signed_to_uint8(x)
        Float -> float conversions clip to the target range (NaN becomes the range's lower bound) and
        keep a floating input dtype; -> uint8 rounds to nearest. uint8 -> unit -> uint8 and
        uint8 -> signed -> uint8 are exact identities.
    to_tensor_chw(array, device=None) -> torch (C,H,W) | (T,C,H,W), dtype and values unchanged
    to_numpy_hwc(tensor) -> numpy (H,W,C) | (T,H,W,C), dtype and values unchanged
    to_signed(pixels_uint8, device=None, dtype=float32) -> torch (...,3,H,W) in [-1,1]
    to_unit(pixels_uint8, device=None, dtype=float32)   -> torch (...,3,H,W) in [0,1]
    from_signed(tensor) / from_unit(tensor) -> numpy uint8 (...,H,W,3)

    plan_resize(height, width, multiple=64, max_side=None, mode="crop"|"pad") -> ResizeInfo
    apply_resize(image, info, pad_mode="edge"|"constant", pad_value=0) -> array of info.output_hw
    resize_to_multiple(image, multiple=64, max_side=None, mode=..., ...) -> (array, ResizeInfo)
    undo_resize(image, info) -> array covering info.crop_box of the source, at source resolution

    colorize_depth(depth, disparity=False, ...) -> uint8 (H,W,3), near = bright / warm
    colorize_flow_magnitude(flow_px, max_magnitude=None, ...) -> uint8 (H,W,3), fast = bright

    load_image(path_or_bytes, max_side=8192) -> uint8 (H,W,3)
    pil_to_rgb_uint8(pil_image) -> uint8 (H,W,3)   (alpha composited over white, 16-bit scaled)
    save_png16(path, depth_unit) -> Path;  load_png16(path_or_bytes, max_side=8192) -> float32 (H,W)
"""

from __future__ import annotations

import io
import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

import cv2
import numpy as np
import torch
from PIL import Image, ImageOps

from core.errors import InputError

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)
ResizeMode = Literal["crop", "pad"]
PadMode = Literal["edge", "constant"]
Colormap = Literal["turbo", "inferno", "gray"]

DEFAULT_MAX_IMAGE_SIDE = 8192

_COLORMAPS = {"turbo": cv2.COLORMAP_TURBO, "inferno": cv2.COLORMAP_INFERNO}
# Every exception PIL raises on a corrupt, truncated or hostile file (probed with random bytes and
# truncated PNG / JPEG / GIF data in tests/unit/test_imaging.py).
_PIL_DECODE_ERRORS = (
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    IndexError,
    KeyError,
    struct.error,
    Image.DecompressionBombError,
)


# -- value ranges ------------------------------------------------------------------------------------


def _require_uint8(x: np.ndarray | torch.Tensor) -> None:
    if not isinstance(x, np.ndarray | torch.Tensor):
        raise InputError(f"Expected a numpy array or torch tensor of pixels, got {type(x).__name__}.")
    if x.dtype not in (np.uint8, torch.uint8):
        raise InputError(f"Expected uint8 pixels in [0,255], got dtype {x.dtype}.")


def _as_float(x: ArrayT) -> ArrayT:
    """Float copy of x: a floating dtype is kept, anything else becomes float32."""
    if isinstance(x, torch.Tensor):
        return x.clone() if x.is_floating_point() else x.to(torch.float32)
    if not isinstance(x, np.ndarray):
        raise InputError(f"Expected a numpy array or torch tensor, got {type(x).__name__}.")
    return x.astype(x.dtype if np.issubdtype(x.dtype, np.floating) else np.float32)


def _clip(x: ArrayT, low: float, high: float) -> ArrayT:
    """Clip to [low, high]; NaN becomes low, so the result is always inside the bounds."""
    if isinstance(x, torch.Tensor):
        return torch.nan_to_num(x, nan=low).clamp_(low, high)
    return np.clip(np.nan_to_num(x, nan=low), low, high)


def _round_to_uint8(x: ArrayT) -> ArrayT:
    """Round x (already inside [0, 255]) to the nearest integer, as uint8."""
    if isinstance(x, torch.Tensor):
        return x.round().to(torch.uint8)
    return np.rint(x).astype(np.uint8)


def _float32_of(x: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    return x.to(torch.float32) if isinstance(x, torch.Tensor) else x.astype(np.float32)


def uint8_to_unit(x: ArrayT) -> ArrayT:
    """uint8 pixels 0..255 -> float32 in [0,1] (x / 255), any shape, numpy or torch."""
    _require_uint8(x)
    return _float32_of(x) / 255.0


def unit_to_uint8(x: ArrayT) -> ArrayT:
    """Float in [0,1] -> uint8 0..255, rounding to nearest; values outside [0,1] are clipped first."""
    # Computed in float32 even for float16 input: 0.5 steps of 1/255 must round the same way.
    return _round_to_uint8(_clip(_float32_of(x), 0.0, 1.0) * 255.0)


def unit_to_signed(x: ArrayT) -> ArrayT:
    """Float in [0,1] -> [-1,1] (2x - 1), clipping the input to [0,1] first; float dtype kept."""
    return _clip(_as_float(x), 0.0, 1.0) * 2.0 - 1.0


def signed_to_unit(x: ArrayT) -> ArrayT:
    """Float in [-1,1] -> [0,1] ((x + 1) / 2), clipping the input to [-1,1] first; float dtype kept."""
    return (_clip(_as_float(x), -1.0, 1.0) + 1.0) / 2.0


def uint8_to_signed(x: ArrayT) -> ArrayT:
    """uint8 pixels 0..255 -> float32 in [-1,1] (x / 127.5 - 1), any shape, numpy or torch."""
    _require_uint8(x)
    return _float32_of(x) / 127.5 - 1.0


def signed_to_uint8(x: ArrayT) -> ArrayT:
    """Float in [-1,1] -> uint8 0..255, rounding to nearest; values outside [-1,1] are clipped first."""
    return _round_to_uint8((_clip(_float32_of(x), -1.0, 1.0) + 1.0) * 127.5)


# -- layout: numpy HWC <-> torch CHW -----------------------------------------------------------------


def to_tensor_chw(array: np.ndarray | torch.Tensor, device: torch.device | str | None = None) -> torch.Tensor:
    """Channel-last (H,W,C) or (T,H,W,C) -> contiguous torch (C,H,W) or (T,C,H,W).

    Dtype and values are unchanged (pair it with a range conversion, or use `to_signed` / `to_unit`).
    """
    tensor = array if isinstance(array, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(array))
    if tensor.ndim == 3:
        tensor = tensor.permute(2, 0, 1)
    elif tensor.ndim == 4:
        tensor = tensor.permute(0, 3, 1, 2)
    else:
        raise InputError(f"Expected an image (H,W,C) or frames (T,H,W,C), got shape {tuple(tensor.shape)}.")
    return tensor.contiguous().to(device) if device is not None else tensor.contiguous()


def to_numpy_hwc(tensor: torch.Tensor) -> np.ndarray:
    """torch (C,H,W) or (T,C,H,W) on any device -> numpy (H,W,C) or (T,H,W,C); dtype, values unchanged.

    bfloat16 (which numpy lacks) becomes float32.
    """
    if not isinstance(tensor, torch.Tensor):
        raise InputError(f"Expected a torch tensor, got {type(tensor).__name__}.")
    if tensor.ndim == 3:
        tensor = tensor.permute(1, 2, 0)
    elif tensor.ndim == 4:
        tensor = tensor.permute(0, 2, 3, 1)
    else:
        raise InputError(f"Expected a tensor (C,H,W) or (T,C,H,W), got shape {tuple(tensor.shape)}.")
    tensor = tensor.detach().cpu()
    if tensor.dtype == torch.bfloat16:
        tensor = tensor.to(torch.float32)
    return np.ascontiguousarray(tensor.numpy())


def to_signed(
    pixels_uint8: np.ndarray | torch.Tensor,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """uint8 (H,W,C) or (T,H,W,C) -> torch (C,H,W) or (T,C,H,W) in [-1,1], what a VAE encodes."""
    return to_tensor_chw(uint8_to_signed(pixels_uint8), device).to(dtype)


def to_unit(
    pixels_uint8: np.ndarray | torch.Tensor,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """uint8 (H,W,C) or (T,H,W,C) -> torch (C,H,W) or (T,C,H,W) in [0,1]."""
    return to_tensor_chw(uint8_to_unit(pixels_uint8), device).to(dtype)


def from_signed(tensor: torch.Tensor) -> np.ndarray:
    """torch (C,H,W) or (T,C,H,W) in [-1,1] (e.g. a VAE decode) -> numpy uint8 (H,W,C) or (T,H,W,C)."""
    return to_numpy_hwc(signed_to_uint8(tensor))


def from_unit(tensor: torch.Tensor) -> np.ndarray:
    """torch (C,H,W) or (T,C,H,W) in [0,1] -> numpy uint8 (H,W,C) or (T,H,W,C)."""
    return to_numpy_hwc(unit_to_uint8(tensor))


# -- resizing to a multiple of 64 ----------------------------------------------------------------------


@dataclass(frozen=True)
class ResizeInfo:
    """How `apply_resize` maps a source image to the output, so `undo_resize` can map back.

    Steps: cut `crop_box` (top, left, height, width) out of the source, resize it to `scaled_hw`,
    then pad by `padding` (top, bottom, left, right). In "crop" mode padding is zero; in "pad" mode
    the crop box is the whole source.
    """

    source_hw: tuple[int, int]
    crop_box: tuple[int, int, int, int]
    scaled_hw: tuple[int, int]
    padding: tuple[int, int, int, int]

    @property
    def output_hw(self) -> tuple[int, int]:
        top, bottom, left, right = self.padding
        return self.scaled_hw[0] + top + bottom, self.scaled_hw[1] + left + right


def plan_resize(
    height: int,
    width: int,
    *,
    multiple: int = 64,
    max_side: int | None = None,
    mode: ResizeMode = "crop",
) -> ResizeInfo:
    """Plan an aspect-keeping resize of a (height, width) image to sides divisible by `multiple`.

    The image is first scaled (down only) so that its longer side fits `max_side` rounded down to a
    multiple. Then:
      - "crop": each side is rounded to the nearest multiple (at least one multiple, at most the cap);
        the source is centre-cropped to that aspect and resized to it. Each output side is within one
        `multiple` of the aspect-exact scaled side.
      - "pad": the scaled image keeps its exact aspect and is letterboxed: padded (centred) up to the
        next multiple. `undo_resize` removes the padding; without downscaling the round trip is exact.
    """
    if height < 1 or width < 1:
        raise InputError(f"The image is empty ({height}x{width} pixels).")
    if multiple < 1:
        raise InputError(f"The size multiple must be a positive integer, got {multiple}.")
    if max_side is not None and max_side < multiple:
        raise InputError(f"The maximum side ({max_side}) must be at least the size multiple ({multiple}).")
    if mode not in ("crop", "pad"):
        raise InputError(f"Resize mode must be 'crop' or 'pad', got {mode!r}.")

    cap = None if max_side is None else (max_side // multiple) * multiple
    scale = 1.0 if cap is None else min(1.0, cap / max(height, width))

    if mode == "pad":
        scaled_h = max(1, round(height * scale))
        scaled_w = max(1, round(width * scale))
        pad_h = -scaled_h % multiple
        pad_w = -scaled_w % multiple
        return ResizeInfo(
            source_hw=(height, width),
            crop_box=(0, 0, height, width),
            scaled_hw=(scaled_h, scaled_w),
            padding=(pad_h // 2, pad_h - pad_h // 2, pad_w // 2, pad_w - pad_w // 2),
        )

    def nearest_multiple(side: float) -> int:
        rounded = max(multiple, round(side / multiple) * multiple)
        return rounded if cap is None else min(rounded, cap)

    out_h, out_w = nearest_multiple(height * scale), nearest_multiple(width * scale)
    # Centre-crop the source to the output aspect (out_w / out_h) before resizing.
    if width * out_h > height * out_w:  # source is wider than the target aspect
        crop_h, crop_w = height, min(width, max(1, round(height * out_w / out_h)))
    else:
        crop_h, crop_w = min(height, max(1, round(width * out_h / out_w))), width
    return ResizeInfo(
        source_hw=(height, width),
        crop_box=((height - crop_h) // 2, (width - crop_w) // 2, crop_h, crop_w),
        scaled_hw=(out_h, out_w),
        padding=(0, 0, 0, 0),
    )


def _image_hw(image: np.ndarray) -> tuple[int, int]:
    if not isinstance(image, np.ndarray) or image.ndim not in (2, 3, 4):
        shape = getattr(image, "shape", type(image).__name__)
        raise InputError(f"Expected an image (H,W), (H,W,C) or frames (T,H,W,C), got {shape}.")
    return image.shape[:2] if image.ndim in (2, 3) else image.shape[1:3]


def _resize_frame(frame: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    if frame.shape[:2] == size_hw:
        return frame
    # INTER_AREA averages when shrinking (no aliasing); linear when enlarging never leaves the input
    # range (unlike cubic), which matters for depth maps in [0,1].
    shrinking = size_hw[0] * size_hw[1] < frame.shape[0] * frame.shape[1]
    resized = cv2.resize(
        frame,
        (size_hw[1], size_hw[0]),
        interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR,
    )
    return resized.reshape(size_hw + frame.shape[2:])  # cv2 drops a trailing channel axis of 1


def _resize_any(image: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    if image.ndim == 4:
        return np.stack([_resize_frame(frame, size_hw) for frame in image])
    return _resize_frame(image, size_hw)


def apply_resize(
    image: np.ndarray,
    info: ResizeInfo,
    *,
    pad_mode: PadMode = "edge",
    pad_value: float = 0,
) -> np.ndarray:
    """Apply a `plan_resize` plan to an image (H,W), (H,W,C) or frames (T,H,W,C) of the planned size.

    Any dtype cv2 resizes (uint8, uint16, float32, ...) works and is kept. Padding repeats the edge
    pixels ("edge") or fills `pad_value` ("constant").
    """
    if _image_hw(image) != info.source_hw:
        raise InputError(f"The image is {_image_hw(image)} but the resize was planned for {info.source_hw}.")
    if pad_mode not in ("edge", "constant"):
        raise InputError(f"Pad mode must be 'edge' or 'constant', got {pad_mode!r}.")
    top, left, crop_h, crop_w = info.crop_box
    spatial = (slice(top, top + crop_h), slice(left, left + crop_w))
    cropped = image[(slice(None), *spatial)] if image.ndim == 4 else image[spatial]
    resized = _resize_any(np.ascontiguousarray(cropped), info.scaled_hw)

    pad_top, pad_bottom, pad_left, pad_right = info.padding
    if not any(info.padding):
        return resized
    widths = [(pad_top, pad_bottom), (pad_left, pad_right)]
    if image.ndim == 4:
        widths = [(0, 0), *widths, (0, 0)]
    elif image.ndim == 3:
        widths = [*widths, (0, 0)]
    if pad_mode == "edge":
        return np.pad(resized, widths, mode="edge")
    return np.pad(resized, widths, mode="constant", constant_values=pad_value)


def resize_to_multiple(
    image: np.ndarray,
    *,
    multiple: int = 64,
    max_side: int | None = None,
    mode: ResizeMode = "crop",
    pad_mode: PadMode = "edge",
    pad_value: float = 0,
) -> tuple[np.ndarray, ResizeInfo]:
    """Resize an image (H,W), (H,W,C) or frames (T,H,W,C) so both sides divide by `multiple`.

    See `plan_resize` for the modes and `apply_resize` for padding. Returns (resized, info);
    keep `info` to map results back with `undo_resize`.
    """
    info = plan_resize(*_image_hw(image), multiple=multiple, max_side=max_side, mode=mode)
    return apply_resize(image, info, pad_mode=pad_mode, pad_value=pad_value), info


def undo_resize(image: np.ndarray, info: ResizeInfo) -> np.ndarray:
    """Map an output-sized image (e.g. a generated one) back to the source's resolution.

    Removes the padding and resizes to the crop box, so the result has the size of `info.crop_box`:
    the whole source in "pad" mode; in "crop" mode the cut-off borders cannot come back.
    """
    if _image_hw(image) != info.output_hw:
        raise InputError(f"The image is {_image_hw(image)} but the resize produced {info.output_hw}.")
    pad_top, _, pad_left, _ = info.padding
    spatial = (slice(pad_top, pad_top + info.scaled_hw[0]), slice(pad_left, pad_left + info.scaled_hw[1]))
    unpadded = image[(slice(None), *spatial)] if image.ndim == 4 else image[spatial]
    return _resize_any(np.ascontiguousarray(unpadded), info.crop_box[2:])


# -- colour maps -------------------------------------------------------------------------------------


def _as_numpy(x: np.ndarray | torch.Tensor) -> np.ndarray:
    return x.detach().cpu().float().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _apply_colormap(level_unit: np.ndarray, colormap: Colormap) -> np.ndarray:
    """float (H,W) in [0,1] -> uint8 RGB (H,W,3); 1 is the bright / warm end."""
    level_uint8 = unit_to_uint8(level_unit)
    if colormap == "gray":
        return np.repeat(level_uint8[..., None], 3, axis=2)
    if colormap not in _COLORMAPS:
        raise InputError(f"Colour map must be one of {sorted([*_COLORMAPS, 'gray'])}, got {colormap!r}.")
    return np.ascontiguousarray(cv2.applyColorMap(level_uint8, _COLORMAPS[colormap])[..., ::-1])


def colorize_depth(
    depth: np.ndarray | torch.Tensor,
    *,
    disparity: bool = False,
    valid_mask: np.ndarray | None = None,
    percentiles: tuple[float, float] = (2.0, 98.0),
    colormap: Colormap = "turbo",
) -> np.ndarray:
    """Depth map (H,W), any float units -> uint8 RGB (H,W,3) with near = bright / warm.

    `disparity=False`: larger values are farther (depth, distance). `disparity=True`: larger values
    are nearer (inverse depth, as MiDaS-style estimators output). The values at the given
    percentiles of the valid pixels map to the ends of the colour map, so a few outliers do not
    flatten the rest. Non-finite values and pixels where `valid_mask` is False are black.
    `colormap="gray"` gives the white-is-near greyscale that depth ControlNets take.
    """
    depth = _as_numpy(depth)
    if depth.ndim != 2 or depth.size == 0:
        raise InputError(f"A depth map must have shape (H,W), got {depth.shape}.")
    valid = np.isfinite(depth)
    if valid_mask is not None:
        valid_mask = _as_numpy(valid_mask)
        if valid_mask.shape != depth.shape:
            raise InputError(f"The valid mask is {valid_mask.shape} but the depth map is {depth.shape}.")
        valid &= valid_mask.astype(bool)
    if not valid.any():
        return np.zeros(depth.shape + (3,), np.uint8)
    low, high = np.percentile(depth[valid].astype(np.float64), percentiles)
    level = (np.where(valid, depth, low) - low) / max(high - low, np.finfo(np.float32).tiny)
    level = np.clip(level, 0.0, 1.0).astype(np.float32)
    rgb = _apply_colormap(level if disparity else 1.0 - level, colormap)
    rgb[~valid] = 0
    return rgb


def colorize_flow_magnitude(
    flow_px: np.ndarray | torch.Tensor,
    *,
    max_magnitude: float | None = None,
    colormap: Colormap = "inferno",
) -> np.ndarray:
    """Flow (H,W,2) in pixels -> uint8 RGB (H,W,3) of its magnitude; still = dark, fast = bright.

    `max_magnitude` (pixels) maps to the bright end; pass one value for every frame of a video so
    their colours compare. By default the 99th percentile of this field's magnitude is used.
    Non-finite vectors are black.
    """
    flow_px = _as_numpy(flow_px)
    if flow_px.ndim != 3 or flow_px.shape[2] != 2 or flow_px.size == 0:
        raise InputError(f"A flow field must have shape (H,W,2), got {flow_px.shape}.")
    magnitude = np.hypot(flow_px[..., 0], flow_px[..., 1]).astype(np.float32)
    valid = np.isfinite(magnitude)
    if max_magnitude is None:
        max_magnitude = float(np.percentile(magnitude[valid], 99.0)) if valid.any() else 0.0
    if max_magnitude < 0 or not math.isfinite(max_magnitude):
        raise InputError(f"The maximum flow magnitude must be a finite number >= 0, got {max_magnitude}.")
    level = magnitude / max_magnitude if max_magnitude > 0 else np.zeros_like(magnitude)
    rgb = _apply_colormap(level, colormap)  # NaN clips to 0, then painted black below
    rgb[~valid] = 0
    return rgb


# -- loading and saving ------------------------------------------------------------------------------


def _open_checked(source: str | Path | bytes, max_side: int) -> Image.Image:
    """Open an image lazily (header only) and check its size before any pixel is decoded."""
    if isinstance(source, bytes | bytearray | memoryview):
        if len(source) == 0:
            raise InputError("The image upload is empty (0 bytes).")
        stream, name = io.BytesIO(bytes(source)), "The uploaded image"
    else:
        path = Path(source)
        if not path.is_file():
            raise InputError(f"The image file {path.name} does not exist or is not a file.")
        if path.stat().st_size == 0:
            raise InputError(f"The image file {path.name} is empty (0 bytes).")
        stream, name = io.BytesIO(path.read_bytes()), f"The image file {path.name}"
    try:
        image = Image.open(stream)
    except _PIL_DECODE_ERRORS as error:
        raise InputError(f"{name} is not a readable image (corrupt or unsupported format).") from error
    width, height = image.size
    if max(width, height) > max_side:
        raise InputError(
            f"{name} is {width}x{height} pixels; the largest side allowed is {max_side}. "
            "Downscale it and upload again."
        )
    if width < 1 or height < 1:
        raise InputError(f"{name} has no pixels ({width}x{height}).")
    return image


def pil_to_rgb_uint8(image: Image.Image) -> np.ndarray:
    """Any PIL image -> uint8 RGB (H,W,3).

    Transparency is composited over white (transparent pixels often hold arbitrary colours);
    16-bit greyscale is scaled to 8 bits (PIL's own conversion would clip it at 255).
    """
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
        grey_uint8 = np.rint(np.clip(np.asarray(image, dtype=np.float64), 0, 65535) / 257.0)
        return np.repeat(grey_uint8.astype(np.uint8)[..., None], 3, axis=2)
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
    if has_alpha:
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, image.convert("RGBA"))
    return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()


def load_image(source: str | Path | bytes, *, max_side: int = DEFAULT_MAX_IMAGE_SIDE) -> np.ndarray:
    """Read an image file or its bytes -> uint8 RGB (H,W,3), upright per its EXIF orientation.

    Handles greyscale, palette, RGBA / LA (composited over white) and 16-bit images. Raises InputError
    for missing, empty, corrupt or truncated files and for images with a side over `max_side`; the
    size is checked from the header, before any pixel is decoded (decompression-bomb safe).
    Multi-frame files (GIF, TIFF) give their first frame.
    """
    image = _open_checked(source, max_side)
    try:
        image.load()
        return pil_to_rgb_uint8(ImageOps.exif_transpose(image))
    except _PIL_DECODE_ERRORS as error:
        raise InputError("The image is corrupt or truncated and cannot be decoded.") from error
    finally:
        image.close()


def save_png16(path: str | Path, depth_unit: np.ndarray | torch.Tensor) -> Path:
    """Write a depth map (H,W) in [0,1] as a 16-bit greyscale PNG: round(depth * 65535).

    Values outside [0,1] are clipped and NaN becomes 0. Returns the path.
    """
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise InputError(f"A 16-bit depth map is saved as .png, got {path.name}.")
    depth_unit = _as_numpy(depth_unit)
    if depth_unit.ndim != 2 or depth_unit.size == 0:
        raise InputError(f"A depth map must have shape (H,W), got {depth_unit.shape}.")
    depth_uint16 = np.rint(_clip(depth_unit.astype(np.float64), 0.0, 1.0) * 65535.0).astype(np.uint16)
    if not cv2.imwrite(str(path), depth_uint16):
        raise OSError(f"Could not write {path}; check that its folder exists and is writable.")
    return path


def load_png16(source: str | Path | bytes, *, max_side: int = DEFAULT_MAX_IMAGE_SIDE) -> np.ndarray:
    """Read a greyscale depth image (16-bit or 8-bit, PNG or any format cv2 reads) -> float32 (H,W) in [0,1].

    16-bit values are divided by 65535, 8-bit ones by 255. A colour image whose channels are equal
    is accepted as grey; a colourised one raises InputError (its colours are not depth values).
    """
    _open_checked(source, max_side).close()  # size check from the header before decoding
    data = bytes(source) if isinstance(source, bytes | bytearray | memoryview) else Path(source).read_bytes()
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if decoded is None or decoded.dtype not in (np.uint8, np.uint16):
        raise InputError("The depth image cannot be decoded as an 8- or 16-bit greyscale image.")
    if decoded.ndim == 3:
        colour = decoded[..., :3]
        if np.any(colour != colour[..., :1]):
            raise InputError("The depth image is in colour; upload the greyscale (16-bit PNG) depth map.")
        decoded = colour[..., 0]
    return (decoded.astype(np.float32) / np.float32(np.iinfo(decoded.dtype).max)).astype(np.float32)
