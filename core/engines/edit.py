"""Keyframe edits without weights: deterministic filters applied identically to every keyframe.

The offline default of the keyframe app. `EDITS` is the registry: each `Edit` lists its `EditParam`s
(kind, default, range, help) so an app can build its controls from it; `apply_edit` validates the
parameters and runs the filter on a stack of keyframes.

Edits (names in `EDITS`):
    identity     no change (to check the inbetweening alone)
    adjust       brightness, contrast, saturation, hue rotation, gamma
    stylize      painterly look (OpenCV's edge-preserving `stylization`)
    pencil       pencil sketch, grey or tinted (OpenCV's `pencilSketch`)
    cartoon      edge-preserving smoothing, flat colour levels, dark outlines
    color_grade  move the colour statistics to a reference image's (Reinhard et al. 2001, in Lab)

Every filter is a pure function of its inputs (same frames and parameters -> same bytes). All but
`color_grade` work frame by frame; `color_grade` measures the statistics over all keyframes together
and applies one transform to every keyframe, so the grade does not flicker between keyframes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import cv2
import numpy as np

from core.checks import check_frames, check_rgb_uint8
from core.errors import InputError

ParamKind = Literal["float", "int", "bool", "image"]


@dataclass(frozen=True)
class EditParam:
    """One parameter of an edit, described for an app to build a control.

    kind "float"/"int": a number in [minimum, maximum] (slider, `step` apart); "bool": a checkbox;
    "image": an RGB uint8 (H,W,3) image (an upload), required when `default` is None.
    """

    name: str
    kind: ParamKind
    default: float | int | bool | None
    help: str
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None


@dataclass(frozen=True)
class Edit:
    """A named filter: `apply(frames_uint8 (K,H,W,3), **params) -> uint8 (K,H,W,3)`."""

    name: str
    label: str
    description: str
    params: tuple[EditParam, ...]
    apply: Callable[..., np.ndarray]

    def defaults(self) -> dict[str, Any]:
        """Parameter name -> default value (None for a required image)."""
        return {p.name: p.default for p in self.params}


# -- filters (frames (K,H,W,3) uint8 in, same out) -------------------------------------------------


def _per_frame_bgr(frames_uint8: np.ndarray, fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Run an OpenCV photo filter that expects BGR on each RGB frame; return RGB uint8."""
    out = np.empty_like(frames_uint8)
    for k, frame in enumerate(frames_uint8):
        bgr = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
        out[k] = cv2.cvtColor(fn(bgr), cv2.COLOR_BGR2RGB)
    return out


def _identity(frames_uint8: np.ndarray) -> np.ndarray:
    return frames_uint8.copy()


def _adjust(
    frames_uint8: np.ndarray,
    brightness: float,
    contrast: float,
    saturation: float,
    hue_deg: float,
    gamma: float,
) -> np.ndarray:
    x = frames_uint8.astype(np.float32) / 255.0
    if gamma != 1.0:
        x = x ** np.float32(1.0 / gamma)
    # Contrast about mid-grey, then a brightness offset, both in [0,1] units.
    x = np.clip((x - 0.5) * np.float32(contrast) + 0.5 + np.float32(brightness), 0.0, 1.0)
    if saturation != 1.0 or hue_deg != 0.0:
        for k in range(x.shape[0]):
            hsv = cv2.cvtColor(x[k], cv2.COLOR_RGB2HSV)  # float input: H in degrees [0,360), S, V in [0,1]
            hsv[..., 0] = np.mod(hsv[..., 0] + np.float32(hue_deg), 360.0)
            hsv[..., 1] = np.clip(hsv[..., 1] * np.float32(saturation), 0.0, 1.0)
            x[k] = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    return np.rint(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


def _stylize(frames_uint8: np.ndarray, sigma_s: float, sigma_r: float) -> np.ndarray:
    return _per_frame_bgr(frames_uint8, lambda bgr: cv2.stylization(bgr, sigma_s=sigma_s, sigma_r=sigma_r))


def _pencil(
    frames_uint8: np.ndarray, sigma_s: float, sigma_r: float, shade: float, color: bool
) -> np.ndarray:
    def sketch(bgr: np.ndarray) -> np.ndarray:
        gray, tinted = cv2.pencilSketch(bgr, sigma_s=sigma_s, sigma_r=sigma_r, shade_factor=shade)
        return tinted if color else cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)

    return _per_frame_bgr(frames_uint8, sketch)


