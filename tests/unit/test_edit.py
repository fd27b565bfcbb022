"""Edit filters: registry, determinism, ranges and shapes, measured effects, validation."""

import cv2
import numpy as np
import pytest

from core.engines.edit import EDITS, apply_edit, resolve_params
from core.errors import InputError
from core.eval.fixtures import load_photo


def small(name: str, size: tuple[int, int] = (128, 128)) -> np.ndarray:
    return cv2.resize(load_photo(name), size, interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def keyframes() -> np.ndarray:
    """Three different 128x128 keyframes."""
    astronaut = small("astronaut")
    return np.stack([astronaut, small("coffee"), np.ascontiguousarray(astronaut[:, ::-1])])


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    """A blue cat: chelsea with its hues turned half way round, so its colours differ from the keyframes'."""
    return apply_edit(small("chelsea", (96, 64)), "adjust", hue_deg=180.0)


def params_for(name: str, reference: np.ndarray) -> dict:
    return {"reference": reference} if name == "color_grade" else {}


def lab_stats(pixels_uint8: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lab = cv2.cvtColor(pixels_uint8.reshape(-1, 1, 3).astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
    return lab.reshape(-1, 3).mean(axis=0), lab.reshape(-1, 3).std(axis=0)


def test_registry_describes_every_parameter():
    assert {"identity", "adjust", "stylize", "pencil", "cartoon", "color_grade"} <= set(EDITS)
    for name, edit in EDITS.items():
        assert edit.name == name and edit.label and edit.description
        for p in edit.params:
            assert p.kind in ("float", "int", "bool", "image") and p.help
            if p.kind in ("float", "int"):
                assert p.minimum <= p.default <= p.maximum and p.step > 0
        assert edit.defaults() == {p.name: p.default for p in edit.params}


@pytest.mark.parametrize("name", list(EDITS))
def test_every_edit_is_deterministic_uint8_and_keeps_shape(name, keyframes, reference):
    params = params_for(name, reference)
    out = apply_edit(keyframes, name, **params)
    assert out.dtype == np.uint8 and out.shape == keyframes.shape
    assert np.array_equal(out, apply_edit(keyframes.copy(), name, **params))
    # The input is never modified in place.
    assert np.array_equal(keyframes[0], small("astronaut"))
    single = apply_edit(keyframes[1], name, **params)
    assert single.shape == keyframes[1].shape and single.dtype == np.uint8
    change = np.abs(out.astype(int) - keyframes).mean()
    if name in ("identity", "adjust"):  # adjust's defaults change nothing
        assert np.array_equal(out, keyframes)
    else:
        assert change > 5.0, f"{name} changed the frames by only {change:.2f} grey levels on average"


@pytest.mark.parametrize("name", [n for n in EDITS if n != "color_grade"])
def test_framewise_edits_treat_every_keyframe_alike(name, keyframes):
    together = apply_edit(keyframes, name)
    for k in range(keyframes.shape[0]):
        assert np.array_equal(together[k], apply_edit(keyframes[k], name))


def test_color_grade_moves_lab_statistics_to_the_reference(keyframes, reference):
    ref_mean, ref_std = lab_stats(reference)
    src_mean, src_std = lab_stats(keyframes)
    # Before: the keyframes' colours are far from the blue cat's.
    assert np.abs(src_mean - ref_mean).max() > 20.0
    graded = apply_edit(keyframes, "color_grade", reference=reference)
    mean, std = lab_stats(graded)
    # Measured after (0.29 and 3.2% at worst): rounding to uint8 and clipping out-of-gamut colours
    # are the only losses.
    assert np.abs(mean - ref_mean).max() < 0.5, (mean, ref_mean)
    assert np.abs(std / ref_std - 1.0).max() < 0.04, (std, ref_std)
    # One transform for all keyframes: identical keyframes stay identical.
    same = apply_edit(np.stack([keyframes[0], keyframes[0]]), "color_grade", reference=reference)
    assert np.array_equal(same[0], same[1])
    # Strength 0 changes nothing beyond the Lab round trip.
    untouched = apply_edit(keyframes, "color_grade", reference=reference, strength=0.0)
    assert np.abs(untouched.astype(int) - keyframes).max() <= 1
    half = lab_stats(apply_edit(keyframes, "color_grade", reference=reference, strength=0.5))[0]
    assert np.abs(half - (src_mean + ref_mean) / 2).max() < 0.3


def test_adjust_does_what_each_control_says():
    grey = np.full((1, 4, 4, 3), 100, np.uint8)
    assert np.all(apply_edit(grey, "adjust", brightness=0.2) == 151)  # 100 + 0.2 * 255 = 151
    assert np.all(apply_edit(grey, "adjust", contrast=0.0) == 128)  # flat mid-grey: 0.5 * 255 rounded
    assert np.all(apply_edit(grey, "adjust", contrast=1.5) == 86)  # 127.5 + 1.5 * (100 - 127.5) = 86.25
    quarter = np.full((1, 4, 4, 3), 64, np.uint8)
    assert np.all(apply_edit(quarter, "adjust", gamma=2.0) == 128)  # 255 * (64/255) ** 0.5 = 127.75
    red = np.zeros((1, 4, 4, 3), np.uint8)
    red[..., 0] = 255
    assert np.all(apply_edit(red, "adjust", hue_deg=120.0) == [0, 255, 0])
    assert np.all(apply_edit(red, "adjust", hue_deg=-120.0) == [0, 0, 255])
    photo = small("coffee")
    grey_photo = apply_edit(photo, "adjust", saturation=0.0).astype(int)
    assert np.abs(grey_photo - grey_photo[..., :1]).max() == 0


def test_pencil_is_grey_unless_coloured(keyframes):
    grey = apply_edit(keyframes, "pencil")
    assert np.array_equal(grey[..., 0], grey[..., 1]) and np.array_equal(grey[..., 1], grey[..., 2])
    tinted = apply_edit(keyframes, "pencil", color=True)
    assert np.abs(tinted[..., 0].astype(int) - tinted[..., 2]).mean() > 5.0


@pytest.mark.parametrize(
    ("name", "params", "match"),
    [
        ("sepia", {}, "Unknown edit 'sepia'"),
        ("identity", {"strength": 1.0}, "no parameter 'strength'; its parameters: none"),
        ("adjust", {"brightnes": 0.1}, "no parameter 'brightnes'"),
        ("adjust", {"contrast": 5.0}, "between 0 and 3"),
        ("adjust", {"contrast": "high"}, "must be a number"),
        ("adjust", {"contrast": True}, "must be a number"),
        ("adjust", {"gamma": float("nan")}, "finite"),
        ("cartoon", {"levels": 4.5}, "whole number"),
        ("cartoon", {"levels": 1}, "between 2 and 64"),
        ("pencil", {"color": 1}, "true or false"),
        ("color_grade", {}, "needs a 'reference'"),
        ("color_grade", {"reference": np.zeros((8, 8, 3), np.float32)}, "uint8"),
        ("color_grade", {"reference": np.zeros((8, 8), np.uint8)}, r"\(H,W,C\)"),
        ("color_grade", {"reference": "cat.png"}, "RGB image"),
    ],
)
def test_bad_edits_and_parameters_raise_input_error(name, params, match):
    frames = np.zeros((2, 16, 16, 3), np.uint8)
    with pytest.raises(InputError, match=match):
        apply_edit(frames, name, **params)


@pytest.mark.parametrize(
    "frames",
    [
        np.zeros((2, 16, 16, 3), np.float32),
        np.zeros((2, 16, 16), np.uint8),
        np.zeros((2, 16, 16, 4), np.uint8),
    ],
)
def test_bad_frames_raise_input_error(frames):
    with pytest.raises(InputError):
        apply_edit(frames, "identity")


def test_resolve_params_fills_defaults():
    values = resolve_params("adjust", hue_deg=30)
    assert values == {"brightness": 0.0, "contrast": 1.0, "saturation": 1.0, "hue_deg": 30.0, "gamma": 1.0}
    assert isinstance(values["hue_deg"], float)
