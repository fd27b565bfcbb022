"""Chaining bare images (no video) A -> B -> C and loops A -> B -> A: the layout, every inbetweening backend,
the CLI's --images / --loop / --frames-between, the one-sentence errors for bad images, and the app's chains in
its Runs panel with Redo."""

from __future__ import annotations

import json
from types import SimpleNamespace

import cv2
import gradio as gr
import numpy as np
import pytest
from PIL import Image

from apps.common.runs import RunRecord
from apps.keyframe import backends, cli, compare, sequence, ui_sequence
from apps.keyframe.handlers import Handlers
from apps.keyframe.interp_controls import INTERP_CONTROLS
from apps.keyframe.sample import SAMPLE_VIDEO
from apps.keyframe.video import load_video
from core.config import Settings
from core.engines.chain import chain_layout, check_images
from core.errors import InputError
from core.imaging import load_image
from core.video import read_video

PREFIX = "python -m apps.keyframe.cli: error: "


def _image(shift: int, size_hw: tuple[int, int] = (64, 64)) -> np.ndarray:
    """A gradient with a bright square at `shift` px from the left: neighbours differ by a motion."""
    height, width = size_hw
    image = np.zeros((height, width, 3), np.uint8)
    image[..., 0] = np.linspace(0, 200, width, dtype=np.uint8)[None, :]
    image[..., 2] = np.linspace(0, 120, height, dtype=np.uint8)[:, None]
    image[20:40, shift : shift + 20] = (255, 240, 60)
    return image


@pytest.fixture(scope="module")
def images():
    return np.stack([_image(4), _image(20), _image(36)])


@pytest.fixture
def settings(tmp_path):
    return Settings.from_env({}, svd_model="tiny", device="cpu", output_dir=tmp_path)


def test_layout_counts_frames_and_a_loop_ends_on_the_first_image():
    assert chain_layout(3, 4) == chain_layout(3, 4, loop=False)
    plain, loop = chain_layout(3, 4), chain_layout(2, 3, loop=True)
    assert (plain.keyframe_indices, plain.num_frames, plain.image_order) == ((0, 5, 10), 11, (0, 1, 2))
    assert (loop.keyframe_indices, loop.num_frames, loop.image_order) == ((0, 4, 8), 9, (0, 1, 0))
    with pytest.raises(InputError, match="at least 1, got 0"):
        chain_layout(2, 0)


@pytest.mark.parametrize(
    ("backend", "loop"),
    [("flow", False), ("flow", True), ("crossfade", False), ("svd-trf", True)],
    ids=["flow-chain", "flow-loop", "crossfade-chain", "svd-trf-loop"],
)
def test_every_backend_chains_and_loops_with_the_images_exact(images, settings, backend, loop):
    request = backends.InterpRequest(backend=backend, steps=1, decode_chunk_size=2)
    seen: list[tuple[int, int]] = []
    out = backends.inbetween_images(
        images, request, settings, frames_between=2, loop=loop, callback=lambda *done: seen.append(done)
    )
    expected = 10 if loop else 7  # (K' - 1) * 3 + 1 with K' = 4 (A B C A) or 3 (A B C)
    assert out.shape == (expected, 64, 64, 3) and seen[-1] == (expected, expected)
    assert np.array_equal(out[0], images[0]) and np.array_equal(out[3], images[1])
    assert np.array_equal(out[6], images[2]) and np.array_equal(out[-1], images[0 if loop else 2])
    assert not np.array_equal(out[1], images[0]) and not np.array_equal(out[1], images[1])


def test_flow_follows_the_motion_between_the_images(settings):
    # A blurred noise texture panned by 8 px: the frame half-way is the texture panned by 4 px.
    rng = np.random.default_rng(0)
    texture = cv2.GaussianBlur(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8), (0, 0), 2)
    texture = cv2.normalize(texture, None, 0, 255, cv2.NORM_MINMAX)
    head, middle, tail = (texture[:, 16 + shift : 112 + shift] for shift in (0, 4, 8))
    out = backends.inbetween_images(
        np.stack([head, tail]), backends.InterpRequest(backend="flow"), settings, frames_between=1
    )
    inner = np.s_[8:-8, 8:-8]  # away from the border the pan brings in
    cross = (head.astype(np.float32) + tail) / 2
    assert np.abs(out[1].astype(int) - middle)[inner].mean() < 0.1 * np.abs(cross - middle)[inner].mean()


def test_bad_image_lists_are_one_sentence(images):
    with pytest.raises(InputError, match=r"^Chaining needs at least 2 images .* got 1\.$"):
        check_images(images[:1])
    with pytest.raises(
        InputError, match=r"^Image 2 is 48x64 but image 1 is 64x64: all images .* one size\.$"
    ):
        check_images([images[0], _image(4, (64, 48))])


def _save(folder, images):
    paths = []
    for k, image in enumerate(images):
        paths.append(folder / f"image_{k}.png")
        Image.fromarray(image).save(paths[-1])
    return [str(p) for p in paths]


