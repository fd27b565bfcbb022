"""Stopping a job at its next step: the one cancellation mechanism of every job.

A front end makes a :class:`CancelToken` per run and hands it to the job; its Stop button (or a client that
went away) calls :meth:`CancelToken.cancel` from another thread. The job calls :meth:`CancelToken.check` at
every step it reports: each denoising step of a diffusers pipeline (:meth:`CancelToken.on_step_end` is a
``callback_on_step_end``) and each frame or segment of the no-weights engines (:meth:`CancelToken.watch` wraps
a progress callback). A cancelled check raises :class:`Cancelled`, which unwinds the job before it writes its
outputs, so the worker thread (and the GPU slot it holds) is free within one step. Since every denoising step
passes through :meth:`CancelToken.on_step_end`, the token also tells its ``on_step`` listener (a progress
display, e.g. :class:`core.estimate.StepClock`'s ``step``) that a step finished.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, ParamSpec

from core.errors import KinemaError

P = ParamSpec("P")

STOPPED_MESSAGE = "The run was stopped before it finished; nothing was saved."


class Cancelled(KinemaError):
    """The run was stopped (a Stop button, a closed page or client) before it finished."""

    def __init__(self, message: str = STOPPED_MESSAGE):
        super().__init__(message)


class CancelToken:
    """A thread-safe flag: set once by :meth:`cancel`, checked by the job at every step; ``on_step`` (if any) is
    called after each denoising step that was not cancelled."""

    def __init__(self, on_step: Callable[[], None] | None = None) -> None:
        self._event = threading.Event()
        self._on_step = on_step

    def cancel(self) -> None:
        """Ask the job to stop at its next step (safe to call from any thread, any number of times)."""
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        """Raise :class:`Cancelled` once :meth:`cancel` was called; return otherwise."""
        if self._event.is_set():
            raise Cancelled()

    def on_step_end(self, pipeline: Any, step: int, timestep: Any, tensors: dict) -> dict:
        """diffusers' ``callback_on_step_end``: checks the token after every denoising step and tells
        ``on_step``; changes nothing."""
        self.check()
        if self._on_step is not None:
            self._on_step()
        return {}

    def watch(self, report: Callable[P, None] | None = None) -> Callable[P, None]:
        """A progress callback that checks the token, then passes the event on to ``report`` (if any)."""

        def checked(*args: P.args, **kwargs: P.kwargs) -> None:
            self.check()
            if report is not None:
                report(*args, **kwargs)

        return checked
