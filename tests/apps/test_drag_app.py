"""The drag app (apps/drag/app.py) under Streamlit's AppTest, and its UI helper modules.

The canvas component cannot draw without a browser, so `apps.drag.ui_canvas.st_canvas` is replaced by
`FakeCanvas` (tests/apps/conftest.py), which behaves like the component per key (a new key shows its `initial_drawing`; "drawing"
replaces what the current key holds) and hands back canvas JSON recorded from the component's own
Fabric 7.4 (tests/fixtures/canvas/). Everything else is the real app: real images, the real warp engine,
real video files.
"""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from apps.common.runs import RunRecord, file_names
from apps.common.start_values import CPU_STEPS
from apps.drag import job, overlay, ui_canvas
from apps.drag.params import DragParams
from core.config import Settings
from core.estimate import Job, Segment, estimate, format_seconds
from core.imaging import load_image, resize_to_multiple
from core.motion import suggest_motion_bucket
from core.trajectory import Trajectories, Trajectory, from_canvas_json
from core.video import read_video

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "apps" / "drag" / "app.py")
FIXTURES = ROOT / "tests" / "fixtures" / "canvas"
TIMEOUT_S = 60


def fixture_objects(name: str) -> list[dict]:
    return json.loads((FIXTURES / f"{name}.json").read_text())["json_data"]["objects"]


@pytest.fixture
def app(monkeypatch, tmp_path, canvas) -> AppTest:
    """The app on its default sample photo, at a 256 px working size (fast), results under tmp_path."""
    monkeypatch.setenv("KINEMA_OUTPUT_DIR", str(tmp_path / "outputs"))
    monkeypatch.setenv("KINEMA_SVD_MODEL", "tiny")
    monkeypatch.setenv("KINEMA_DEVICE", "cpu")
    at = AppTest.from_file(APP, default_timeout=TIMEOUT_S).run()
    at.select_slider(key="max_side").set_value(256).run()
    assert not at.exception
    return at


def generate_button(at: AppTest):
    (button,) = [b for b in at.button if b.label == "Generate"]
    return button


def track_rows(at: AppTest) -> list[str]:
    return [m.value for m in at.markdown if " track, " in m.value or " anchor at " in m.value]


def astronaut_256() -> np.ndarray:
    image = load_image(ROOT / "assets" / "images" / "astronaut.jpg")
    return resize_to_multiple(image, multiple=64, max_side=256, mode="crop")[0]


# -- the app -------------------------------------------------------------------------------------------


