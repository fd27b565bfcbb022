"""The keyframe CLI end to end (flow backend with a filter edit), its run record redoing the run, and its
one-line errors with status 2."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from apps.common.runs import RunRecord
from apps.keyframe import cli, job
from apps.keyframe.sample import SAMPLE_VIDEO
from apps.keyframe.video import load_video
from core.config import Settings
from core.engines.edit import apply_edit
from core.errors import InputError
from core.video import read_video, write_video

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "python -m apps.keyframe.cli: error: "


@pytest.fixture(autouse=True)
def offline_models(monkeypatch, tmp_path):
    for name in (
        "SD_MODEL",
        "SVD_MODEL",
        "JOINT_WEIGHTS",
        "SVD_INTERP_LORA",
        "MAX_FRAMES",
        "MAX_IMAGE_SIDE",
        "MAX_UPLOAD_MB",
    ):
        monkeypatch.delenv(f"KINEMA_{name}", raising=False)
    monkeypatch.setenv("KINEMA_SD_MODEL", "tiny")
    monkeypatch.setenv("KINEMA_DEVICE", "cpu")
    monkeypatch.setenv("KINEMA_OUTPUT_DIR", str(tmp_path / "outputs"))


def test_flow_backend_with_a_filter_writes_every_output(tmp_path, capsys):
    out = tmp_path / "run" / "out.mp4"
    code = cli.main(
        [
            "--video", str(SAMPLE_VIDEO), "--out", str(out), "--working-size", "160", "--start", "0.5",
            "--keyframes", "uniform:6", "--edit", "adjust", "--param", "hue_deg=120", "--param", "gamma=1.5",
            "--interp", "flow", "--gif", str(tmp_path / "out.gif"), "--side-by-side", str(tmp_path / "sbs.mp4"),
            "--keyframes-zip", str(tmp_path / "keys.zip"),
        ]
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "Loaded 19 frames of 160x160 at 10 fps from sample.mp4." in printed
    assert "Keyframes: 0, 6, 12, 18." in printed

    frames = load_video(SAMPLE_VIDEO, Settings.from_env({}), start_s=0.5, working_side=160).frames_uint8
    edited = apply_edit(frames[[0, 6, 12, 18]], "adjust", hue_deg=120.0, gamma=1.5)
    video = read_video(out)
    assert video.num_frames == 19 and video.fps == 10.0 and video.size_hw == (160, 160)
    assert np.abs(video.frames_uint8[[0, 6, 12, 18]].astype(int) - edited).mean() < 4  # H.264 at crf 18
    assert np.abs(video.frames_uint8.astype(int) - frames).mean() > 10  # the edit reached every frame
    assert read_video(tmp_path / "out.gif").num_frames == 19
    assert read_video(tmp_path / "sbs.mp4").size_hw == (160, 2 * 160 + 8)
    with zipfile.ZipFile(tmp_path / "keys.zip") as archive:
        assert len(archive.namelist()) == 8

    record = json.loads(out.with_suffix(".json").read_text())
    assert (record["format"], record["app"], record["action"]) == ("kinema.run", "keyframe", "cli")
    assert record["command"][:3] == ["python", "-m", "apps.keyframe.cli"] and "--gif" in record["command"]
    params = record["arguments"]
    assert params["video"]["start_s"] == 0.5 and params["video"]["first_source_frame"] == 5
    assert [k["index"] for k in params["keyframes"]] == [0, 6, 12, 18]
    assert params["keyframes"][2]["edit"]["params"]["hue_deg"] == 120.0
    assert params["keyframes"][2]["edit"]["batch"] == [0, 6, 12, 18]
    assert params["inbetween"]["backend"] == "flow" and params["inbetween"]["output_fps"] == 10.0
    assert record["settings"]["sd_model"] == "tiny"
    assert record["outputs"] == {  # beside the record by name, elsewhere by absolute path
        "video_mp4": "out.mp4",
        "video_gif": str(tmp_path / "out.gif"),
        "side_by_side_mp4": str(tmp_path / "sbs.mp4"),
        "keyframes_zip": str(tmp_path / "keys.zip"),
    }
    assert (
        RunRecord.read(out.with_suffix(".json")).output_paths(out.parent)["video_gif"] == tmp_path / "out.gif"
    )
    assert set(record["timings_s"]) == {"load", "edit", "motion", "inbetween"}


def test_manual_keyframes_crossfade_and_sd_edit(tmp_path, capsys):
    out = tmp_path / "sd.mp4"
    code = cli.main(
        [
            "--video", str(SAMPLE_VIDEO), "--out", str(out), "--working-size", "64", "--end", "1.0",
            "--keyframes", "0,5,10", "--edit", "sd", "--prompt", "snow", "--keyframe-prompt", "5: rain",
            "--strength", "0.5", "--guidance", "1", "--steps", "2", "--interp", "crossfade", "--fps", "5",
        ]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    video = read_video(out)
    assert video.num_frames == 11 and video.fps == 5.0
    params = json.loads(out.with_suffix(".json").read_text())["arguments"]
    assert params["keyframes"][0]["edit"]["keyframe_prompts"] == {"5": "rain"}
    assert params["keyframes"][0]["reason"] == "chosen by hand"


def test_adaptive_keyframes_from_appearance(tmp_path):
    out = tmp_path / "a.mp4"
    args = ["--video", str(SAMPLE_VIDEO), "--out", str(out), "--working-size", "64"]
    assert cli.main([*args, "--keyframes", "adaptive:appearance:0.02", "--edit", "identity"]) == 0
    indices = [k["index"] for k in json.loads(out.with_suffix(".json").read_text())["arguments"]["keyframes"]]
    assert indices[0] == 0 and indices[-1] == 23 and len(indices) > 2


@pytest.mark.parametrize(
    "args",
    [
        ["--keyframes", "adaptive:flow", "--edit", "color_grade", "--param", "reference={reference}"],
        ["--keyframes", "0,5,10", "--edit", "sd", "--prompt", "snow", "--keyframe-prompt", "10: rain",
         "--steps", "2", "--interp", "crossfade", "--end", "1.0"],
    ],
    ids=["adaptive-flow-filter-with-image", "manual-sd-crossfade"],
)  # fmt: skip
def test_the_record_redoes_the_run(tmp_path, capsys, args):
    reference = tmp_path / "reference.png"
    Image.fromarray(np.linspace(0, 255, 48 * 3 * 32).astype(np.uint8).reshape(32, 48, 3)).save(reference)
    out = tmp_path / "first" / "out.mp4"
    argv = ["--video", str(SAMPLE_VIDEO), "--out", str(out), "--working-size", "64"]
    argv += [a.format(reference=reference) for a in args]
    assert cli.main(argv) == 0, capsys.readouterr().err
    settings = Settings.from_env()
    first = job.run(cli.request_from_args(cli.build_parser().parse_args(argv), settings), settings,
                    job.OutputFiles(tmp_path / "direct.mp4", tmp_path / "direct.json"))  # fmt: skip
    record = RunRecord.read(out.with_suffix(".json"))
    assert record.arguments == first.record.arguments

    request = job.request_from_record(record, out.parent)
    files = job.OutputFiles(tmp_path / "again" / "out.mp4", tmp_path / "again" / "out.json")
    again = job.run(request, settings, files, action="cli", command=record.command)
    assert np.array_equal(again.result_uint8, first.result_uint8)
    assert again.record.arguments == record.arguments
    assert np.array_equal(read_video(files.video_mp4).frames_uint8, read_video(out).frames_uint8)


def test_records_that_cannot_redo_a_keyframe_run_are_refused(tmp_path):
    record = RunRecord(app="drag", action="cli", arguments={})
    with pytest.raises(InputError, match="run record of the drag app"):
        job.request_from_record(record, tmp_path)
    with pytest.raises(InputError, match="keyframe run record is damaged: KeyError"):
        job.request_from_record(RunRecord(app="keyframe", action="cli", arguments={}), tmp_path)
    out = tmp_path / "out.mp4"
    argv = ["--video", str(SAMPLE_VIDEO), "--out", str(out), "--working-size", "64", "--keyframes", "0,23"]
    assert cli.main([*argv, "--edit", "identity"]) == 0
    data = RunRecord.read(out.with_suffix(".json")).to_dict()
    data["arguments"]["keyframes"][1]["edit"]["batch"] = [0, 99]
    request = job.request_from_record(RunRecord.from_dict(data), tmp_path)
    with pytest.raises(
        InputError, match=r"names frames 0, 99 as its batch; they must include those keyframes"
    ):
        job.run(
            request, Settings.from_env(), job.OutputFiles(tmp_path / "again.mp4", tmp_path / "again.json")
        )


@pytest.fixture(scope="module")
def bad_videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad")
    corrupt = folder / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"not a video" * 200)
    one_frame = write_video(folder / "one_frame.mp4", np.full((1, 64, 64, 3), 128, np.uint8), 10)
    return {"corrupt": corrupt, "one_frame": one_frame}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--video", "{missing}"], "The video missing.mp4 does not exist."),
        (
            ["--video", "{corrupt}"],
            "The video file corrupt.mp4 cannot be read: it is corrupt or not a video.",
        ),
        (
            ["--video", "{one_frame}"],
            "The chosen part holds 1 frame; keyframe editing needs a video of at least 2 frames.",
        ),
        (
            ["--max-frames", "5"],
            "The chosen part is 2.4 s long (24 frames at 10 fps) but at most 5 frames are processed",
        ),
        (
            ["--max-image-side", "256"],
            "The video is 320x320; the largest accepted side is 256 px (KINEMA_MAX_IMAGE_SIDE).",
        ),
        (["--keyframes", "0,99"], "Keyframe 99 is outside the video, which has frames 0 to 23."),
        (["--keyframes", "uniform:x"], "--keyframes uniform:N needs a whole number N, got 'x'."),
        (
            ["--edit", "adjust", "--param", "hue=3"],
            "The adjust filter has no parameter 'hue'; its parameters:",
        ),
        (["--edit", "adjust", "--param", "hue_deg=999"], "must be between -180 and 180, got 999.0."),
        (["--edit", "color_grade"], "The color_grade edit needs a 'reference'"),
        (["--edit", "sd"], "The SD edit needs a prompt"),
        (["--edit", "sd", "--prompt", "x", "--sd-model", "{missing}"], "set KINEMA_SD_MODEL (or --sd-model)"),
        (["--interp", "svd-trf", "--keyframes", "0,8"], "make frames 0 and 23 keyframes"),
        (["--out", "{tmp}/out.avi"], "--out must end in .mp4, got out.avi."),
        (["--start", "3"], "The start time 3 s is past the end of the video (2.40 s)."),
        (["--fps", "500"], "The output frame rate must be between 0 and 120 fps, got 500.0."),
        (["--device", "tpu"], "Setting device='tpu' is not valid"),
        (["--frobnicate"], "unrecognized arguments: --frobnicate (see --help)"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, bad_videos, args, message):
    names = {"missing": tmp_path / "missing.mp4", "tmp": tmp_path, **bad_videos}
    args = [a.format(**names) for a in args]
    base = {"--video": str(SAMPLE_VIDEO), "--out": str(tmp_path / "out.mp4"), "--working-size": "64"}
    for flag, value in base.items():
        if flag not in args:
            args = [flag, value, *args]
    assert run_cli(args) == 2
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(PREFIX), err
    assert message.format(**names) in lines[0]
    assert not (tmp_path / "out.mp4").exists()


def run_cli(args: list[str]) -> int | str | None:
    """cli.main's status, also when argparse exits (as it does for unknown flags)."""
    try:
        return cli.main(args)
    except SystemExit as exit_:
        return exit_.code


def test_module_entry_point_exits_2_with_one_line(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "apps.keyframe.cli", "--video", str(tmp_path / "nope.mp4"), "--out", "x.mp4"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [f"{PREFIX}The video nope.mp4 does not exist."]
