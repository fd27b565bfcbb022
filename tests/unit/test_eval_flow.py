"""core.eval.flow: the ground truth is right, the command's table and JSON, and the full-size EPE figures (slow)."""

import json

import numpy as np
import pytest

from core.eval.fixtures import load_photo
from core.eval.flow import MOTIONS, all_cases, main, motorcycle_case, synthetic_case
from core.eval.metrics import endpoint_error
from core.flow import backward_warp, estimate_flow


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


def test_command_prints_one_table_and_writes_its_numbers(capsys, tmp_path):
    path = tmp_path / "flow.json"
    assert main(["--methods", "dis", "farneback", "--max-side", "128", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    numbers = json.loads(path.read_text())
    assert list(numbers["methods"]) == ["dis", "farneback"] and numbers["max_side_px"] == 128
    lines = out.splitlines()
    header = lines.index(next(line for line in lines if line.startswith("case ")))
    assert lines[header].split()[-2:] == ["dis", "farneback"]
    rows = {line[:28].strip(): line[28:].split() for line in lines[header + 2 :] if line[:1].isalpha()}
    names = list(numbers["true_mean_px"])
    assert names[0] == "astronaut/shift_int" and names[-1] == "motorcycle" and len(names) == 19
    for name in names:  # every printed cell is the JSON number, rounded as printed
        speed, dis, farneback = (float(cell) for cell in rows[name])
        assert speed == pytest.approx(numbers["true_mean_px"][name], abs=0.005)
        assert dis == pytest.approx(numbers["methods"]["dis"]["epe_px"][name], abs=5e-4)
        assert farneback == pytest.approx(numbers["methods"]["farneback"]["epe_px"][name], abs=5e-4)
    synthetic = [v for k, v in numbers["methods"]["dis"]["epe_px"].items() if k != "motorcycle"]
    assert numbers["methods"]["dis"]["mean_synthetic_px"] == pytest.approx(np.mean(synthetic))
    assert float(rows["mean (synthetic)"][0]) == pytest.approx(np.mean(synthetic), abs=5e-4)
    assert (
        numbers["methods"]["dis"]["mean_synthetic_px"] < numbers["methods"]["farneback"]["mean_synthetic_px"]
    )


@pytest.mark.slow
def test_full_size_epe():
    """Full-size photos and motorcycle at 741x500; figures as in `python -m core.eval.flow`."""
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
