"""python -m apps.drag.cli: end to end on the warp backend, bad input, and every backend on the tiny
(random-weight) models. The evaluation, python -m apps.drag.evaluate: tests/apps/test_drag_evaluate.py."""

import json
import os
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from apps.common.runs import RunRecord
from apps.drag import backends, cli, evaluate, job
from apps.drag.params import DragParams
from core.config import Settings
from core.errors import InputError
from core.eval.fixtures import load_photo
from core.eval.metrics import measure_objmc
from core.imaging import apply_resize, plan_resize
from core.trajectory import Trajectories, Trajectory, tracks_to_px
from core.video import read_video

ROOT = Path(__file__).resolve().parents[2]
SOURCE_HW = (200, 300)
TRAJECTORIES = Trajectories(
    (
        Trajectory([[0.34, 0.30], [0.44, 0.26], [0.50, 0.30]]),
        Trajectory([[0.55, 0.70], [0.62, 0.62]]),
        Trajectory([[0.86, 0.80]]),
    )
)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("drag_cli")
    image = cv2.resize(load_photo("coffee"), SOURCE_HW[::-1], interpolation=cv2.INTER_AREA)
    Image.fromarray(image).save(folder / "coffee.png")
    (folder / "drag.json").write_text(TRAJECTORIES.to_json())
    (folder / "empty.json").write_text(Trajectories().to_json())
    (folder / "notes.png").write_text("this is not an image")
    return folder


def _run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_warp_run_writes_a_video_that_follows_the_trajectories(inputs, tmp_path, capsys):
    out = tmp_path / "runs" / "clip.mp4"
    argv = [
        "--image", inputs / "coffee.png", "--trajectories", inputs / "drag.json", "--out", out,
        "--frames", 8, "--fps", 8, "--max-side", 256, "--flow-out", tmp_path / "flow.mp4", "--gif", "--quiet",
        "--engine", "sheet",
    ]  # fmt: skip
    # The sheet, and its ObjMC bound. (With the objects engine the first drag here moves GrabCut's fallback
    # disc, 23 px across, too small a patch on this texture for ObjMC's flow tracking: 10 px on that track.
    # The objects engine's photo figures are core.eval.drag_objects'.)
    code, stdout, stderr = _run(capsys, *argv)
    assert code == 0, stderr
    assert f"video: {out}" in stdout

    info = plan_resize(*SOURCE_HW, multiple=64, max_side=256, mode="crop")
    expected_first = apply_resize(np.asarray(Image.open(inputs / "coffee.png").convert("RGB")), info)
    clip = read_video(out)
    assert clip.frames_uint8.shape == (8, *info.output_hw, 3) and clip.fps == pytest.approx(8)
    assert np.abs(clip.frames_uint8[0].astype(float) - expected_first).mean() < 3.0  # H.264 at crf 18

    # The decoded video moves the content where the trajectories (mapped into the frame) ask.
    fitted = job.fit_trajectories(TRAJECTORIES, info)
    requested = tracks_to_px(fitted.tracks_norm(8, info.output_hw[::-1]), *info.output_hw)
    score, _ = measure_objmc(clip.frames_uint8, requested)
    assert score.mean_px < 1.5

    assert read_video(tmp_path / "flow.mp4").frames_uint8.shape[0] == 7
    assert read_video(out.with_suffix(".gif")).frames_uint8.shape[0] == 8

    record = RunRecord.read(out.with_name("clip.params.json"))
    assert (record.app, record.action) == ("drag", "cli")
    assert record.command == ["python", "-m", "apps.drag.cli", *map(str, argv)]
    arguments, resolved = record.arguments, record.arguments["resolved"]
    assert arguments["backend"] == "warp" and arguments["frames"] == 8 and arguments["gif"] is True
    assert resolved["video_size"] == list(info.output_hw[::-1]) and resolved["source_size"] == [300, 200]
    assert 1 <= resolved["motion_bucket_id"] <= 255
    assert Trajectories.from_json(json.dumps(resolved["trajectories"])) == TRAJECTORIES
    assert record.settings["max_frames"] == "64"
    assert record.output_paths(out.parent) == {
        "video": out,
        "gif": out.with_suffix(".gif"),
        "flow": tmp_path / "flow.mp4",
    }


