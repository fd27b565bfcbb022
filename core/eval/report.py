"""The one output style of every evaluation: a title, ONE table, and the numbers as JSON.

Every ``python -m core.eval.NAME`` (and ``python -m apps.drag.evaluate``) builds its parser with
`parser`, prints `table(...)` and ends with `write_json`, whose default path is
``eval-results/NAME.json`` (``--json PATH`` changes it).
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

RESULTS_DIR = Path("eval-results")

Row = Sequence[Any]
_SPEC = re.compile(r"^([<>^]?)(\d*)(.*)$")


def parser(name: str, description: str, prog: str | None = None) -> argparse.ArgumentParser:
    """An argument parser with ``--json PATH`` (default ``eval-results/NAME.json``)."""
    out = argparse.ArgumentParser(
        prog=prog or f"python -m core.eval.{name}", description=description, allow_abbrev=False
    )
    out.add_argument(
        "--json",
        type=Path,
        default=RESULTS_DIR / f"{name}.json",
        help=f"where to write the numbers (default: {RESULTS_DIR / name}.json)",
    )
    return out


def _cell(value: Any, spec: str) -> str:
    """``value`` formatted by ``spec`` (e.g. ">8.3f"); None and text keep only its alignment and width."""
    if value is None or isinstance(value, str):
        align, width, _ = _SPEC.match(spec).groups()
        return format("" if value is None else value, f"{align}{width}")
    return format(value, spec)


def _widened(spec: str, width: int) -> str:
    align, old, rest = _SPEC.match(spec).groups()
    return f"{align}{max(int(old or 0), width)}{rest}"


def table(columns: Sequence[tuple[str, str]], rows: Sequence[Row], summary: Sequence[Row] = ()) -> str:
    """A text table: the header, a rule, the rows, and (after another rule) the summary rows.

    ``columns``: (header, format spec) pairs, e.g. ``("AbsRel", ">8.4f")``; a column is at least as wide as
    its header; a cell that is None or text is written with the spec's alignment and width only. Cells are
    joined by one space.
    """
    columns = [(name, _widened(spec, len(name))) for name, spec in columns]
    header = " ".join(_cell(name, spec) for name, spec in columns)
    rule = "-" * len(header)

    def line(row: Row) -> str:
        if len(row) != len(columns):
            raise ValueError(f"A row has {len(row)} cells for {len(columns)} columns: {row!r}.")
        return " ".join(_cell(value, spec) for value, (_, spec) in zip(row, columns)).rstrip()

    lines = [header, rule, *map(line, rows)]
    if summary:
        lines += [rule, *map(line, summary)]
    return "\n".join(lines)


def write_json(path: Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` as indented JSON to ``path`` (parents created), print where, return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {path}")
    return path
