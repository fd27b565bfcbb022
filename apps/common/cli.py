"""What the three CLIs share: one-line argparse errors, limits as argparse types, --overwrite, SIGTERM.

Every CLI answers bad input with one line on stderr and status 2 (:class:`Parser` for argparse's own
errors, the CLIs' ``main`` for our InputError), refuses request values beyond ``core.config.LIMITS`` while
parsing (:func:`limited`), checks its outputs before any work (``core.outputs.check_outputs``, replacing
existing files only with ``--overwrite``), and turns SIGTERM into KeyboardInterrupt
(:func:`sigterm_interrupts`) so a killed run removes its partial files and keeps the earlier outputs.
"""

from __future__ import annotations

import argparse
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NoReturn

from core.config import LIMITS
from core.errors import InputError

INTERRUPTED = 130  # the shell's status for a run stopped by a signal (128 + SIGINT)


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One line on stderr and status 2, like every other bad input."""
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def limited(name: str) -> Callable[[str], int | float]:
    """An argparse type for the value of ``LIMITS[name]``: parsed and range-checked, else an argparse error."""
    limit = LIMITS[name]

    def parse(text: str) -> int | float:
        try:
            value = int(text) if text.strip().lstrip("+-").isdigit() else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{limit.what} must be a number, got {text!r}") from None
        try:
            return limit.check(value)
        except InputError as error:
            raise argparse.ArgumentTypeError(str(error).rstrip(".")) from None

    parse.__name__ = name  # argparse names the type in its messages
    return parse


def add_overwrite_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace output files that exist already (default: refuse); inputs are never overwritten",
    )


@contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """Within the block SIGTERM raises KeyboardInterrupt, so cleanup (``core.outputs.atomic_path``) runs.
    Python handles signals in the main thread only: elsewhere (a CLI called from a worker) nothing changes."""

    def interrupt(signum: int, frame: object) -> NoReturn:
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
