"""Launcher: ``python -m apps [drag|joint|keyframe|all]``.

Starts the chosen apps as child processes, prints their URLs and waits; Ctrl-C stops them all.
Settings flags (``--sd-model`` etc., see core/config.py) are passed to the apps as KINEMA_* variables.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path

from core.config import ENV_PREFIX, Settings
from core.errors import InputError

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class AppSpec:
    key: str
    title: str
    entry: str  # path of the app's entry file, relative to the repository root
    framework: str  # "gradio" or "streamlit"
    port: int

    def command(self, host: str) -> list[str]:
        if self.framework == "streamlit":
            return [
                sys.executable, "-m", "streamlit", "run", str(ROOT / self.entry),
                "--server.port", str(self.port), "--server.address", host,
                "--server.headless", "true", "--browser.gatherUsageStats", "false",
            ]  # fmt: skip
        module = self.entry.removesuffix(".py").replace("/", ".")
        return [sys.executable, "-m", module, "--host", host, "--port", str(self.port)]

    def url(self, host: str) -> str:
        return f"http://{'localhost' if host in ('0.0.0.0', '127.0.0.1') else host}:{self.port}"


APPS = {
    "drag": AppSpec("drag", "Drag to video", "apps/drag/app.py", "streamlit", 8501),
    "joint": AppSpec("joint", "Joint depth + image", "apps/joint_depth/app.py", "gradio", 7861),
    "keyframe": AppSpec("keyframe", "Keyframe edit + interpolation", "apps/keyframe/app.py", "gradio", 7862),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m apps",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="apps:\n"
        + "\n".join(
            f"  {app.key:<9} {app.title} ({app.framework}, port {app.port})" for app in APPS.values()
        ),
    )
    parser.add_argument("which", nargs="?", default="all", choices=[*APPS, "all"])
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (0.0.0.0 for a LAN)")
    parser.add_argument("--dry-run", action="store_true", help="print the commands instead of running them")
    Settings.add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_args(args)  # validates flags and env before any app starts
    except InputError as err:
        parser.error(str(err))

    chosen = list(APPS.values()) if args.which == "all" else [APPS[args.which]]
    env = {**os.environ, **_settings_env(settings)}
    if args.dry_run:
        for app in chosen:
            print(" ".join(app.command(args.host)))
        return 0
    children = [(app, subprocess.Popen(app.command(args.host), cwd=ROOT, env=env)) for app in chosen]
    for app, _ in children:
        print(f"{app.title}: {app.url(args.host)}")
    try:
        while all(child.poll() is None for _, child in children):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        for _, child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGINT)
        for _, child in children:
            child.wait(timeout=30)
    return max((child.returncode or 0) for _, child in children)


def _settings_env(settings: Settings) -> dict[str, str]:
    return {ENV_PREFIX + f.name.upper(): str(getattr(settings, f.name)) for f in fields(settings)}


if __name__ == "__main__":
    raise SystemExit(main())
