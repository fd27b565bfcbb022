"""Run history (apps/common/history.py) and the Gradio Runs panel's sessions (apps/common/runs_panel.py):
only a session's own runs are listed, newest first; a damaged or deleted record is left out with one sentence;
thumbnails come from image and video outputs; a joint-depth run's record redoes it through the controls."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from gradio.utils import get_upload_folder
from PIL import Image

from apps.common.history import RunHistory
from apps.common.runs import RunRecord, file_names, new_run_folder
from apps.common.runs_panel import RunsPanel
from apps.joint_depth import compare, job
from apps.joint_depth.job import JointRequest
from core.config import Settings
from core.errors import InputError
from core.video import write_video


def _run(output_dir, app: str = "joint_depth", arguments: dict | None = None, picture: str = "png"):
    """A run folder with a record and one output (an image or an mp4); the record's path."""
    folder = new_run_folder(output_dir, app)
    frames = np.zeros((3, 40, 80, 3), np.uint8)
    frames[:, :, :40] = 255  # left half white
    if picture == "png":
        Image.fromarray(frames[0]).save(folder / "image_1.png")
        outputs = {"image_1": "image_1.png"}
    else:
        write_video(folder / "result.mp4", frames, 8)
        outputs = {"video_mp4": "result.mp4"}
    record = RunRecord(
        app, "ui:generate", arguments or {"seed": 1}, outputs=outputs, timings_s={"seconds": 1.5}
    )
    return record.write(folder / "params.json")


def test_each_session_lists_its_own_runs_newest_first(tmp_path):
    panel = RunsPanel("jd")
    alice, bob = SimpleNamespace(session_hash="alice"), SimpleNamespace(session_hash="bob")
    alices = [_run(tmp_path) for _ in range(3)]
    bobs = _run(tmp_path)  # the same output folder: never listed for alice
    for record in alices:
        panel.remember(alice, record)
    panel.remember(bob, bobs)
    panel.remember(None, _run(tmp_path))  # no session (a script): listed nowhere

    entries, notes = panel.history(alice).entries()
    assert [e.record_path for e in entries] == alices[::-1] and notes == []
    assert [e.name for e in panel.history(bob).entries()[0]] == [bobs.parent.name]
    with pytest.raises(InputError, match="this session's runs"):
        panel.history(alice).get(bobs.parent.name)

    panel.remember(alice, alices[0])  # a run added again becomes the newest, listed once
    assert [e.record_path for e in panel.history(alice).entries()[0]] == [alices[0], alices[2], alices[1]]
    panel.end_session(alice)
    assert len(panel.history(alice)) == 0 and len(panel.history(bob)) == 1


def test_a_damaged_or_deleted_record_is_left_out_with_a_sentence(tmp_path):
    history = RunHistory()
    good, damaged, deleted = _run(tmp_path), _run(tmp_path), _run(tmp_path)
    for record in (good, damaged, deleted):
        history.add(record)
    damaged.write_text('{"format": "kinema.run", "version": 1, "app": "joint_depth"')  # cut short
    deleted.unlink()

    entries, notes = history.entries()
    assert [e.record_path for e in entries] == [good]
    assert len(notes) == 2
    assert notes[0].startswith(f"Run {deleted.parent.name} is not listed: its record is gone")
    assert notes[1].startswith(f"Run {damaged.parent.name} is not listed: Cannot read the run record")
    assert all("\n" not in note and str(tmp_path) not in note for note in notes)  # one line, no server path


def test_entries_give_thumbnails_downloads_and_parameters(tmp_path):
    history = RunHistory()
    image_run, video_run = _run(tmp_path), _run(tmp_path, "keyframe", picture="mp4")
    history.add(image_run)
    history.add(video_run)
    video, image = history.entries()[0]
    for entry in (video, image):
        thumb = entry.thumbnail_uint8(side=40)
        assert thumb.shape == (20, 40, 3)  # the 40x80 picture, longest side 40
        assert thumb[:, :18].min() > 200 and thumb[:, 22:].max() < 50  # its white left half, black right
    assert [p.name for p in video.downloads()] == ["result.mp4", "params.json"]
    assert RunRecord.from_dict(__import__("json").loads(image.parameters_json())) == RunRecord.read(image_run)
    assert image.summary() == f"{image.name} (ui:generate, 1.5 s)"
    (image_run.parent / "image_1.png").unlink()
    assert image.thumbnail_uint8() is None and [p.name for p in image.downloads()] == ["params.json"]


@pytest.mark.parametrize("mode", ["joint", "image_to_depth"])
def test_a_joint_record_redoes_its_request_through_the_controls(tmp_path, mode):
    """record -> Redo's control values -> the request the app builds from them -> the same record arguments."""
    upload = tmp_path / "upload.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(upload)
    settings = Settings(sd_model="tiny", device="cpu")
    values = dict(
        mode=mode, prompt="a red chair", negative_prompt="blur", steps=3, guidance=5.0, seed=7, batch=2
    )
    values |= dict(height=128, width=64) if mode == "joint" else dict(side=128, input_path=str(upload))
    request = JointRequest.from_ui(settings, near=0.5, far=20.0, fov_deg=50, max_points=999, **values)
    arguments = job.record_arguments(request, (128, 64))
    history = RunHistory()
    history.add(_run(tmp_path, arguments=arguments))  # the run's image_1.png is its input in image -> depth
    (entry,) = history.entries()[0]
    assert entry.record.arguments == file_names(arguments)  # a served run's record names no server path

    ui = dict(zip(compare.REDO_CONTROLS, compare.redo_values(entry, {})))
    assert ui["tabs"].selected == mode and f"run {entry.name}" in ui["status"]
    prefix = "" if mode == "joint" else ("image_" if mode == "image_to_depth" else "depth_")
    from_controls = {
        "prompt": ui[f"{prefix}prompt"],
        **(
            {"height": ui["height"], "width": ui["width"]}
            if mode == "joint"
            else {"side": ui[f"{prefix}side"]}
        ),
        **{k: ui[k] for k in ("steps", "guidance", "seed", "batch", "near", "far", "fov_deg", "max_points")},
    }
    if mode == "joint":
        from_controls["negative_prompt"] = ui["negative"]
    else:
        # the input comes back from the run's own copy, served to this session only (in Gradio's upload cache)
        served = Path(ui["image_in"])
        assert served.is_relative_to(get_upload_folder()) and served.name == "image_1.png"
        assert np.array_equal(
            np.asarray(Image.open(served)), np.asarray(Image.open(entry.folder / "image_1.png"))
        )
        from_controls["input_path"] = str(upload)  # as the upload the user made
        from_controls["negative_prompt"] = request.negative_prompt  # image -> depth has no negative prompt
    again = JointRequest.from_ui(settings, mode=mode, weights=ui["weights"], **from_controls)
    assert job.record_arguments(again, (128, 64)) == arguments
