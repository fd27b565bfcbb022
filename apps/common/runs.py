"""Run folders and the one run-record format every app and CLI writes.

A run is one job of an app (a drag video, a joint depth/image generation, a keyframe edit). Its outputs go
to a run folder (:func:`new_run_folder`) or to paths the CLI user names, and beside them goes a run record:
a JSON file that says what was run and is enough to run it again.

Record layout (``format`` and ``version`` first, so a reader can refuse what it does not understand)::

    {
      "format": "kinema.run", "version": 1,
      "app": "drag" | "joint_depth" | "keyframe",
      "action": "cli" | "ui:<button>",         # how it was started
      "command": ["python", "-m", ...] | null,   # the command line, for CLI runs
      "arguments": {...},                        # the job's request: what redoes the run
      "settings": {...},                         # model locations, device, dtype in force
      "outputs": {"video_mp4": "video.mp4", ...},  # relative to the record's folder, or absolute
      "timings_s": {"total": 1.234, ...}
    }

Outputs in a run folder are named relative to it; a CLI that writes where its user says records
absolute paths. A record of a run started in a served app (``action`` "ui:...") is downloaded by its user and
shown in the Runs panel, so it holds file names, not the server's paths: every absolute path in its
``arguments``, ``settings`` and ``outputs`` is written as its last part (:func:`file_names`); the inputs a
redo needs are in the run folder under those names. Each app's ``job`` module turns ``arguments`` back into its request (``request_from_record``), so a record
read from disk redoes its run.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePath
from typing import Any

from core.errors import InputError
from core.outputs import atomic_path

RUN_FORMAT = "kinema.run"
RUN_VERSION = 1
APPS = ("drag", "joint_depth", "keyframe")


def new_run_folder(output_dir: str | Path, app: str) -> Path:
    """A new, empty folder ``output_dir/app/<YYYYmmdd-HHMMSS>-<token>``.

    The token (16 random hex digits) makes run names unguessable: knowing when someone ran a job is not
    enough to name, let alone fetch, their outputs.
    """
    if app not in APPS:
        raise ValueError(f"app must be one of {APPS}, got {app!r}")
    folder = Path(output_dir) / app / f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(8)}"
    folder.mkdir(parents=True, exist_ok=False)
    return folder


def file_names(value: Any) -> Any:
    """`value` with every absolute path in it (a string, at any depth of lists and objects) cut to its name."""
    if isinstance(value, str):
        return PurePath(value).name if os.path.isabs(value) else value
    if isinstance(value, dict):
        return {key: file_names(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [file_names(item) for item in value]
    return value


@dataclass(frozen=True)
class RunRecord:
    """One run: what was asked (``arguments``), with what (``settings``), what came out (``outputs``)."""

    app: str
    action: str
    arguments: dict[str, Any]
    settings: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    timings_s: dict[str, float] = field(default_factory=dict)
    command: list[str] | None = None

    def __post_init__(self) -> None:
        if self.app not in APPS:
            raise ValueError(f"app must be one of {APPS}, got {self.app!r}")
        if self.action != "cli" and not self.action.startswith("ui:"):
            raise ValueError(f"action must be 'cli' or 'ui:<name>', got {self.action!r}")

    def to_dict(self) -> dict[str, Any]:
        """The record as written; a served app's record (``ui:`` action) with file names for server paths."""
        body = asdict(self)
        if self.action.startswith("ui:"):
            body.update({name: file_names(body[name]) for name in ("arguments", "settings", "outputs")})
        body["timings_s"] = {k: round(float(v), 3) for k, v in self.timings_s.items()}
        return {"format": RUN_FORMAT, "version": RUN_VERSION, **body}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def write(self, path: str | Path) -> Path:
        """Write the record to `path` atomically (`core.outputs.atomic_path`); returns `path`."""
        path = Path(path)
        with atomic_path(path) as temp:
            temp.write_text(self.to_json())
        return path

    @classmethod
    def from_dict(cls, data: Any, source: str = "the run record") -> RunRecord:
        if not isinstance(data, dict) or data.get("format") != RUN_FORMAT:
            raise InputError(f'{source} is not a Kinema run record (no "format": "{RUN_FORMAT}").')
        if data.get("version") != RUN_VERSION:
            raise InputError(
                f"{source} has run-record version {data.get('version')!r}; this Kinema reads version {RUN_VERSION}."
            )
        body = {k: v for k, v in data.items() if k not in ("format", "version")}
        missing = {"app", "action", "arguments"} - body.keys()
        unknown = body.keys() - {f for f in cls.__dataclass_fields__}
        if missing or unknown:
            raise InputError(
                f"{source} is damaged: missing {sorted(missing) or 'nothing'}, unknown {sorted(unknown) or 'nothing'}."
            )
        if not isinstance(body["arguments"], dict):
            raise InputError(f'{source} is damaged: "arguments" must be an object.')
        try:
            return cls(**body)
        except ValueError as error:
            raise InputError(f"{source} is damaged: {error}.") from error

    @classmethod
    def read(cls, path: str | Path) -> RunRecord:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except RecursionError as error:
            raise InputError(
                f"The run record {path.name} is nested far too deeply to be a run record."
            ) from error
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise InputError(f"Cannot read the run record {path.name}: {error}.") from error
        return cls.from_dict(data, source=path.name)

    def output_paths(self, folder: str | Path) -> dict[str, Path]:
        """The outputs as paths, for a record read from ``folder`` (absolute ones stay as they are)."""
        return {name: Path(folder) / file for name, file in self.outputs.items()}
