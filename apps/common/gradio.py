"""What the two Gradio apps share: our errors shown as one sentence, the low-VRAM checkbox, and the `main()`
that serves them."""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr

from apps.common.low_vram import LOW_VRAM_LABEL, low_vram_help
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
