"""core.eval.flow_encoding: the measured round-trip errors stay within their bounds; the table and JSON."""

import json

import pytest

from core.eval.flow_encoding import SCALES_PX, main, round_trip_errors


def test_round_trip_errors_are_within_the_bounds():
    rows = round_trip_errors(samples=20_001)
    assert [r["scale_px"] for r in rows] == list(SCALES_PX)
    for r in rows:
        assert r["float_max"] <= 2.0**-23 * r["scale_px"]
        assert 0.99 * r["uint8_bound"] <= r["uint8_max"] <= r["uint8_bound"]
        assert r["uint8_max_small"] <= r["uint8_bound_small"]
        assert r["uint8_mean"] < r["uint8_max"]


def test_command_prints_one_table_and_writes_its_numbers(capsys, tmp_path):
    path = tmp_path / "flow_encoding.json"
    assert main(["--scales", "4", "8", "--json", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Flow encoding signed-sqrt-v1: round-trip error (px)"
    assert lines[1].split()[:3] == ["scale", "px", "float"] and set(lines[2]) == {"-"}
    numbers = json.loads(path.read_text())
    assert numbers["encoding"] == "signed-sqrt-v1" and [r["scale_px"] for r in numbers["scales"]] == [4, 8]
    for line, row in zip(lines[3:5], numbers["scales"]):
        cells = [float(cell) for cell in line.split()]
        assert cells[0] == row["scale_px"]
        assert cells[2:] == pytest.approx(
            [
                row[k]
                for k in ("uint8_max", "uint8_mean", "uint8_bound", "uint8_max_small", "uint8_bound_small")
            ],
            abs=5e-5,
        )
        assert cells[1] == pytest.approx(row["float_max"], rel=0.01)
