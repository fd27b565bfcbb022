"""core.outputs: a file appears complete under its name or not at all; unsafe output paths are refused."""

from __future__ import annotations

import pytest

from core.config import Limit
from core.errors import InputError
from core.outputs import PARTIAL_MARK, atomic_path, check_outputs


def test_atomic_path_replaces_the_final_file_only_when_complete(tmp_path):
    final = tmp_path / "new" / "video.mp4"
    with atomic_path(final) as temp:
        assert temp.parent == final.parent and temp.suffix == ".mp4" and PARTIAL_MARK in temp.name
        assert temp.name.startswith(".") and not final.exists()
        temp.write_bytes(b"complete")
    assert final.read_bytes() == b"complete" and list(final.parent.iterdir()) == [final]


@pytest.mark.parametrize("stop", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_a_failed_write_keeps_the_earlier_file_and_removes_the_partial_one(tmp_path, stop):
    final = tmp_path / "video.mp4"
    final.write_bytes(b"earlier")
    with pytest.raises(type(stop)), atomic_path(final) as temp:
        temp.write_bytes(b"half")
        raise stop
    assert final.read_bytes() == b"earlier" and list(tmp_path.iterdir()) == [final]


def test_a_writer_that_wrote_nothing_fails_and_leaves_nothing(tmp_path):
    with pytest.raises(FileNotFoundError), atomic_path(tmp_path / "x.json"):
        pass
    assert list(tmp_path.iterdir()) == []


def test_check_outputs_refusals_name_the_flags_and_files_only(tmp_path):
    (tmp_path / "in.mp4").write_bytes(b"input")
    (tmp_path / "old.mp4").write_bytes(b"earlier")
    (tmp_path / "dir.mp4").mkdir()
    cases = [
        ([("--out", tmp_path / "in.mp4")], "--out in.mp4 is the same file as --video in.mp4"),
        ([("--out", tmp_path / "a.mp4"), ("--gif", tmp_path / "a.mp4")], "--out and --gif both name a.mp4"),
        ([("--out", tmp_path / "old.mp4")], "--out old.mp4 exists already; pass --overwrite to replace it."),
        ([("--out", tmp_path / "a.avi")], "--out must end in .mp4, got a.avi."),
        ([("--out", tmp_path / "dir.mp4")], "--out dir.mp4 is a folder"),
        ([("--out", tmp_path / "old.mp4" / "a.mp4")], "--out cannot be written: old.mp4 is a file"),
    ]
    for outputs, message in cases:
        with pytest.raises(InputError) as error:
            check_outputs(outputs, {"--video": tmp_path / "in.mp4"}, suffixes={"--out": (".mp4",)})
        assert message in str(error.value) and str(tmp_path) not in str(error.value)
    check_outputs([("--out", tmp_path / "old.mp4")], {"--video": tmp_path / "in.mp4"}, overwrite=True)
    check_outputs([("--out", tmp_path / "new" / "deeper" / "a.mp4")], {})


def test_a_limit_takes_whole_numbers_in_range_and_says_the_range():
    steps = Limit(1, 150, "Steps")
    assert steps.check(150) == 150 and steps.check(3.0) == 3
    for bad in (0, 151, 2.5, True, float("nan"), "3", None):
        with pytest.raises(InputError, match="Steps must be a whole number from 1 to 150"):
            steps.check(bad)
    assert Limit(0.0, 30.0, "Guidance", whole=False).check(7.5) == 7.5
