"""Issue 15 in the drag app, CLI, job and backends: the objects engine (drags move the object under them),
per-track timing, the reach, one motion bucket for app and CLI, the downloads and --side-by-side.

The scene is a red disc on a textured grey background (a clear object for GrabCut); the canvas is
`FakeCanvas` (tests/apps/conftest.py), everything else is the real app and engines.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from apps.common.runs import RunRecord
from apps.drag import backends, cli, job, overlay
from apps.drag.params import DragParams
from core.config import Settings
from core.engines.objects import ObjectLayer, object_layers
from core.motion import suggest_motion_bucket
from core.trajectory import Timing, Trajectories, Trajectory
from core.trajectory.canvas import objects_from_trajectories
from core.video import read_video

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "apps" / "drag" / "app.py")
SIDE = 256
DISC_CENTRE, DISC_RADIUS = (90, 128), 36  # px (x, y)
DRAG = Trajectory([[(90 + 0.5) / SIDE, (128 + 0.5) / SIDE], [(170 + 0.5) / SIDE, (128 + 0.5) / SIDE]])
FAR = np.s_[:48, 200:]  # a background patch far from the disc and from where it goes


def disc_scene() -> np.ndarray:
    """(256,256,3) uint8: a red disc on a grey background textured with stripes and seeded noise."""
    ys, xs = np.mgrid[0:SIDE, 0:SIDE]
    grey = (
        110 + 30 * np.sin(xs / 5.0) * np.cos(ys / 7.0) + np.random.default_rng(0).normal(0, 6, (SIDE, SIDE))
    )
    image = np.repeat(np.clip(grey, 0, 255)[..., None], 3, axis=2)
    disc = (xs - DISC_CENTRE[0]) ** 2 + (ys - DISC_CENTRE[1]) ** 2 <= DISC_RADIUS**2
    image[disc] = (220, 40, 30)
    return image.astype(np.uint8)


def disc_mask() -> np.ndarray:
    ys, xs = np.mgrid[0:SIDE, 0:SIDE]
    return (xs - DISC_CENTRE[0]) ** 2 + (ys - DISC_CENTRE[1]) ** 2 <= DISC_RADIUS**2


def png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def disc_app(monkeypatch, tmp_path, canvas) -> AppTest:
    """The app on the uploaded disc scene at 256 px, results under tmp_path."""
    monkeypatch.setenv("KINEMA_OUTPUT_DIR", str(tmp_path / "outputs"))
    monkeypatch.setenv("KINEMA_SVD_MODEL", "tiny")
    monkeypatch.setenv("KINEMA_DEVICE", "cpu")
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.select_slider(key="max_side").set_value(SIDE).run()
    at.radio(key="source").set_value("Upload").run()
    at.file_uploader(key="upload").set_value(("disc.png", png_bytes(disc_scene()), "image/png")).run()
    assert not at.exception and not at.error
    return at


def draw(at: AppTest, canvas, trajectories: Trajectories) -> None:
    canvas.draw(objects_from_trajectories(trajectories, (canvas.last()["width"], canvas.last()["height"])))
    at.run()
    assert not at.exception and not at.error


def generate(at: AppTest) -> job.DragResult:
    (button,) = [b for b in at.button if b.label == "Generate"]
    button.click().run()
    assert not at.exception and not at.error
    return at.session_state["result"]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


# -- the app -----------------------------------------------------------------------------------------------


def test_the_objects_engine_moves_the_disc_and_holds_the_background(disc_app, canvas, tmp_path):
    assert disc_app.radio(key="engine").value == "objects"  # the default
    draw(disc_app, canvas, Trajectories((DRAG,)))
    captions = {image.caption for element in disc_app.image for image in element.proto.imgs}
    assert "Trajectories and the objects they move" in captions
    cache = disc_app.session_state["object_layers"]
    layers = list(cache.values())[-1]
    assert len(layers) == 1 and iou(layers[0].mask, disc_mask()) > 0.9
    seen = len(cache)
    disc_app.slider(key="grow_px").set_value(4).run()
    assert len(cache) == seen + 1  # the grown objects are found once more, the others kept
    grown = list(cache.values())[-1][0].mask
    assert grown.sum() > layers[0].mask.sum() and (grown >= layers[0].mask).all()

    result = generate(disc_app)
    frames = result.frames_uint8
    assert (frames[:, FAR[0], FAR[1]] == frames[0][FAR]).all()  # far background: exactly still
    assert tuple(frames[-1, 128, 170]) == (220, 40, 30) and tuple(frames[0, 128, 170]) != (220, 40, 30)
    arguments = RunRecord.read(result.outputs.record).arguments
    assert (arguments["engine"], arguments["grow_px"], arguments["radius"]) == ("objects", 4, None)
    # The bucket sent is the one suggested for the objects' motion, not the sheet's.
    suggested = suggest_motion_bucket(
        Trajectories((DRAG,)), 14, 7, (SIDE, SIDE), layers=list(cache.values())[-1]
    )
    assert arguments["motion_bucket"] == arguments["resolved"]["motion_bucket_id"] == suggested
    # The record redoes the run: the job finds the same objects the app cached.
    redo_folder = tmp_path / "redo"
    redo_folder.mkdir()
    request = job.request_from_record(RunRecord.read(result.outputs.record), result.outputs.folder)
    redo = job.run(request, job.DragOutputs.in_folder(redo_folder), Settings.from_env())
    np.testing.assert_array_equal(redo.frames_uint8, frames)
    labels = [b.label for b in disc_app.get("download_button")]
    assert labels == [
        "Video (mp4)", "Video (gif)", "Flow video (mp4)", "Side by side (mp4)", "Trajectories (JSON)",
        "Parameters (JSON)", "Picture (PNG)",
    ]  # fmt: skip


def test_a_track_moves_in_its_frames_with_its_easing_and_the_file_keeps_the_timing(disc_app, canvas):
    draw(disc_app, canvas, Trajectories((DRAG,)))
    (frames_slider,) = [s for s in disc_app.slider if s.label == "Track 1 moves from frame ... to frame"]
    assert frames_slider.value == (0, 13)
    frames_slider.set_value((7, 13)).run()
    (easing,) = [s for s in disc_app.selectbox if s.label == "Track 1 speed"]
    easing.set_value("ease-in-out").run()
    result = generate(disc_app)
    frames = result.frames_uint8
    assert all((frames[t] == frames[1]).all() for t in range(2, 8))  # still until frame 7
    assert not (frames[8] == frames[7]).all()
    (saved,) = Trajectories.from_json(result.request.trajectories.read_text())
    assert saved.timing == Timing(7 / 13, 1.0, "ease-in-out")
    assert json.loads(result.request.trajectories.read_text())["version"] == 2

    # Another frame count shows the same timing in its frames.
    disc_app.slider(key="frames").set_value(27).run()
    (frames_slider,) = [s for s in disc_app.slider if s.label == "Track 1 moves from frame ... to frame"]
    assert frames_slider.value == (14, 26)


def test_the_sheet_engine_offers_the_reach_and_the_brush(disc_app, canvas):
    draw(disc_app, canvas, Trajectories((DRAG,)))
    disc_app.radio(key="engine").set_value("sheet").run()
    assert "grow_px" not in [s.key for s in disc_app.slider]
    disc_app.checkbox(key="custom_reach").check().run()
    assert disc_app.slider(key="radius").value == 26  # 0.1 x 256, rounded
    disc_app.slider(key="radius").set_value(120).run()
    wide = generate(disc_app).frames_uint8
    disc_app.slider(key="radius").set_value(10).run()
    narrow = generate(disc_app)
    assert RunRecord.read(narrow.outputs.record).arguments["radius"] == 10.0
    # A longer reach pulls the far background more.
    far_change = [np.abs(f[-1][FAR].astype(int) - f[0][FAR]).mean() for f in (wide, narrow.frames_uint8)]
    assert far_change[0] > far_change[1]


def test_app_and_cli_send_the_same_bucket_for_a_camera_only_move(disc_app, tmp_path, capsys):
    disc_app.selectbox(key="camera").set_value("pan_left").run()
    app_bucket = disc_app.number_input(key="motion_bucket").value
    result = generate(disc_app)
    assert RunRecord.read(result.outputs.record).arguments["resolved"]["motion_bucket_id"] == app_bucket

    image, tracks = tmp_path / "disc.png", tmp_path / "none.json"
    Image.fromarray(disc_scene()).save(image)
    tracks.write_text(Trajectories().to_json())
    out = tmp_path / "cli" / "pan.mp4"
    argv = [
        "--image",
        image,
        "--trajectories",
        tracks,
        "--out",
        out,
        "--camera",
        "pan_left",
        "--max-side",
        SIDE,
    ]
    assert cli.main([*map(str, argv), "--quiet"]) == 0, capsys.readouterr().err
    cli_bucket = RunRecord.read(out.with_name("pan.params.json")).arguments["resolved"]["motion_bucket_id"]
    assert app_bucket == cli_bucket > 100  # a pan is real motion, not the "still" bucket 1


# -- job, CLI, backends --------------------------------------------------------------------------------------


def test_render_objects_holds_the_background_and_sheet_moves_it():
    image, drag = disc_scene(), Trajectories((DRAG,))
    objects = backends.render("warp", image, drag, num_frames=6, engine="objects")
    sheet = backends.render("warp", image, drag, num_frames=6, engine="sheet")
    assert (objects.frames_uint8[:, FAR[0], FAR[1]] == image[FAR]).all()
    assert np.abs(sheet.frames_uint8[-1][FAR].astype(int) - image[FAR]).mean() > 1.0
    layers = object_layers(image, drag)
    assert objects.motion_bucket_id == suggest_motion_bucket(drag, 6, 7, (SIDE, SIDE), layers=layers)
    assert sheet.motion_bucket_id == suggest_motion_bucket(drag, 6, 7, (SIDE, SIDE))
    # Layers given are used as they are (the app's cache): here a square instead of the disc.
    square = np.zeros((SIDE, SIDE), bool)
    square[100:156, 60:120] = True
    given = backends.render(
        "warp", image, drag, num_frames=6, engine="objects", layers=[ObjectLayer(square, (0,))]
    )
    assert tuple(given.frames_uint8[-1, 150, 170]) == tuple(image[150, 90])
    with pytest.raises(Exception, match="Choose the sheet engine"):
        backends.render("warp", image, drag, num_frames=6, engine="objects", radius_px=20.0)


def test_cli_side_by_side_and_the_brush_only_with_the_sheet(tmp_path, capsys):
    image, tracks = tmp_path / "disc.png", tmp_path / "drag.json"
    Image.fromarray(disc_scene()).save(image)
    tracks.write_text(Trajectories((DRAG,)).to_json())
    out, side = tmp_path / "out" / "clip.mp4", tmp_path / "out" / "sbs.mp4"
    base = ["--image", image, "--trajectories", tracks, "--out", out, "--frames", 4, "--quiet"]
    assert cli.main([*map(str, base), "--side-by-side", str(side)]) == 0, capsys.readouterr().err
    assert read_video(side).frames_uint8.shape == (4, SIDE, 3 * SIDE, 3)
    record = RunRecord.read(out.with_name("clip.params.json"))
    assert record.output_paths(out.parent)["side_by_side"] == side and record.arguments["engine"] == "objects"

    capsys.readouterr()
    base.append("--overwrite")  # the same --out again
    assert cli.main([*map(str, base), "--side-by-side", str(out)]) == 2
    assert "--side-by-side" in capsys.readouterr().err  # checked up front like every output: not onto --out
    assert cli.main([*map(str, base), "--side-by-side", str(tmp_path / "sbs.avi")]) == 2
    assert "--side-by-side must end in .mp4 or .gif" in capsys.readouterr().err
    mask = tmp_path / "mask.png"
    Image.fromarray(np.full((SIDE, SIDE), 255, np.uint8)).save(mask)
    assert cli.main([*map(str, base), "--region-mask", str(mask)]) == 2
    assert "Choose the sheet engine" in capsys.readouterr().err
    assert cli.main([*map(str, base), "--region-mask", str(mask), "--engine", "sheet"]) == 0


def test_a_record_from_before_the_engines_redoes_the_sheet():
    params = DragParams(engine="sheet", grow_px=0)
    arguments = {k: v for k, v in params.to_arguments().items() if k not in ("engine", "grow_px")}
    assert DragParams.from_arguments(arguments) == params
    record = RunRecord(
        app="drag", action="cli", arguments={"image": "a.png", "trajectories": "t.json", **arguments}
    )
    assert job.request_from_record(record).params.engine == "sheet"


def test_the_object_overlay_tints_each_object_in_its_track_colour():
    image = np.full((64, 64, 3), 100, np.uint8)
    mask = np.zeros((64, 64), bool)
    mask[20:40, 10:30] = True
    out = overlay.draw_object_overlay(image, [ObjectLayer(mask, (1,))])
    colour = np.array(overlay.colour_of(1))
    inside = out[30, 20].astype(float)
    np.testing.assert_allclose(inside, 100 + overlay.OBJECT_TINT * (colour - 100), atol=1)
    assert (out[:10] == 100).all() and (out[50:] == 100).all()  # away from the object and its outline


def test_the_brush_edge_is_feathered_not_torn():
    """A drag inside a brushed left half: the first step's motion falls off smoothly across the brush edge
    (x = 128) instead of stopping there, and the far right stays still."""
    image = disc_scene()
    mask = np.zeros((SIDE, SIDE), bool)
    mask[:, :128] = True
    drag = Trajectories((Trajectory([[0.3, 0.5], [0.45, 0.5]]),))
    video = backends.render(
        "warp", image, drag, num_frames=4, engine="sheet", region_mask=mask, radius_px=40.0
    )
    speed = np.hypot(*np.moveaxis(video.flow_px[0][128, 60:200], -1, 0))  # x = 60 .. 199
    assert speed[:10].min() > 10.0 and speed[-20:].max() < 0.05  # moves inside, still far outside
    assert np.abs(np.diff(speed)).max() < 0.1 * speed.max()  # no step at the edge


def test_a_configured_sam_segments_the_objects(monkeypatch):
    """KINEMA_SAM_MODEL set (the random-weight tiny SAM): render's objects come from SAM, not GrabCut."""
    from core.models import load_sam

    monkeypatch.setenv("KINEMA_SAM_MODEL", "tiny")
    monkeypatch.setenv("KINEMA_DEVICE", "cpu")
    settings = Settings.from_env()
    image, drag = disc_scene(), Trajectories((DRAG,))
    video = backends.render("warp", image, drag, num_frames=3, engine="objects", settings=settings)
    expected = backends.render(
        "warp",
        image,
        drag,
        num_frames=3,
        engine="objects",
        layers=object_layers(image, drag, segmenter=load_sam(settings)),
        settings=settings,
    )
    np.testing.assert_array_equal(video.frames_uint8, expected.frames_uint8)