def test_warp_generation_end_to_end(app, canvas, monkeypatch):
    previews = []
    import core.engines.warp as warp

    real_preview = warp.preview_flow
    monkeypatch.setattr(
        warp, "preview_flow", lambda *a, **k: previews.append(real_preview(*a, **k)) or previews[-1]
    )
    clips = []
    real_clip = warp.preview_video
    monkeypatch.setattr(warp, "preview_video", lambda *a, **k: clips.append(real_clip(*a, **k)) or clips[-1])
    video_caption = "Warp preview video (reduced resolution; Generate makes the full-size result)"
    app.radio(key="engine").set_value("sheet").run()  # the whole-picture warp (the objects engine: below)
    assert not clips and video_caption not in [c.value for c in app.caption]  # nothing drawn, nothing moves
    canvas.draw(fixture_objects("mixed"))
    app.run()
    assert not app.exception and not app.error
    size = (canvas.last()["width"], canvas.last()["height"])
    assert size == (520, 520)  # the 256 px astronaut shown whole, at most 560 x 520
    expected = from_canvas_json({"version": "7.4.0", "objects": fixture_objects("mixed")}, size)
    rows = track_rows(app)
    assert len(rows) == 4 and "anchor at" in rows[3] and all("track" in row for row in rows[:3])

    # The live preview follows the drawing: white (still) where nothing is drawn before, coloured now.
    assert len(previews) >= 2 and np.all(previews[0] == 255)
    preview = previews[-1]
    assert preview.shape == (256, 256, 3)
    x, y = (expected[0].points_norm[0] * 256).astype(int)  # the first line's start moves
    assert preview[y, x].min() < 200
    assert {image.caption for element in app.image for image in element.proto.imgs} >= {
        "Trajectories",
        "Motion preview (colour = direction)",
    }
    # ... and so does the warp's preview video: 14 frames from the image itself, the first line's start moved.
    assert len(clips) == 1 and clips[0].shape == (14, 256, 256, 3)
    assert np.array_equal(clips[0][0], astronaut_256())
    assert np.abs(clips[0][-1, y, x].astype(int) - clips[0][0, y, x]).max() > 0
    assert video_caption in [c.value for c in app.caption]
    # The motion bucket is pre-filled from the suggestion for this drawing.
    suggested = suggest_motion_bucket(expected, 14, 7, (256, 256))
    assert app.number_input(key="motion_bucket").value == suggested

    generate_button(app).click().run()
    assert not app.exception and not app.error
    result = app.session_state["result"]
    assert result.frames_uint8.shape == (14, 256, 256, 3)
    np.testing.assert_array_equal(result.frames_uint8[0], astronaut_256())
    files = result.outputs
    shown = " ".join(c.value for c in app.caption)
    assert f"(run {files.folder.name})" in shown and str(files.folder.parent) not in shown  # no server path
    video_mp4 = files.video.read_bytes()
    assert video_mp4[4:8] == b"ftyp" and len(video_mp4) > 5_000
    assert files.flow.read_bytes()[4:8] == b"ftyp" and files.side_by_side.read_bytes()[4:8] == b"ftyp"
    clip = read_video(files.video)
    assert clip.frames_uint8.shape == (14, 256, 256, 3) and clip.fps == pytest.approx(7.0)
    error = np.abs(clip.frames_uint8[0].astype(float) - result.frames_uint8[0]).mean()
    assert error < 3.0  # H.264 at crf 18 keeps the first frame within a few levels
    assert read_video(files.side_by_side).frames_uint8.shape == (14, 256, 768, 3)
    assert result.gif_bytes()[:6] == b"GIF89a"

    loaded = Trajectories.from_json(result.request.trajectories.read_text())
    assert len(loaded) == 4
    for got, want in zip(loaded, expected):
        np.testing.assert_allclose(got.points_norm, want.points_norm, atol=1e-12)
    record = RunRecord.read(files.record)
    assert (record.app, record.action, record.command) == ("drag", "ui:generate", None)
    arguments = record.arguments
    assert arguments["backend"] == "warp" and arguments["motion_bucket"] == suggested
    assert arguments["image_name"] == "astronaut" and arguments["region_mask"] is None
    assert (arguments["frames"], arguments["fps"], arguments["max_side"]) == (14, 7, 256)
    assert arguments["resolved"]["video_size"] == [256, 256]
    assert arguments["resolved"]["motion_bucket_id"] == suggested
    assert record.settings["output_dir"] == files.folder.parents[1].name  # a name, not the server's path
    assert record.output_paths(files.folder) == {
        "video": files.video,
        "flow": files.flow,
        "side_by_side": files.side_by_side,
    }
    assert len(app.get("video")) == 4  # the warp preview and the result's three
    assert [b.label for b in app.get("download_button")] == [
        "Video (mp4)",
        "Video (gif)",
        "Flow video (mp4)",
        "Side by side (mp4)",
        "Trajectories (JSON)",
        "Parameters (JSON)",
        "Picture (PNG)",
    ]
    # The frame scrubber steps through the side by side (the job's video, read back) frame by frame.
    (scrubber,) = [s for s in app.slider if s.label == "Frame"]
    scrubber.set_value(14).run()
    (shown,) = [i for element in app.image for i in element.proto.imgs if i.caption.startswith("Frame ")]
    assert shown.caption == "Frame 14 of 14: trajectories | video | motion"


