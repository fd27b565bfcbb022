"""The run record every app writes: round trip, refusal of what is not one, run folders."""

from __future__ import annotations

import json

import pytest

from apps.common.runs import RUN_FORMAT, RUN_VERSION, RunRecord, new_run_folder
from core.errors import InputError


def _record() -> RunRecord:
    return RunRecord(
        app="drag",
        action="cli",
        command=["python", "-m", "apps.drag.cli", "--out", "v.mp4"],
        arguments={"backend": "warp", "num_frames": 14, "tracks": [[0.1, 0.2], [0.3, 0.4]]},
        settings={"svd_model": "tiny", "device": "cpu"},
        outputs={"video_mp4": "v.mp4"},
        timings_s={"total": 1.23456},
    )


def test_round_trip_through_a_file(tmp_path):
    path = _record().write(tmp_path / "run.json")
    data = json.loads(path.read_text())
    assert list(data)[:2] == ["format", "version"]
    assert (data["format"], data["version"]) == (RUN_FORMAT, RUN_VERSION)
    assert data["timings_s"] == {"total": 1.235}
    back = RunRecord.read(path)
    assert back.arguments == _record().arguments
    assert back.command == _record().command
    assert back.output_paths(tmp_path) == {"video_mp4": tmp_path / "v.mp4"}
    assert back.to_json() == path.read_text()


@pytest.mark.parametrize(
    "change, words",
    [
        ({"format": "kinema.drag.parameters"}, "is not a Kinema run record"),
        ({"version": 99}, "version 99"),
        ({"arguments": None}, "must be an object"),
        ({"app": "paint"}, "app must be one of"),
        ({"action": "clicked"}, "action must be"),
        ({"extra": 1}, "unknown ['extra']"),
    ],
)
def test_refuses_what_it_cannot_redo(tmp_path, change, words):
    data = {**_record().to_dict(), **change}
    path = tmp_path / "run.json"
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match=None) as caught:
        RunRecord.read(path)
    assert words in str(caught.value)
    assert "\n" not in str(caught.value)


def test_refuses_unreadable_json(tmp_path):
    path = tmp_path / "run.json"
    path.write_text("{not json")
    with pytest.raises(InputError, match="Cannot read the run record run.json"):
        RunRecord.read(path)


def test_run_folders_are_new_and_distinct(tmp_path):
    first = new_run_folder(tmp_path, "keyframe")
    second = new_run_folder(tmp_path, "keyframe")
    assert first != second and first.parent == second.parent == tmp_path / "keyframe"
    assert first.is_dir() and not any(first.iterdir())
    with pytest.raises(ValueError, match="app must be one of"):
        new_run_folder(tmp_path, "paint")