def test_a_repainted_object_replaces_the_one_found_and_the_record_keeps_it(disc_app, canvas, tmp_path):
    draw(disc_app, canvas, Trajectories((DRAG,)))
    assert disc_app.selectbox(key="repaint_track").value == 1
    # A 30 canvas-px band across the disc's middle (canvas 520 px for the 256 px image).
    band = {"type": "Line", "version": "7.4.0", "originX": "center", "originY": "center", "left": 183,
            "top": 260, "width": 120, "height": 0, "strokeWidth": 30, "x1": -60, "x2": 60, "y1": 0, "y2": 0}  # fmt: skip
    canvas.draw([band], prefix="repaint-")
    disc_app.run()
    assert not disc_app.exception and not disc_app.error
    layers = list(disc_app.session_state["object_layers"].values())[-1]
    painted = layers[0].mask
    assert 0.1 < iou(painted, disc_mask()) < 0.5 and painted[128, 90] and not painted[100, 90]

    result = generate(disc_app)
    frames = result.frames_uint8
    assert tuple(frames[-1, 128, 170]) == (220, 40, 30)  # the band arrived
    assert tuple(frames[-1, 100, 90]) == (220, 40, 30)  # the disc's top, not painted, stayed
    arguments = RunRecord.read(result.outputs.record).arguments
    assert list(arguments["object_masks"]) == ["0"]
    request = job.request_from_record(RunRecord.read(result.outputs.record), result.outputs.folder)
    redo_folder = tmp_path / "redo"
    redo_folder.mkdir()
    redo = job.run(request, job.DragOutputs.in_folder(redo_folder), Settings.from_env())
    np.testing.assert_array_equal(redo.frames_uint8, frames)

    (restore,) = [b for b in disc_app.button if b.label == "Use the object found again"]
    restore.click().run()
    assert iou(list(disc_app.session_state["object_layers"].values())[-1][0].mask, disc_mask()) > 0.9

    # Redo from the Runs panel: the painted object comes back with its drag, and the run with it.
    (redo_button,) = [b for b in disc_app.button if b.label == "Redo with these settings"]
    redo_button.click().run()
    assert not disc_app.exception and not disc_app.error
    assert iou(list(disc_app.session_state["object_layers"].values())[-1][0].mask, painted) == 1.0
    np.testing.assert_array_equal(generate(disc_app).frames_uint8, frames)


