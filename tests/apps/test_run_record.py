"""The run record every app writes: round trip, refusal of what is not one, run folders."""

from __future__ import annotations

import json
from pathlib import Path

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


def test_output_paths_keep_absolute_paths(tmp_path):
    record = RunRecord(
        app="drag", action="cli", arguments={}, outputs={"video": "v.mp4", "flow": str(tmp_path / "f.mp4")}
    )
    assert record.output_paths("/elsewhere") == {
        "video": Path("/elsewhere/v.mp4"),
        "flow": tmp_path / "f.mp4",
    }


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


def test_a_served_runs_record_names_files_not_server_paths(tmp_path):
    """A ui: record is downloaded by its user: absolute paths in it become file names; a CLI's stay whole."""
    arguments = {
        "input_path": "/tmp/gradio/abc/photo.png",
        "steps": 4,
        "frames": ["/srv/a/b.png", "rel/c.png"],
    }
    settings = {"output_dir": "/srv/kinema/outputs", "sd_model": "tiny", "svd_model": "org/model"}
    outputs = {"video_mp4": "video.mp4", "flow": "/srv/kinema/outputs/drag/run/flow.mp4"}
    served = RunRecord("drag", "ui:generate", arguments, settings, outputs).write(tmp_path / "ui.json")
    text = served.read_text()
    assert "/srv" not in text and "/tmp" not in text
    back = RunRecord.read(served)
    assert back.arguments == {"input_path": "photo.png", "steps": 4, "frames": ["b.png", "rel/c.png"]}
    assert back.settings == {"output_dir": "outputs", "sd_model": "tiny", "svd_model": "org/model"}
    assert back.outputs == {"video_mp4": "video.mp4", "flow": "flow.mp4"}
    cli = RunRecord("drag", "cli", arguments, settings, outputs).write(tmp_path / "cli.json")
    assert RunRecord.read(cli).arguments == arguments and RunRecord.read(cli).outputs == outputs