@pytest.mark.parametrize("backend", ["warp", "svd"])
def test_a_cli_record_redoes_its_run_through_the_job(inputs, tmp_path, capsys, tiny_env, backend):
    """CLI run -> its record -> `job.request_from_record` -> the job: the same frames, the same arguments."""
    out, mask = tmp_path / "first" / "clip.mp4", tmp_path / "mask.png"
    Image.fromarray(np.full(SOURCE_HW, 255, np.uint8)).save(mask)
    argv = [
        "--image", inputs / "coffee.png", "--trajectories", inputs / "drag.json", "--out", out,
        "--region-mask", mask, "--engine", "sheet", "--backend", backend, "--resize", "pad", "--max-side", 64,
        "--frames", 3, "--steps", 2, "--seed", 5, "--quiet",
    ]  # fmt: skip
    code, _, stderr = _run(capsys, *argv)
    assert code == 0, stderr
    record = RunRecord.read(out.with_name("clip.params.json"))

    request = job.request_from_record(record)
    assert request.params == DragParams(
        backend=backend, engine="sheet", resize="pad", max_side=64, frames=3, steps=2, seed=5
    )
    assert (request.image, request.region_mask) == (inputs / "coffee.png", mask)
    redo_out = job.DragOutputs(video=tmp_path / "redo" / "clip.mp4", record=tmp_path / "redo" / "clip.json")
    redo = job.run(request, redo_out, Settings.from_env(), action="cli", command=record.command)
    np.testing.assert_array_equal(read_video(redo_out.video).frames_uint8, read_video(out).frames_uint8)
    assert redo.record.arguments == {name: record.arguments[name] for name in redo.record.arguments}
    assert set(record.arguments) - set(redo.record.arguments) == {
        "out", "flow_out", "gif", "side_by_side", "object_mask", "quiet", "overwrite",
        *(f.name for f in fields(Settings)),
    }  # fmt: skip


def test_the_parameters_are_spelled_once():
    """The CLI flags, the evaluation's, the record's arguments and the app's widgets all come from
    DragParams' fields."""
    actions = {action.dest: action for action in cli.build_parser()._actions}
    for field in fields(DragParams):
        action = actions[field.name]
        assert action.option_strings == ["--" + field.name.replace("_", "-")]
        assert action.default == field.default and action.help == field.metadata["help"]
    assert actions["backend"].choices == list(backends.BACKENDS) and actions["frames"].type is int
    assert actions["strength"].type is float and actions["max_side"].choices is None
    # The ObjMC evaluation takes the render flags it shares from the same fields.
    scored = {action.dest: action for action in evaluate.build_parser()._actions}
    for name in ("frames", "fps", "strength", "controlnet_scale", "steps", "seed"):
        assert (scored[name].default, scored[name].help) == (actions[name].default, actions[name].help)
    assert "radius" not in scored and scored["max_side"].default == 512  # its own working size

    params = DragParams(backend="svd", strength=0.3, camera="zoom_in")
    assert DragParams.from_arguments(json.loads(json.dumps(params.to_arguments()))) == params
    with pytest.raises(InputError, match="its arguments lack seed, radius"):
        DragParams.from_arguments(
            {k: v for k, v in params.to_arguments().items() if k not in ("seed", "radius")}
        )
    working = DragParams.widget("max_side")
    assert (working.default, working.limit, working.choices[-1]) == (512, "max_image_side", 1024)
    assert (
        DragParams.widget("frames").limit == "max_frames"
        and DragParams.widget("radius").label == "Reach (px)"
    )

    other = RunRecord(app="keyframe", action="cli", arguments={"image": "a.png", "trajectories": "t.json"})
    with pytest.raises(InputError, match="from the keyframe app"):
        job.request_from_record(other)
    with pytest.raises(InputError, match="has no trajectories file"):
        job.request_from_record(RunRecord(app="drag", action="cli", arguments={"image": "a.png"}))


