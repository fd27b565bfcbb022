"""Serving a Gradio app on loopback for the reliability suites, and what every case checks afterwards.

Each suite starts its app once (module fixture), drives it with gradio_client, and after each case checks
that the answer was a success or one clear sentence naming no server folder, that the server still serves,
and that the outputs of earlier runs are byte for byte what they were.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr
import httpx
from gradio.utils import get_upload_folder
from gradio_client import Client
from gradio_client.client import Endpoint
from gradio_client.exceptions import AppError

from apps.common.gradio import launch_kwargs
from core.config import Settings
from tests.reliability.corpus import Case, assert_clear_message


def serve(
    build_demo: Callable[[Settings], gr.Blocks], settings: Settings, served_folders: list[Path]
) -> gr.Blocks:
    """Build and launch the app on 127.0.0.1 (a free port) as its `main()` would, without blocking."""
    demo = build_demo(settings)
    demo.queue().launch(prevent_thread_lock=True, quiet=True, **launch_kwargs(settings, *served_folders))
    return demo


def forbidden_paths(settings: Settings, *more: Path) -> tuple[str, ...]:
    """Server folders no message may name: the output folder, Gradio's upload folder, and `more`."""
    return (str(Path(settings.output_dir).resolve()), get_upload_folder(), *map(str, more))


def answer(call: Callable[[], Any], case: Case, forbidden: tuple[str, ...]) -> Any:
    """Call the API with one corpus case: its result if accepted (only allowed when `case.refuse` is False),
    None if refused with one clear sentence."""
    try:
        result = call()
    except AppError as error:
        assert_clear_message(str(error), forbidden=forbidden)
        return None
    assert not case.refuse, f"{case.name} was accepted"
    return result


def digests(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder`, by relative path."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def file_status(base_url: str, path: str | Path) -> int:
    """The HTTP status of a GET of Gradio's file route for a server path, as anyone could send it."""
    return httpx.get(f"{base_url.rstrip('/')}/gradio_api/file={path}", timeout=10).status_code


def assert_served_only_to_its_session(
    url: str, settings: Settings, folder: Path, downloads: list[dict], shown: list[dict]
) -> Path:
    """A's results (`downloads` and the other `shown` file answers of its run in `folder`) download through
    the URLs it was given, byte for byte; anyone else gets 403 for every file of the run, even knowing its
    exact name, and for every folder results live in or are served from, and neither its files nor its
    settings from the Runs panel (/run_details, /redo). Returns the served folder."""
    assert sorted(Path(item["path"]).name for item in downloads) == sorted(p.name for p in folder.iterdir())
    for item in [*downloads, *shown]:
        response = httpx.get(item["url"], timeout=10)
        assert response.status_code == 200, item["url"]
        assert response.content == (folder / Path(item["path"]).name).read_bytes()
    served = Path(downloads[0]["path"]).parent
    assert served.is_relative_to(Path(get_upload_folder()))
    for path in folder.iterdir():
        assert file_status(url, path) == 403, path
    for where in (settings.output_dir, folder.parent, folder, served, Path(get_upload_folder())):
        assert file_status(url, where) == 403, where
    other = fresh_client(url, download_files=False)
    for api_name in ("/run_details", "/redo"):
        try:
            other.predict(folder.name, api_name=api_name)
        except AppError as error:  # not among its runs: refused by the run choice or by the panel
            assert "not in the list of choices" in str(error) or "this session's runs" in str(error), error
        else:
            raise AssertionError(f"{api_name} answered another session about run {folder.name}")
    return served


def without_uploads(monkeypatch) -> None:
    """Make gradio_client send FileData as given instead of uploading it: what a client that names a
    server path (rather than sending a file) looks like to the server."""
    monkeypatch.setattr(Endpoint, "process_input_files", lambda self, *data: data)


def server_file(path: str | Path) -> dict:
    """A FileData payload naming a server path (for :func:`without_uploads`)."""
    return {"path": str(path), "meta": {"_type": "gradio.FileData"}}


def fresh_client(url: str, **kwargs) -> Client:
    return Client(url, verbose=False, **kwargs)
