"""What the two Gradio apps share: our errors shown as one sentence, the low-VRAM checkbox, Stop buttons and
closed sessions stopping their runs (`RunStops`), uploads read by our own loaders, results served privately,
the page header (title, description, the offline-models switch of :mod:`apps.common.offline`), and the server:
each app is mounted on a FastAPI app (:func:`mount_app`: at its path, with its offline copy at
``<path>/offline/``), alone by `serve` or both beside the landing page by ``apps/front/server.py``.

Privacy of results: the output folder is NOT in ``allowed_paths``, so ``/gradio_api/file=<output folder>/...``
is refused whatever the run's name. A handler hands out its run's files through :func:`served_copies`: hard
links (copies across file systems) in a new folder with a random 128-bit name inside Gradio's upload cache,
which Gradio serves and ages out (``delete_cache``) without copying them again. Only the session that ran the
job gets those URLs; the file route refuses folders, so the names cannot be listed.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import os
import secrets
import shutil
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import gradio as gr
from fastapi import FastAPI
from gradio.data_classes import ImageData
from gradio.utils import get_upload_folder

from apps.common.catalog import FAVICON, AppSpec, display_host
from apps.common.low_vram import LOW_VRAM_LABEL, low_vram_help
from apps.common.offline import (
    OFFLINE_PATH,
    in_use_note,
    missing_weights_of,
    offer_note,
    offline_settings,
    switch_label,
)
from core.cancel import CancelToken
from core.config import Settings
from core.errors import InputError, KinemaError


def shows_errors(fn: Callable) -> Callable:
    """Show our errors' one sentence in the UI (gr.Error) instead of a generic failure."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except KinemaError as error:
            raise gr.Error(str(error), print_exception=False) from None

    return wrapper


STOPPED = "Stopped."


class RunStops:
    """The cancel tokens (`core.cancel`) of the runs in progress, by session, so that a Stop button and a
    session that ends stop its runs at their next step.

    Cancelling a gradio event only cancels its asyncio task: the worker thread running the job goes on, and
    the task (with it the "gpu" slot) waits for that thread. Gradio notices a page or client going away when
    its heartbeat stream closes and then fires the Blocks' ``unload`` event for the session; `wire` makes that
    event and each Stop button cancel the session's tokens, so the thread (and the slot) is free within one
    step. A handler takes ``client: gr.Request`` and runs its job inside ``with stops.running(client) as token``.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[str, list[CancelToken]] = {}

    @contextmanager
    def running(self, client: gr.Request | None) -> Iterator[CancelToken]:
        """A token for one run of `client`'s session, registered while the run lasts."""
        token = CancelToken()
        session = getattr(client, "session_hash", None)
        if session is None:  # called without gradio (tests, scripts): nothing can stop it but the caller
            yield token
            return
        with self._lock:
            self._tokens.setdefault(session, []).append(token)
        try:
            yield token
        finally:
            with self._lock:
                tokens = self._tokens[session]
                tokens.remove(token)
                if not tokens:
                    del self._tokens[session]

    def end_session(self, client: gr.Request) -> None:
        """Stop every run of `client`'s session at its next step."""
        with self._lock:
            tokens = list(self._tokens.get(client.session_hash, ()))
        for token in tokens:
            token.cancel()

    def stop(self, client: gr.Request) -> str:
        """The Stop buttons' event: stop the session's runs; the status text."""
        self.end_session(client)
        return STOPPED

    def wire(self, demo: gr.Blocks, status: gr.Component, buttons: dict[str, tuple[gr.Button, list]]) -> None:
        """Each Stop button (api_name -> (button, the events it stops)) cancels its events and the session's
        runs and shows "Stopped." in `status`; a session that ends stops its runs too."""
        for api_name, (button, events) in buttons.items():
            button.click(self.stop, None, status, cancels=events, queue=False, api_name=api_name)
        demo.unload(self.end_session)


def low_vram_checkbox(settings: Settings, elem_id: str) -> gr.Checkbox:
    """The per-run low-VRAM choice, starting at the server's setting; runs take it as `low_vram`."""
    return gr.Checkbox(settings.low_vram, label=LOW_VRAM_LABEL, info=low_vram_help(settings), elem_id=elem_id)


def image_upload(**kwargs) -> gr.Image:
    """An image input (gr.Image) whose value reaches the handler as the upload's server path, undecoded, so
    the handler reads it with core.imaging: size checked from the header against Settings.max_image_side
    before any pixel is decoded, anything unreadable answered in one sentence.

    gr.Image's own preprocess opens the file first (a corrupt one gives "Could not preprocess input
    component") and opens any path a client names; this one takes only files in Gradio's upload folder. It
    is set on the instance, not in a subclass, because gradio writes a .pyi stub beside the source of every
    Component subclass; so never gr.update() these inputs (an update rebuilds a plain gr.Image).
    """
    image = gr.Image(type="filepath", **kwargs)
    image.preprocess = _uploaded_path
    return image


