"""What the two Gradio apps share: our errors shown as one sentence, the low-VRAM checkbox, Stop buttons and
closed sessions stopping their runs (`RunStops`), and the `main()` that serves them."""

from __future__ import annotations

import argparse
import functools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import gradio as gr

from apps.common.low_vram import LOW_VRAM_LABEL, low_vram_help
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


def launch_kwargs(settings: Settings, *served_folders: Path) -> dict[str, Any]:
    """`launch()` arguments that depend on the settings: upload limit, the folders results are served from."""
    return {
        "max_file_size": settings.max_upload_bytes,
        "allowed_paths": [str(Path(settings.output_dir).resolve()), *map(str, served_folders)],
        "show_error": True,
    }


def serve(
    prog: str,
    description: str,
    port: int,
    demo: gr.Blocks,
    build_demo: Callable[[Settings], gr.Blocks],
    served_folders: list[Path],
    argv: list[str] | None = None,
) -> int:
    """Parse --host/--port and the settings flags, then serve `demo` (rebuilt when the flags change it)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (0.0.0.0 for a LAN)")
    parser.add_argument("--port", type=int, default=port, help="port to serve on")
    Settings.add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_args(args)
    except InputError as err:
        parser.error(str(err))
    app = demo if settings == Settings.from_env() else build_demo(settings)
    app.queue(max_size=32).launch(
        server_name=args.host, server_port=args.port, **launch_kwargs(settings, *served_folders)
    )
    return 0
