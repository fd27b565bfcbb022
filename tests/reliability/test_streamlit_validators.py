"""The drag app (Streamlit) on the bad-input corpus, through its real upload widgets under AppTest: every
corpus image uploaded as the picture and every corpus trajectory file uploaded to "Load trajectories". Each
case is refused with one clear sentence shown (st.error) or accepted, and the app keeps running.

One app session serves all the cases of a kind (a fresh AppTest per case would cost a script start each);
each case replaces the upload, so what is shown is that case's answer.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.reliability.corpus import assert_clear_message, case_names

APP = str(Path(__file__).resolve().parents[2] / "apps" / "drag" / "app.py")
TIMEOUT_S = 60


@pytest.fixture(scope="module")
def drag_app(tmp_path_factory) -> AppTest:
    """The app with the upload source chosen, results under a temporary folder, at a 256 px working size."""
    patch = pytest.MonkeyPatch()
    patch.setenv("KINEMA_OUTPUT_DIR", str(tmp_path_factory.mktemp("drag_outputs")))
    patch.setenv("KINEMA_DEVICE", "cpu")
    at = AppTest.from_file(APP, default_timeout=TIMEOUT_S).run()
    at.select_slider(key="max_side").set_value(256).run()
    assert not at.exception
    yield at
    patch.undo()


def choose_source(at: AppTest, source: str) -> None:
    if at.radio(key="source").value != source:
        at.radio(key="source").set_value(source).run()


def shown_errors(at: AppTest) -> list[str]:
    return [element.value for element in at.error]


def check_answer(at: AppTest, case) -> None:
    """No crash; a refused case shows exactly one clear message, an accepted one may show none."""
    assert not at.exception, [e.value for e in at.exception]
    errors = shown_errors(at)
    if case.refuse:
        assert len(errors) == 1, f"{case.name}: {errors}"
    assert len(errors) <= 1, f"{case.name}: {errors}"
    for message in errors:
        assert_clear_message(message, forbidden=(str(case.path.parent),))


@pytest.mark.parametrize("name", case_names("image"))
def test_image_upload(drag_app, corpus, name):
    case = corpus[name]
    choose_source(drag_app, "Upload")
    mime = mimetypes.guess_type(case.path.name)[0] or "application/octet-stream"
    drag_app.file_uploader(key="upload").set_value((case.path.name, case.path.read_bytes(), mime)).run()
    check_answer(drag_app, case)
    if not shown_errors(drag_app):  # accepted: the picture is on the page, ready to draw on
        assert any("Tool" == radio.label for radio in drag_app.radio)


@pytest.mark.parametrize("name", case_names("trajectories"))
def test_trajectory_file_upload(drag_app, corpus, name):
    case = corpus[name]
    choose_source(drag_app, "Sample photo")
    payload = case.path.read_bytes()
    drag_app.file_uploader(key="trajectory_file").set_value(
        (case.path.name, payload, "application/json")
    ).run()
    check_answer(drag_app, case)


def test_the_app_still_works_after_the_corpus(drag_app):
    """After every bad upload: the sample photo shows, with the tool choice and the preview."""
    drag_app.file_uploader(key="trajectory_file").set_value(None)
    choose_source(drag_app, "Sample photo")
    drag_app.run()
    assert not drag_app.exception and not shown_errors(drag_app)
    assert any("Tool" == radio.label for radio in drag_app.radio)
