"""python -m apps.drag.evaluate: the ObjMC table of the warp backend, and a row set per backend on the tiny
(random-weight) models; every printed number is the JSON's."""

import json
import re

import pytest

from apps.drag import backends, evaluate
from core.eval.fixtures import DRAG_REQUESTS, WARP_TARGET_PX


def _table(stdout: str) -> dict[tuple[str, str, str], list[str]]:
    """{(backend, photo, track): the other cells} of the one table."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("backend "))
    rows = {}
    for line in lines[start + 2 :]:
        if line.startswith("-"):
            continue
        if not line or line.startswith(("NOTE", "target", "skipped", "wrote")):
            break
        backend, photo, track, *cells = line.split()
        rows[backend, photo, track] = cells
    return rows


def test_warp_backend_table_and_numbers(capsys, tmp_path, monkeypatch):
    # By default every offered backend runs; one whose weights are missing is skipped with its reason.
    monkeypatch.setenv("KINEMA_SVD_MODEL", str(tmp_path / "no-svd-here"))
    for name in ("KINEMA_SVD_CONTROLNET_MODEL", "KINEMA_SVD_JOINT_FLOW_MODEL"):
        monkeypatch.delenv(name, raising=False)
    code = evaluate.main(
        ["--quiet", "--max-side", "256", "--frames", "6", "--json", str(tmp_path / "objmc.json")]
    )
    stdout = capsys.readouterr().out
    assert code == 0
    assert re.search(r"^skipped svd: .*no-svd-here.*KINEMA_SVD_MODEL", stdout, re.MULTILINE)
    assert "svd backend" not in stdout and "NOTE" not in stdout
    assert "Photos: astronaut 256x256, coffee 256x192." in stdout
    numbers = json.loads((tmp_path / "objmc.json").read_text())
    assert numbers["evaluation"] == "drag_objmc" and numbers["frames"] == 6
    assert list(numbers["backends"]) == ["warp"] and list(numbers["skipped"]) == ["svd"]
    rows = _table(stdout)
    for photo, result in numbers["backends"]["warp"]["photos"].items():
        tracks = [f"{'anchor' if move == 0 else 'drag'}{i + 1}" for i, move in enumerate(result["moves_px"])]
        assert tracks == ["drag1", "drag2", "drag3", "drag4", "anchor5"]
        for i, track in enumerate(tracks):
            *_, objmc, moved, tracker = rows["warp", photo, track]
            assert float(objmc) == pytest.approx(result["per_track_px"][i], abs=5e-4)
            assert float(moved) == pytest.approx(result["moves_px"][i], abs=0.05) and tracker == "ok"
        mean = rows["warp", photo, "mean"]
        assert [float(c) for c in mean[:5]] == pytest.approx(result["per_frame_px"][1:], abs=5e-4)
        assert float(mean[5]) == pytest.approx(result["objmc_px"], abs=5e-4)
    overall = rows["warp", "all", "mean"]
    assert float(overall[5]) == pytest.approx(numbers["backends"]["warp"]["objmc_px"], abs=5e-4)
    assert float(overall[5]) < WARP_TARGET_PX
    assert set(numbers["backends"]["warp"]["photos"]) == set(DRAG_REQUESTS)


def test_every_backend_has_its_rows_in_the_one_table(capsys, tmp_path, tiny_env):
    code = evaluate.main(
        ["--backends", *backends.BACKENDS, "--photos", "coffee", "--size", "64x64", "--frames", "3",
         "--steps", "2", "--quiet", "--json", str(tmp_path / "objmc.json")]
    )  # fmt: skip
    stdout = capsys.readouterr().out
    assert code == 0
    assert stdout.count("\nbackend ") == 1  # one table
    for name in backends.BACKENDS:
        assert re.search(rf"^{name} backend", stdout, re.MULTILINE)
    assert "svd-controlnet backend, svd_model tiny, svd_controlnet_model tiny, strength 1.0" in stdout
    assert "NOTE: svd, svd-controlnet, svd-joint-flow ran 'tiny' random weights" in stdout
    rows = _table(stdout)
    numbers = json.loads((tmp_path / "objmc.json").read_text())
    assert list(numbers["backends"]) == list(backends.BACKENDS) and numbers["skipped"] == {}
    for name, result in numbers["backends"].items():
        photo_mean, overall = rows[name, "coffee", "mean"], rows[name, "all", "mean"]
        assert float(photo_mean[2]) == float(overall[2]) == pytest.approx(result["objmc_px"], abs=5e-4)
        assert float(overall[3]) == pytest.approx(result["seconds"], abs=0.05)
        assert result["photos"]["coffee"]["objmc_px"] == pytest.approx(result["objmc_px"])
    assert numbers["backends"]["svd-joint-flow"]["models"] == {
        "svd_model": "tiny",
        "svd_joint_flow_model": "tiny",
    }
    assert float(rows["warp", "all", "mean"][2]) < WARP_TARGET_PX