@pytest.mark.parametrize(
    ("column_px", "canvas_px", "anchor_px"), [(400, 400, (64, 38)), (1000, 520, (49, 30))]
)
def test_the_canvas_fits_its_column_and_a_point_lands_on_its_image_pixel(
    app, canvas, monkeypatch, column_px, canvas_px, anchor_px
):
    """The canvas takes the column's width (at most 520 px for the square 256 px picture) and a point drawn at
    canvas (100, 60) px lands on image pixel (100, 60) x 256 / canvas width, whatever that width."""
    monkeypatch.setattr(ui_canvas, "column_width", lambda key, default: column_px)
    app.run()
    assert (canvas.last()["width"], canvas.last()["height"]) == (canvas_px, canvas_px)
    point = {"type": "Circle", "originX": "center", "originY": "center", "left": 100, "top": 60,
             "radius": 4, "width": 8, "height": 8, "strokeWidth": 4}  # fmt: skip
    canvas.draw([point])
    app.run()
    assert track_rows(app) == [f":blue[**1**] anchor at ({anchor_px[0]}, {anchor_px[1]}) px"]


def test_svd_without_weights_names_the_setting_and_warp_keeps_working(app, canvas, monkeypatch, tmp_path):
    monkeypatch.setenv("KINEMA_SVD_MODEL", str(tmp_path / "no-svd-here"))
    canvas.draw(fixture_objects("line"))
    app.radio(key="backend").set_value("svd").run()
    assert not app.exception
    messages = " ".join(e.value for e in app.error)
    assert "KINEMA_SVD_MODEL" in messages and "no-svd-here" in messages
    assert generate_button(app).disabled

    app.radio(key="backend").set_value("warp").run()
    assert not app.error and not generate_button(app).disabled
    generate_button(app).click().run()
    assert not app.exception and not app.error
    assert app.session_state["result"].request.params.backend == "warp"


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims a size in its header but carries almost no pixel data."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + payload))
        return struct.pack(">I", len(payload)) + kind + payload + crc

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 10))


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # PIL warns on opening
def test_bad_uploads_show_our_message_and_the_app_stays_usable(app, canvas):
    app.radio(key="source").set_value("Upload").run()
    assert [i.value for i in app.info] == ["Upload an image in the sidebar, or pick a sample photo."]

    app.file_uploader(key="upload").set_value(("notes.png", b"this is not an image", "image/png")).run()
    assert not app.exception
    assert [e.value for e in app.error] == [
        "The uploaded image is not a readable image (corrupt or unsupported format)."
    ]

    app.file_uploader(key="upload").set_value(("huge.png", _png_header_only(12000, 12000), "image/png")).run()
    assert not app.exception
    assert [e.value for e in app.error] == [
        "The uploaded image is 12000x12000 pixels; the largest side allowed is 2048. "
        "Downscale it and upload again."
    ]

    good = (ROOT / "assets" / "images" / "coffee.jpg").read_bytes()
    app.file_uploader(key="upload").set_value(("coffee.jpg", good, "image/jpeg")).run()
    assert not app.exception and not app.error
    assert (canvas.last()["width"], canvas.last()["height"]) == (
        560,
        420,
    )  # 256x192 coffee (crop), shown whole
    canvas.draw(fixture_objects("line"))
    app.run()
    generate_button(app).click().run()
    assert app.session_state["result"].frames_uint8.shape == (14, 192, 256, 3)


def test_empty_canvas_or_anchors_only_disable_generate_with_a_message(app, canvas):
    message = (
        "Draw at least one trajectory that moves (line, polyline or freehand), or choose a camera move, "
        "then press Generate. Anchors alone only pin the image."
    )
    assert [i.value for i in app.info] == [message]
    assert generate_button(app).disabled
    canvas.draw(fixture_objects("point"))
    app.run()
    assert len(track_rows(app)) == 1 and [i.value for i in app.info] == [message]
    assert generate_button(app).disabled
    # A camera move alone is something to animate.
    app.selectbox(key="camera").set_value("zoom_in").run()
    assert not app.info and not generate_button(app).disabled


