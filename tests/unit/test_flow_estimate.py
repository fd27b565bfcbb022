"""core.flow.estimate: estimators measured against known flow on real photos (256 px), video, occlusion.

Full-size figures: tests/unit/test_eval_flow.py (slow) and `python -m core.eval.flow`.
"""

import sys
import types
from importlib.util import find_spec

import numpy as np
import pytest
import torch

from core.errors import InputError, ModelNotAvailable
from core.eval.fixtures import PHOTOS, load_photo
from core.eval.flow import motorcycle_case, synthetic_case
from core.eval.metrics import endpoint_error
from core.flow import estimate_flow, estimate_video_flow, occlusion_mask
from core.flow.estimate import _load_raft

SIZE_PX = 256
# Upper bounds on EPE (px) at 256 px, about twice the worst of the three photos measured with
# `python -m core.eval.flow --max-side 256`.
BOUNDS = {
    "dis": {
        "shift_int": 0.5,
        "shift_subpx": 0.5,
        "zoom": 0.4,
        "rotation": 1.0,
        "bump": 0.3,
        "smooth_random": 0.8,
    },
    "dis_ultrafast": {
        "shift_int": 0.7,
        "shift_subpx": 0.5,
        "zoom": 1.0,
        "rotation": 2.0,
        "bump": 0.6,
        "smooth_random": 1.5,
    },
    "farneback": {
        "shift_int": 0.5,
        "shift_subpx": 0.4,
        "zoom": 1.2,
        "rotation": 1.6,
        "bump": 0.6,
        "smooth_random": 1.0,
    },
}


@pytest.fixture(scope="module")
def photos():
    return {name: load_photo(name, SIZE_PX) for name in PHOTOS}


@pytest.mark.parametrize("method", sorted(BOUNDS))
@pytest.mark.parametrize("motion", ["shift_int", "shift_subpx", "zoom", "rotation", "bump", "smooth_random"])
def test_estimators_recover_known_motion_of_real_photos(photos, method, motion):
    for name, image in photos.items():
        case = synthetic_case(image, motion)
        flow = estimate_flow(case.frame_a_uint8, case.frame_b_uint8, method)
        assert flow.dtype == np.float32 and flow.shape == (*image.shape[:2], 2)
        epe = endpoint_error(flow, case.flow_px, case.valid)
        zero_epe = endpoint_error(np.zeros_like(flow), case.flow_px, case.valid)
        assert epe < BOUNDS[method][motion], f"{method} on {name}/{motion}: EPE {epe:.3f} px"
        assert epe < 0.7 * zero_epe, f"{method} on {name}/{motion} barely beats zero flow"


def test_dis_is_under_half_a_pixel_on_pure_shifts(photos):
    for image in photos.values():
        for motion in ("shift_int", "shift_subpx"):
            case = synthetic_case(image, motion)
            flow = estimate_flow(case.frame_a_uint8, case.frame_b_uint8, "dis")
            assert endpoint_error(flow, case.flow_px, case.valid) < 0.5


@pytest.mark.parametrize(("method", "fraction"), [("dis", 0.15), ("dis_ultrafast", 0.3), ("farneback", 0.7)])
def test_middlebury_motorcycle_sanity(method, fraction):
    # A real stereo pair (flow = -disparity); a loose bound relative to the motion itself, no tuning.
    case = motorcycle_case(scale=SIZE_PX / 741)
    flow = estimate_flow(case.frame_a_uint8, case.frame_b_uint8, method)
    mean_motion = float(np.linalg.norm(case.flow_px, axis=2)[case.valid].mean())
    assert mean_motion > 10
    assert endpoint_error(flow, case.flow_px, case.valid) < fraction * mean_motion


def test_video_flow_matches_pairwise_estimates_and_shows_progress(photos, capsys):
    image = photos["chelsea"]
    frames = np.stack([np.roll(image, 2 * t, axis=1) for t in range(4)])
    flows = estimate_video_flow(frames, "dis", progress=True)
    assert flows.shape == (3, *image.shape[:2], 2) and flows.dtype == np.float32
    for t in range(3):
        assert np.array_equal(flows[t], estimate_flow(frames[t], frames[t + 1], "dis"))
    assert np.median(flows[..., 0]) == pytest.approx(2, abs=0.05)
    assert "flow (dis)" in capsys.readouterr().err


def test_occlusion_mask_of_consistent_shift_flags_only_what_leaves_the_frame():
    fw = np.zeros((32, 40, 2), np.float32)
    fw[..., 0] = 3
    occluded = occlusion_mask(fw, -fw)
    assert not occluded[:, :37].any()
    assert occluded[:, 37:].all()


def test_occlusion_mask_flags_inconsistent_region_with_standard_bounds():
    fw = np.zeros((32, 32, 2), np.float32)
    bw = np.zeros((32, 32, 2), np.float32)
    bw[10:20, 10:20, 0] = 0.6  # |fw + bw|^2 = 0.36 < 0.5: still consistent
    bw[20:30, 10:20, 0] = 0.8  # 0.64 >= 0.5 + 0.01 * 0.64: inconsistent
    occluded = occlusion_mask(fw, bw, alpha=0.01, beta=0.5)
    assert not occluded[:20].any()
    assert occluded[20:30, 10:20].all() and occluded[20:30].sum() == 100


