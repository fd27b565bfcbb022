"""Requests beyond the limits table (`core.config.LIMITS`) are refused by the CLIs while parsing: status 2,
one clear sentence naming the range, at once (before any input is read or model loaded), nothing written.
The largest allowed value parses, so the CLIs cap exactly where the apps' widgets end."""

from __future__ import annotations

import importlib
import time

import pytest

from apps.drag.params import DragParams
from core.config import LIMITS
from tests.reliability.cli_runs import Snapshot, assert_refused, run_cli, set_cli_env
from tests.reliability.test_cli_outputs import BASE, DEFAULT_OUT, MAINS

# (cli, flag, the LIMITS entry it reads)
LIMITED_FLAGS = [
    ("drag", "--steps", "drag_steps"),
    ("keyframe", "--steps", "edit_steps"),
    ("keyframe", "--interp-steps", "interp_steps"),
    ("keyframe", "--decode-chunk-size", "decode_chunk_size"),
    ("keyframe", "--noise-reinjection", "noise_reinjection"),
    ("joint", "--steps", "joint_steps"),
    ("joint", "--batch", "joint_batch"),
]
BAD_VALUES = ["100000", "{high+1}", "{low-1}", "2.5", "ten", "nan"]


def _argv(cli: str, tmp_path, *extra: str) -> list[str]:
    folders = {"in": tmp_path / "in", "out": tmp_path / "out"}  # never read: parsing stops first
    return [a.format(**folders) for a in [*BASE[cli], "--out", DEFAULT_OUT[cli]]] + list(extra)


@pytest.mark.parametrize("value", BAD_VALUES)
@pytest.mark.parametrize(("cli", "flag", "limit"), LIMITED_FLAGS, ids=lambda v: str(v).lstrip("-"))
def test_beyond_the_limit_is_refused_at_once(monkeypatch, tmp_path, capsys, cli, flag, limit, value):
    set_cli_env(monkeypatch, tmp_path)
    bounds = LIMITS[limit]
    value = value.format(**{"high+1": int(bounds.high) + 1, "low-1": int(bounds.low) - 1})
    snapshot = Snapshot(tmp_path)
    started = time.perf_counter()
    code, stderr = run_cli(MAINS[cli], _argv(cli, tmp_path, flag, value), capsys)
    assert time.perf_counter() - started < 2.0
    assert_refused(code, stderr, snapshot, forbidden=(str(tmp_path),))
    assert f"argument {flag}: " in stderr and bounds.what in stderr, stderr


@pytest.mark.parametrize(("cli", "flag", "limit"), LIMITED_FLAGS, ids=lambda v: str(v).lstrip("-"))
def test_the_largest_allowed_value_parses(tmp_path, cli, flag, limit):
    module = {"drag": "apps.drag.cli", "joint": "apps.joint_depth.cli", "keyframe": "apps.keyframe.cli"}[cli]
    parser = importlib.import_module(module).build_parser()
    args = parser.parse_args(_argv(cli, tmp_path, flag, str(int(LIMITS[limit].high))))
    assert getattr(args, flag[2:].replace("-", "_")) == LIMITS[limit].high


def test_the_drag_apps_steps_slider_ends_at_the_limit():
    widget = DragParams.widget("steps")
    assert (widget.low, widget.high) == (LIMITS["drag_steps"].low, LIMITS["drag_steps"].high)
