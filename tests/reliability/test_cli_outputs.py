"""Colliding and unsafe output paths, and requests beyond the limits, through the three CLIs.

Each case (generated below, one test id each) lays out a scene under tmp_path: ``in/`` holds the inputs
(a picture, a depth map, trajectories, a clip, a folder of frames) and ``out/`` what earlier runs wrote,
plus links or folders where the case needs them. Then it runs the CLI with the case's flags. Refused cases
exit with status 2 and one clear sentence before anything is written; accepted ones (`refuse=False`) write
only under ``out/``. Either way every input and every earlier output is byte-identical afterwards, unless
the case passed --overwrite and the file was one of the run's outputs.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from PIL import Image

from apps.drag import cli as drag_cli
from apps.joint_depth import cli as joint_cli
from apps.joint_depth import job as joint_job
from apps.keyframe import cli as keyframe_cli
from core.video import read_video
from tests.reliability.cli_runs import (
    GOOD_TRAJECTORIES,
    Snapshot,
    assert_only_under,
    assert_refused,
    run_cli,
    set_cli_env,
    write_good_inputs,
)
from tests.reliability.corpus import good_image_uint8
from tests.reliability.test_cli_inputs import DRAG_FAST, JOINT_FAST, KEYFRAME_FAST, ReachedTheModel

MAINS = {"drag": drag_cli.main, "joint": joint_cli.main, "keyframe": keyframe_cli.main}
BASE = {
    "drag": ["--image", "{in}/picture.png", "--trajectories", "{in}/drag.json", *DRAG_FAST],
    "joint": ["--prompt", "a test", *JOINT_FAST],
    "keyframe": ["--video", "{in}/clip.mp4", "--edit", "cartoon", *KEYFRAME_FAST],
}
GRADE = ("--edit", "color_grade", "--param")  # the filter whose image parameter is saved beside the record
DEFAULT_OUT = {"drag": "{out}/video.mp4", "joint": "{out}/run", "keyframe": "{out}/result.mp4"}


@dataclass(frozen=True)
class Collision:
    """One case: flags added to the CLI's base ones (``{in}``, ``{out}`` stand for the folders; --out is
    the CLI's default unless given), what the scene holds before (path under tmp_path -> "file", "dir",
    or "symlink:TARGET" / "hardlink:TARGET"), and the words the refusal must contain."""

    cli: str
    name: str
    flags: tuple[str, ...]
    scene: dict[str, str] = field(default_factory=dict)
    says: str = ""
    refuse: bool = True

    @property
    def id(self) -> str:
        return f"{self.cli}:{self.name}"


def _collisions() -> list[Collision]:
    """Every case, per CLI: outputs naming an input (directly, through a link, inside an input folder),
    two outputs naming one file, earlier outputs with and without --overwrite, folders and extensions."""
    cases = []
    for name, flag in (("out", "--out"), ("gif", "--gif"), ("side_by_side", "--side-by-side")):
        for target, what in (("clip.mp4", "--video"), ("picture.png", "--param reference")):
            flags = (flag, f"{{in}}/{target}", "--overwrite")
            if what != "--video":
                flags += ("--edit", "color_grade", "--param", "reference={in}/picture.png")
            cases.append(Collision("keyframe", f"{name}_is_{target}", flags, says=f"same file as {what}"))
    cases += [
        Collision("keyframe", "params_is_video", ("--params", "{in}/clip.mp4", "--overwrite"), says="--video"),
        Collision("keyframe", "zip_is_video", ("--keyframes-zip", "{in}/clip.mp4"), says="--video"),
        Collision("keyframe", "out_inside_frames_folder", ("--video", "{in}/frames", "--out", "{in}/frames/r.mp4"),
                  says="inside the --video folder"),
        Collision("keyframe", "out_links_to_video", ("--out", "{out}/link.mp4", "--overwrite"),
                  {"out/link.mp4": "symlink:in/clip.mp4"}, says="same file as --video"),
        Collision("keyframe", "out_hardlinks_video", ("--out", "{out}/hard.mp4", "--overwrite"),
                  {"out/hard.mp4": "hardlink:in/clip.mp4"}, says="same file as --video"),
        Collision("keyframe", "side_by_side_is_out", ("--side-by-side", "{out}/result.mp4"), says="both name"),
        Collision("keyframe", "params_is_out", ("--params", "{out}/result.mp4"), says="both name"),
        Collision("keyframe", "gif_is_params", ("--gif", "{out}/x.gif", "--params", "{out}/x.gif"), says="both"),
        Collision("keyframe", "zip_is_params", ("--keyframes-zip", "{out}/k.zip", "--params", "{out}/k.zip"),
                  says="both name"),
        Collision("keyframe", "reference_copy_is_reference", (*GRADE, "reference={out}/color_grade_reference.png",
                  "--overwrite"), {"out/color_grade_reference.png": "file"}, says="same file as --param reference"),
        Collision("keyframe", "reference_copy_exists", (*GRADE, "reference={in}/picture.png"),
                  {"out/color_grade_reference.png": "file"}, says="the copy of --param reference"),
        Collision("keyframe", "params_links_to_gif", ("--gif", "{out}/g.gif", "--params", "{out}/l.json"),
                  {"out/l.json": "symlink:out/g.gif"}, says="both name"),
    ]  # fmt: skip
    for flag, file in (
        ("--out", "result.mp4"),
        ("the run record", "result.json"),
        ("--gif", "a.gif"),
        ("--side-by-side", "s.mp4"),
        ("--keyframes-zip", "k.zip"),
        ("--params", "p.json"),
    ):
        flags = () if flag in ("--out", "the run record") else (flag, f"{{out}}/{file}")
        scene = {f"out/{file}": "file"}
        cases.append(
            Collision("keyframe", f"{file}_exists", flags, scene, says=f"{flag} {file} exists already")
        )
    cases += [
        Collision("keyframe", "overwrite_earlier", ("--overwrite", "--gif", "{out}/result.gif"),
                  {"out/result.mp4": "file", "out/result.json": "file", "out/result.gif": "file"}, refuse=False),
        Collision("keyframe", "out_in_missing_folders", ("--out", "{out}/new/deeper/result.mp4"), refuse=False),
        Collision("keyframe", "every_output", ("--gif", "{out}/a.gif", "--side-by-side", "{out}/s.mp4",
                  "--keyframes-zip", "{out}/k.zip", "--params", "{out}/p.json"), refuse=False),
        Collision("keyframe", "unrelated_files_stay", (), {"out/notes.txt": "file"}, refuse=False),
        Collision("keyframe", "overwrite_reference_copy", (*GRADE, "reference={in}/picture.png", "--overwrite"),
                  {"out/color_grade_reference.png": "file"}, refuse=False),
    ]  # fmt: skip

    cases += [
        Collision("drag", "out_is_image", ("--out", "{in}/picture.png", "--overwrite"), says="same file as --image"),
        Collision("drag", "out_is_trajectories", ("--out", "{in}/drag.json", "--overwrite"),
                  says="same file as --trajectories"),
        Collision("drag", "record_is_trajectories",
                  ("--trajectories", "{in}/drag.params.json", "--out", "{in}/drag.mp4", "--overwrite"),
                  {"in/drag.params.json": "file"}, says="same file as --trajectories"),
        Collision("drag", "out_is_mask", ("--region-mask", "{in}/mask.png", "--out", "{in}/mask.png"),
                  {"in/mask.png": "file"}, says="same file as --region-mask"),
        Collision("drag", "flow_is_image", ("--flow-out", "{in}/picture.png", "--overwrite"), says="--image"),
        Collision("drag", "gif_is_image", ("--image", "{in}/anim.gif", "--out", "{in}/anim.mp4", "--gif"),
                  {"in/anim.gif": "file"}, says="--gif anim.gif is the same file as --image"),
        Collision("drag", "flow_is_out", ("--flow-out", "{out}/video.mp4"), says="both name"),
        Collision("drag", "flow_is_gif", ("--gif", "--flow-out", "{out}/video.gif"), says="both name"),
        Collision("drag", "out_links_to_image", ("--image", "{in}/anim.gif", "--out", "{out}/l.gif", "--overwrite"),
                  {"in/anim.gif": "file", "out/l.gif": "symlink:in/anim.gif"},
                  says="same file as --image"),
        Collision("drag", "out_hardlinks_trajectories", ("--out", "{out}/h.mp4", "--overwrite"),
                  {"out/h.mp4": "hardlink:in/drag.json"}, says="same file as --trajectories"),
        Collision("drag", "out_exists", (), {"out/video.mp4": "file"}, says="--out video.mp4 exists already"),
        Collision("drag", "record_exists", (), {"out/video.params.json": "file"}, says="the run record"),
        Collision("drag", "gif_exists", ("--gif",), {"out/video.gif": "file"}, says="--gif video.gif exists"),
        Collision("drag", "flow_exists", ("--flow-out", "{out}/f.mp4"), {"out/f.mp4": "file"}, says="--flow-out"),
        Collision("drag", "overwrite_earlier", ("--overwrite", "--gif", "--flow-out", "{out}/f.mp4"),
                  {"out/video.mp4": "file", "out/video.params.json": "file", "out/video.gif": "file",
                   "out/f.mp4": "file"}, refuse=False),
        Collision("drag", "out_in_missing_folders", ("--out", "{out}/new/deeper/v.mp4"), refuse=False),
        Collision("drag", "gif_out", ("--out", "{out}/v.gif", "--gif"), refuse=False),
        Collision("drag", "unrelated_files_stay", (), {"out/notes.txt": "file"}, refuse=False),
    ]  # fmt: skip

    for file in ("image_1.png", "depth_1.png", "depth_1_color.png", "points_1.ply", "params.json"):
        for flag in ("--image", "--depth"):
            flags = (flag, f"{{out}}/run/{file}", "--overwrite")
            cases.append(Collision("joint", f"{flag[2:]}_is_{file}", flags, {f"out/run/{file}": "file"},
                                   says=f"same file as {flag}"))  # fmt: skip
        cases.append(
            Collision("joint", f"{file}_exists", (), {f"out/run/{file}": "file"}, says="exists already")
        )
    cases += [
        Collision("joint", "second_sample_exists", ("--batch", "2"), {"out/run/points_2.ply": "file"},
                  says="--out points_2.ply exists already"),
        Collision("joint", "output_links_to_image", ("--image", "{in}/picture.png", "--overwrite"),
                  {"out/run/image_1.png": "symlink:in/picture.png"}, says="same file as --image"),
        Collision("joint", "out_is_a_file", ("--out", "{in}/picture.png"), says="is a file, not a folder"),
        Collision("joint", "overwrite_earlier", ("--overwrite",), {"out/run/image_1.png": "file",
                  "out/run/params.json": "file"}, refuse=False),
        Collision("joint", "out_in_missing_folders", ("--out", "{out}/new/deeper/run"), refuse=False),
        Collision("joint", "unrelated_files_stay", (), {"out/run/notes.txt": "file"}, refuse=False),
    ]  # fmt: skip

    for cli in ("drag", "keyframe"):  # the CLIs whose --out is a file
        out = DEFAULT_OUT[cli]
        cases += [
            Collision(cli, "out_is_a_folder", ("--out", "{out}/d.mp4"), {"out/d.mp4": "dir"}, says="is a folder"),
            Collision(cli, "out_below_a_file", ("--out", "{in}/picture.png/v.mp4"), says="is a file, not a folder"),
            Collision(cli, "out_extension", ("--out", out.replace(".mp4", ".avi")), says="must end in .mp4"),
        ]  # fmt: skip
    cases += [
        Collision("drag", "flow_extension", ("--flow-out", "{out}/f.png"), says="--flow-out must end in"),
        Collision("keyframe", "params_extension", ("--params", "{out}/p.txt"), says="--params must end in .json"),
        Collision("keyframe", "gif_extension", ("--gif", "{out}/g.mp4"), says="--gif must end in .gif"),
        Collision("keyframe", "side_by_side_extension", ("--side-by-side", "{out}/s.gif"), says="must end in .mp4"),
        Collision("keyframe", "zip_extension", ("--keyframes-zip", "{out}/k.tar"), says="must end in .zip"),
    ]  # fmt: skip
    return cases


COLLISIONS = {case.id: case for case in _collisions()}


def _lay_out(tmp_path: Path, scene: dict[str, str]) -> None:
    """Write the scene's entries: earlier outputs hold 'earlier <name>' so a rewrite shows."""
    for relative, kind in scene.items():
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if kind == "dir":
            path.mkdir()
        elif kind.startswith("symlink:"):
            os.symlink(tmp_path / kind.split(":", 1)[1], path)
        elif kind.startswith("hardlink:"):
            os.link(tmp_path / kind.split(":", 1)[1], path)
        elif relative.startswith("in/") and path.suffix == ".json":  # more inputs: trajectories, pictures
            path.write_text(GOOD_TRAJECTORIES)
        elif relative.startswith("in/"):
            Image.fromarray(good_image_uint8()).save(path)
        else:
            path.write_bytes(f"earlier {path.name}".encode())


