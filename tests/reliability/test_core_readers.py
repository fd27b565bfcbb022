"""The readers every app and CLI goes through (core's, and the run record a run is redone from), on the whole
bad-input corpus: refused with one clear message, or read into well-formed arrays. Never a traceback, never a
hang, never a 400 MB decode."""

import numpy as np
import pytest

from apps.common.runs import RunRecord
from core.errors import InputError
from core.imaging import load_image
from core.trajectory.model import Trajectories
from core.video import read_video
from tests.reliability.corpus import assert_clear_message, case_names


def _check(case, read):
    try:
        result = read()
    except InputError as error:
        assert_clear_message(str(error))
        return None
    assert not case.refuse, f"{case.name} was accepted"
    return result


@pytest.mark.parametrize("name", case_names("image"))
def test_images(corpus, name):
    case = corpus[name]
    image = _check(case, lambda: load_image(case.path))
    if image is not None:
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3


@pytest.mark.parametrize("name", case_names("video"))
def test_videos(corpus, name):
    case = corpus[name]
    clip = _check(case, lambda: read_video(case.path, max_frames=16))
    if clip is not None:
        assert clip.frames_uint8.dtype == np.uint8 and clip.frames_uint8.ndim == 4 and clip.num_frames >= 1


@pytest.mark.parametrize("name", case_names("trajectories"))
def test_trajectories(corpus, name):
    case = corpus[name]
    _check(case, lambda: Trajectories.from_json(case.text))


@pytest.mark.parametrize("name", case_names("run_record"))
def test_run_records(corpus, name):
    case = corpus[name]
    _check(case, lambda: RunRecord.read(case.path))
