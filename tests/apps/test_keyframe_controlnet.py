"""The canny ControlNet of KINEMA_CONTROLNET_MODEL in the keyframe SD edits: it runs (tiny weights) from the
CLI and from the app's edit event, its scale is recorded and 0 turns it off, and weights that cannot be
loaded are one sentence, not silence."""

from __future__ import annotations

import json
import re

import gradio as gr
import pytest

from apps.keyframe import cli
from apps.keyframe.handlers import Handlers, Session
from apps.keyframe.sample import SAMPLE_VIDEO
from apps.keyframe.video import load_video
from core.config import Settings
from core.models import load_controlnet

PREFIX = "python -m apps.keyframe.cli: error: "
SD_EDIT = ["--edit", "sd", "--prompt", "snow", "--steps", "2", "--strength", "0.5", "--guidance", "1"]
UNLOADABLE = "ControlNet weights '{path}' are not available (OSError): set KINEMA_CONTROLNET_MODEL"


@pytest.fixture
def settings(tmp_path):
    return Settings.from_env({}, sd_model="tiny", controlnet_model="tiny", device="cpu", output_dir=tmp_path)


@pytest.fixture
def controlnet_calls(settings):
    """How many times the cached tiny ControlNet (the one the edits load) runs."""
    calls: list[int] = []
    hook = load_controlnet(settings).register_forward_hook(lambda *_: calls.append(1))
    yield calls
    hook.remove()


def test_cli_edits_with_the_controlnet_and_records_it(tmp_path, controlnet_calls, capsys, monkeypatch):
    monkeypatch.setenv("KINEMA_DEVICE", "cpu")
    out = tmp_path / "cn.mp4"
    args = ["--video", str(SAMPLE_VIDEO), "--out", str(out), "--working-size", "64", "--end", "1.0"]
    args += ["--keyframes", "0,5,10", *SD_EDIT, "--interp", "crossfade", "--sd-model", "tiny"]
    assert cli.main([*args, "--controlnet-model", "tiny", "--controlnet-scale", "0.5"]) == 0, (
        capsys.readouterr()
    )
    assert len(controlnet_calls) == 1  # int(2 steps * strength 0.5) = 1 step, one batch of 3 keyframes
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["settings"]["controlnet_model"] == "tiny"
    assert record["arguments"]["keyframes"][0]["edit"]["controlnet_scale"] == 0.5

    bad = tmp_path / "no-controlnet"
    out.unlink()
    capsys.readouterr()  # the first run's progress bars
    assert cli.main([*args, "--controlnet-model", str(bad), "--overwrite"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(PREFIX + UNLOADABLE.format(path=bad)), lines
    assert not out.exists()


def test_the_app_edit_runs_the_controlnet_and_scale_0_turns_it_off(settings, controlnet_calls):
    video = load_video(SAMPLE_VIDEO, settings, end_s=1.0, working_side=64)
    session = Session(video=video)
    handlers = Handlers(settings)
    edit = {"backend": "sd", "prompt": "snow", "steps": 2, "strength": 0.5, "guidance": 1.0}
    _, gallery, status = handlers.edit_all(session, "0,5,10", controlnet_scale=1.0, **edit)
    assert status.startswith("Edited 3 keyframes") and len(controlnet_calls) == 1
    handlers.edit_all(session, "0,5,10", controlnet_scale=0.0, **edit)
    assert len(controlnet_calls) == 1

    bad = settings.output_dir / "no-controlnet"
    with pytest.raises(gr.Error, match=re.escape(UNLOADABLE.format(path=bad))):
        Handlers(settings.replace(controlnet_model=str(bad))).edit_all(session, "0,5,10", **edit)
