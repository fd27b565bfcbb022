"""core.eval.report: the table layout, the --json default, and the JSON file."""

import json
from pathlib import Path

import pytest

from core.eval import report


def test_table_aligns_formats_and_separates_the_summary():
    columns = [("case", "<6"), ("EPE", ">7.3f"), ("note", "<4")]
    text = report.table(columns, [["a", 0.12345, "ok"], ["bb", 12.0, None]], [["mean", 6.061725, None]])
    assert text.splitlines() == [
        "case       EPE note",
        "-" * 19,
        "a        0.123 ok",
        "bb      12.000",
        "-" * 19,
        "mean     6.062",
    ]
    assert "-" * 19 not in report.table(columns, [["a", 1.0, "x"]]).splitlines()[2:]
    # A column is at least as wide as its header.
    assert report.table([("backend", "<4"), ("x", ">3d")], [["warp", 7]]).splitlines()[2] == "warp      7"
    with pytest.raises(ValueError, match="2 cells for 3 columns"):
        report.table(columns, [["a", 1.0]])


def test_parser_defaults_the_json_path_to_eval_results(tmp_path, capsys):
    parser = report.parser("flow", "test")
    assert parser.prog == "python -m core.eval.flow"
    assert parser.parse_args([]).json == Path("eval-results/flow.json")
    assert parser.parse_args(["--json", str(tmp_path / "x.json")]).json == tmp_path / "x.json"
    path = report.write_json(tmp_path / "deep" / "x.json", {"a": [1.5, None]})
    assert json.loads(path.read_text()) == {"a": [1.5, None]}
    assert capsys.readouterr().out.strip() == f"wrote {path}"
