"""The bad-input corpus through the three CLIs, one test per (case, input flag).

Images go into the drag CLI's --image and --region-mask, the joint-depth CLI's --image and --depth and the
keyframe CLI's color_grade reference (--param reference=...); trajectory files into the drag CLI's
--trajectories; videos into the keyframe CLI's --video. For each: a case that must be refused exits with
status 2 and one clear sentence, before anything is written; an accepted one writes only into its output
folder (the joint-depth CLI is stopped where its model would load: the checks and the input reading are what
is under test); the corpus and the other inputs are never touched.
"""

from __future__ import annotations

import pytest

from apps.drag import cli as drag_cli
from apps.joint_depth import cli as joint_cli
from apps.joint_depth import job as joint_job
from apps.keyframe import cli as keyframe_cli
from tests.reliability.cli_runs import (
    Snapshot,
    assert_only_under,
    assert_refused,
    run_cli,
    set_cli_env,
    write_good_inputs,
)
from tests.reliability.corpus import case_names

DRAG_FAST = ["--backend", "warp", "--frames", "2", "--max-side", "64", "--quiet"]
KEYFRAME_FAST = ["--working-size", "64", "--keyframes", "uniform:4", "--interp", "crossfade"]
JOINT_FAST = ["--side", "64", "--steps", "1", "--max-points", "100"]


class ReachedTheModel(Exception):
    """The joint-depth CLI got past its checks and its input to the model: the input was accepted."""


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    return write_good_inputs(tmp_path_factory.mktemp("good_inputs"))


@pytest.fixture
def env(monkeypatch, tmp_path):
    set_cli_env(monkeypatch, tmp_path)


def _run(main, argv, capsys, case, good, tmp_path, result):
    """Run one CLI on one corpus case and check what every run must satisfy; `result` says where the
    run writes (a file or folder under tmp_path/out)."""
    corpus_root = case.path.parent.parent
    snapshot = Snapshot(corpus_root, good.folder, tmp_path)
    before = case.path.read_bytes() if case.path.is_file() else None
    try:
        code, stderr = run_cli(main, argv, capsys)
    except ReachedTheModel:
        code, stderr = None, ""
    if case.refuse or code == 2:
        assert_refused(code, stderr, snapshot, forbidden=(str(tmp_path), str(corpus_root)))
        return
    assert code in (0, None), f"status {code}: {stderr}"
    assert_only_under(snapshot, tmp_path / "out")
    assert before is None or case.path.read_bytes() == before
    if code == 0:
        assert result.exists()


# -- drag ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("flag", ["--image", "--region-mask"])
@pytest.mark.parametrize("name", case_names("image"))
def test_drag_images(corpus, good, env, tmp_path, capsys, name, flag):
    case = corpus[name]
    out = tmp_path / "out" / "video.mp4"
    # A mask must match the picture's size: a valid case is both; a bad mask goes with the good picture.
    image = case.path if flag == "--image" or not case.refuse else good.image
    argv = ["--image", image, "--trajectories", good.trajectories, "--out", out, *DRAG_FAST]
    if flag == "--region-mask":
        argv += ["--region-mask", case.path]
    _run(drag_cli.main, argv, capsys, case, good, tmp_path, out)


@pytest.mark.parametrize("name", case_names("trajectories"))
def test_drag_trajectories(corpus, good, env, tmp_path, capsys, name):
    case = corpus[name]
    out = tmp_path / "out" / "video.mp4"
    argv = ["--image", good.image, "--trajectories", case.path, "--out", out, *DRAG_FAST]
    _run(drag_cli.main, argv, capsys, case, good, tmp_path, out)


# -- joint depth -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("flag", ["--image", "--depth"])
@pytest.mark.parametrize("name", case_names("image"))
def test_joint_images(corpus, good, env, tmp_path, capsys, monkeypatch, name, flag):
    def stop(*args, **kwargs):
        raise ReachedTheModel

    monkeypatch.setattr(joint_job, "load_model", stop)
    case = corpus[name]
    argv = [flag, case.path, "--prompt", "a test", "--out", tmp_path / "out", *JOINT_FAST]
    _run(joint_cli.main, argv, capsys, case, good, tmp_path, tmp_path / "out")


# -- keyframe --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", case_names("video"))
def test_keyframe_videos(corpus, good, env, tmp_path, capsys, name):
    case = corpus[name]
    out = tmp_path / "out" / "result.mp4"
    argv = ["--video", case.path, "--out", out, "--edit", "cartoon", *KEYFRAME_FAST]
    _run(keyframe_cli.main, argv, capsys, case, good, tmp_path, out)


@pytest.mark.parametrize("name", case_names("image"))
def test_keyframe_reference_images(corpus, good, env, tmp_path, capsys, name):
    case = corpus[name]
    out = tmp_path / "out" / "result.mp4"
    argv = ["--video", good.video, "--out", out, "--edit", "color_grade", "--param", f"reference={case.path}"]
    _run(keyframe_cli.main, [*argv, *KEYFRAME_FAST], capsys, case, good, tmp_path, out)
