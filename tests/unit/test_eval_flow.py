"""core.flow.evaluate: the ground truth is right, and the full-size EPE figures (slow)."""

import numpy as np
import pytest

from core.errors import InputError
from core.flow import backward_warp, estimate_flow
from core.flow.evaluate import (
    MOTIONS,
    all_cases,
    endpoint_error,
    load_photo,
    main,
    motorcycle_case,
    synthetic_case,
)


def _photometric_error(case, sign):
    """Mean |a(p) - b(p + sign * flow(p))| over valid pixels, grey levels."""
    pulled = backward_warp(case.frame_b_uint8, sign * case.flow_px)
    return float(np.abs(pulled.astype(float) - case.frame_a_uint8)[case.valid].mean())


@pytest.mark.parametrize("motion", MOTIONS)
def test_synthetic_truth_maps_frame_a_onto_frame_b(motion):
    case = synthetic_case(load_photo("astronaut", 256), motion)
    assert case.flow_px.dtype == np.float32 and case.valid.mean() > 0.6
    assert _photometric_error(case, +1) < 6.0  # only the blur of two bilinear resamplings remains
    assert _photometric_error(case, -1) > 3 * _photometric_error(case, +1)


def test_synthetic_truth_values():
    image = load_photo("coffee", 128)
    np.testing.assert_allclose(
        synthetic_case(image, "shift_int").flow_px, np.broadcast_to([3, -2], (*image.shape[:2], 2))
    )
    zoom = synthetic_case(image, "zoom").flow_px
    h, w = image.shape[:2]
    # a 6% zoom about the centre moves the right edge of the frame out by 6% of half the width
    assert zoom[h // 2, w - 1, 0] == pytest.approx(0.06 * (w - 1) / 2, rel=1e-3)


@pytest.mark.parametrize("scale", [1.0, 0.25])
def test_motorcycle_truth_is_minus_disparity(scale):
    case = motorcycle_case(scale)
    assert case.frame_a_uint8.shape[:2] == case.valid.shape == (round(500 * scale), round(741 * scale))
    assert case.valid.mean() > 0.7 and np.all(case.flow_px[..., 1] == 0)
    assert np.all(case.flow_px[..., 0][case.valid] < 0)
    assert _photometric_error(case, +1) < 12  # real photos: exposure and view-dependent differences
    assert _photometric_error(case, -1) > 3 * _photometric_error(case, +1)


def test_endpoint_error_values_and_mask():
    truth = np.zeros((2, 2, 2), np.float32)
    estimate = truth.copy()
    estimate[0, 0] = (3, 4)
    assert endpoint_error(estimate, truth) == pytest.approx(1.25)
    valid = np.array([[True, True], [False, False]])
    assert endpoint_error(estimate, truth, valid) == pytest.approx(2.5)
    with pytest.raises(InputError):
        endpoint_error(estimate, truth, np.zeros((2, 2), bool))
    with pytest.raises(InputError):
        load_photo("lena")


def test_evaluate_command_prints_a_table(capsys):
    assert main(["--methods", "dis", "--max-side", "128"]) == 0
    out = capsys.readouterr().out
    for row in ("astronaut/shift_int", "chelsea/smooth_random", "motorcycle", "mean (synthetic)"):
        assert row in out


@pytest.mark.slow
def test_full_size_epe():
    """Full-size photos and motorcycle at 741x500; figures as in `python -m core.flow.evaluate`."""
    cases = all_cases()
    epe = {
        (method, case.name): endpoint_error(
            estimate_flow(case.frame_a_uint8, case.frame_b_uint8, method), case.flow_px, case.valid
        )
        for method in ("dis", "farneback")
        for case in cases
    }
    for (method, name), value in sorted(epe.items()):
        print(f"{method:<10} {name:<26} EPE {value:.3f} px")
    for case in cases:
        if case.name.endswith(("shift_int", "shift_subpx")):
            assert epe["dis", case.name] < 0.5
        elif case.name != "motorcycle":
            assert epe["dis", case.name] < 1.0
    motion = float(np.linalg.norm(cases[-1].flow_px, axis=2)[cases[-1].valid].mean())
    assert epe["dis", "motorcycle"] < 0.15 * motion  # measured 2.4 px of 34 px
    assert epe["farneback", "motorcycle"] < motion  # measured 25.7 px: Farneback loses such large motion
