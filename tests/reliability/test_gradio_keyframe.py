"""The keyframe app (Gradio) as a user and as an attacker would use it, on loopback (filters and flow: no
model weights needed).

- The image corpus through every image input: the colour-grade reference of /edit_preview, /edit_all and
  /reedit_keyframe, and the own edit of /upload_edit; the video corpus (files) through /probe_video and
  /load_video. Each: a result or one clear sentence naming no server folder; the server keeps serving;
  the first client's results stay intact.
- Privacy: a second client cannot fetch the first one's inbetweening outputs; the first one downloads them
  through the URLs it got.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import numpy as np
import pytest
from gradio_client import Client, handle_file

from apps.keyframe import app as keyframe_app
from apps.keyframe.backends import fit_image
from apps.keyframe.sample import SAMPLE_VIDEO
from core.config import Settings
from core.imaging import load_image
from tests.reliability.corpus import assert_clear_message, case_names
from tests.reliability.gradio_support import (
    answer,
    assert_served_only_to_its_session,
    digests,
    forbidden_paths,
    fresh_client,
    serve,
)

KEYS = "0, 8, 16, 23"
WORKING_SIDE = 64
COLOR_GRADE = {"backend": "filter", "filter": "color_grade"}
RUN_NAME = re.compile(r"\d{8}-\d{6}-[0-9a-f]{16}")
IMAGE_INPUTS = {
    "/edit_preview": lambda client, upload: client.predict(
        KEYS, api_name="/edit_preview", color_grade_reference=upload, **COLOR_GRADE
    ),
    "/edit_all": lambda client, upload: client.predict(
        KEYS, api_name="/edit_all", color_grade_reference=upload, **COLOR_GRADE
    ),
    "/reedit_keyframe": lambda client, upload: client.predict(
        KEYS, 8, api_name="/reedit_keyframe", color_grade_reference=upload, **COLOR_GRADE
    ),
    "/upload_edit": lambda client, upload: client.predict(KEYS, 16, upload, api_name="/upload_edit"),
}
VIDEO_FILES = [name for name in case_names("video") if not name.endswith("/")]  # a folder is no upload


def load(client: Client, video: Path = SAMPLE_VIDEO):
    return client.predict(
        handle_file(str(video)),
        0,
        None,
        WORKING_SIDE,
        "uniform",
        8,
        "flow",
        None,
        "dis",
        api_name="/load_video",
    )


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    root = tmp_path_factory.mktemp("keyframe_reliability")
    settings = Settings.from_env(
        {}, sd_model="tiny", svd_model=str(root / "no-svd"), device="cpu", output_dir=root / "outputs"
    )
    demo = serve(keyframe_app.build_demo, settings, keyframe_app.SERVED_FOLDERS)
    yield demo.local_url, settings
    demo.close()


@pytest.fixture(scope="module")
def first_run(app):
    """Client A's whole job (load, edit, inbetween with flow): its answer (FileData with URLs) and run folder."""
    url, settings = app
    client = fresh_client(url, download_files=False)
    load(client)
    client.predict(KEYS, api_name="/edit_all", backend="filter", filter="cartoon")
    result = client.predict(KEYS, "flow", None, "dis", 127, 2, 0, 8, api_name="/inbetween")
    (folder,) = (Path(settings.output_dir) / "keyframe").iterdir()
    return result, folder, digests(folder)


@pytest.fixture(scope="module")
def image_client(app, first_run):
    """One session with the sample loaded, for the image inputs (which edit its keyframes)."""
    client = fresh_client(app[0], download_files=False)
    load(client)
    return client


@pytest.fixture(scope="module")
def video_client(app, first_run):
    return fresh_client(app[0], download_files=False)


def _check_still_serving(client: Client, first_run) -> None:
    assert client.predict(api_name="/sample_video")["path"].endswith("sample.mp4")
    _, folder, before = first_run
    assert digests(folder) == before


@pytest.mark.parametrize("endpoint", list(IMAGE_INPUTS))
@pytest.mark.parametrize("name", case_names("image"))
def test_image_corpus(app, first_run, image_client, corpus, name, endpoint):
    _, settings = app
    case = corpus[name]
    result = answer(
        lambda: IMAGE_INPUTS[endpoint](image_client, handle_file(str(case.path))),
        case,
        forbidden_paths(settings, case.path.parent),
    )
    if result is not None:
        gallery_or_preview = result[0]
        assert gallery_or_preview  # an accepted image gave an edit to show
    _check_still_serving(image_client, first_run)


@pytest.mark.parametrize("endpoint", ["/probe_video", "/load_video"])
@pytest.mark.parametrize("name", VIDEO_FILES)
def test_video_corpus(app, first_run, video_client, corpus, name, endpoint):
    _, settings = app
    case = corpus[name]
    if endpoint == "/probe_video":
        call = lambda: video_client.predict(handle_file(str(case.path)), api_name="/probe_video")  # noqa: E731
    else:
        call = lambda: load(video_client, case.path)  # noqa: E731
    answer(call, case, forbidden_paths(settings, case.path.parent))
    _check_still_serving(video_client, first_run)


def test_an_accepted_image_is_read_by_core_imaging(app, image_client, corpus):
    """The grey 16-bit PNG through the own-edit input: the keyframe shows it as core.imaging reads it."""
    path = corpus["image:grey16.png"].path
    gallery, status = IMAGE_INPUTS["/upload_edit"](image_client, handle_file(str(path)))
    assert status.startswith("Keyframe 16 now uses your image")
    shown = load_image(httpx.get(gallery[2]["image"]["url"], timeout=10).content)
    np.testing.assert_array_equal(shown, fit_image(load_image(path), (WORKING_SIDE, WORKING_SIDE)))


def test_a_second_client_cannot_fetch_the_first_ones_files(app, first_run):
    url, settings = app
    (result, side_by_side, downloads, status), folder, before = first_run
    assert RUN_NAME.fullmatch(folder.name) and f"; run {folder.name}." in status
    assert_clear_message(status.split("\n")[0], forbidden=forbidden_paths(settings))
    # A downloads every result through its URLs; B, even knowing the exact run name, gets none and lists nothing.
    assert_served_only_to_its_session(url, settings, folder, downloads, [result, side_by_side])
    assert digests(folder) == before
