"""The joint-depth app (Gradio) as a user and as an attacker would use it, on loopback with the tiny SD.

- The image corpus through both image inputs (/image_to_depth, /depth_to_image): a result or one clear
  sentence naming no server folder; a refused upload writes no run; the server keeps serving and the first
  client's results stay intact.
- Privacy: a second client cannot fetch the first one's files (not by the run's exact name, not by listing,
  not by naming a server path as an "upload"), while the first one downloads them through the URLs it got.
- The joint-weights picker offers names under the weights root and refuses any other value alike.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from gradio_client import handle_file
from gradio_client.exceptions import AppError

from apps.joint_depth.app import SERVED_FOLDERS, build_demo
from core.config import Settings
from core.patches.joint import JOINT_FILE
from tests.reliability.corpus import assert_clear_message, case_names
from tests.reliability.gradio_support import (
    answer,
    assert_served_only_to_its_session,
    digests,
    file_status,
    forbidden_paths,
    fresh_client,
    serve,
    server_file,
    without_uploads,
)

SIDE = 64
FAST = {"steps": 1, "guidance": 1.0, "batch": 1, "weights": "", "max_points": 64}
RUN_NAME = re.compile(r"\d{8}-\d{6}-[0-9a-f]{16}")
IMAGE_INPUTS = {
    "/image_to_depth": lambda upload: {"image": upload, "prompt": "", "side": SIDE},
    "/depth_to_image": lambda upload: {"depth": upload, "prompt": "", "negative_prompt": "", "side": SIDE},
}


@pytest.fixture(scope="module")
def weights_root(tmp_path_factory) -> Path:
    """A weights root with two listed folders (their files need not load: only the names are used here)."""
    root = tmp_path_factory.mktemp("weights") / "joint"
    for folder in (root, root / "checkpoint-1"):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / JOINT_FILE).write_bytes(b"")
    return root


@pytest.fixture(scope="module")
def app(tmp_path_factory, weights_root):
    out = tmp_path_factory.mktemp("joint_reliability") / "outputs"
    settings = Settings(sd_model="tiny", device="cpu", output_dir=out, joint_weights=str(weights_root))
    demo = serve(build_demo, settings, SERVED_FOLDERS)
    yield demo.local_url, settings
    demo.close()


@pytest.fixture(scope="module")
def first_run(app):
    """Client A's run (prompt -> image + depth): its answer (FileData with URLs) and its run folder."""
    url, settings = app
    client = fresh_client(url, download_files=False)
    result = client.predict("a red chair", "", SIDE, SIDE, api_name="/generate", **FAST)
    (folder,) = (Path(settings.output_dir) / "joint_depth").iterdir()
    return result, folder, digests(folder)


@pytest.fixture(scope="module")
def client(app, first_run):
    return fresh_client(app[0], download_files=False)


def _runs(settings: Settings) -> set[str]:
    return {p.name for p in (Path(settings.output_dir) / "joint_depth").iterdir()}


@pytest.mark.parametrize("endpoint", list(IMAGE_INPUTS))
@pytest.mark.parametrize("name", case_names("image"))
def test_image_corpus(app, first_run, client, corpus, name, endpoint):
    url, settings = app
    case = corpus[name]
    runs = _runs(settings)
    inputs = IMAGE_INPUTS[endpoint](handle_file(str(case.path)))
    result = answer(
        lambda: client.predict(**inputs, api_name=endpoint, **FAST),
        case,
        forbidden_paths(settings, case.path.parent),
    )
    if result is None:
        assert _runs(settings) == runs, "a refused upload left a run folder"
    # still serving; the first client's results untouched
    assert client.predict(api_name="/list_weights")["choices"][0][1] == ""
    _, folder, before = first_run
    assert digests(folder) == before


def test_a_second_client_cannot_fetch_the_first_ones_files(app, first_run, monkeypatch):
    url, settings = app
    (images, depth_maps, cloud, downloads, status), folder, _ = first_run
    # The page names the run, not a server path; the run's name cannot be guessed from the time.
    assert RUN_NAME.fullmatch(folder.name) and status.endswith(f"; run {folder.name}.")
    assert_clear_message(status, forbidden=forbidden_paths(settings))
    # A downloads every result through its URLs; B, even knowing the exact run name, gets none and lists nothing.
    shown = [cloud, *(entry["image"] for entry in images + depth_maps)]
    served = assert_served_only_to_its_session(url, settings, folder, downloads, shown)
    assert not served.is_relative_to(settings.output_dir)
    stamp_only = folder.with_name(folder.name.rsplit("-", 1)[0]) / "image_1.png"
    assert file_status(url, stamp_only) == 403
    # Naming A's file as an "upload" does not read it either, with or without Gradio's file metadata.
    without_uploads(monkeypatch)
    b = fresh_client(url, download_files=False)
    runs = _runs(settings)
    for payload in (server_file(folder / "image_1.png"), {"path": str(folder / "image_1.png")}):
        with pytest.raises(AppError):
            b.predict(**IMAGE_INPUTS["/image_to_depth"](payload), api_name="/image_to_depth", **FAST)
    assert digests(folder) == first_run[2] and _runs(settings) == runs


def test_the_weights_picker_offers_names_and_refuses_any_other_value(app, weights_root, client):
    url, settings = app
    choices = client.predict(api_name="/list_weights")["choices"]
    assert [value for _, value in choices] == ["", "joint", "joint/checkpoint-1"]
    page = httpx.get(f"{url.rstrip('/')}/config", timeout=10).text
    assert str(weights_root) not in page and str(settings.output_dir) not in page
    outside = weights_root.parent / "elsewhere"
    (outside / "run").mkdir(parents=True)
    (outside / "run" / JOINT_FILE).write_bytes(b"")
    # Existing or not, with weights or without, inside the root or out: one and the same refusal.
    values = [
        str(weights_root),  # the server path of a listed folder
        str(outside / "run"),
        str(outside),
        str(outside / "missing"),
        "/etc",
        "joint/../elsewhere/run",
    ]
    messages = set()
    for value in values:
        for endpoint in ("/model_status", "/generate"):
            extra = () if endpoint == "/model_status" else ("x", "", SIDE, SIDE)
            kwargs = {"weights": value} if endpoint == "/model_status" else {**FAST, "weights": value}
            with pytest.raises(AppError) as error:
                client.predict(*extra, api_name=endpoint, **kwargs)
            messages.add(str(error.value).replace(value, "<value>"))
    assert len(messages) == 1, messages
    assert "joint_layers" not in messages.pop()