def test_cli_object_mask(tmp_path, capsys):
    image, tracks, mask = tmp_path / "disc.png", tmp_path / "drag.json", tmp_path / "square.png"
    Image.fromarray(disc_scene()).save(image)
    tracks.write_text(Trajectories((DRAG,)).to_json())
    square = np.zeros((SIDE, SIDE), np.uint8)
    square[110:146, 70:110] = 255
    Image.fromarray(square).save(mask)
    out = tmp_path / "clip.mp4"
    base = ["--image", image, "--trajectories", tracks, "--out", out, "--frames", 4, "--quiet", "--overwrite"]
    assert cli.main([*map(str, base), "--object-mask", f"1={mask}"]) == 0, capsys.readouterr().err
    record = RunRecord.read(out.with_name("clip.params.json"))
    assert record.arguments["object_masks"] == {"0": str(mask)}
    request = job.request_from_record(record)
    fitted = job.fit_inputs(request, Settings.from_env())
    assert (fitted.object_masks[0] == (square > 0)).all()

    capsys.readouterr()
    assert cli.main([*map(str, base), "--object-mask", f"one={mask}"]) == 2
    assert "--object-mask takes N=PATH" in capsys.readouterr().err
    assert cli.main([*map(str, base), "--object-mask", f"1={mask}", "--engine", "sheet"]) == 2
    assert "Painted objects are moved by the objects engine" in capsys.readouterr().err


@pytest.mark.parametrize("mode", ["crop", "pad"])
def test_fitting_a_resized_picture_keeps_each_track_timing(mode):
    from core.imaging import plan_resize

    timed = Trajectories((Trajectory([[0.2, 0.3], [0.6, 0.4]], Timing(0.25, 0.75, "ease-in-out")),))
    fitted = job.fit_trajectories(timed, plan_resize(300, 500, multiple=64, max_side=256, mode=mode))
    assert fitted[0].timing == Timing(0.25, 0.75, "ease-in-out")
    assert not np.array_equal(fitted[0].points_norm, timed[0].points_norm)  # it was mapped