def _cartoon(
    frames_uint8: np.ndarray,
    sigma_s: float,
    sigma_r: float,
    levels: int,
    edge_scale: int,
    edge_darkness: float,
) -> np.ndarray:
    bin_width = 256.0 / levels
    block = 2 * edge_scale + 1

    def cartoon(bgr: np.ndarray) -> np.ndarray:
        smooth = cv2.edgePreservingFilter(bgr, flags=cv2.RECURS_FILTER, sigma_s=sigma_s, sigma_r=sigma_r)
        flat = (np.floor(smooth / bin_width) + 0.5) * bin_width
        # Outlines: pixels darker than their neighbourhood mean by more than 4 grey levels
        # (median blur first, so texture noise does not become lines).
        gray = cv2.medianBlur(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), 5)
        lines = cv2.adaptiveThreshold(gray, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY, block, 4) == 0
        out = flat * (1.0 - edge_darkness * lines[..., None])
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)

    return _per_frame_bgr(frames_uint8, cartoon)


def _lab(pixels_uint8: np.ndarray) -> np.ndarray:
    """uint8 RGB (..., 3) -> float32 CIE Lab (L in [0,100]), via float input for full precision."""
    flat = pixels_uint8.reshape(-1, 1, 3).astype(np.float32) / 255.0
    return cv2.cvtColor(flat, cv2.COLOR_RGB2Lab).reshape(-1, 3)


def _color_grade(frames_uint8: np.ndarray, reference: np.ndarray, strength: float) -> np.ndarray:
    lab = _lab(frames_uint8)
    ref = _lab(reference)
    mean_src, std_src = lab.mean(axis=0), lab.std(axis=0)
    mean_ref, std_ref = ref.mean(axis=0), ref.std(axis=0)
    # A flat channel (std 0) has no spread to rescale: it only moves to the reference mean.
    scale = np.where(std_src > 1e-6, std_ref / np.maximum(std_src, 1e-6), 0.0).astype(np.float32)
    graded = (lab - mean_src) * scale + mean_ref
    lab = lab + np.float32(strength) * (graded - lab)
    rgb = cv2.cvtColor(lab.reshape(-1, 1, 3), cv2.COLOR_Lab2RGB).reshape(frames_uint8.shape)
    return np.rint(np.clip(rgb, 0.0, 1.0) * 255.0).astype(np.uint8)


_SIGMA_S = EditParam("sigma_s", "float", 60.0, "spatial extent of the smoothing (px)", 1.0, 200.0, 1.0)

EDITS: dict[str, Edit] = {
    e.name: e
    for e in (
        Edit("identity", "No change", "Keeps the keyframes as they are.", (), _identity),
        Edit(
            "adjust",
            "Adjust",
            "Brightness, contrast, saturation, hue and gamma.",
            (
                EditParam(
                    "brightness",
                    "float",
                    0.0,
                    "offset added to every channel, in [0,1] units",
                    -1.0,
                    1.0,
                    0.01,
                ),
                EditParam("contrast", "float", 1.0, "scale about mid-grey (0 = flat grey)", 0.0, 3.0, 0.01),
                EditParam("saturation", "float", 1.0, "colour saturation factor (0 = grey)", 0.0, 3.0, 0.01),
                EditParam("hue_deg", "float", 0.0, "hue rotation in degrees", -180.0, 180.0, 1.0),
                EditParam(
                    "gamma", "float", 1.0, "out = in ** (1/gamma); above 1 lifts the midtones", 0.1, 5.0, 0.01
                ),
            ),
            _adjust,
        ),
        Edit(
            "stylize",
            "Stylize",
            "A painterly look: edge-preserving smoothing with emphasised edges.",
            (
                _SIGMA_S,
                EditParam(
                    "sigma_r", "float", 0.45, "how different colours may be and still blend", 0.0, 1.0, 0.01
                ),
            ),
            _stylize,
        ),
        Edit(
            "pencil",
            "Pencil sketch",
            "A pencil drawing of the frame, grey or tinted with its colours.",
            (
                _SIGMA_S,
                EditParam(
                    "sigma_r", "float", 0.07, "how different colours may be and still blend", 0.0, 1.0, 0.01
                ),
                EditParam("shade", "float", 0.05, "darkness of the shading", 0.0, 0.1, 0.005),
                EditParam("color", "bool", False, "keep the frame's colours"),
            ),
            _pencil,
        ),
        Edit(
            "cartoon",
            "Cartoon",
            "Edge-preserving smoothing, flat colour levels and dark outlines.",
            (
                EditParam("sigma_s", "float", 50.0, "spatial extent of the smoothing (px)", 1.0, 200.0, 1.0),
                EditParam(
                    "sigma_r", "float", 0.4, "how different colours may be and still blend", 0.0, 1.0, 0.01
                ),
                EditParam("levels", "int", 8, "colour levels per channel", 2, 64, 1),
                EditParam("edge_scale", "int", 4, "neighbourhood radius for outlines (px)", 1, 25, 1),
                EditParam(
                    "edge_darkness", "float", 1.0, "0 = no outlines, 1 = black outlines", 0.0, 1.0, 0.05
                ),
            ),
            _cartoon,
        ),
        Edit(
            "color_grade",
            "Colour grade",
            "Give the keyframes the colour mood of a reference image (mean and spread of each Lab channel).",
            (
                EditParam("reference", "image", None, "the image whose colours to match"),
                EditParam("strength", "float", 1.0, "0 = unchanged, 1 = full transfer", 0.0, 1.0, 0.05),
            ),
            _color_grade,
        ),
    )
}


