"""Launcher: ``python -m apps [all|drag|joint|keyframe]``.

``all`` (the default) serves one front door, a landing page with both Gradio apps under it (``apps/front``,
``--port``, default 7860), beside the Streamlit drag app (``--drag-port``, default 8501), and prints the one URL
to open. ``drag``, ``joint`` or ``keyframe`` serves that app alone (``--port``: its own port by default).
Settings flags (``--sd-model`` etc., see core/config.py) are passed to the servers as KINEMA_* variables.
Ctrl-C (SIGINT) or SIGTERM is forwarded to every server; the launcher waits for them (killing any still there
after STOP_WAIT_S) and exits, so an immediate restart finds the ports free.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import subprocess
import time
from dataclasses import fields
from typing import NoReturn

from apps.common.catalog import APPS, FRONT, ROOT, AppSpec
from core.config import ENV_PREFIX, Settings
from core.errors import InputError

__all__ = ["APPS", "FRONT", "ROOT", "main", "servers"]
STOP_WAIT_S = 4.0  # how long the servers get to stop after the signal before they are killed


class _Stop(Exception):
    """A forwarded signal: the launcher's cue to stop its servers."""


def servers(
    which: str, host: str, port: int | None, drag_port: int | None
) -> list[tuple[AppSpec, list[str]]]:
    """The servers to start for `which` and their commands: the front door and the drag app for "all",
    else the one app; `port` / `drag_port` replace the default ports when given."""
    if which != "all":
        app = APPS[which] if port is None else dataclasses.replace(APPS[which], port=port)
        return [(app, app.command(host))]
    drag = APPS["drag"] if drag_port is None else dataclasses.replace(APPS["drag"], port=drag_port)
    front = FRONT if port is None else dataclasses.replace(FRONT, port=port)
    return [(front, [*front.command(host), "--drag-port", str(drag.port)]), (drag, drag.command(host))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m apps",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="apps:\n"
        + "\n".join(f"  {app.key:<9} {app.title} ({app.framework}, port {app.port})" for app in APPS.values())
        + f"\n  {'all':<9} the landing page with every app (port {FRONT.port}; drag app on its own port)",
    )
    parser.add_argument("which", nargs="?", default="all", choices=[*APPS, "all"])
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (0.0.0.0 for a LAN)")
    parser.add_argument("--port", type=int, help="port of the front door (all) or of the one app")
    parser.add_argument("--drag-port", type=int, help="port of the drag app when serving all")
    parser.add_argument("--dry-run", action="store_true", help="print the commands instead of running them")
    Settings.add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_args(args)  # validates flags and env before any app starts
    except InputError as err:
        parser.error(str(err))

    chosen = servers(args.which, args.host, args.port, args.drag_port)
    if args.dry_run:
        for _, command in chosen:
            print(" ".join(command))
        return 0
    env = {**os.environ, **_settings_env(settings)}
    previous = {sig: signal.signal(sig, _raise_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    children: list[subprocess.Popen] = []
    try:
        for _, command in chosen:
            children.append(subprocess.Popen(command, cwd=ROOT, env=env))
        app = chosen[0][0]
        print(f"{app.title}: {app.url(args.host)}/" + ("  (open this one)" if args.which == "all" else ""))
        while all(child.poll() is None for child in children):
            time.sleep(0.2)
        # A server ended by itself: the launcher stops the others and ends with its status.
        status = next(child.returncode for child in children if child.returncode is not None)
    except _Stop:
        status = 0  # asked to stop: a clean exit, however the servers end
    finally:
        for sig in previous:  # a second signal does not cut the wait short
            signal.signal(sig, signal.SIG_IGN)
        _stop(children)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return status if status >= 0 else 128 - status  # a server killed by signal N: the shell's 128 + N


def _raise_stop(signum: int, frame: object) -> NoReturn:
    raise _Stop


def _stop(children: list[subprocess.Popen]) -> None:
    """SIGTERM to every server still running, then wait for all of them (killing the ones left after
    STOP_WAIT_S)."""
    for child in children:
        if child.poll() is None:
            child.terminate()
    deadline = time.monotonic() + STOP_WAIT_S
    for child in children:
        try:
            child.wait(timeout=max(deadline - time.monotonic(), 0.01))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _settings_env(settings: Settings) -> dict[str, str]:
    return {ENV_PREFIX + f.name.upper(): str(getattr(settings, f.name)) for f in fields(settings)}


if __name__ == "__main__":
    raise SystemExit(main())
