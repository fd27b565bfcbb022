"""The drag app (Streamlit) on the bad-input corpus under AppTest: every corpus image uploaded as the picture
and every trajectory file uploaded to "Load trajectories" (the real upload widgets), and every hostile canvas
object sent back by the drawing canvas and by the motion-brush canvas (the component stood in for by
`tests.apps.conftest.FakeCanvas`). An upload is refused with one clear sentence shown (st.error) or accepted; a
canvas object that is not a trajectory is left out with one clear warning, and is no brush stroke; the app keeps
running throughout.

One app session serves all the cases of a kind (a fresh AppTest per case would cost a script start each);
each case replaces the upload, so what is shown is that case's answer.
"""

from __future__ import annotations

import json
import mimetypes
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from apps.drag import ui_canvas
from tests.apps.conftest import FakeCanvas
from tests.reliability.corpus import assert_clear_message, case_names

NOTHING_PAINTED = "Paint over the part of the image that may move."
APP = str(Path(__file__).resolve().parents[2] / "apps" / "drag" / "app.py")
TIMEOUT_S = 60


@pytest.fixture(scope="module")
def canvas() -> FakeCanvas:
    patch = pytest.MonkeyPatch()
    fake = FakeCanvas()
    patch.setattr(ui_canvas, "st_canvas", fake)
    yield fake
    patch.undo()


@pytest.fixture(scope="module")
def drag_app(tmp_path_factory, canvas) -> AppTest:
    """The app, results under a temporary folder, at a 256 px working size."""
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


def on_the_sample(at: AppTest) -> None:
    """The sample photo, with no trajectory file loaded (so no earlier case's message stays on the page)."""
    at.file_uploader(key="trajectory_file").set_value(None)
    choose_source(at, "Sample photo")


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


def left_out(at: AppTest) -> list[str]:
    return [w.value for w in at.warning if w.value.startswith("Shape ")]


@pytest.mark.parametrize("name", case_names("canvas"))
def test_drawing_canvas_object(drag_app, canvas, corpus, name):
    case = corpus[name]
    on_the_sample(drag_app)
    canvas.draw(json.loads(case.text))
    drag_app.run()
    assert not drag_app.exception and not shown_errors(drag_app)
    warnings = left_out(drag_app)
    assert len(warnings) == (1 if case.refuse else 0), warnings
    for message in warnings:
        assert_clear_message(message)
    tracks = [m.value for m in drag_app.markdown if " track, " in m.value or " anchor at " in m.value]
    assert len(tracks) == (0 if case.refuse else 1), tracks


@pytest.mark.parametrize("name", case_names("canvas"))
def test_motion_brush_stroke(drag_app, canvas, corpus, name):
    case = corpus[name]
    on_the_sample(drag_app)
    canvas.draw([])  # no trajectories: only the brush is read
    drag_app.radio(key="engine").set_value("sheet").run()  # the brush shapes the whole-picture warp
    if not drag_app.checkbox(key="use_brush").value:
        drag_app.checkbox(key="use_brush").check().run()
    canvas.draw(json.loads(case.text), prefix="brush-")
    drag_app.run()
    assert not drag_app.exception and not shown_errors(drag_app)
    painted = not any(c.value == NOTHING_PAINTED for c in drag_app.caption)
    if case.refuse:
        assert not painted, f"{case.name} was read as a stroke"


def test_the_app_still_works_after_the_corpus(drag_app):
    """After every bad upload: the sample photo shows, with the tool choice and the preview."""
    on_the_sample(drag_app)
    drag_app.run()
    assert not drag_app.exception and not shown_errors(drag_app)
    assert any("Tool" == radio.label for radio in drag_app.radio)