def _check_value(edit: str, param: EditParam, value: Any) -> Any:
    where = f"{edit} parameter {param.name!r}"
    if param.kind == "image":
        if not isinstance(value, np.ndarray):
            raise InputError(f"The {where} must be an RGB image (H,W,3) uint8; upload one.")
        return check_rgb_uint8(value, f"The {where}")
    if param.kind == "bool":
        if not isinstance(value, bool | np.bool_):
            raise InputError(f"The {where} must be true or false, got {value!r}.")
        return bool(value)
    if param.kind == "int":
        if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer):
            raise InputError(f"The {where} must be a whole number, got {value!r}.")
        value = int(value)
    else:
        if isinstance(value, bool | np.bool_) or not isinstance(value, int | float | np.number):
            raise InputError(f"The {where} must be a number, got {value!r}.")
        value = float(value)
        if not math.isfinite(value):
            raise InputError(f"The {where} must be a finite number, got {value!r}.")
    if not param.minimum <= value <= param.maximum:
        raise InputError(
            f"The {where} must be between {param.minimum:g} and {param.maximum:g}, got {value!r}."
        )
    return value


def resolve_params(name: str, **params: Any) -> dict[str, Any]:
    """Validate `params` for edit `name` and fill in defaults; returns every parameter's value.

    Raises InputError for an unknown edit, an unknown parameter, a value of the wrong kind or out of
    range, or a missing required image.
    """
    if name not in EDITS:
        raise InputError(f"Unknown edit {name!r}; choose one of {', '.join(EDITS)}.")
    edit = EDITS[name]
    known = {p.name: p for p in edit.params}
    unknown = sorted(set(params) - set(known))
    if unknown:
        allowed = ", ".join(known) if known else "none"
        raise InputError(f"The {name} edit has no parameter {unknown[0]!r}; its parameters: {allowed}.")
    values = {}
    for p in edit.params:
        value = params.get(p.name, p.default)
        if value is None:
            raise InputError(f"The {name} edit needs a {p.name!r} ({p.help}).")
        values[p.name] = _check_value(name, p, value)
    return values


def apply_edit(frames_uint8: np.ndarray, name: str, **params: Any) -> np.ndarray:
    """Apply edit `name` of `EDITS` to every keyframe.

    Args:
        frames_uint8: (K,H,W,3) uint8 RGB keyframes (a single (H,W,3) frame is accepted too).
        name: a key of `EDITS`.
        **params: the edit's parameters (see `EDITS[name].params`); missing ones take their defaults.

    Returns:
        uint8 array of the input's shape, values in [0,255].

    Raises:
        InputError for bad frames, an unknown edit or bad parameters.
    """
    values = resolve_params(name, **params)
    single = isinstance(frames_uint8, np.ndarray) and frames_uint8.ndim == 3
    frames = check_frames(frames_uint8[None] if single else frames_uint8, "keyframes")
    out = EDITS[name].apply(frames, **values)
    return out[0] if single else out