@pytest.mark.parametrize("mode", ["crop", "pad"])
def test_fit_trajectories_lands_on_the_same_content(mode):
    """A point drawn on a bright dot of the source is on that dot after the resize."""
    source = np.zeros((300, 500), np.uint8)
    source[100:104, 400:404] = 255  # dot centred at pixel-centre coordinates (401.5, 101.5)
    info = plan_resize(300, 500, multiple=64, max_side=256, mode=mode)
    resized = apply_resize(source, info, pad_mode="constant").astype(float)
    ys, xs = np.mgrid[0 : resized.shape[0], 0 : resized.shape[1]]
    dot = np.array([(xs * resized).sum(), (ys * resized).sum()]) / resized.sum()
    point = Trajectories((Trajectory([[(401.5 + 0.5) / 500, (101.5 + 0.5) / 300]]),))
    fitted = job.fit_trajectories(point, info)
    height, width = info.output_hw
    np.testing.assert_allclose(tracks_to_px(fitted[0].points_norm, height, width)[0], dot, atol=0.3)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("not_an_image", "not a readable image"),
        ("missing_trajectories", "does not exist"),
        ("empty_trajectories", "Nothing moves"),
        ("svd_without_weights", "KINEMA_SVD_MODEL"),
        ("bad_extension", "must end in .mp4 or .gif"),
        ("too_many_frames", "between 2 and 8"),
        ("unknown_format", "not a trajectory file"),
        ("strength_out_of_range", "strength must be in [0, 1]"),
        ("zero_fps", "frame rate"),
    ],
)
def test_bad_input_exits_2_with_one_clear_line(inputs, tmp_path, capsys, case, message):
    image, trajectories, out = inputs / "coffee.png", inputs / "drag.json", tmp_path / "clip.mp4"
    extra = ["--quiet"]
    if case == "not_an_image":
        image = inputs / "notes.png"
    elif case == "missing_trajectories":
        trajectories = inputs / "nowhere.json"
    elif case == "empty_trajectories":
        trajectories = inputs / "empty.json"
    elif case == "svd_without_weights":
        extra += ["--backend", "svd", "--svd-model", str(tmp_path / "no-such-model")]
    elif case == "bad_extension":
        out = tmp_path / "clip.avi"
    elif case == "too_many_frames":
        extra += ["--frames", "9", "--max-frames", "8"]
    elif case == "unknown_format":
        trajectories = tmp_path / "other.json"
        trajectories.write_text(json.dumps({"objects": []}))
    elif case == "strength_out_of_range":
        extra += ["--backend", "svd", "--strength", "1.5"]
    elif case == "zero_fps":
        extra += ["--fps", "0"]
    code, _, stderr = _run(capsys, "--image", image, "--trajectories", trajectories, "--out", out, *extra)
    assert code == 2
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last
    assert "Traceback" not in stderr
    assert not out.exists()