def test_delete_one_trajectory_and_reset(app, canvas):
    objects = fixture_objects("mixed")
    canvas.draw(objects)
    app.run()
    rows = track_rows(app)
    assert len(rows) == 4
    rev = canvas.last()["key"]

    [b for b in app.button if b.label == "Delete"][1].click().run()
    assert canvas.last()["key"] != rev  # a fresh canvas showing the rest
    shown = canvas.last()["initial_drawing"]["objects"]
    assert shown == ui_canvas.recoloured([objects[0], objects[2], objects[3]])
    assert [o["stroke"] for o in shown] == [
        "#ff2d55",
        "#ffcc00",
        objects[3]["stroke"],
    ]  # list colours; anchor
    remaining = track_rows(app)
    assert len(remaining) == 3 and "anchor at" in remaining[2]

    [b for b in app.button if b.label == "Reset all"][0].click().run()
    assert canvas.last()["initial_drawing"]["objects"] == [] and track_rows(app) == []
    assert generate_button(app).disabled


def test_a_trajectory_leaving_the_image_is_clipped_with_a_note(app, canvas):
    line = fixture_objects("line")[0]  # (120, 80) -> (360, 240) on the canvas
    outside = {**line, "left": line["left"] + 300}  # now ends at x = 660 on a 520 px canvas
    canvas.draw([fixture_objects("line")[0], outside])
    app.run()
    assert [w.value for w in app.warning] == ["Trajectory 2 left the image and was clipped to its edge."]
    generate_button(app).click().run()
    points = Trajectories.from_json(app.session_state["result"].request.trajectories.read_text())[
        1
    ].points_norm
    assert points[:, 0].max() == 1.0  # clipped at the right edge


def test_a_trajectory_file_redraws_the_canvas_and_bad_files_are_refused(app, canvas):
    wanted = Trajectories((Trajectory([[0.2, 0.3], [0.5, 0.35], [0.7, 0.6]]), Trajectory([[0.8, 0.2]])))
    app.file_uploader(key="trajectory_file").set_value(
        ("run.json", wanted.to_json().encode(), "application/json")
    ).run()
    assert not app.exception and not app.error
    mounted = canvas.last()
    assert [obj["type"] for obj in mounted["initial_drawing"]["objects"]] == ["Polyline", "Circle"]
    shown = from_canvas_json(mounted["initial_drawing"], (mounted["width"], mounted["height"]))
    for got, want in zip(shown, wanted):
        np.testing.assert_allclose(got.points_norm, want.points_norm, atol=1e-12)
    assert len(track_rows(app)) == 2

    app.file_uploader(key="trajectory_file").set_value(
        ("bad.json", b'{"format": "something else"}', "application/json")
    ).run()
    assert not app.exception
    assert [e.value for e in app.sidebar.error] == [
        "The file is not a trajectory file (expected format 'kinema.trajectories')."
    ]
    assert len(track_rows(app)) == 2  # the drawing is untouched


def test_an_earlier_result_stays_when_a_later_run_fails(app, canvas, monkeypatch, tmp_path):
    canvas.draw(fixture_objects("line"))
    app.run()
    generate_button(app).click().run()
    first = app.session_state["result"]
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the output folder should go")
    monkeypatch.setenv("KINEMA_OUTPUT_DIR", str(blocker))
    app.slider(key="frames").set_value(8).run()
    generate_button(app).click().run()
    assert not app.exception
    assert len(app.error) == 1 and str(blocker) in app.error[0].value
    assert app.session_state["result"] is first
    assert len(app.get("video")) == 4  # the preview, and the earlier result's three still on screen


