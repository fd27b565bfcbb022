"""The joint-depth CLI on the tiny model: each mode writes its files and a run record that redoes the run;
bad input exits with status 2 and one line."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from apps.common.runs import RunRecord
from apps.joint_depth import cli, examples, job
from core.config import Settings
from core.imaging import load_png16

PREFIX = "python -m apps.joint_depth.cli: error: "
FAST = ["--steps", "2", "--seed", "5", "--max-points", "500", "--sd-model", "tiny", "--device", "cpu"]


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    for name in ("SD_MODEL", "JOINT_WEIGHTS", "MAX_IMAGE_SIDE"):
        monkeypatch.delenv(f"KINEMA_{name}", raising=False)
    monkeypatch.setenv("KINEMA_OUTPUT_DIR", str(tmp_path / "outputs"))


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return examples.synthetic_scene_files(tmp_path_factory.mktemp("examples"))


@pytest.mark.parametrize("mode", ["joint", "image_to_depth", "depth_to_image"])
def test_each_mode_writes_its_files_and_a_record_that_redoes_it(tmp_path, capsys, scene, mode):
    image, depth, caption = scene
    given = {"joint": ["--height", "64", "--width", "128"], "image_to_depth": ["--image", str(image)]}
    given["depth_to_image"] = ["--depth", str(depth)]
    argv = [
        "--prompt",
        caption,
        "--side",
        "64",
        "--batch",
        "2",
        "--out",
        str(tmp_path / "run"),
        *given[mode],
        *FAST,
    ]
    assert cli.main(argv) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "Wrote 2 sample(s) of" in printed and "No joint weights" in printed

    folder = tmp_path / "run"
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted(
        [
            f"{kind}_{k}{ext}"
            for k in (1, 2)
            for kind, ext in (("image", ".png"), ("depth", ".png"), ("points", ".ply"))
        ]
        + ["depth_1_color.png", "depth_2_color.png", "params.json"]
    )
    record = RunRecord.read(folder / "params.json")
    assert (record.app, record.action) == ("joint_depth", "cli")
    assert record.command == ["python", "-m", "apps.joint_depth.cli", *argv]
    assert record.arguments["mode"] == mode and record.arguments["seed"] == 5
    assert record.settings["sd_model"] == "tiny" and record.outputs["image_1"] == "image_1.png"

    settings = Settings.from_env({}, sd_model="tiny", device="cpu")
    again = job.run_job(job.request_from_record(record), settings, tmp_path / "again")
    assert again.record.arguments == record.arguments
    for k in range(2):
        np.testing.assert_array_equal(
            again.images_uint8[k], np.asarray(Image.open(folder / f"image_{k + 1}.png"))
        )
        np.testing.assert_array_equal(
            load_png16(again.files.depth16[k]), load_png16(folder / f"depth_{k + 1}.png")
        )


def test_without_out_it_writes_a_new_run_folder(tmp_path, capsys):
    assert cli.main(["--prompt", "a chair", "--height", "64", "--width", "64", *FAST]) == 0
    (folder,) = (tmp_path / "outputs" / "joint_depth").iterdir()
    assert str(folder) in capsys.readouterr().out and (folder / "params.json").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--image", "{tmp}/missing.png"], "missing.png"),
        (["--height", "100"], "Height must be a multiple of 64 px, got 100."),
        (["--steps", "0"], "argument --steps: Steps must be a whole number from 1 to 150, got 0"),
        (["--weights", "{tmp}"], "holds no joint_layers.safetensors"),
        (["--image", "a.png", "--depth", "b.png"], "not allowed with argument --image"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, args, message):
    args = [a.format(tmp=tmp_path) for a in args]
    try:
        code = cli.main(["--prompt", "x", "--out", str(tmp_path / "run"), *FAST, *args])
    except SystemExit as exit_:
        code = exit_.code
    assert code == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(PREFIX) and message.format(tmp=tmp_path) in lines[0]
    assert not (tmp_path / "run" / "params.json").exists()
