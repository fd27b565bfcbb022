"""core.trajectory.from_canvas_json against canvas JSON as streamlit-drawable-canvas emits it.

The Fabric 7.4 fixtures were written by the component's own bundle (tests/fixtures/canvas/
generate_fixtures.mjs) together with the points Fabric renders; fabric44_handwritten.json is the
0.9.x / Fabric 4.4 format written by hand.
"""

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from core.errors import InputError
from core.trajectory import Trajectories, from_canvas_json

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "canvas"
ALL_FIXTURES = sorted(p.name for p in FIXTURES.glob("*.json"))


def _load(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def _parse_px(fixture: dict) -> list[np.ndarray]:
    """Parsed trajectories back in canvas pixels."""
    size = (fixture["canvas"]["width"], fixture["canvas"]["height"])
    return [t.points_norm * size for t in from_canvas_json(fixture["json_data"], size)]


def test_fixture_set_is_complete():
    assert {
        "line.json",
        "line_leftwards.json",
        "circle.json",
        "point.json",
        "polyline_path.json",
        "polygon.json",
        "freedraw.json",
        "transformed.json",
        "mixed.json",
        "fabric44_handwritten.json",
    } <= set(ALL_FIXTURES)


@pytest.mark.parametrize("name", ALL_FIXTURES)
def test_parsed_polylines_pass_through_what_fabric_renders(name):
    fixture = _load(name)
    parsed = _parse_px(fixture)
    assert len(parsed) == len(fixture["json_data"]["objects"])
    size = np.array([fixture["canvas"]["width"], fixture["canvas"]["height"]], float)
    for points_px, expected in zip(parsed, fixture["expected_canvas_px"]):
        # Outside points are clipped to the image (transformed.json pushes a line end above the top).
        expected = np.clip(np.array(expected, float), 0, size)
        # Every rendered point is on the parsed polyline (JSON rounds to 4 decimals), in drawing order ...
        index = 0
        for point in expected:
            close = np.flatnonzero(np.linalg.norm(points_px[index:] - point, axis=1) < 1e-3)
            assert close.size, f"rendered point {point} missing after parsed index {index}"
            index += close[0]
        # ... starting and ending on the drawn ends.
        np.testing.assert_allclose(points_px[0], expected[0], atol=1e-3)
        np.testing.assert_allclose(points_px[-1], expected[-1], atol=1e-3)


def test_line_keeps_its_drawing_direction():
    (line,) = _parse_px(_load("line_leftwards.json"))
    np.testing.assert_allclose(line, [[400, 300], [150, 120]], atol=1e-9)


def test_point_and_circle_are_anchors_at_the_rendered_centre():
    (point,) = from_canvas_json(_load("point.json")["json_data"], (600, 400))
    assert point.is_anchor
    np.testing.assert_allclose(point.points_norm, [[300 / 600, 200 / 400]])
    # The circle tool's centre includes half the stroke: start + (r + strokeWidth/2) along the drag.
    (circle,) = _parse_px(_load("circle.json"))
    start, end, stroke = np.array([200.0, 150.0]), np.array([260.0, 190.0]), 20.0
    direction = (end - start) / np.linalg.norm(end - start)
    np.testing.assert_allclose(
        circle[0], start + direction * (np.linalg.norm(end - start) / 2 + stroke / 2), atol=1e-3
    )


def test_freedraw_samples_the_quadratic_curves():
    fixture = _load("freedraw.json")
    (points,) = _parse_px(fixture)
    commands = fixture["json_data"]["objects"][0]["path"]
    assert [c[0] for c in commands[:2]] == ["M", "Q"] and commands[-1][0] == "L"
    assert len(points) > len(commands)  # every Q contributes interior samples
    # A sample half-way along a Q lies on that quadratic, not on its chord.
    (_, cx, cy, x, y) = commands[5]
    start = np.array(commands[4][-2:], float)
    mid = 0.25 * start + 0.5 * np.array([cx, cy]) + 0.25 * np.array([x, y])
    assert np.min(np.linalg.norm(points - mid, axis=1)) < 1e-9


def test_polygon_closes_back_on_its_first_vertex():
    (polygon,) = _parse_px(_load("polygon.json"))
    np.testing.assert_allclose(polygon[[0, -1]], [[100, 100], [100, 100]], atol=1e-9)
    (preview,) = _parse_px(_load("polyline_path.json"))
    np.testing.assert_allclose(preview[-1], [480, 300], atol=1e-9)


def test_untouched_objects_ignore_stroke_and_origin_details():
    # The same freedraw stroke alone and inside a mixed drawing parses identically.
    (alone,) = _parse_px(_load("freedraw.json"))
    mixed = _parse_px(_load("mixed.json"))
    np.testing.assert_allclose(mixed[2], alone)
    assert [len(p) for p in mixed][::3] == [2, 1]  # a line first, the point last


def test_image_rect_normalises_to_the_picture_not_the_canvas():
    # background_image_fit="contain": a 400x400 picture centred in the 600x400 canvas.
    data = _load("line.json")["json_data"]
    (line,) = from_canvas_json(data, (600, 400), image_rect=(100, 0, 400, 400))
    np.testing.assert_allclose(line.points_norm, [[20 / 400, 80 / 400], [260 / 400, 240 / 400]])


@pytest.mark.parametrize("json_data", [None, {}, {"objects": []}, {"version": "7.4.0", "objects": []}])
def test_empty_canvas_gives_an_empty_set(json_data):
    assert from_canvas_json(json_data, (600, 400)) == Trajectories()


def test_missing_origin_defaults_like_the_fabric_version():
    # Fabric 7 defaults to a centre origin, Fabric 4 to left/top; toObject always writes it, but a
    # hand-edited drawing may not.
    line = copy.deepcopy(_load("line.json")["json_data"])
    del line["objects"][0]["originX"], line["objects"][0]["originY"]
    (parsed,) = from_canvas_json(line, (600, 400))
    np.testing.assert_allclose(parsed.points_norm * [600, 400], [[120, 80], [360, 240]], atol=1e-9)
    old = copy.deepcopy(_load("fabric44_handwritten.json")["json_data"])
    del old["objects"][0]["originX"], old["objects"][0]["originY"]
    parsed = from_canvas_json(old, (400, 300))[0]
    np.testing.assert_allclose(parsed.points_norm[0] * [400, 300], [100, 200], atol=1e-9)


def _with(name: str, **changes) -> dict:
    data = copy.deepcopy(_load(name)["json_data"])
    data["objects"][0].update(changes)
    return data


@pytest.mark.parametrize(
    "json_data",
    [
        "not a dict",
        {"objects": "nope"},
        {"objects": [42]},
        _with("line.json", type="Rect"),
        _with("line.json", type="Textbox"),
        _with("line.json", left=float("nan")),
        _with("line.json", scaleX="big"),
        _with("line.json", originX="middle"),
        _with("freedraw.json", path=[]),
        _with("freedraw.json", path=[["M", 1, 2], ["A", 5, 5, 0, 0, 1, 10, 10]]),
        _with("freedraw.json", path=[["M", 1, 2], ["L", float("inf"), 3]]),
        _with("freedraw.json", path=[["M", 1, 2], ["L", "x", 3]]),
        _with("freedraw.json", path=[["M", 1, 2], ["Q", 3, 4]]),
        _with("polygon.json", points=[]),
        _with("polygon.json", points=[{"x": 1}]),
    ],
)
def test_malformed_or_foreign_objects_raise_input_error(json_data):
    with pytest.raises(InputError):
        from_canvas_json(json_data, (600, 400))


@pytest.mark.parametrize(
    "size, rect",
    [((0, 400), None), ((600, float("nan")), None), ((600, 400), (0, 0, 0, 400)), ((600, 400), (1, 2))],
)
def test_bad_sizes_raise_input_error(size, rect):
    with pytest.raises(InputError):
        from_canvas_json(_load("line.json")["json_data"], size, image_rect=rect)
