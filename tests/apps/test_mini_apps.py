"""The three apps on the mini models, each run end to end on its synthetic-scene example.

With every model setting at ``mini`` (the bases in assets/models/mini/{sd,svd}, the controls that ``make
prove`` installs beside them) each app starts at the mini models' size, frames and steps, offers the held-out
synthetic scene of :mod:`apps.common.examples` first, and runs it through its real handlers: the drag app's
Generate with the flow ControlNet on the scene's sprite tracks (loaded onto the canvas when the sample is
picked), the joint-depth app's three modes with the trained joint patch, the keyframe app's svd-lora
inbetweening of the held-out clip. A test whose control weights are absent is skipped, naming the folder.
Few denoising steps keep each run to seconds; what the models learned is measured by ``make prove``.
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image
from streamlit.testing.v1 import AppTest

from apps.common.examples import (
    MINI_CLIP_FRAMES,
    MINI_EXAMPLE_LABEL,
    MINI_SEED,
    MINI_STEPS,
    mini_clip_example,
    mini_drag_example,
    mini_image_example,
    mini_video_scene,
)
from apps.common.gradio import launch_kwargs
from apps.common.runs import RunRecord
from apps.drag import ui_canvas
from apps.joint_depth import app as joint_app
from apps.keyframe import app as keyframe_app
from apps.keyframe.handlers import MINI_KEY_EVERY
from core.config import Settings
from core.data.synthetic import make_image_scene
from core.eval.learning import MINI_FPS, MINI_FRAMES, MINI_SIDE, held_out_seeds, train_seeds
from core.models.presets import MINI_FOLDER
from core.trajectory import Trajectories
from core.trajectory.canvas import parse_objects
from core.video import read_video
from tests.apps.test_drag_app import APP as DRAG_APP
from tests.apps.test_drag_app import generate_button

MINI_ENV = {
    "KINEMA_SD_MODEL": "mini",
    "KINEMA_SVD_MODEL": "mini",
    "KINEMA_SVD_CONTROLNET_MODEL": "mini",
    "KINEMA_JOINT_WEIGHTS": "mini",
    "KINEMA_SVD_INTERP_LORA": "mini",
    "KINEMA_DEVICE": "cpu",
}
STEPS = 3


def needs(*folders: str):
    """Skip unless assets/models/mini holds each of `folders` (the bases are committed; `make prove`
    installs the controls)."""
    missing = [name for name in folders if not (MINI_FOLDER / name).is_dir()]
    return pytest.mark.skipif(
        bool(missing),
        reason=f"{', '.join(str(MINI_FOLDER / m) for m in missing)} absent: `make prove` installs the mini weights",
    )


def mini_settings(output_dir) -> Settings:
    return Settings.from_env(MINI_ENV, output_dir=output_dir)


def assert_scene_tracks(shown: Trajectories) -> None:
    """`shown`, resampled to the clip's frames, is the held-out scene's sprite tracks (pixel centres)."""
    expected_px = mini_video_scene().tracks_px.transpose(1, 0, 2)  # (K,T,2)
    shown_px = shown.tracks_norm(MINI_FRAMES, (MINI_SIDE, MINI_SIDE)) * MINI_SIDE - 0.5
    assert shown_px.shape == expected_px.shape and len(expected_px) > 0
    np.testing.assert_allclose(shown_px, expected_px, atol=1e-3)


def test_the_examples_are_held_out_scenes_at_the_mini_size(tmp_path):
    """Made without weights: held-out seeds only, MINI_SIDE px, the clip at MINI_FPS; written once."""
    assert MINI_SEED in held_out_seeds(1) and MINI_SEED not in train_seeds(100_000)
    image, depth, caption = mini_image_example(tmp_path)
    assert Image.open(image).size == (MINI_SIDE, MINI_SIDE) and Image.open(depth).mode.startswith("I;16")
    assert caption == make_image_scene((MINI_SIDE, MINI_SIDE), MINI_SEED).caption
    clip = read_video(mini_clip_example(tmp_path))
    assert (clip.num_frames, clip.fps, clip.size_hw) == (MINI_CLIP_FRAMES, MINI_FPS, (MINI_SIDE, MINI_SIDE))
    first_frame, tracks = mini_drag_example(tmp_path)
    np.testing.assert_array_equal(np.asarray(Image.open(first_frame)), mini_video_scene().frames_uint8[0])
    assert_scene_tracks(tracks)
    image.write_bytes(b"kept")  # an existing file is not written again
    assert mini_image_example(tmp_path)[0].read_bytes() == b"kept"


# -- drag ----------------------------------------------------------------------------------------------


@needs("svd", "svd_flow_controlnet")
def test_drag_example_loads_the_scene_tracks_and_the_controlnet_generates(monkeypatch, tmp_path, canvas):
    for name, value in {**MINI_ENV, "KINEMA_OUTPUT_DIR": str(tmp_path / "outputs")}.items():
        monkeypatch.setenv(name, value)
    at = AppTest.from_file(DRAG_APP, default_timeout=120).run()
    assert not at.exception and not at.error
    # The mini sample comes first, at the mini SVD's size, frames, fps and steps.
    assert at.selectbox(key="sample").value.startswith(MINI_EXAMPLE_LABEL)
    assert at.select_slider(key="max_side").value == MINI_SIDE
    starts = tuple(at.slider(key=name).value for name in ("frames", "fps", "steps"))
    assert starts == (MINI_FRAMES, MINI_FPS, MINI_STEPS)
    assert any("`mini`" in c.value and "toy models" in c.value for c in at.caption)

    # Picking it put the scene's sprite tracks on the canvas, over the clip's first frame.
    first = canvas.last()
    size = (first["width"], first["height"])

    def on_canvas() -> Trajectories:
        return parse_objects(canvas.last()["initial_drawing"]["objects"], size).trajectories

    assert_scene_tracks(on_canvas())
    # Under them the canvas shows the clip's first frame at the canvas's size, with the tracks' arrows.
    shown = ui_canvas.canvas_background(mini_video_scene().frames_uint8[0], size, on_canvas())
    np.testing.assert_array_equal(np.asarray(first["background_image"]), shown)

    # Deleting a drag, then loading the tracks again, brings all of them back.
    n_sprites = len(on_canvas())
    [b for b in at.button if b.label == "Delete"][0].click().run()
    assert len(on_canvas()) == n_sprites - 1
    (again,) = [b for b in at.button if b.label == "Load the scene's tracks again"]
    again.click().run()
    assert_scene_tracks(on_canvas())

    at.radio(key="backend").set_value("svd-controlnet").run()
    at.slider(key="steps").set_value(STEPS).run()
    generate_button(at).click().run()
    assert not at.exception and not at.error
    result = at.session_state["result"]
    assert result.frames_uint8.shape == (MINI_FRAMES, MINI_SIDE, MINI_SIDE, 3)
    assert_scene_tracks(Trajectories.from_json(result.request.trajectories.read_text()))
    assert result.record.settings["svd_controlnet_model"] == str(MINI_FOLDER / "svd_flow_controlnet")
    # the downloaded record names the weights' folder, not the server's path to it
    assert RunRecord.read(result.outputs.record).settings["svd_controlnet_model"] == "svd_flow_controlnet"


# -- joint depth ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def joint_client(tmp_path_factory):
    settings = mini_settings(tmp_path_factory.mktemp("joint_mini"))
    demo = joint_app.build_demo(settings)
    demo.queue().launch(
        prevent_thread_lock=True, quiet=True, **launch_kwargs(settings, *joint_app.SERVED_FOLDERS)
    )
    yield Client(demo.local_url, verbose=False)
    demo.close()


@needs("sd", "joint_lora")
def test_joint_depth_example_runs_all_three_modes_at_64_px(joint_client):
    banner, *sides = joint_client.predict("joint_lora", api_name="/startup")  # listed by name
    assert sides == [MINI_SIDE] * 4
    assert "`mini`" in banner and "toy models" in banner and "joint_lora" in banner
    image, depth, caption = mini_image_example()
    options = {
        "steps": STEPS,
        "guidance": 7.5,
        "seed": 0,
        "batch": 1,
        "weights": "joint_lora",
    }
    runs = {
        "/generate": (caption, "", MINI_SIDE, MINI_SIDE),
        "/image_to_depth": (handle_file(str(image)), caption, MINI_SIDE),
        "/depth_to_image": (handle_file(str(depth)), caption, "", MINI_SIDE),
    }
    for api_name, args in runs.items():
        images, depth_maps, _, _, status = joint_client.predict(*args, api_name=api_name, **options)
        assert "joint weights joint_lora" in status, status
        for gallery in (images, depth_maps):
            assert Image.open(gallery[0]["image"]).size == (MINI_SIDE, MINI_SIDE)


# -- keyframe ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keyframe_client(tmp_path_factory):
    settings = mini_settings(tmp_path_factory.mktemp("keyframe_mini"))
    demo = keyframe_app.build_demo(settings)
    demo.queue().launch(
        prevent_thread_lock=True, quiet=True, **launch_kwargs(settings, *keyframe_app.SERVED_FOLDERS)
    )
    yield Client(demo.local_url, verbose=False)
    demo.close()


@needs("svd", "svd_interp_lora")
def test_keyframe_example_inbetweens_with_the_mini_lora(keyframe_client):
    video, working_side, every = keyframe_client.predict(api_name="/mini_sample_video")
    assert (working_side, every) == (MINI_SIDE, MINI_KEY_EVERY)
    video = video["video"] if isinstance(video, dict) else video
    clip = read_video(video).frames_uint8.astype(float)
    scene = mini_video_scene(MINI_CLIP_FRAMES).frames_uint8.astype(float)
    assert clip.shape == scene.shape and np.abs(clip - scene).mean() < 3  # the held-out clip, through H.264
    status, _, keys_text, _ = keyframe_client.predict(
        handle_file(video),
        0,
        None,
        working_side,
        "uniform",
        every,
        "flow",
        None,
        "dis",
        api_name="/load_video",
    )
    assert keys_text == "0, 7, 14", status
    keyframe_client.predict(
        keys_text, backend="filter", filter="adjust", adjust_hue_deg=60.0, api_name="/edit_all"
    )
    for backend in ("svd-lora", "svd-trf"):
        result, _, downloads, status = keyframe_client.predict(
            keys_text, backend, None, "dis", 127, STEPS, 0, 8, api_name="/inbetween"
        )
        frames = read_video(result).frames_uint8
        assert frames.shape == (MINI_CLIP_FRAMES, MINI_SIDE, MINI_SIDE, 3), status
        record = RunRecord.read(next(p for p in downloads if p.endswith(".json")))
        assert record.arguments["inbetween"]["backend"] == backend
        assert record.settings["svd_interp_lora"] == "svd_interp_lora"  # the mini LoRA, by name only