def test_motion_brush_moves_only_the_painted_region(app, canvas):
    corners = [np.s_[:12, :12], np.s_[:24, 200:], np.s_[200:, :40], np.s_[200:, 200:]]
    near_target = np.s_[108:128, 167:187]  # the line ends at canvas (360, 240) = image (177, 118)

    def change(frames: np.ndarray, where) -> float:
        return float(np.abs(frames[-1][where].astype(int) - frames[0][where]).mean())

    app.radio(key="engine").set_value("sheet").run()
    canvas.draw(fixture_objects("line"))
    app.run()
    generate_button(app).click().run()
    free = app.session_state["result"].frames_uint8
    assert min(change(free, where) for where in corners) > 20  # a long drag pulls the whole picture

    app.checkbox(key="use_brush").check().run()
    # A 40 px brush dab at the line's start (canvas px), drawn as a short stroke.
    dab = {**fixture_objects("line")[0], "strokeWidth": 40, "left": 120, "top": 80}
    dab.update(x1=-10, x2=10, y1=-10, y2=10)
    canvas.draw([dab], prefix="brush-")
    app.run()
    generate_button(app).click().run()
    result = app.session_state["result"]
    assert result.request.region_mask is not None
    brushed = result.frames_uint8
    assert max(change(brushed, where) for where in corners) == 0.0  # outside the region: exactly still
    assert change(brushed, near_target) > 20  # the painted content arrives at the line's end
    assert not app.warning  # the track starts inside the brush

    canvas.draw([{**dab, "left": 400, "top": 400}], prefix="brush-")  # painted elsewhere only
    app.run()
    assert [w.value for w in app.warning] == [
        "Track 1 starts outside the motion brush and will not move: paint over the start or clear the brush."
    ]


