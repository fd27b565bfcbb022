"""The golden outputs of every app path (tests/golden/golden.json) are reproduced: a restructuring that
changes a frame, an image or a recorded parameter fails here. After an intended change of behaviour,
rerecord with `python -m tests.golden.record --write` and say why in the commit."""

import pytest

from tests.golden import record


@pytest.mark.slow
def test_every_app_path_reproduces_its_golden_outputs(capsys, monkeypatch):
    for name, value in record.TINY_ENV.items():  # set here so that they are undone after the test
        monkeypatch.setenv(name, value)
    code = record.main([])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "golden outputs unchanged" in out
