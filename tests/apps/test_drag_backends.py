"""apps.drag.backends: the registry, which backends the settings offer, and the one render all front ends
call, on the warp and on the real tiny SVD pipelines (random weights: the tests check the plumbing)."""

from __future__ import annotations

import numpy as np
import pytest

from apps.drag import backends
from core.config import Settings
from core.controlnet_svd import flow_condition
from core.engines.warp import CAMERA_PRESETS, animate
from core.errors import InputError, ModelNotAvailable
from core.imaging import unit_to_uint8
from core.motion import motion_bucket_from_flow
from core.trajectory import CameraMotion, Trajectories, Trajectory

TRAJECTORIES = Trajectories((Trajectory([[0.3, 0.3], [0.6, 0.5]]), Trajectory([[0.8, 0.8]])))
ALL = ["warp", "svd", "svd-controlnet", "svd-joint-flow"]


@pytest.fixture(scope="module")
def tiny() -> Settings:
    return Settings.from_env(
        {}, svd_model="tiny", svd_controlnet_model="tiny", svd_joint_flow_model="tiny", device="cpu"
    )


class Spy:
    """A pipeline that records each call (args, kwargs, output) and otherwise is the real one."""

    def __init__(self, pipe) -> None:
        self.pipe, self.calls = pipe, []

    def __getattr__(self, name: str):
        return getattr(self.pipe, name)

    def __call__(self, *args, **kwargs):
        out = self.pipe(*args, **kwargs)
        self.calls.append((args, kwargs, out))
        return out


def _image(height: int = 64, width: int = 64) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.mark.parametrize(
    ("environ", "offered"),
    [
        ({}, ALL[:2]),
        ({"KINEMA_SVD_CONTROLNET_MODEL": "tiny"}, ALL[:3]),
        ({"KINEMA_SVD_JOINT_FLOW_MODEL": "/weights/joint"}, ["warp", "svd", "svd-joint-flow"]),
        ({"KINEMA_SVD_CONTROLNET_MODEL": "cn", "KINEMA_SVD_JOINT_FLOW_MODEL": "tiny"}, ALL),
    ],
)
def test_the_offered_backends_are_those_whose_weights_are_configured(environ, offered):
    settings = Settings.from_env(environ)
    assert [b.name for b in backends.available_backends(settings)] == offered
    for name in set(ALL) - set(offered):
        setting = backends.BACKENDS[name].setting
        with pytest.raises(ModelNotAvailable) as caught:
            backends.require(name, settings)
        assert f"(the {name} backend needs them)" in str(caught.value)
        assert f"KINEMA_{setting.upper()} (or --{setting.replace('_', '-')})" in str(caught.value)
    assert backends.BACKENDS["svd-controlnet"].setting == "svd_controlnet_model"
    assert backends.BACKENDS["svd-joint-flow"].setting == "svd_joint_flow_model"
    assert [b.name for b in backends.BACKENDS.values() if b.experimental] == ["svd-joint-flow"]
    # The app shows a strength slider, with the backend's label, exactly for the backends that take one.
    takes_strength = [b.name for b in backends.BACKENDS.values() if b.default_strength is not None]
    assert (
        [b.name for b in backends.BACKENDS.values() if b.strength_label]
        == takes_strength
        == ["svd", "svd-controlnet"]
    )


@pytest.mark.parametrize(
    ("environ", "name", "label"),
    [
        ({"KINEMA_SVD_MODEL": "tiny"}, "svd", "SVD (tiny random weights: outputs are noise)"),
        (
            {"KINEMA_SVD_MODEL": "mini", "KINEMA_SVD_CONTROLNET_MODEL": "mini"},
            "svd-controlnet",
            "SVD + flow ControlNet (mini, trained)",
        ),
        (
            {"KINEMA_SVD_MODEL": "tiny", "KINEMA_SVD_CONTROLNET_MODEL": "mini"},
            "svd-controlnet",
            "SVD + flow ControlNet (SVD tiny random weights; ControlNet mini, trained: outputs are noise)",
        ),
        (
            {"KINEMA_SVD_MODEL": "/w/svd-xt", "KINEMA_SVD_CONTROLNET_MODEL": "/w/cn"},
            "svd-controlnet",
            "SVD + flow ControlNet (SVD /w/svd-xt; ControlNet /w/cn)",
        ),
        ({}, "warp", "Warp preview (instant, no weights)"),
    ],
)
def test_each_backend_is_labelled_with_the_weights_it_runs(environ, name, label):
    assert backends.loaded_label(name, Settings.from_env(environ)) == label


def test_render_warp_is_the_warp_engine_with_progress_to_the_end():
    image = _image()
    events: list[backends.RenderProgress] = []
    video = backends.render("warp", image, TRAJECTORIES, num_frames=5, strength=0.7, progress=events.append)
    warp = animate(image, TRAJECTORIES, 5)
    np.testing.assert_array_equal(video.frames_uint8, warp.frames_uint8)
    np.testing.assert_array_equal(video.flow_px, warp.flow_px)
    assert video.motion_bucket_id == motion_bucket_from_flow(warp.flow_px, 7)
    assert video.strength is None  # the warp takes no strength
    assert [(e.stage, e.done, e.total) for e in events] == [("warp", k, 5) for k in range(1, 6)]
    assert events[-1].fraction == 1.0 and events[-1].text == "Warping frame 5 of 5"


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("nope", {}, "Unknown backend 'nope'; choose one of warp, svd, svd-controlnet, svd-joint-flow"),
        ("svd", {"strength": 1.5}, "strength must be in [0, 1]"),
        ("warp", {"camera": "spin"}, "Unknown camera move 'spin'"),
        ("svd", {"motion_bucket_id": 300}, "motion bucket"),
        ("warp", {"controlnet_scale": -1.0}, "ControlNet scale must be a number of at least 0"),
    ],
)
def test_bad_options_are_refused_before_any_work(name, options, message):
    with pytest.raises(InputError, match=message.replace("[", r"\[").replace("]", r"\]")):
        backends.render(name, _image(), TRAJECTORIES, num_frames=3, **options)


