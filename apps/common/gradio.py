"""What the two Gradio apps share: our errors shown as one sentence, the low-VRAM checkbox, Stop buttons and
closed sessions stopping their runs (`RunStops`), uploads read by our own loaders, results served privately,
and the `main()` that serves them.

Privacy of results: the output folder is NOT in ``allowed_paths``, so ``/gradio_api/file=<output folder>/...``
is refused whatever the run's name. A handler hands out its run's files through :func:`served_copies`: hard
links (copies across file systems) in a new folder with a random 128-bit name inside Gradio's upload cache,
which Gradio serves and ages out (``delete_cache``) without copying them again. Only the session that ran the
job gets those URLs; the file route refuses folders, so the names cannot be listed.
"""

from __future__ import annotations

import argparse
import functools
import os
import secrets
import shutil
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.data_classes import ImageData
from gradio.utils import get_upload_folder

from apps.common.low_vram import LOW_VRAM_LABEL, low_vram_help
from core.cancel import CancelToken
from core.config import Settings
from core.errors import InputError, KinemaError
from core.estimate import Estimate, StepClock


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
    def running(
        self, client: gr.Request | None, on_step: Callable[[], None] | None = None
    ) -> Iterator[CancelToken]:
        """A token for one run of `client`'s session, registered while the run lasts; `on_step` is told of
        each denoising step (see `core.cancel.CancelToken`)."""
        token = CancelToken(on_step)
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


def step_progress(progress: gr.Progress, prior: Estimate) -> StepClock:
    """A `StepClock` for a job about to run that shows "segment k of n, step i of N - P% - about N s left" in
    the event's progress bar after every denoising step (give its ``step`` to `RunStops.running`)."""
    clock = StepClock(prior, report=lambda fraction, text: progress(fraction, desc=text))
    clock.show()
    return clock


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


def launch_kwargs(settings: Settings, *served_folders: Path) -> dict[str, Any]:
    """`launch()` arguments that depend on the settings: the upload limit and the folders of public files
    (samples, examples). Results are not among them: handlers hand them out through :func:`served_copies`."""
    return {
        "max_file_size": settings.max_upload_bytes,
        "allowed_paths": list(map(str, served_folders)),
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
