"""core.eval.interpolation: the scores of each inbetweener, and the command's table and JSON."""

import json

import numpy as np
import pytest

from core.eval.fixtures import camera_clip, load_photo
from core.eval.interpolation import METHOD_NAMES, evaluate, main


def test_flow_beats_the_crossfade_on_a_pan():
    frames = camera_clip(load_photo("coffee"), "pan", size=64, n_frames=9)
    scores = evaluate(frames, (4,))
    assert list(scores) == [4] and list(scores[4]) == list(METHOD_NAMES)
    assert scores[4]["flow"][0] > scores[4]["crossfade"][0] + 10  # dB
    assert scores[4]["flow"][1] > scores[4]["crossfade"][1]


def test_command_prints_one_table_and_writes_its_numbers(capsys, tmp_path):
    path = tmp_path / "interpolation.json"
    argv = ["--size", "64", "--frames", "9", "--spacings", "4", "--synthetic-seeds", "0", "--json", str(path)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    numbers = json.loads(path.read_text())
    clips = ["astronaut/pan", "astronaut/zoom", "coffee/pan", "coffee/zoom", "synthetic/seed0"]
    assert list(numbers["clips"]) == clips and numbers["settings"]["spacings"] == [4]
    for name in [*clips, "mean"]:
        (line,) = [line for line in out.splitlines() if line.startswith(f"{name} ")]
        cells = line[len(name) :].split()
        assert cells[0] == "4"
        scores = numbers["mean"]["4"] if name == "mean" else numbers["clips"][name]["4"]
        for i, method in enumerate(METHOD_NAMES):
            psnr, slash, ssim = cells[1 + 3 * i : 4 + 3 * i]
            assert slash == "/"
            assert float(psnr) == pytest.approx(scores[method]["psnr_db"], abs=0.005)
            assert float(ssim) == pytest.approx(scores[method]["ssim"], abs=5e-4)
    means = [numbers["clips"][c]["4"]["flow"]["psnr_db"] for c in clips]
    assert numbers["mean"]["4"]["flow"]["psnr_db"] == pytest.approx(np.mean(means))