def test_the_app_record_redoes_its_run_through_the_job(app, canvas, tmp_path):
    """Generate (with a motion brush) -> the run folder's record -> `job.request_from_record` -> the job:
    the same frames and videos, the same arguments, from the inputs the app saved beside its outputs."""
    canvas.draw(fixture_objects("mixed"))
    app.selectbox(key="camera").set_value("pan_left").run()
    app.radio(key="engine").set_value("sheet").run()
    app.checkbox(key="use_brush").check().run()
    canvas.draw([{**fixture_objects("line")[0], "strokeWidth": 60}], prefix="brush-")
    app.run()
    generate_button(app).click().run()
    assert not app.exception and not app.error
    result = app.session_state["result"]
    folder = result.outputs.folder
    assert sorted(p.name for p in folder.iterdir()) == [
        "flow.mp4", "image.png", "parameters.json", "region_mask.png", "side_by_side.mp4",
        "trajectories.json", "video.mp4",
    ]  # fmt: skip
    record = RunRecord.read(folder / "parameters.json")
    assert "/" not in record.arguments["image"]  # the served app's record names its files, not server paths

    request = job.request_from_record(record, folder)
    assert request == result.request and request.params.camera == "pan_left"
    redo_folder = tmp_path / "redo"
    redo_folder.mkdir()
    redo = job.run(request, job.DragOutputs.in_folder(redo_folder), Settings.from_env())
    np.testing.assert_array_equal(redo.frames_uint8, result.frames_uint8)
    for name in ("video.mp4", "flow.mp4", "side_by_side.mp4"):
        np.testing.assert_array_equal(
            read_video(redo_folder / name).frames_uint8, read_video(folder / name).frames_uint8
        )
    assert file_names({"image_name": "astronaut", **redo.record.arguments}) == record.arguments

    # Redone from its downloads: the run folder gone, the files the result offers (named as they are
    # there) read back beside the parameters JSON, by the job and by the app's "redo a run" upload.
    labels = [b.label for b in app.get("download_button")]
    assert labels[-2:] == ["Picture (PNG)", "Motion brush (PNG)"]
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    for name in ("parameters.json", "image.png", "trajectories.json", "region_mask.png"):
        (downloads / name).write_bytes((folder / name).read_bytes())
    mask_png = (folder / "region_mask.png").read_bytes()
    folder.rename(tmp_path / "moved")  # the record's paths name nothing now
    request = job.request_from_record(RunRecord.read(downloads / "parameters.json"), downloads)
    assert request.region_mask == downloads / "region_mask.png"
    again = job.run(request, job.DragOutputs.in_folder(tmp_path / "again"), Settings.from_env())
    np.testing.assert_array_equal(again.frames_uint8, result.frames_uint8)
    (tmp_path / "moved").rename(folder)  # the page still shows that run

    app.button(key=[b.key for b in app.button if b.label == "Clear the brush"][0]).click().run()
    assert app.session_state["brush_mask"] is None
    uploads = [
        ("trajectories.json", (downloads / "trajectories.json").read_bytes(), "application/json"),
        ("region_mask.png", mask_png, "image/png"),
    ]
    app.radio(key="engine").set_value("objects").run()
    app.file_uploader(key="trajectory_file").set_value(uploads).run()
    assert not app.exception and not app.error
    assert app.radio(key="engine").value == "sheet" and app.checkbox(key="use_brush").value
    np.testing.assert_array_equal(app.session_state["brush_mask"], load_image(mask_png)[..., 0] >= 128)
    generate_button(app).click().run()
    np.testing.assert_array_equal(app.session_state["result"].frames_uint8, result.frames_uint8)

    # The Runs panel lists both runs, newest first; "Redo with these settings" puts the first one back into
    # the page (after other settings and another drawing) and Generate writes its parameters again.
    app.slider(key="frames").set_value(8).run()
    app.selectbox(key="camera").set_value("none").run()
    canvas.draw(fixture_objects("line"))
    app.run()
    redo_buttons = [b for b in app.button if b.label == "Redo with these settings"]
    assert [b.key for b in redo_buttons][1] == f"redo-{folder.name}" and len(redo_buttons) == 2
    redo_buttons[1].click().run()
    assert not app.exception and not app.error
    assert (app.slider(key="frames").value, app.selectbox(key="camera").value) == (14, "pan_left")
    generate_button(app).click().run()
    redone = RunRecord.read(app.session_state["result"].outputs.record).arguments
    files = ("image", "trajectories", "region_mask")
    assert {k: v for k, v in redone.items() if k not in files} == {
        k: v for k, v in record.arguments.items() if k not in files
    }


# -- the UI helpers (no Streamlit) ------------------------------------------------------------------------


def test_canvas_size_keeps_the_aspect_within_the_bounds():
    assert ui_canvas.canvas_size_for((320, 512), 560, 520) == (560, 350)
    assert ui_canvas.canvas_size_for((512, 256), 560, 520) == (260, 520)
    assert ui_canvas.canvas_size_for((1024, 1024), 560, 520) == (520, 520)


def test_overlay_draws_numbered_arrows_and_leaves_the_rest():
    image = np.full((200, 300, 3), 40, np.uint8)
    trajectories = Trajectories((Trajectory([[0.2, 0.5], [0.8, 0.5]]), Trajectory([[0.5, 0.2]])))
    out = overlay.draw_trajectory_overlay(image, trajectories)
    assert out.shape == image.shape and out.dtype == np.uint8
    colour = np.array(overlay.colour_of(0))

    def closest(pixels: np.ndarray) -> float:  # anti-aliased lines: the best-matching pixel's distance
        return float(np.abs(pixels.reshape(-1, 3).astype(int) - colour).sum(axis=1).min())

    assert closest(out[98:102, 100]) < 30  # on the track
    assert closest(out[92:96, 225:235]) < 30  # the arrow head's flank near its end, off the line itself
    ring = out[40 - 8 : 40 + 9, 150 - 8 : 150 + 9].reshape(-1, 3).astype(int)
    assert np.abs(ring - overlay.ANCHOR_RGB).sum(axis=1).min() < 30  # the anchor
    np.testing.assert_array_equal(out[180:, :], image[180:, :])  # far away: untouched
    np.testing.assert_array_equal(image, 40)  # the input is not drawn on


