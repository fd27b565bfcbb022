"""Safe outputs: every file a job writes appears under its final name complete, or not at all.

Two rules, kept here once for every app and CLI:

- :func:`atomic_path`: a writer writes to a temporary name in the final file's folder
  (``.<stem>.partial-<token><suffix>``: hidden, marked partial, and with the real extension last, so
  imageio / ffmpeg / cv2 still pick the format from it) which is moved over the final name with
  ``os.replace`` only when the writer finished. A failure, Ctrl-C or SIGTERM (see
  ``apps.common.cli.sigterm_interrupts``) removes the temporary file and leaves what was under the final
  name before untouched.
- :func:`check_outputs`: before any work, the paths a run will write are compared with its inputs, with
  each other and with existing files, so a run never overwrites its own input or an earlier result by
  accident. Messages name the flag and the file name (not the folder: a server must not show its paths).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from core.errors import InputError

PARTIAL_MARK = ".partial-"


def partial_path(final: str | Path) -> Path:
    """A fresh temporary name beside `final`: ``.<stem>.partial-<8 hex><suffix>``."""
    final = Path(final)
    return final.with_name(f".{final.stem}{PARTIAL_MARK}{secrets.token_hex(4)}{final.suffix}")


@contextmanager
def atomic_path(final: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write `final` to; on success it replaces `final` in one step.

    On any exception (KeyboardInterrupt included) the temporary file is removed and `final` is left as it
    was. The folder of `final` is created if missing.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    temp = partial_path(final)
    try:
        yield temp
        with open(temp, "rb") as written:  # on disk before the rename, so a crash cannot leave it empty
            os.fsync(written.fileno())
        os.replace(temp, final)
    finally:
        temp.unlink(missing_ok=True)


def _identity(path: Path) -> tuple:
    """What makes two names the same file: device and inode when it exists (symlinks and hard links
    alike), else the resolved path."""
    try:
        stat = path.stat()
        return ("inode", stat.st_dev, stat.st_ino)
    except OSError:
        return ("path", str(path.resolve()))


def _inside(path: Path, folder: Path) -> bool:
    return folder.is_dir() and path.resolve().is_relative_to(folder.resolve())


def _check_folder(flag: str, path: Path) -> None:
    """The file's folder exists and is writable, or the nearest existing one above it is a writable folder."""
    folder = path.parent
    while not folder.exists():
        if folder == folder.parent:
            break
        folder = folder.parent
    if not folder.is_dir():
        raise InputError(f"{flag} cannot be written: {folder.name} is a file, not a folder.")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"{flag} cannot be written: the folder {folder.name or folder} is not writable.")


def check_outputs(
    outputs: Sequence[tuple[str, Path]],
    inputs: Mapping[str, Path | None],
    *,
    overwrite: bool = False,
    suffixes: Mapping[str, Sequence[str]] | None = None,
) -> None:
    """Refuse, with one sentence (InputError), a run whose outputs would destroy something.

    Args:
        outputs: what the run will write: (how the user names it, the file), e.g. ("--out", out.mp4) or
            ("the run record", out.json); a flag naming a folder appears once per file written into it.
        inputs: what the run reads, by flag; None entries are skipped. A folder input (a folder of frames,
            a weights folder) also protects every file inside it.
        overwrite: replace existing files (the user passed --overwrite). Inputs and outputs naming the
            same file are refused regardless.
        suffixes: allowed extensions (lower case, with the dot) per output flag; others take any.

    Checks, in order: each output against each input (the same file, through symlinks and hard links, or
    inside an input folder), outputs against each other, the extension, an existing folder under the
    name, the folder being writable (or creatable), and an existing file unless `overwrite`.
    """
    given = {flag: Path(path) for flag, path in inputs.items() if path is not None}
    seen: dict[tuple, str] = {}
    for flag, path in outputs:
        path = Path(path)
        for source, input_path in given.items():
            if _identity(path) == _identity(input_path):
                raise InputError(
                    f"{flag} {path.name} is the same file as {source} {input_path.name}; "
                    "choose an output that is not an input."
                )
            if _inside(path, input_path):
                raise InputError(
                    f"{flag} {path.name} is inside the {source} folder {input_path.name}; "
                    "choose an output outside the inputs."
                )
        other = seen.setdefault(_identity(path), flag)
        if other != flag:
            raise InputError(f"{other} and {flag} both name {path.name}; give each output its own file.")
    for flag, path in outputs:
        path = Path(path)
        allowed = (suffixes or {}).get(flag)
        if allowed and path.suffix.lower() not in allowed:
            raise InputError(f"{flag} must end in {' or '.join(allowed)}, got {path.name}.")
        if path.is_dir():
            raise InputError(f"{flag} {path.name} is a folder; name a file to write.")
        _check_folder(flag, path)
        if path.exists() and not overwrite:
            raise InputError(f"{flag} {path.name} exists already; pass --overwrite to replace it.")
