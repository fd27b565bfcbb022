"""The keyframe Gradio app through its API: every api_name called with gradio_client, results checked.

The app runs in-process (`build_demo` + `launch(prevent_thread_lock=True)`) with tiny SD weights and
SVD weights that do not exist, so the SVD message path is exercised too. Each test opens its own
client (its own session state).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import zipfile

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr
import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from apps.common.gradio import launch_kwargs
from apps.common.runs import RunRecord, file_names
from apps.keyframe import app, cli, compare, job
from apps.keyframe.backends import EDIT_BACKENDS, INTERP_BACKENDS, fit_image, offered
from apps.keyframe.handlers import Handlers
from apps.keyframe.interp_controls import show_interp_backend
from apps.keyframe.keyframes import parse_indices
from apps.keyframe.sample import SAMPLE_VIDEO
from apps.keyframe.video import load_video
from apps.keyframe.views import KEY_BORDER_RGB
from core.config import Settings
from core.engines.edit import EDITS, apply_edit
from core.imaging import load_image
from core.video import read_video, side_by_side, write_video

WORKING_SIDE = 128
KEYS = [0, 8, 16, 23]
EXPECTED_API = {
    "/sample_video", "/mini_sample_video", "/probe_video", "/load_video", "/suggest_keyframes", "/set_keyframes", "/toggle_keyframe",
    "/edit_preview", "/edit_all", "/reedit_keyframe", "/upload_edit", "/inbetween", "/inbetween_images", "/stop_edit", "/stop_inbetween",
    "/runs", "/run_details", "/redo",
}  # fmt: skip


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    root = tmp_path_factory.mktemp("keyframe_app")
    return Settings.from_env(
        {}, sd_model="tiny", svd_model=str(root / "no-svd-here"), device="cpu", output_dir=root / "outputs"
    )


@pytest.fixture(scope="module")
def url(settings):
    demo = app.build_demo(settings)
    demo.queue().launch(prevent_thread_lock=True, quiet=True, **launch_kwargs(settings, *app.SERVED_FOLDERS))
    yield demo.local_url
    demo.close()


@pytest.fixture
def client(url):
    return Client(url, verbose=False)


@pytest.fixture(scope="module")
def frames(settings):
    """The frames the app works on for the sample at WORKING_SIDE (the same code path)."""
    return load_video(SAMPLE_VIDEO, settings, working_side=WORKING_SIDE).frames_uint8


def load(client: Client, video=SAMPLE_VIDEO, **kwargs):
    args = {"start_s": 0, "end_s": None, "working_side": WORKING_SIDE, "mode": "uniform", "every": 8}
    args.update(kwargs)
    return client.predict(
        handle_file(str(video)),
        args["start_s"],
        args["end_s"],
        args["working_side"],
        args["mode"],
        args["every"],
        "flow",
        None,
        "dis",
        api_name="/load_video",
    )


def gallery_images(gallery: list[dict]) -> np.ndarray:
    return np.stack([load_image(item["image"]) for item in gallery])


def captions(gallery: list[dict]) -> list[str]:
    return [item["caption"] for item in gallery]


def edit(client: Client, api_name: str, *args, **controls):
    return client.predict(",".join(map(str, KEYS)), *args, api_name=api_name, **controls)


def test_every_work_event_is_in_the_api(client):
    assert set(client.view_api(print_info=False, return_format="dict")["named_endpoints"]) == EXPECTED_API


def test_sample_and_probe(client):
    path = client.predict(api_name="/sample_video")
    assert path.endswith("sample.mp4") and read_video(path).num_frames == 24
    info, start, end = client.predict(handle_file(str(SAMPLE_VIDEO)), api_name="/probe_video")
    assert "24 frames, 10 fps, 2.40 s, 320x320" in info
    assert (start, end) == (0.0, "2.4")  # the end is a text box: empty shows empty, not 0


def test_load_shows_every_frame_and_suggests_keyframes(client, frames):
    status, strip, keys_text, key_gallery = load(client)
    assert "Loaded 24 frames of 128x128 at 10 fps (0.00-2.40 s of sample.mp4)" in status
    assert "Working at 128x128 (the video is 320x320" in status
    assert len(strip) == 24 and captions(strip)[5] == "5 · 0.5 s"
    assert keys_text == "0, 8, 16, 23"
    # the keyframes are marked in the strip: "key" in the caption, a frame drawn into the thumbnail
    assert [i for i, caption in enumerate(captions(strip)) if caption.startswith("key ")] == [0, 8, 16, 23]
    key_thumb, plain_thumb = (load_image(strip[i]["image"]) for i in (8, 5))
    assert np.abs(key_thumb[0].astype(int) - KEY_BORDER_RGB).max() <= 24  # lossy webp thumbnails: near it
    assert np.abs(plain_thumb[0].astype(int) - KEY_BORDER_RGB).max() > 60
    assert captions(key_gallery) == [
        "0: original - first frame", "8: original - every 8 frames", "16: original - every 8 frames", "23: original - last frame",
    ]  # fmt: skip
    assert np.array_equal(gallery_images(key_gallery), frames[KEYS])


def test_trimmed_load(client, frames):
    status, strip, keys_text, _ = load(client, start_s=0.5, end_s=1.5, every=4)
    assert "Loaded 11 frames" in status and "(0.50-1.60 s of sample.mp4)" in status
    assert len(strip) == 11 and keys_text == "0, 4, 8, 10"


def test_keyframes_can_be_suggested_listed_and_toggled(client):
    load(client)
    keys_text, key_gallery, status = client.predict(
        "adaptive", 8, "flow", 4.0, "dis", api_name="/suggest_keyframes"
    )
    indices = parse_indices(keys_text)
    assert indices[0] == 0 and indices[-1] == 23 and len(indices) >= 3
    assert len(key_gallery) == len(indices) and "(threshold 4 px)" in status

    keys_text, key_gallery, _ = client.predict("16, 0 ,8", api_name="/set_keyframes")
    assert keys_text == "0, 8, 16" and len(key_gallery) == 3
    keys_text, _, status = client.predict(5, keys_text, api_name="/toggle_keyframe")
    assert keys_text == "0, 5, 8, 16" and status == "Keyframe 5 added; 4 keyframes."
    keys_text, _, status = client.predict(8, keys_text, api_name="/toggle_keyframe")
    assert keys_text == "0, 5, 16" and status == "Keyframe 8 removed; 3 keyframes."


def test_staged_filter_edit_then_flow_inbetween(client, frames, settings):
    load(client)
    # 2a. preview: the first keyframe only, original | edited, nothing kept
    preview, status = edit(client, "/edit_preview", backend="filter", filter="adjust", adjust_hue_deg=90.0)
    preview = load_image(preview)
    expected = apply_edit(frames[:1], "adjust", hue_deg=90.0)[0]
    assert np.array_equal(preview, side_by_side(frames[:1], expected[None])[0])
    assert status.startswith("Preview of keyframe 0 (original | edited)")

    # 2b. all keyframes: exactly the core filter, and far from the originals
    key_gallery, status = edit(client, "/edit_all", backend="filter", filter="cartoon", cartoon_levels=4)
    edited = gallery_images(key_gallery)
    assert np.array_equal(edited, apply_edit(frames[KEYS], "cartoon", levels=4))
    assert np.abs(edited.astype(int) - frames[KEYS]).mean() > 10
    assert captions(key_gallery)[0] == "0: edited (cartoon)" and status.startswith("Edited 4 keyframes")

    # re-edit one keyframe with other settings; replace another with an uploaded image of another size
    key_gallery, status = edit(
        client, "/reedit_keyframe", 8, backend="filter", filter="adjust", adjust_hue_deg=-90.0
    )
    assert np.array_equal(gallery_images(key_gallery)[1], apply_edit(frames[8], "adjust", hue_deg=-90.0))
    assert captions(key_gallery)[1] == "8: edited (adjust)" and status.startswith("Re-edited keyframe 8")
    own = np.zeros((64, 96, 3), np.uint8)
    own[:, :48] = (255, 0, 0)
    own_path = settings.output_dir.parent / "own.png"
    Image.fromarray(own).save(own_path)
    key_gallery, status = client.predict(
        "0, 8, 16, 23", 16, handle_file(str(own_path)), api_name="/upload_edit"
    )
    assert np.array_equal(gallery_images(key_gallery)[2], fit_image(own, (128, 128)))
    assert status == "Keyframe 16 now uses your image (resized from 96x64 to 128x128)."

    # 3. inbetween with the flow backend
    result, side, downloads, status = client.predict(
        "0, 8, 16, 23", "flow", None, "dis", 127, 25, 0, 8, api_name="/inbetween"
    )
    video = read_video(result)
    assert video.num_frames == 24 and video.fps == 10.0 and video.size_hw == (128, 128)
    final_keys = gallery_images(key_gallery)
    assert np.abs(video.frames_uint8[KEYS].astype(int) - final_keys).mean() < 4  # H.264 at crf 18
    assert read_video(side).size_hw == (128, 2 * 128 + 8)
    assert sorted(os.path.basename(p) for p in downloads) == [
        "keyframes.zip", "params.json", "result.gif", "result.mp4", "side_by_side.mp4",
    ]  # fmt: skip
    record_path = next(p for p in downloads if p.endswith(".json"))
    record = json.loads(open(record_path).read())
    assert (record["app"], record["action"], record["command"]) == ("keyframe", "ui:inbetween", None)
    params = record["arguments"]
    assert [k["index"] for k in params["keyframes"]] == KEYS
    assert [k["edit"]["backend"] for k in params["keyframes"]] == ["filter", "filter", "upload", "filter"]
    assert params["keyframes"][0]["edit"]["params"]["levels"] == 4
    assert params["keyframes"][1]["edit"]["params"]["hue_deg"] == -90.0
    assert params["video"]["size_wh"] == [128, 128] and params["inbetween"]["backend"] == "flow"
    with zipfile.ZipFile(next(p for p in downloads if p.endswith(".zip"))) as archive:
        assert len(archive.namelist()) == 8
    assert status.startswith("24 frames at 10 fps from 4 keyframes (flow)")

    # the record redoes the run: the same keyframes (the cartoon batch, the re-edit, the upload) and frames
    folder = settings.output_dir / "keyframe" / re.search(r"; run (\S+)\.", status)[1]
    record = RunRecord.read(folder / "params.json")
    assert [k["edit"]["batch"] for k in record.arguments["keyframes"]] == [KEYS, [8], [16], KEYS]
    assert record.arguments["video_path"] == "sample.mp4"  # the upload's name, not the server's path
    shutil.copyfile(SAMPLE_VIDEO, folder / "sample.mp4")  # the user's video beside the record
    request = job.request_from_record(record, folder)
    again = job.run(request, settings, job.OutputFiles.in_folder(settings.output_dir / "again"))
    assert np.array_equal(again.result_uint8[KEYS], final_keys)
    assert file_names(again.record.arguments) == record.arguments
    assert np.array_equal(read_video(again.files.video_mp4).frames_uint8, video.frames_uint8)


def test_sd_edit_with_per_keyframe_prompts(client, settings):
    load(client, working_side=64)  # tiny SD on CPU: small frames keep this quick
    frames = load_video(SAMPLE_VIDEO, settings, working_side=64).frames_uint8
    controls = {"backend": "sd", "prompt": "snow", "strength": 0.5, "guidance": 1.0, "steps": 2, "seed": 1}
    key_gallery, status = edit(client, "/edit_all", keyframe_prompts="8: rain", **controls)
    edited = gallery_images(key_gallery)
    assert edited.shape == (4, 64, 64, 3) and status.startswith("Edited 4 keyframes")
    assert np.abs(edited.astype(int) - frames[KEYS]).mean() > 5  # tiny random weights: far from the input
    assert captions(key_gallery)[1] == "8: edited (sd)"
    # the per-keyframe prompt changes keyframe 8 (only the prompt differs)
    other, _ = edit(client, "/edit_all", keyframe_prompts="", **controls)
    other = gallery_images(other)
    assert not np.array_equal(other[1], edited[1])


@pytest.fixture(scope="module")
def bad_videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad")
    corrupt = folder / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"not a video" * 200)
    one_frame = write_video(folder / "one_frame.mp4", np.full((1, 64, 64, 3), 128, np.uint8), 10)
    return {"corrupt": corrupt, "one_frame": one_frame}


def message(call) -> str:
    with pytest.raises(AppError) as error:
        call()
    return str(error.value)


def test_images_chain_and_loop_without_a_video(client, settings, tmp_path):
    a, b = (np.full((64, 96, 3), value, np.uint8) for value in (30, 220))
    paths = []
    for name, image in (("a.png", a), ("b.png", b), ("small.png", a[:32])):
        Image.fromarray(image).save(tmp_path / name)
        paths.append(handle_file(str(tmp_path / name)))
    step3 = (
        "crossfade",
        0,
        "dis",
        127,
        2,
        0,
        8,
        None,
        0,
    )  # backend and its options, as /inbetween takes them
    result, downloads, status = client.predict(paths[:2], 3, True, *step3, api_name="/inbetween_images")
    video = read_video(result)
    assert video.num_frames == 9 and video.size_hw == (64, 96)  # A, 3, B, 3, A
    assert np.abs(video.frames_uint8[[0, 4, 8]].astype(int) - np.stack([a, b, a])).mean() < 4
    record = json.loads(open(next(p for p in downloads if p.endswith(".json"))).read())
    assert record["action"] == "ui:images" and record["arguments"]["keyframe_indices"] == [0, 4, 8]
    assert status.startswith("9 frames at 8 fps from 2 images (crossfade, loop)")
    gallery, choice, _ = client.predict(api_name="/runs")  # listed in the Runs panel like a video's run
    assert len(gallery) == 1 and "(ui:images, " in gallery[0]["caption"]
    redo = dict(zip(compare.REDO_CONTROLS, client.predict(choice["value"], api_name="/redo")))
    assert (redo["interp_backend"], redo["seq_between"], redo["seq_loop"]) == ("crossfade", 3, True)
    assert np.array_equal(np.stack([load_image(p) for p in redo["seq_images"]]), np.stack([a, b]))
    for images, message in (
        (paths[:1], "Chaining needs at least 2 images (A -> B, or A -> B -> A with loop), got 1."),
        (paths[::2], "Image 2 is 96x32 but image 1 is 96x64: all images of a chain must have one size."),
    ):
        with pytest.raises(AppError, match=re.escape(message)):
            client.predict(images, 3, False, *step3, api_name="/inbetween_images")
    runs = settings.output_dir / "keyframe"
    assert all((folder / "params.json").is_file() for folder in runs.iterdir())  # refused: no run folder left


def test_bad_videos_get_one_sentence(client, bad_videos):
    assert message(lambda: load(client, bad_videos["corrupt"])) == (
        "The video file corrupt.mp4 cannot be read: it is corrupt or not a video."
    )
    assert "cannot be read" in message(
        lambda: client.predict(handle_file(str(bad_videos["corrupt"])), api_name="/probe_video")
    )
    assert message(lambda: load(client, bad_videos["one_frame"])) == (
        "The chosen part holds 1 frame; keyframe editing needs a video of at least 2 frames."
    )
    assert "Choose 0 <= start < end" in message(lambda: load(client, start_s=2.0, end_s=1.0))


def test_steps_out_of_order_and_bad_requests_get_one_sentence(client, settings):
    assert message(lambda: edit(client, "/edit_all", backend="filter", filter="cartoon")) == (
        "Load a video first (step 1)."
    )
    load(client)
    inbetween = ("0, 8, 16, 23", "flow", None, "dis", 127, 25, 0, 8)
    assert "Keyframes 0, 8, 16, 23 not edited yet" in message(
        lambda: client.predict(*inbetween, api_name="/inbetween")
    )
    runs = settings.output_dir / "keyframe"
    assert not runs.exists() or all(any(folder.iterdir()) for folder in runs.iterdir())  # no empty run folder
    assert "Keyframe 30 is outside the video" in message(
        lambda: client.predict("0, 30", api_name="/set_keyframes")
    )
    assert "Select a frame between 0 and 23" in message(
        lambda: client.predict(None, "0, 8", api_name="/toggle_keyframe")
    )
    assert "Select a keyframe first" in message(
        lambda: edit(client, "/reedit_keyframe", 5, backend="filter", filter="cartoon")
    )
    assert "Value 9.0 is greater than maximum value 3.0." in message(
        lambda: edit(client, "/edit_all", backend="filter", filter="adjust", adjust_contrast=9.0)
    )
    assert "The SD edit needs a prompt" in message(lambda: edit(client, "/edit_all", backend="sd"))
    assert "Frame 5 has a prompt but is not a keyframe" in message(
        lambda: edit(client, "/edit_all", backend="sd", prompt="x", keyframe_prompts="5: y")
    )


def test_missing_svd_weights_name_the_setting_and_keep_earlier_results(client):
    load(client)
    edit(client, "/edit_all", backend="filter", filter="pencil")
    svd = ("0, 8, 16, 23", "svd-trf", None, "dis", 127, 2, 0, 8)
    assert "set KINEMA_SVD_MODEL (or --svd-model)" in message(
        lambda: client.predict(*svd, api_name="/inbetween")
    )
    # the weight-free backends keep working in the same session
    result, *_ = client.predict("0, 8, 16, 23", "crossfade", 5, "dis", 127, 25, 0, 8, api_name="/inbetween")
    video = read_video(result)
    assert video.num_frames == 24 and video.fps == 5.0


def test_the_page_names_the_model_settings(settings):
    summary = app.model_summary(settings)
    assert "SD: `tiny` (random test weights: outputs are noise; set KINEMA_SD_MODEL for real ones)" in summary
    assert "(KINEMA_SVD_MODEL)" in summary
    assert "200 MB upload; 2048 px longest side" in summary and "64 frames per part" in summary


def test_the_backend_choices_of_the_app_and_the_cli_come_from_the_registries(settings):
    demo = app.build_demo(settings)
    radios = {c.elem_id: c for c in demo.blocks.values() if isinstance(c, gr.Radio)}
    for elem_id, registry in (("kf-edit-backend", EDIT_BACKENDS), ("kf-interp-backend", INTERP_BACKENDS)):
        assert [tuple(choice) for choice in radios[elem_id].choices] == [
            (b.label, b.name) for b in offered(registry, settings)
        ]
    # flow+svd-lora is offered once its LoRA is set (these settings have none); the CLI takes every name
    assert [b.name for b in offered(INTERP_BACKENDS, settings)] == [
        name for name in INTERP_BACKENDS if name != "flow+svd-lora"
    ]
    assert "flow+svd-lora" in [
        b.name for b in offered(INTERP_BACKENDS, settings.replace(svd_interp_lora="x"))
    ]
    parser_choices = {a.dest: a.choices for a in cli.build_parser()._actions if a.choices}
    assert list(parser_choices["interp"]) == list(INTERP_BACKENDS)
    assert list(parser_choices["edit"]) == [*EDITS, "sd"]
    # each backend's controls are shown by its options: flow method for flow, SVD settings for svd-*, noise
    # re-injection only where it does something (not for flow+svd's SDEdit), the refine strength for flow+svd*
    options = ("flow_method", "motion_bucket", "noise_reinjection", "refine_strength")
    for name, backend in INTERP_BACKENDS.items():
        shown = tuple(update["visible"] for update in show_interp_backend(name))
        assert shown == tuple(o in backend.options for o in options)
    assert [u["visible"] for u in show_interp_backend("flow+svd")] == [True, True, False, True]
    assert [u["visible"] for u in show_interp_backend("svd-trf")] == [False, True, True, False]
    assert [u["visible"] for u in Handlers.show_edit_backend("sd")] == [False, True]
    assert "Need no weights: Filter (no weights), Optical flow (no weights), Cross-fade (baseline)." in (
        app.model_summary(settings)
    )


def test_the_low_vram_checkbox_reaches_the_edits_and_the_record(client):
    """One checkbox (start: the server's setting) for the SD edits and the inbetweening: on the CPU it
    only chunks the UNet's feed-forward, so the edits are the default mode's; the record names it."""
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    for name in ("/edit_preview", "/edit_all", "/reedit_keyframe", "/inbetween"):
        (box,) = [p for p in endpoints[name]["parameters"] if p["parameter_name"] == "low_vram"]
        assert (box["label"], box["parameter_default"]) == (
            "Low-VRAM mode (slower; for GPUs with 8 GB)",
            False,
        )
    load(client, working_side=64)
    controls = {"backend": "sd", "prompt": "snow", "strength": 0.5, "guidance": 7.5, "steps": 2, "seed": 1}
    default = gallery_images(edit(client, "/edit_all", low_vram=False, **controls)[0])
    low_vram = gallery_images(edit(client, "/edit_all", low_vram=True, **controls)[0])
    assert np.abs(low_vram.astype(int) - default).max() <= 1  # float noise may flip a rounding
    for on in (False, True):
        *_, downloads, _ = client.predict(
            "0, 8, 16, 23", "flow", None, "dis", 127, 25, 0, 8, on, api_name="/inbetween"
        )
        assert RunRecord.read(next(p for p in downloads if p.endswith(".json"))).settings["low_vram"] is on


@pytest.fixture(scope="module")
def svd_client(tmp_path_factory):
    """A second server with the tiny SVD model, for the SVD inbetweening."""
    root = tmp_path_factory.mktemp("keyframe_svd_app")
    settings = Settings.from_env({}, sd_model="tiny", svd_model="tiny", device="cpu", output_dir=root)
    demo = app.build_demo(settings)
    demo.queue().launch(prevent_thread_lock=True, quiet=True, **launch_kwargs(settings, *app.SERVED_FOLDERS))
    yield Client(demo.local_url, verbose=False)
    demo.close()


def test_svd_inbetweening_in_low_vram_mode_gives_the_default_result(svd_client):
    """On the CPU the low-VRAM SVD run chunks the feed-forward and splits the guidance halves: the same
    frames up to float noise (and the H.264 encoding of that noise)."""
    load(svd_client, end_s=0.35, working_side=64, every=2)  # 4 frames: keyframes 0, 2, 3
    svd_client.predict(
        "0, 2, 3", backend="filter", filter="adjust", adjust_hue_deg=60.0, api_name="/edit_all"
    )
    videos = {}
    for on in (False, True):
        result, *_, downloads, _ = svd_client.predict(
            "0, 2, 3", "svd-trf", None, "dis", 127, 2, 0, 2, on, api_name="/inbetween"
        )
        assert RunRecord.read(next(p for p in downloads if p.endswith(".json"))).settings["low_vram"] is on
        videos[on] = read_video(result).frames_uint8.astype(int)
    assert videos[True].shape == videos[False].shape and videos[True].shape[0] == 4
    assert np.abs(videos[True] - videos[False]).max() <= 2