def test_svd_backend_refines_the_warp_with_the_tiny_pipeline(tmp_path):
    from core.models import load_pipeline
    from core.pipelines.svd_trajectory import SVDTrajectoryPipeline

    settings = Settings.from_env({}, svd_model="tiny", device="cpu")
    pipe = load_pipeline("svd", settings, pipeline_cls=SVDTrajectoryPipeline)
    image = astronaut_256()[::4, ::4].copy()  # 64 x 64: the tiny UNet's cost grows fast with size
    trajectories = Trajectories((Trajectory([[0.3, 0.3], [0.6, 0.5]]),))
    params = DragParams(backend="svd", frames=2, motion_bucket=100, strength=0.5, steps=2, max_side=128)
    request = job.save_inputs(tmp_path, image, trajectories, params)
    seen = []
    result = job.run(
        request, job.DragOutputs.in_folder(tmp_path), settings, pipeline=pipe, progress=seen.append
    )
    assert result.frames_uint8.shape == (2, 64, 64, 3) and result.frames_uint8.dtype == np.uint8
    texts = [event.text for event in seen]
    assert "SVD step 1 of 1" in texts and texts[-1] == "Writing the videos (3 of 3)"
    fractions = [event.fraction for event in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert RunRecord.read(tmp_path / "parameters.json").arguments["resolved"]["strength"] == 0.5


def test_the_backend_radio_offers_exactly_the_configured_backends(app, monkeypatch):
    from apps.drag.backends import BACKENDS

    def offered() -> list[str]:
        return app.radio(key="backend").options

    def strength_sliders() -> list[tuple[str, str, float]]:
        return [(s.key, s.label, s.value) for s in app.slider if s.key.startswith("strength")]

    for name in ("KINEMA_SVD_CONTROLNET_MODEL", "KINEMA_SVD_JOINT_FLOW_MODEL"):
        monkeypatch.delenv(name, raising=False)
    app.run()
    # Each says what it runs: here the tiny random weights, never "(trained)" (backends.loaded_label).
    warp, svd = "Warp preview (instant, no weights)", "SVD (tiny random weights: outputs are noise)"
    assert offered() == [warp, svd]
    assert strength_sliders() == []  # the warp takes no strength
    app.radio(key="backend").set_value("svd").run()
    assert strength_sliders() == [("strength_svd", BACKENDS["svd"].strength_label, 0.4)]
    app.radio(key="backend").set_value("warp").run()
    monkeypatch.setenv("KINEMA_SVD_JOINT_FLOW_MODEL", "tiny")
    app.run()
    joint = "SVD joint video + flow, experimental (tiny random weights: outputs are noise)"
    assert offered() == [warp, svd, joint]
    monkeypatch.setenv("KINEMA_SVD_CONTROLNET_MODEL", "tiny")
    app.run()
    assert offered() == [warp, svd, "SVD + flow ControlNet (tiny random weights: outputs are noise)", joint]

    app.radio(key="backend").set_value("svd-controlnet").run()
    assert not app.exception and not app.error
    assert app.slider(key="strength_svd-controlnet").value == 1.0
    assert app.slider(key="strength_svd-controlnet").label == BACKENDS["svd-controlnet"].strength_label
    assert app.slider(key="controlnet_scale").value == 1.0
    assert "strength_svd" not in [s.key for s in app.slider]
    # Its weights unconfigured again: the backend disappears and the choice falls back to the warp.
    monkeypatch.delenv("KINEMA_SVD_CONTROLNET_MODEL")
    app.run()
    assert not app.exception and offered() == [warp, svd, joint]
    assert app.radio(key="backend").value == "warp"


def _small_svd_run(app, canvas, backend: str) -> None:
    """A 64 px upload with one drawn line, 3 frames, 2 steps, on `backend` (the tiny SVD UNet's attention
    cost grows with the square of the pixel count)."""
    small = io.BytesIO()
    Image.fromarray(astronaut_256()[::4, ::4]).save(small, format="PNG")
    app.radio(key="source").set_value("Upload").run()
    app.file_uploader(key="upload").set_value(("small.png", small.getvalue(), "image/png")).run()
    canvas.draw(fixture_objects("line"))
    app.slider(key="frames").set_value(3).run()
    app.slider(key="steps").set_value(2).run()
    app.radio(key="backend").set_value(backend).run()


def test_the_tiny_svd_on_the_cpu_starts_at_cpu_sized_steps(app):
    working_side = app.select_slider(key="max_side").value
    app.radio(key="backend").set_value("svd").run()
    assert not app.exception and app.slider(key="steps").value == CPU_STEPS["tiny"]["svd"] < 25
    assert any("Steps start at 4 for the `tiny` SVD on the CPU" in c.value for c in app.caption)
    assert app.select_slider(key="max_side").value == working_side  # the warp's working size is kept


@pytest.mark.parametrize("backend", ["svd-controlnet", "svd-joint-flow"])
def test_a_trained_backend_generates_with_the_tiny_model(app, canvas, monkeypatch, backend):
    monkeypatch.setenv("KINEMA_SVD_CONTROLNET_MODEL", "tiny")
    monkeypatch.setenv("KINEMA_SVD_JOINT_FLOW_MODEL", "tiny")
    _small_svd_run(app, canvas, backend)
    if backend == "svd-controlnet":
        app.slider(key="controlnet_scale").set_value(0.5).run()
    # Before the run, its estimate (core.estimate: the tiny SVD's measured CPU step, 3 frames x 2 steps at 64 px).
    expected = estimate(Job("svd", "tiny", (64, 64), (Segment(2, 3),)), "cpu")
    assert f"Estimate: about {format_seconds(expected.seconds)} (2 steps, tiny model on cpu)." in [
        c.value for c in app.caption
    ]
    generate_button(app).click().run()
    assert not app.exception and not app.error
    result = app.session_state["result"]
    assert result.frames_uint8.shape == (3, 64, 64, 3) and result.outputs.video.read_bytes()[4:8] == b"ftyp"
    arguments = RunRecord.read(result.outputs.record).arguments
    assert arguments["backend"] == backend
    assert (arguments["resolved"]["strength"], arguments["resolved"]["controlnet_scale"]) == (
        (1.0, 0.5) if backend == "svd-controlnet" else (None, None)
    )
    flow_label = "Generated flow (flow colours)" if backend == "svd-joint-flow" else "Motion (flow colours)"
    assert flow_label in [m.value for m in app.markdown]
    assert read_video(result.outputs.flow).frames_uint8.shape == (3, 64, 64, 3)


def test_the_low_vram_checkbox_is_recorded_and_keeps_the_result(app, canvas):
    """The checkbox sets Settings.low_vram for the run (recorded); on the CPU it only chunks the UNet's
    feed-forward and splits the guidance halves, so the video is the one the default mode makes."""
    _small_svd_run(app, canvas, "svd")
    box = app.checkbox(key="low_vram")
    assert (box.label, box.value) == ("Low-VRAM mode (slower; for GPUs with 8 GB)", False)
    assert "No effect on the CPU" in box.help
    runs = {}
    for low_vram in (False, True):
        app.checkbox(key="low_vram").set_value(low_vram).run()
        generate_button(app).click().run()
        assert not app.exception and not app.error
        runs[low_vram] = app.session_state["result"]
        assert RunRecord.read(runs[low_vram].outputs.record).settings["low_vram"] == str(low_vram)
    difference = np.abs(runs[True].frames_uint8.astype(int) - runs[False].frames_uint8.astype(int))
    assert difference.max() <= 1  # float noise of a batch of 1 vs 2 may flip a rounding