def test_cli_images_loop_writes_the_video_and_record(tmp_path, images, capsys):
    out = tmp_path / "loop.mp4"
    paths = _save(tmp_path, images[:2])
    args = ["--images", *paths, "--loop", "--frames-between", "3", "--interp", "crossfade", "--out", str(out)]
    assert cli.main([*args, "--gif", str(tmp_path / "loop.gif")]) == 0, capsys.readouterr().err
    video = read_video(out)
    assert video.num_frames == 9 and video.size_hw == (64, 64) and video.fps == 8.0
    assert np.abs(video.frames_uint8[[0, -1]].astype(int) - images[0]).mean() < 4  # H.264 at crf 18
    assert np.abs(video.frames_uint8[4].astype(int) - images[1]).mean() < 4
    record = json.loads(out.with_suffix(".json").read_text())
    assert (
        record["action"] == "cli"
        and len(record["arguments"]["images"]) == 2
        and record["arguments"]["keyframe_indices"] == [0, 4, 8]
    )
    assert record["arguments"]["loop"] is True and record["arguments"]["inbetween"]["backend"] == "crossfade"
    assert read_video(tmp_path / "loop.gif").num_frames == 9
    redo = sequence.request_from_record(RunRecord.read(out.with_suffix(".json")), tmp_path)
    assert (redo.images, redo.frames_between, redo.loop) == (tuple(str(tmp_path / p) for p in paths), 3, True)


@pytest.mark.parametrize(
    ("kind", "extra", "message"),
    [
        ("one", [], "Chaining needs at least 2 images (A -> B, or A -> B -> A with loop), got 1."),
        ("mixed", [], "Image 2 is 48x64 but image 1 is 64x64: all images of a chain must have one size."),
        ("two", ["--side-by-side", "{tmp}/s.mp4"], "--side-by-side shows a video beside its result"),
        ("video", ["--loop"], "--loop and --frames-between chain images: they need --images, not --video."),
    ],
)
def test_cli_bad_images_exit_2_with_one_line(tmp_path, images, capsys, kind, extra, message):
    lists = {"one": images[:1], "mixed": [images[0], _image(4, (64, 48))], "two": images[:2]}
    source = ["--video", "x.mp4"] if kind == "video" else ["--images", *_save(tmp_path, lists[kind])]
    args = [*source, "--out", str(tmp_path / "o.mp4"), *(a.format(tmp=tmp_path) for a in extra)]
    assert cli.main(args) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(PREFIX) and message in lines[0], lines
    assert not (tmp_path / "o.mp4").exists()


def test_flow_svd_refines_the_flow_frames_from_cli_and_app(settings, tmp_path, images, capsys):
    frames = load_video(SAMPLE_VIDEO, settings, end_s=1.0, working_side=64).frames_uint8
    keys = [0, 5, 10]
    edited = frames[keys][..., ::-1].copy()  # a channel swap as the edit
    flow, refined = (
        backends.inbetween(frames, keys, edited, backends.InterpRequest(backend=name, steps=2), settings)
        for name in ("flow", "flow+svd")
    )
    assert np.array_equal(refined[keys], edited) and not np.array_equal(refined[1:5], flow[1:5])

    out = tmp_path / "fs.mp4"
    args = ["--video", str(SAMPLE_VIDEO), "--out", str(out), "--working-size", "64", "--end", "1.0"]
    args += ["--keyframes", "0,5,10", "--edit", "identity", "--interp", "flow+svd", "--interp-steps", "2"]
    assert cli.main([*args, "--svd-model", "tiny", "--refine-strength", "0.5"]) == 0, capsys.readouterr().err
    inbetween = json.loads(out.with_suffix(".json").read_text())["arguments"]["inbetween"]
    assert inbetween["backend"] == "flow+svd" and inbetween["refine_strength"] == 0.5
    assert read_video(out).num_frames == 11

    # The app's images panel runs it too (the video app's inbetween shares backends.inbetween).
    paths = _save(tmp_path, images)
    step3 = ("flow+svd", 0, "dis", 127, 2, 0, 8, None, 0)
    video, downloads, status = ui_sequence.ImagesPanel(Handlers(settings)).inbetween_images(
        paths, 2, False, *step3
    )
    assert read_video(video).num_frames == 7 and status.startswith(
        "7 frames at 8 fps from 3 images (flow+svd)"
    )


def test_the_apps_chains_are_listed_in_the_runs_panel_and_redo_puts_them_back(settings, tmp_path, images):
    h = Handlers(settings)
    client = SimpleNamespace(session_hash="one session")
    # Step 3's controls in INTERP_CONTROLS order (the record keeps the backend's options: crossfade has none).
    controls = ("crossfade", 6, "dis", 127, 25, 0, 8, None, 0, 0.3)
    video, _, _ = ui_sequence.ImagesPanel(h).inbetween_images(
        _save(tmp_path, images), 2, True, *controls, client=client
    )
    (entry,), notes = h.runs.history(client).entries()
    assert notes == [] and entry.record.action == "ui:images" and entry.thumbnail_uint8() is not None
    # The uploads are kept in the run folder under the names the record gives them.
    assert entry.record.arguments["images"] == ["image_01.png", "image_02.png", "image_03.png"]

    redo = dict(zip(compare.REDO_CONTROLS, compare.redo_values(entry)))
    assert [redo[name] for name in INTERP_CONTROLS] == [
        *controls[:7],
        False,
        0,
        0.3,
    ]  # low VRAM: the server's
    assert (redo["seq_between"], redo["seq_loop"], redo["keys_text"]) == (2, True, gr.skip())
    assert np.array_equal(np.stack([load_image(p) for p in redo["seq_images"]]), images)
    again, _, _ = ui_sequence.ImagesPanel(h).inbetween_images(
        redo["seq_images"], redo["seq_between"], redo["seq_loop"], *(redo[k] for k in INTERP_CONTROLS)
    )
    assert np.array_equal(read_video(again).frames_uint8, read_video(video).frames_uint8)
    (entry.folder / "image_02.png").unlink()  # a kept image deleted from the output folder since
    with pytest.raises(InputError, match=f"^Image image_02.png of run {entry.name} is gone from its folder"):
        compare.redo_values(entry)
