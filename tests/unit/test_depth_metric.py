"""core.metrics.ssi_absrel_delta1 on maps whose answer is known in closed form."""

import math

import numpy as np
import pytest

from core.errors import InputError
from core.metrics import ssi_absrel_delta1


@pytest.fixture
def target():
    """Disparity uniform on [0.5, 1] (depth 1..2), on a 128x128 grid."""
    return np.random.default_rng(0).uniform(0.5, 1.0, (128, 128))


def test_identical_maps_are_perfect(target):
    absrel, delta1 = ssi_absrel_delta1(target, target)
    assert absrel < 1e-12 and delta1 == 1.0


@pytest.mark.parametrize("scale, shift", [(3.0, -2.0), (0.01, 5.0), (250.0, 0.0)])
def test_scale_and_shift_are_aligned_away(target, scale, shift):
    absrel, delta1 = ssi_absrel_delta1(scale * target + shift, target)
    assert absrel < 1e-9 and delta1 == 1.0
    # The alignment is in disparity space: a map of depth (1 / disparity) is not an affine image of it.
    absrel_depth, _ = ssi_absrel_delta1(1.0 / target, target)
    assert absrel_depth > 0.01


def test_small_noise_gives_the_first_order_absrel(target):
    # aligned ~ target + n, n ~ N(0, sigma): AbsRel = E|t / a - 1| ~ E|n| E[1/t] = sigma sqrt(2/pi) 2 ln 2.
    sigma = 0.02
    noisy = target + np.random.default_rng(1).normal(0.0, sigma, target.shape)
    absrel, delta1 = ssi_absrel_delta1(noisy, target)
    expected = sigma * math.sqrt(2 / math.pi) * 2 * math.log(2)  # 0.0221
    assert absrel == pytest.approx(expected, rel=0.05)
    assert delta1 == 1.0  # a 25 % ratio error needs |n| > 0.1 = 5 sigma
    # More noise: worse on both counts.
    noisier = target + np.random.default_rng(1).normal(0.0, 0.1, target.shape)
    absrel_2, delta1_2 = ssi_absrel_delta1(noisier, target)
    assert absrel_2 > 3 * absrel and delta1_2 < delta1


def test_a_flat_map_scores_the_closed_form(target):
    # A constant carries no depth: the best fit is the target's mean 0.75, so AbsRel = E|t - 0.75| / 0.75 =
    # 1/6 and delta1 = P(0.6 < t < 0.9375) = 0.675 for t uniform on [0.5, 1].
    absrel, delta1 = ssi_absrel_delta1(np.full(target.shape, 7.0), target)
    assert absrel == pytest.approx(1 / 6, rel=0.02)
    assert delta1 == pytest.approx(0.675, abs=0.01)


def test_mask_and_invalid_pixels_are_left_out(target):
    broken = target.copy()
    broken[:10] = 100.0  # a band the mask removes
    mask = np.ones(target.shape, bool)
    mask[:10] = False
    assert ssi_absrel_delta1(broken, target, mask) == pytest.approx(ssi_absrel_delta1(target, target))
    assert ssi_absrel_delta1(broken, target)[1] < 1.0
    # Non-finite values and non-positive target disparities (e.g. the sky: 1/inf = 0) are never used.
    holes = target.copy()
    holes[0, :5] = [np.nan, np.inf, 0.0, -1.0, np.nan]
    pred = target.copy()
    pred[1, 0] = np.nan
    absrel, delta1 = ssi_absrel_delta1(pred, holes)
    assert absrel < 1e-12 and delta1 == 1.0


def test_bad_inputs_raise_input_error(target):
    with pytest.raises(InputError, match="one shape"):
        ssi_absrel_delta1(target, target[:5])
    with pytest.raises(InputError, match="mask"):
        ssi_absrel_delta1(target, target, np.ones((3, 3), bool))
    with pytest.raises(InputError, match="fewer than 2"):
        ssi_absrel_delta1(target, np.zeros_like(target))
