"""core.trajectory.canvas against canvas JSON as streamlit-drawable-canvas emits it: reading, writing, strokes.

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
from core.trajectory import Trajectories, Trajectory, from_canvas_json
from core.trajectory.canvas import mask_from_strokes, objects_from_trajectories, parse_objects

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


# -- object by object, and back to objects ---------------------------------------------------------


def test_canvas_objects_from_trajectories_read_back_exactly():
    wanted = Trajectories(
        (
            Trajectory([[0.1, 0.9], [0.4, 0.2], [0.95, 0.5]]),
            Trajectory([[0.5, 0.5]]),
            Trajectory([[0, 0], [1, 1]]),
        )
    )
    for size in [(520, 520), (560, 350), (37, 91)]:
        objects = objects_from_trajectories(wanted, size)
        parsed = parse_objects(objects, size)
        assert parsed.problems == () and parsed.clipped == () and parsed.object_index == (0, 1, 2)
        for got, want in zip(parsed.trajectories, wanted):
            np.testing.assert_allclose(got.points_norm, want.points_norm, atol=1e-12)


def test_parse_objects_reports_a_bad_object_and_keeps_the_others_in_place():
    objects = _load("mixed.json")["json_data"]["objects"]
    objects.insert(1, {"type": "Rect", "left": 10, "top": 10, "width": 5, "height": 5})
    parsed = parse_objects(objects, (600, 400))
    assert parsed.object_index == (0, 2, 3, 4)
    assert len(parsed.problems) == 1 and parsed.problems[0].startswith("Shape 2 was left out:")
    expected = _load("mixed.json")["expected_canvas_px"]
    for got, want in zip(parsed.trajectories, expected):
        # Lines and the point exactly; the freehand stroke's curve samples include every command end.
        np.testing.assert_allclose(got.points_norm[[0, -1]] * [600, 400], np.array(want)[[0, -1]], atol=1e-6)
        if len(want) <= 2:
            np.testing.assert_allclose(got.points_norm * [600, 400], want, atol=1e-6)


def test_parse_objects_marks_the_objects_that_left_the_image():
    inside, outside = objects_from_trajectories(
        Trajectories((Trajectory([[0.2, 0.2], [0.8, 0.5]]), Trajectory([[0.5, 0.5], [0.9, 0.5]]))), (600, 400)
    )
    outside["left"] += 150  # drag the second line 150 px to the right: its end leaves the canvas
    parsed = parse_objects([inside, outside], (600, 400))
    assert parsed.clipped == (1,) and parsed.problems == ()
    np.testing.assert_allclose(parsed.trajectories[1].points_norm, [[0.75, 0.5], [1.0, 0.5]], atol=1e-12)


def test_mask_from_strokes_covers_the_stroke_and_nothing_far_from_it():
    line = _load("line.json")["json_data"]["objects"][
        0
    ]  # (120, 80) -> (360, 240), 20 px wide, on a 600 x 400 canvas
    mask = mask_from_strokes([line], (600, 400), (200, 300))  # half size
    assert mask.shape == (200, 300)
    for t in np.linspace(0, 1, 11):
        x, y = (1 - t) * np.array([60, 40]) + t * np.array([180, 120])
        assert mask[round(y), round(x)]
    assert not mask[150:, :].any() and not mask[:, 220:].any()
    rows, cols = np.nonzero(mask)
    # Distance of every painted pixel to the segment is at most half the (scaled) 10 px width + 1.
    p = np.stack([cols, rows], axis=1) + 0.5
    a, b = np.array([60.0, 40.0]), np.array([180.0, 120.0])
    t = np.clip(((p - a) @ (b - a)) / ((b - a) @ (b - a)), 0, 1)
    assert np.linalg.norm(p - (a + t[:, None] * (b - a)), axis=1).max() <= 6.5
    assert mask_from_strokes([], (600, 400), (200, 300)) is None