def test_occlusion_mask_finds_background_covered_by_a_moving_object(photos):
    background = photos["astronaut"]
    patch = photos["chelsea"][:64, 40:104]
    frame_a, frame_b = background.copy(), background.copy()
    frame_a[96:160, 80:144] = patch
    frame_b[96:160, 88:152] = patch  # the patch moves 8 px right and covers 8 columns of background
    fw, bw = estimate_flow(frame_a, frame_b), estimate_flow(frame_b, frame_a)
    occluded = occlusion_mask(fw, bw)
    truth = np.zeros(occluded.shape, bool)
    truth[96:160, 144:152] = True
    assert occluded[truth].mean() > 0.4  # measured 0.60
    assert occluded[~truth].mean() < 0.05  # measured 0.015


@pytest.mark.parametrize(
    ("frame_a", "frame_b"),
    [
        (np.zeros((32, 32, 3), np.uint8), np.zeros((32, 40, 3), np.uint8)),
        (np.zeros((32, 32, 3), np.float32), np.zeros((32, 32, 3), np.float32)),
        (np.zeros((32, 32), np.uint8), np.zeros((32, 32), np.uint8)),
        (np.zeros((32, 32, 4), np.uint8), np.zeros((32, 32, 4), np.uint8)),
        (np.zeros((0, 32, 3), np.uint8), np.zeros((0, 32, 3), np.uint8)),
        (np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3), np.uint8)),
        ([[0]], [[0]]),
    ],
)
def test_estimate_flow_rejects_bad_frames(frame_a, frame_b):
    with pytest.raises(InputError):
        estimate_flow(frame_a, frame_b)


def test_bad_method_and_bad_video_are_input_errors():
    frames = np.zeros((3, 32, 32, 3), np.uint8)
    with pytest.raises(InputError, match="dis"):
        estimate_flow(frames[0], frames[1], "pwc")
    for bad in (frames[:1], frames[0], frames.astype(np.float32), np.zeros((3, 32, 32, 3, 1), np.uint8)):
        with pytest.raises(InputError):
            estimate_video_flow(bad)


@pytest.mark.skipif(find_spec("torchvision") is not None, reason="torchvision is installed")
def test_raft_without_torchvision_is_a_clear_model_not_available():
    frame = np.zeros((32, 32, 3), np.uint8)
    with pytest.raises(ModelNotAvailable, match="torchvision"):
        estimate_flow(frame, frame, "raft")


class _EchoRaft(torch.nn.Module):
    """Stands in for RAFT: returns the red channels of its two inputs as the 'flow'."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))

    def forward(self, image1, image2):
        assert image1.shape[-2] % 8 == 0 and image1.shape[-1] % 8 == 0 and image1.shape[-2] >= 128
        return [torch.cat([image1[:, :1], image2[:, :1]], dim=1) * self.scale]


@pytest.fixture
def fake_torchvision(monkeypatch, tmp_path):
    """A torchvision stand-in whose RAFT weights live in a temporary torch hub cache."""
    name = "raft_large_test-0000.pth"
    weights = types.SimpleNamespace(
        DEFAULT=types.SimpleNamespace(url=f"https://example.invalid/models/{name}")
    )
    optical_flow = types.ModuleType("torchvision.models.optical_flow")
    optical_flow.Raft_Large_Weights = weights
    optical_flow.raft_large = lambda weights=None: _EchoRaft()
    for module in ("torchvision", "torchvision.models"):
        monkeypatch.setitem(sys.modules, module, types.ModuleType(module))
    monkeypatch.setitem(sys.modules, "torchvision.models.optical_flow", optical_flow)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    _load_raft.cache_clear()
    yield tmp_path / "hub" / "checkpoints" / name
    _load_raft.cache_clear()


def test_raft_without_cached_weights_names_the_file_and_never_downloads(fake_torchvision):
    frame = np.zeros((32, 32, 3), np.uint8)
    with pytest.raises(ModelNotAvailable, match="raft_large_test-0000.pth"):
        estimate_flow(frame, frame, "raft")


def test_raft_glue_normalises_pads_and_crops(fake_torchvision):
    fake_torchvision.parent.mkdir(parents=True)
    torch.save(_EchoRaft().state_dict(), fake_torchvision)
    rng = np.random.default_rng(0)
    frame_a, frame_b = (rng.integers(0, 256, (37, 50, 3), dtype=np.uint8) for _ in range(2))
    flow = estimate_flow(frame_a, frame_b, "raft")
    assert flow.shape == (37, 50, 2) and flow.dtype == np.float32
    np.testing.assert_allclose(flow[..., 0], frame_a[..., 0] / 127.5 - 1, atol=1e-6)
    np.testing.assert_allclose(flow[..., 1], frame_b[..., 0] / 127.5 - 1, atol=1e-6)


def test_raft_recovers_a_shift_when_installed(photos):
    pytest.importorskip("torchvision")
    case = synthetic_case(photos["astronaut"], "shift_subpx")
    try:
        flow = estimate_flow(case.frame_a_uint8, case.frame_b_uint8, "raft")
    except ModelNotAvailable as err:
        pytest.skip(str(err))
    assert endpoint_error(flow, case.flow_px, case.valid) < 0.5
