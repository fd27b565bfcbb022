"""A depth map orders the objects engine's objects in the drag app, CLI and job (issue 15: "from a depth map
when one is given"), and the objects engine's preview shows the motion's colour picture.

The scene: a red disc (drawn first) and a blue disc (drawn second) dragged onto the same point; the colour
left there in the last frame says which object is in front. The canvas is `FakeCanvas`
(tests/apps/conftest.py); everything else is the real app, job and engines.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from apps.common.runs import RunRecord
from apps.drag import cli, job
from core.config import Settings
from core.imaging import save_png16
from core.trajectory import Trajectories, Trajectory
from tests.apps.test_drag_objects import APP, SIDE, disc_scene, draw, generate, png_bytes

RED, BLUE = (220, 40, 30), (30, 60, 220)
RED_CENTRE, BLUE_CENTRE, MEET = (70, 128), (190, 128), (130, 128)  # px (x, y)


def _norm(point_px: tuple[int, int]) -> list[float]:
    return [(point_px[0] + 0.5) / SIDE, (point_px[1] + 0.5) / SIDE]


DRAGS = Trajectories(
    (Trajectory([_norm(RED_CENTRE), _norm(MEET)]), Trajectory([_norm(BLUE_CENTRE), _norm(MEET)]))
)


def two_discs() -> np.ndarray:
    """(256,256,3) uint8: the textured grey background with a red and a blue disc of radius 30."""
    image = disc_scene()
    ys, xs = np.mgrid[0:SIDE, 0:SIDE]
    grey = image[0, 0]
    image[(xs - 90) ** 2 + (ys - 128) ** 2 <= 36**2] = grey  # the fixture's own disc: gone
    for (x, y), colour in ((RED_CENTRE, RED), (BLUE_CENTRE, BLUE)):
        image[(xs - x) ** 2 + (ys - y) ** 2 <= 30**2] = colour
    return image


def red_near() -> np.ndarray:
    """(256,256) in [0,1], white = near: the red disc's side of the picture near, the rest far."""
    depth = np.full((SIDE, SIDE), 0.2)
    depth[:, : SIDE // 2] = 0.9
    return depth


def front_colour(frames: np.ndarray) -> tuple[int, ...]:
    return tuple(int(v) for v in frames[-1, MEET[1], MEET[0]])


@pytest.fixture
def inputs(tmp_path):
    image, tracks, depth = tmp_path / "discs.png", tmp_path / "drags.json", tmp_path / "depth.png"
    Image.fromarray(two_discs()).save(image)
    tracks.write_text(DRAGS.to_json())
    save_png16(depth, red_near())
    return image, tracks, depth


def test_cli_depth_puts_the_nearer_object_in_front_and_the_record_redoes_it(inputs, tmp_path, capsys):
    image, tracks, depth = inputs
    out = tmp_path / "out" / "clip.mp4"
    base = ["--image", image, "--trajectories", tracks, "--out", out, "--frames", 4, "--quiet", "--overwrite"]

    def run(name: str, *extra) -> tuple[RunRecord, np.ndarray]:
        """The CLI's record, and the frames of its run redone from that record (exact, unlike the mp4)."""
        assert cli.main([*map(str, base), *map(str, extra)]) == 0, capsys.readouterr().err
        record = RunRecord.read(out.with_name("clip.params.json"))
        outputs = job.DragOutputs(tmp_path / f"{name}.mp4", tmp_path / f"{name}.json")
        return record, job.run(job.request_from_record(record), outputs, Settings.from_env()).frames_uint8

    record, frames = run("drawn")
    assert record.arguments["depth"] is None
    assert front_colour(frames) == BLUE  # without a depth map: the later drawn in front
    record, frames = run("near", "--depth", depth)
    assert (record.arguments["depth"], record.arguments["depth_white"]) == (str(depth), "near")
    assert front_colour(frames) == RED  # the red disc is nearer, though drawn first
    record, frames = run("far", "--depth", depth, "--depth-white", "far")
    assert (record.arguments["depth"], record.arguments["depth_white"]) == (str(depth), "far")
    assert front_colour(frames) == BLUE  # white is far now: the blue disc is nearer


def test_bad_depth_files_are_one_sentence(inputs, tmp_path, capsys):
    image, tracks, depth = inputs
    out = tmp_path / "clip.mp4"
    base = ["--image", image, "--trajectories", tracks, "--out", out, "--frames", 3, "--quiet", "--overwrite"]
    text, colour, small = tmp_path / "notes.png", tmp_path / "colour.png", tmp_path / "small.png"
    text.write_text("not a picture")
    Image.fromarray(two_discs()).save(colour)
    save_png16(small, red_near()[::2, ::2])
    cases = {
        text: "The depth file notes.png is not a greyscale 8- or 16-bit image",
        colour: "The depth file colour.png is not a greyscale 8- or 16-bit image",
        small: "The depth map is 128x128 px but the image is 256x256; use the depth map of this image.",
        tmp_path / "none.png": "The depth file none.png does not exist.",
    }
    for path, sentence in cases.items():
        capsys.readouterr()
        assert cli.main([*map(str, base), "--depth", str(path)]) == 2
        err = capsys.readouterr().err
        assert sentence in err and err.count("\n") == 1, err
    assert cli.main([*map(str, base), "--depth", str(depth), "--engine", "sheet"]) == 2
    assert "A depth map orders the objects engine's objects" in capsys.readouterr().err


def test_the_app_orders_by_an_uploaded_depth_map_and_shows_the_motion_colours(monkeypatch, tmp_path, canvas):
    monkeypatch.setenv("KINEMA_OUTPUT_DIR", str(tmp_path / "outputs"))
    monkeypatch.setenv("KINEMA_SVD_MODEL", "tiny")
    monkeypatch.setenv("KINEMA_DEVICE", "cpu")
    picture = png_bytes(two_discs())
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.select_slider(key="max_side").set_value(SIDE).run()
    at.radio(key="source").set_value("Upload").run()
    at.file_uploader(key="upload").set_value(("discs.png", picture, "image/png")).run()
    draw(at, canvas, DRAGS)
    captions = {image.caption for element in at.image for image in element.proto.imgs}
    assert {"Trajectories and the objects they move", "Motion preview (colour = direction)"} <= captions
    layers = list(at.session_state["object_layers"].values())[-1]
    assert [layer.tracks for layer in layers] == [(0,), (1,)]  # drawing order: blue in front

    depth_key = f"depth-{hashlib.sha1(picture).hexdigest()[:12]}"
    at.file_uploader(key=depth_key).set_value(("discs.png", picture, "image/png")).run()  # in colour
    (error,) = at.error
    assert (
        error.value.startswith("The depth upload is not a greyscale 8- or 16-bit image") and not at.exception
    )
    depth_png = tmp_path / "depth.png"
    save_png16(depth_png, red_near())
    at.file_uploader(key=depth_key).set_value(("depth.png", depth_png.read_bytes(), "image/png")).run()
    assert not at.exception and not at.error
    layers = list(at.session_state["object_layers"].values())[-1]
    assert [layer.tracks for layer in layers] == [(1,), (0,)]  # red is nearer: in front

    result = generate(at)
    assert front_colour(result.frames_uint8) == RED
    record = RunRecord.read(result.outputs.record)
    assert record.arguments["depth"] == "depth.png"  # saved in the run folder, named without its path
    redo_folder = tmp_path / "redo"
    redo_folder.mkdir()
    redo = job.run(
        job.request_from_record(record, result.outputs.folder),
        job.DragOutputs.in_folder(redo_folder),
        Settings.from_env(),
    )
    np.testing.assert_array_equal(redo.frames_uint8, result.frames_uint8)

    # Redo from the Runs panel after another picture was picked: the uploaded picture comes back as the
    # "Redone run" source and its depth map with it (no upload needed), and Generate makes the same video.
    at.radio(key="source").set_value("Sample photo").run()
    assert at.session_state["run_depth"] is None
    (redo_button,) = [b for b in at.button if b.label == "Redo with these settings"]
    redo_button.click().run()
    assert not at.exception and not at.error
    assert at.radio(key="source").value == "Redone run"
    assert at.session_state["run_depth"] == depth_png.read_bytes()
    assert "The redone run's depth map; upload another to replace it." in [c.value for c in at.caption]
    np.testing.assert_array_equal(generate(at).frames_uint8, result.frames_uint8)
