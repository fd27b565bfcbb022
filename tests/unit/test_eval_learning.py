import math

import pytest
import torch

from core.eval.learning import (
    HELD_OUT_SEED,
    Row,
    conditioning_gap,
    held_out_seeds,
    measure,
    shuffled,
    train_seeds,
)


def test_train_and_held_out_seeds_never_meet():
    assert set(train_seeds(1000)).isdisjoint(held_out_seeds(1000))
    assert held_out_seeds(2) == [HELD_OUT_SEED, HELD_OUT_SEED + 1]
    with pytest.raises(ValueError):
        train_seeds(HELD_OUT_SEED + 1)


def test_measure_is_mean_and_population_spread():
    m = measure([1.0, 3.0])
    assert (m.mean, m.spread, m.values) == (2.0, 1.0, (1.0, 3.0))
    assert measure([5]).spread == 0.0
    for bad in ([], [1.0, math.nan]):
        with pytest.raises(ValueError):
            measure(bad)


def test_row_as_json_holds_measures_and_baselines():
    row = Row("x", "m", measure([1.0]), {"base": measure([2.0, 4.0])}, "<= 0.5x base", True)
    payload = row.as_json()
    assert payload["baselines"]["base"]["mean"] == 3.0
    assert payload["value"]["values"] == (1.0,)


def test_conditioning_gap_and_shuffle():
    assert conditioning_gap(0.75, 1.0) == pytest.approx(0.25)
    assert conditioning_gap(1.0, 1.0) == 0.0
    with pytest.raises(ValueError):
        conditioning_gap(1.0, 0.0)
    condition = torch.arange(3.0)[:, None].expand(3, 4)
    rolled = shuffled(condition)
    assert not (rolled == condition).all(dim=1).any()  # no example keeps its own
    assert sorted(rolled[:, 0].tolist()) == [0.0, 1.0, 2.0]
    with pytest.raises(ValueError):
        shuffled(condition[:1])
