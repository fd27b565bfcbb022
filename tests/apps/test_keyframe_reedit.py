"""A re-edited keyframe keeps the cross-keyframe attention: its SD call holds the other edited keyframes (an
uploaded edit first, as the anchor), the record names them and redoes the re-edit exactly."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from apps.common.runs import RunRecord
from apps.keyframe import job
from apps.keyframe.handlers import Handlers, Session
from apps.keyframe.sample import SAMPLE_VIDEO
from apps.keyframe.video import load_video
from core.config import Settings
from core.pipelines.keyframe_edit import KeyframeEditPipeline

KEYS = "0,5,10"
SD = {"backend": "sd", "prompt": "snow", "steps": 2, "strength": 0.5, "guidance": 1.0}


@pytest.fixture
def settings(tmp_path):
    return Settings.from_env({}, sd_model="tiny", device="cpu", output_dir=tmp_path / "outputs")


@pytest.fixture
def sd_batches(monkeypatch):
    """The keyframes (K,H,W,3) uint8 of every KeyframeEditPipeline call."""
    batches: list[np.ndarray] = []
    call = KeyframeEditPipeline.__call__

    def spy(self, *args, **kwargs):
        batches.append(kwargs["keyframes"].copy())
        return call(self, *args, **kwargs)

    monkeypatch.setattr(KeyframeEditPipeline, "__call__", spy)
    return batches


def test_a_reedit_attends_to_the_other_edits_and_redoes_from_the_record(settings, sd_batches, tmp_path):
    video = load_video(SAMPLE_VIDEO, settings, end_s=1.0, working_side=64)
    h = Handlers(settings)
    loaded = job.KeyframeRequest(video=str(SAMPLE_VIDEO), end_s=1.0, working_side=64, edit=None)
    session, _, _ = h.edit_all(Session(request=loaded, video=video), KEYS, **SD)
    own = np.full((64, 64, 3), 90, np.uint8)
    own[16:48, 16:48] = (250, 40, 40)
    Image.fromarray(own).save(tmp_path / "own.png")
    session, _, _ = h.upload_edit(session, KEYS, 10, str(tmp_path / "own.png"))
    session, _, status = h.reedit_keyframe(session, KEYS, 5, seed=3, **SD)

    # The re-edit's batch: the upload (the anchor), the other SD edit, then keyframe 5 itself.
    assert status.startswith("Re-edited keyframe 5") and len(sd_batches) == 2
    batch = sd_batches[-1]
    assert batch.shape == (3, 64, 64, 3)
    assert np.array_equal(batch[0], own) and np.array_equal(batch[1], session.edited[0])
    assert np.array_equal(batch[2], video.frames_uint8[5])
    assert session.edits[5].anchors == (10, 0)

    # A filter re-edit edits each pixel alone: no anchors.
    filtered, _, _ = h.reedit_keyframe(session, KEYS, 0, backend="filter", filter="cartoon")
    assert filtered.edits[0].anchors == () and len(sd_batches) == 2

    # The record names the anchors and redoes the re-edit after the edits it attended to, exactly.
    h.inbetween(session, KEYS, "crossfade", 0, "dis", 127, 2, 0, 8)
    (folder,) = (settings.output_dir / "keyframe").iterdir()
    record = RunRecord.read(folder / "params.json")
    shutil.copyfile(
        SAMPLE_VIDEO, folder / SAMPLE_VIDEO.name
    )  # the video beside the record, as a user keeps it
    assert [k["edit"].get("anchors") for k in record.arguments["keyframes"]] == [None, [10, 0], None]
    again = job.run(
        job.request_from_record(record, folder), settings, job.OutputFiles.in_folder(tmp_path / "again")
    )
    assert np.array_equal(again.result_uint8[5], session.edited[5])
    assert np.array_equal(sd_batches[-1], batch)
