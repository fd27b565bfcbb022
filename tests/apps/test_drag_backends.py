"""apps.drag.backends: the registry, which backends the settings offer, and the one render all front ends call."""

from __future__ import annotations

import numpy as np
import pytest

from apps.drag import backends
from core.config import Settings
from core.engines.warp import animate
from core.errors import InputError
from core.motion import motion_bucket_from_flow
from core.trajectory import Trajectories, Trajectory

TRAJECTORIES = Trajectories((Trajectory([[0.3, 0.3], [0.6, 0.5]]), Trajectory([[0.8, 0.8]])))


def _image(height: int = 64, width: int = 64) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_warp_and_svd_are_always_offered():
    settings = Settings.from_env({})
    assert [b.name for b in backends.available_backends(settings)][:2] == ["warp", "svd"]
    assert backends.BACKENDS["warp"].env_var is None
    assert backends.BACKENDS["svd"].env_var == "KINEMA_SVD_MODEL"
    assert backends.BACKENDS["svd"].flag == "--svd-model"


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
        ("nope", {}, "Unknown backend 'nope'; choose one of warp, svd"),
        ("svd", {"strength": 1.5}, "strength must be in [0, 1]"),
        ("warp", {"camera": "spin"}, "Unknown camera move 'spin'"),
        ("svd", {"motion_bucket_id": 300}, "motion bucket"),
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