@pytest.fixture
def env(monkeypatch, tmp_path):
    set_cli_env(monkeypatch, tmp_path)
    monkeypatch.setattr(joint_job, "load_model", _stop)


def _stop(*args, **kwargs):
    raise ReachedTheModel


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """The inputs every case starts from (copied per case): the good ones and a folder of frames."""
    good = write_good_inputs(tmp_path_factory.mktemp("collision_inputs"))
    (good.folder / "frames").mkdir()
    for t, frame in enumerate(read_video(good.video).frames_uint8[:4]):
        Image.fromarray(frame).save(good.folder / "frames" / f"{t:04d}.png")
    return good.folder


@pytest.mark.parametrize("case_id", list(COLLISIONS))
def test_output_collisions(env, inputs, tmp_path, capsys, case_id):
    case = COLLISIONS[case_id]
    shutil.copytree(inputs, tmp_path / "in")
    _lay_out(tmp_path, case.scene)
    folders = {"in": tmp_path / "in", "out": tmp_path / "out"}
    flags = [flag.format(**folders) for flag in case.flags]
    argv = [flag.format(**folders) for flag in BASE[case.cli]] + flags
    if "--out" not in flags:
        argv += ["--out", DEFAULT_OUT[case.cli].format(**folders)]
    snapshot = Snapshot(tmp_path)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    try:
        code, stderr = run_cli(MAINS[case.cli], argv, capsys)
    except ReachedTheModel:
        code, stderr = 0, ""
    if case.refuse:
        assert_refused(code, stderr, snapshot, forbidden=(str(tmp_path),))
        assert case.says in stderr, stderr
        return
    assert code == 0, stderr
    changed = set(assert_only_under(snapshot, tmp_path / "out"))
    for path, data in before.items():
        if path not in changed:
            assert path.read_bytes() == data, path
        else:
            assert "--overwrite" in flags and path.read_bytes() != data, (
                f"{path} replaced without --overwrite"
            )