def test_the_module_itself_exits_2_without_a_traceback(inputs, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    argv = [
        "--image",
        inputs / "coffee.png",
        "--trajectories",
        inputs / "empty.json",
        "--out",
        tmp_path / "x.mp4",
    ]
    done = subprocess.run(
        [sys.executable, "-m", "apps.drag.cli", *map(str, argv)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "error: Nothing moves: draw at least one trajectory that goes somewhere (points only pin the image), "
        "or choose a camera motion."
    )


@pytest.mark.parametrize("backend", list(backends.BACKENDS))
def test_every_backend_writes_a_playable_video_and_its_parameters(
    inputs, tmp_path, capsys, tiny_env, backend
):
    """Every code path of every backend offline (random tiny weights: the pixels mean nothing)."""
    out, flow = tmp_path / f"{backend}.mp4", tmp_path / "flow.mp4"
    argv = [
        "--image", inputs / "coffee.png", "--trajectories", inputs / "drag.json", "--out", out,
        "--backend", backend, "--max-side", 64, "--frames", 3, "--steps", 2, "--controlnet-scale", 0.5,
        "--flow-out", flow, "--quiet",
    ]  # fmt: skip
    code, stdout, stderr = _run(capsys, *argv)
    assert code == 0, stderr
    assert out.read_bytes()[4:8] == b"ftyp"
    clip = read_video(out)
    assert clip.frames_uint8.shape == (3, 64, 64, 3) and clip.fps == pytest.approx(7)
    assert read_video(flow).frames_uint8.shape == (2, 64, 64, 3)
    record = RunRecord.read(out.with_name(f"{backend}.params.json"))
    assert record.arguments["backend"] == backend and record.settings["svd_model"] == "tiny"
    resolved = record.arguments["resolved"]
    assert resolved["strength"] == {"svd": 0.4, "svd-controlnet": 1.0}.get(backend)
    assert resolved["controlnet_scale"] == (0.5 if backend == "svd-controlnet" else None)
    assert record.outputs["video"] == str(out) and f"record: {out.with_suffix('')}.params.json" in stdout


@pytest.mark.parametrize("backend", ["svd-controlnet", "svd-joint-flow"])
def test_a_backend_without_configured_weights_exits_2_naming_its_setting(
    inputs, tmp_path, capsys, monkeypatch, backend
):
    env_var = "KINEMA_" + backends.BACKENDS[backend].setting.upper()
    monkeypatch.delenv(env_var, raising=False)
    out = tmp_path / "clip.mp4"
    code, _, stderr = _run(
        capsys, "--image", inputs / "coffee.png", "--trajectories", inputs / "drag.json", "--out", out,
        "--backend", backend, "--quiet",
    )  # fmt: skip
    assert code == 2 and not out.exists()
    (line,) = stderr.strip().splitlines()
    assert line.startswith("error: ") and f"(the {backend} backend needs them): set {env_var} " in line
    assert f"(or --{env_var[len('KINEMA_') :].lower().replace('_', '-')})" in line


def test_region_mask_and_camera_flags(inputs, tmp_path, capsys):
    """A motion brush on the left half: the second drag (from x = 0.55, outside the brush) moves
    nothing, and the right quarter, which the brushed content does not reach, stays still; without
    the brush it moves. A camera alone animates."""
    mask = np.zeros(SOURCE_HW, np.uint8)
    mask[:, :150] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    out = tmp_path / "brushed.mp4"
    base = ["--image", inputs / "coffee.png", "--out", out, "--frames", 6, "--max-side", 256, "--quiet"]
    base += ["--engine", "sheet"]  # the motion brush shapes the whole-picture warp
    code, _, stderr = _run(
        capsys, *base, "--trajectories", inputs / "drag.json", "--region-mask", tmp_path / "mask.png"
    )
    assert code == 0, stderr
    frames = read_video(out).frames_uint8.astype(float)
    right = np.s_[:, :, int(0.75 * frames.shape[2]) :]
    assert np.abs(frames[right] - frames[:1][right]).mean() < 1.0  # H.264 noise only
    assert np.abs(frames[-1] - frames[0]).mean() > 3.0
    code, _, _ = _run(
        capsys, *base[:3], tmp_path / "free.mp4", *base[4:], "--trajectories", inputs / "drag.json"
    )
    free = read_video(tmp_path / "free.mp4").frames_uint8.astype(float)
    assert code == 0 and np.abs(free[right] - free[:1][right]).mean() > 3.0

    Image.fromarray(mask[:100]).save(tmp_path / "small_mask.png")
    code, _, stderr = _run(
        capsys, *base, "--trajectories", inputs / "drag.json", "--region-mask", tmp_path / "small_mask.png",
        "--overwrite",
    )  # fmt: skip
    assert code == 2 and "same image" in stderr

    out = tmp_path / "zoom.mp4"
    argv = ["--image", inputs / "coffee.png", "--trajectories", inputs / "empty.json", "--out", out]
    code, _, stderr = _run(capsys, *argv, "--frames", 6, "--max-side", 256, "--camera", "zoom_in", "--quiet")
    assert code == 0, stderr
    record = RunRecord.read(out.with_name("zoom.params.json"))
    assert record.arguments["camera"] == "zoom_in" and record.arguments["resolved"]["motion_bucket_id"] > 1