def _uploaded_path(payload: ImageData | None) -> str | None:
    path = payload.path if payload is not None else None
    if not path:
        return None
    if not Path(path).resolve().is_relative_to(Path(get_upload_folder()).resolve()):
        raise gr.Error("Send the image as an upload; server paths are not accepted.", print_exception=False)
    return path


def served_copies(paths: Iterable[str | Path]) -> list[str]:
    """Links to ``paths`` (files of one run) that Gradio serves to whoever receives them, and nobody else.

    They go into a new folder with an unguessable name in Gradio's upload cache (mode 0700); a hard link
    costs no space, a copy is made where the cache is on another file system. Returns the new paths, in order.
    """
    folder = Path(get_upload_folder()) / f"kinema-{secrets.token_hex(16)}"
    folder.mkdir(mode=0o700, parents=True)
    served = []
    for path in map(Path, paths):
        target = folder / path.name
        try:
            os.link(path, target)
        except OSError:
            shutil.copyfile(path, target)
        served.append(str(target))
    return served


def page_header(spec: AppSpec, settings: Settings, models: Iterable[str], offline: bool) -> None:
    """The app's title and one-sentence description, then the offline-models line: on the offline copy the
    label saying which offline models run (and a link back), elsewhere, when weights of `models` (the Settings
    fields the app uses) are missing, the offer with its one-click switch to the offline copy."""
    models = tuple(models)
    gr.Markdown(f"# {spec.title}\n{spec.summary}", elem_id="app-header")
    if offline:
        with gr.Row(elem_id="offline-note"):
            gr.Markdown(in_use_note(settings, models), elem_id="offline-label")
            gr.Button("Back to the configured models", link="../", size="sm", scale=0, elem_id="offline-back")
    elif missing := missing_weights_of(settings, models):
        with gr.Row(elem_id="offline-note"):
            gr.Markdown(offer_note(missing))
            gr.Button(
                switch_label(models),
                link=f"{OFFLINE_PATH}/",
                size="sm",
                variant="primary",
                scale=0,
                elem_id="offline-switch",
            )


def mount_app(
    server: FastAPI,
    path: str,
    demo: gr.Blocks,
    build_demo: Callable[..., gr.Blocks],
    settings: Settings,
    served_folders: Iterable[Path],
) -> None:
    """Serve an app at `path` ("" for the root): `demo` (its module's Blocks for the environment's settings;
    rebuilt with `build_demo` when `settings` differ), and its offline copy,
    ``build_demo(offline_settings(settings), offline=True)``, at ``<path>/offline``; each with its own queue."""
    app = demo if settings == Settings.from_env() else build_demo(settings)
    offline = build_demo(offline_settings(settings), offline=True)
    # The offline copy first: a mount at `path` would also take the requests under <path>/offline.
    for mount_path, blocks in ((f"{path}/{OFFLINE_PATH}", offline), (path or "/", app)):
        gr.mount_gradio_app(
            server, blocks.queue(max_size=32), mount_path, **launch_kwargs(settings, *served_folders)
        )
        blocks.favicon_path = str(FAVICON)  # gradio warns when given it for a path below the root


def run_server(server: FastAPI, host: str, port: int) -> None:
    """Serve `server` until SIGINT or SIGTERM; open connections (the pages' queue streams) get 2 s to close,
    then are cancelled without a traceback each."""
    import uvicorn

    logging.getLogger("uvicorn.error").addFilter(_not_cancelled)
    print(f"Serving on http://{display_host(host)}:{port}", flush=True)
    uvicorn.run(server, host=host, port=port, log_level="warning", timeout_graceful_shutdown=2)


def _not_cancelled(record: logging.LogRecord) -> bool:
    return not (record.exc_info and isinstance(record.exc_info[1], asyncio.CancelledError))


def launch_kwargs(settings: Settings, *served_folders: Path) -> dict[str, Any]:
    """`launch()` arguments that depend on the settings: the upload limit and the folders of public files
    (samples, examples). Results are not among them: handlers hand them out through :func:`served_copies`."""
    return {
        "max_file_size": settings.max_upload_bytes,
        "allowed_paths": list(map(str, served_folders)),
        "show_error": True,
    }


def server_arguments(
    parser: argparse.ArgumentParser, port: int, argv: list[str] | None
) -> tuple[argparse.Namespace, Settings]:
    """Add --host, --port (default `port`) and the settings flags to `parser`; the parsed arguments and
    settings (a usage error for bad settings)."""
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (0.0.0.0 for a LAN)")
    parser.add_argument("--port", type=int, default=port, help="port to serve on")
    Settings.add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return args, Settings.from_args(args)
    except InputError as err:
        parser.error(str(err))


def serve(
    prog: str,
    description: str,
    port: int,
    demo: gr.Blocks,
    build_demo: Callable[..., gr.Blocks],
    served_folders: list[Path],
    argv: list[str] | None = None,
) -> int:
    """Parse --host/--port and the settings flags, then serve the app alone (:func:`mount_app` at the root)."""
    args, settings = server_arguments(argparse.ArgumentParser(prog=prog, description=description), port, argv)
    server = FastAPI()
    mount_app(server, "", demo, build_demo, settings, served_folders)
    run_server(server, args.host, args.port)
    return 0
