"""pyproject.toml: the console scripts resolve to the CLIs, and every pin has the lower bound make test-min checks."""

from __future__ import annotations

import importlib
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
SCRIPTS = PYPROJECT["project"]["scripts"]


def resolve(entry_point: str):
    """What ``module:attribute`` names, imported as pip's generated script imports it."""
    module, _, attribute = entry_point.partition(":")
    return getattr(importlib.import_module(module), attribute)


def test_console_scripts_are_the_launcher_and_the_two_clis():
    assert SCRIPTS == {
        "kinema": "apps.__main__:main",
        "kinema-drag": "apps.drag.cli:main",
        "kinema-keyframe": "apps.keyframe.cli:main",
    }


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_each_console_script_resolves_to_a_callable_that_answers_help(name, capsys):
    main = resolve(SCRIPTS[name])
    assert callable(main)
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("usage:")


def test_every_requirement_has_the_lower_bound_that_make_test_min_installs():
    # make test-min turns `NAME>=X` (optionally `,<Y`) into `NAME==X`: a line of another shape would be
    # installed unchecked, or not at all.
    lines = [
        line.strip()
        for line in (ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert lines
    shape = re.compile(r"[A-Za-z0-9_.-]+>=[0-9][0-9.]*(,<[0-9][0-9.]*)?")
    assert [line for line in lines if not shape.fullmatch(line)] == []
