"""core.eval.keyframe_edit on the tiny SD model: the consistency table and its JSON.

Run with -s to see the table."""

import json
import re

import numpy as np
import pytest

from core.eval import keyframe_edit
from core.eval.fixtures import pan_keyframes
from core.eval.metrics import keyframe_flows, warp_errors

WAYS = ["original", "alone", "none", "anchor", "all"]


def test_command_prints_the_consistency_table_and_writes_its_numbers(capsys, tmp_path):
    path = tmp_path / "keyframe_edit.json"
    code = keyframe_edit.main(
        ["--sd-model", "tiny", "--device", "cpu", "--size", "64", "--keyframes", "3"]
        + ["--steps", "2", "--strength", "1.0", "--seed", "0", "--json", str(path)]
    )
    printed = capsys.readouterr().out
    with capsys.disabled():
        print("\n" + printed)
    assert code == 0
    rows = {
        m[1]: m.groups()[1:]
        for m in re.finditer(r"^(\w+)\s+(\d+\.\d\d) ([\d. ]+?)\s+(\d+\.\d\d)$", printed, re.M)
    }
    assert list(rows) == WAYS
    numbers = json.loads(path.read_text())
    assert numbers["sd_model"] == "tiny" and numbers["settings"]["keyframes"] == 3
    assert list(numbers["ways"]) == WAYS
    for way, (figure, pairs, _) in rows.items():
        assert float(figure) == pytest.approx(numbers["ways"][way]["figure"], abs=0.005)
        assert [float(p) for p in pairs.split()] == pytest.approx(numbers["ways"][way]["per_pair"], abs=0.005)
    figures = {way: numbers["ways"][way]["figure"] for way in WAYS}
    # The identity edit's figure is the warp error of the original keyframes themselves.
    clip = pan_keyframes(64, count=3, spacing=4)
    assert figures["original"] == pytest.approx(warp_errors(clip, keyframe_flows(clip)).mean(), abs=1e-9)
    # A batch without cross-frame attention edits each keyframe as a call of its own would (shared noise).
    assert figures["none"] == pytest.approx(figures["alone"], abs=0.02)
    assert all(np.isfinite(v) for v in figures.values())