def test_the_cli_progress_shows_one_bar_per_stage(capsys):
    from apps.drag.cli import TqdmProgress

    with TqdmProgress() as progress:
        backends.render("warp", _image(), TRAJECTORIES, num_frames=4, progress=progress)
    err = capsys.readouterr().err
    assert "warp: 100%" in err and "4/4" in err


def test_condition_tracks_are_the_drawn_ones_plus_a_camera_grid():
    size = (64, 48)
    np.testing.assert_array_equal(
        backends.condition_tracks_norm(TRAJECTORIES, None, 5, size), TRAJECTORIES.tracks_norm(5, size)
    )
    panned = backends.condition_tracks_norm(TRAJECTORIES, CameraMotion(pan_x=0.15), 5, size)
    assert panned.shape == (2 + 9, 5, 2)
    np.testing.assert_array_equal(panned[:2], TRAJECTORIES.tracks_norm(5, size))
    np.testing.assert_allclose(panned[2:, :, 0] - panned[2:, :1, 0], np.tile(np.linspace(0, 0.15, 5), (9, 1)))
    np.testing.assert_allclose(panned[2:, :, 1], panned[2:, :1, 1].repeat(5, axis=1))
    zoomed = backends.condition_tracks_norm(TRAJECTORIES, CameraMotion(zoom=1.25), 3, size)
    np.testing.assert_allclose(zoomed[2 + 4], [[0.5, 0.5]] * 3, atol=1e-12)  # the centre stays
    np.testing.assert_allclose(zoomed[2, -1], 0.5 - 1.25 * (0.5 - zoomed[2, 0]))  # a corner point spreads


def test_controlnet_backend_feeds_the_tracks_flow_and_scale_and_zero_init_is_plain_svd(tiny):
    image = _image(32, 32)
    spy = Spy(backends.load("svd-controlnet", tiny))
    options = {"num_frames": 3, "num_inference_steps": 2, "camera": "pan_right", "settings": tiny, "seed": 3}
    video = backends.render(
        "svd-controlnet", image, TRAJECTORIES, controlnet_scale=0.5, pipeline=spy, **options
    )
    ((args, kwargs, out),) = spy.calls
    tracks = backends.condition_tracks_norm(TRAJECTORIES, CAMERA_PRESETS["pan_right"], 3, (32, 32))
    scale_px = spy.pipe.controlnet.config.flow_scale_px
    np.testing.assert_array_equal(
        kwargs["flow_condition"], flow_condition(tracks, 32, 32, flow_scale_px=scale_px)
    )
    assert kwargs["controlnet_conditioning_scale"] == 0.5 and kwargs["strength"] == 1.0 == video.strength
    np.testing.assert_array_equal(args[1], video.warp.frames_uint8)  # the guide, used below strength 1
    np.testing.assert_array_equal(video.frames_uint8, unit_to_uint8(out.frames[0]))
    np.testing.assert_array_equal(video.flow_px, video.warp.flow_px)

    # The tiny ControlNet is zero-initialised: exactly the svd backend's video at the same strength.
    plain = backends.render("svd", image, TRAJECTORIES, strength=1.0, **options)
    np.testing.assert_array_equal(video.frames_uint8, plain.frames_uint8)
    assert plain.controlnet_scale is None
    assert backends.load("svd", tiny).controlnet is None  # the ControlNet stays on its own pipeline


def test_joint_flow_backend_returns_its_generated_flow(tiny):
    image = _image(32, 32)
    spy = Spy(backends.load("svd-joint-flow", tiny))
    events: list[backends.RenderProgress] = []
    video = backends.render(
        "svd-joint-flow", image, TRAJECTORIES, num_frames=3, num_inference_steps=2, settings=tiny,
        pipeline=spy, progress=events.append,
    )  # fmt: skip
    ((args, kwargs, out),) = spy.calls
    np.testing.assert_array_equal(args[1], TRAJECTORIES.tracks_norm(3, (32, 32)))
    assert kwargs["num_inference_steps"] == 2 and video.strength is None
    assert out.flows_px.shape == (1, 3, 32, 32, 2)
    np.testing.assert_array_equal(video.flow_px, out.flows_px[0, 1:])  # entry t: frame t -> t+1
    assert not np.array_equal(video.flow_px, video.warp.flow_px)
    np.testing.assert_array_equal(video.frames_uint8, unit_to_uint8(out.frames[0]))
    assert [(e.stage, e.done, e.total) for e in events][-3:] == [("svd", 0, 2), ("svd", 1, 2), ("svd", 2, 2)]
    fractions = [e.fraction for e in events]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
