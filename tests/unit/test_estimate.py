"""core.estimate: figures scale with steps, frames and size as documented; the clock converges to the job's own
rate; nothing measured means unknown."""

from __future__ import annotations

import math

import pytest

from core import estimate as est


@pytest.fixture
def figures(monkeypatch):
    """Two measured sizes of one kind on a fake device: 0.1 s per unit at 64 px, 0.4 s at 128 px (power 1)."""
    table = (
        est.Figure("dev", "svd", "mini", 64, 0.1, "test"),
        est.Figure("dev", "svd", "mini", 128, 0.4, "test"),
        est.Figure("dev", "joint", "full", 512, 0.05, "test"),
    )
    monkeypatch.setattr(est, "FIGURES", table)
    return table


def test_seconds_scale_with_steps_frames_and_calls(figures):
    one = est.estimate(est.svd_inbetween_job("mini", (64, 64), [7], 10, "svd-lora"), "dev")
    assert one.seconds == pytest.approx(10 * 8 * 0.1)  # 10 steps of a gap of 7: 8 frames
    more_steps = est.estimate(est.svd_inbetween_job("mini", (64, 64), [7], 20, "svd-lora"), "dev")
    assert more_steps.seconds == pytest.approx(2 * one.seconds)
    two_segments = est.estimate(est.svd_inbetween_job("mini", (64, 64), [7, 7, 1], 10, "svd-lora"), "dev")
    assert two_segments.seconds == pytest.approx(2 * one.seconds)  # a gap of 1 has nothing to generate
    assert two_segments.job.steps == 20
    trf = est.estimate(est.svd_inbetween_job("mini", (64, 64), [7], 10, "svd-trf"), "dev")
    assert trf.seconds == pytest.approx(2 * one.seconds)
    # Re-injection: the first ceil(10 / 2) = 5 steps are taken 1 + 2 times: 10 + 5 * 2 = 20 step costs.
    reinjected = est.estimate(est.svd_inbetween_job("mini", (64, 64), [7], 10, "svd-lora", repeats=2), "dev")
    assert reinjected.seconds == pytest.approx(2 * one.seconds)


def test_size_follows_the_power_between_measured_sizes(figures):
    def seconds(side_hw):
        return est.estimate(est.svd_inbetween_job("mini", side_hw, [7], 1, "svd-lora"), "dev").seconds

    assert seconds((64, 64)) == pytest.approx(0.8)
    assert seconds((128, 128)) == pytest.approx(3.2)
    assert seconds((64, 128)) == pytest.approx(1.6)  # between: twice the pixels, twice the time (power 1)
    assert seconds((256, 256)) == pytest.approx(12.8)  # beyond: the nearest pair's power
    # One measured size: linear in pixels.
    joint = est.estimate(est.joint_job("full", (256, 512), 2, 30), "dev")
    assert joint.seconds == pytest.approx(0.05 * 0.5 * 2 * 30)


def test_sd_edit_runs_steps_times_strength():
    job = est.sd_edit_job("mini", (64, 64), keyframes=3, steps=30, strength=0.5)
    assert job.steps == 15 and job.step_units() == [3.0] * 15
    assert est.sd_edit_job("mini", (64, 64), 1, 30, 0.01).steps == 1


def test_unknown_device_or_model_is_unknown(figures):
    job = est.svd_inbetween_job("mini", (64, 64), [7], 10, "svd-lora")
    real_weights = est.Job("svd", "some/real-weights", (64, 64), job.segments)
    for unknown in (est.estimate(job, "cuda:Some GPU"), est.estimate(real_weights, "dev")):
        assert unknown.seconds is None and unknown.unit_s is None
        assert "unknown" in unknown.text()
    assert est.model_class("tiny") == "tiny" and est.model_class("/models/svd-xt") == "full"


def test_the_shipped_figures_give_cpu_estimates_for_the_presets():
    for model in ("tiny", "mini"):
        job = est.svd_inbetween_job(model, (64, 64), [7], 15, "svd-trf")
        assert math.isfinite(est.estimate(job, "cpu").seconds), model
    assert all(f.unit_s > 0 and f.source for f in est.FIGURES)


def test_clock_converges_to_the_observed_rate_and_counts_segments(figures):
    now = [0.0]
    job = est.svd_inbetween_job("mini", (64, 64), [7, 7], 10, "svd-lora")  # the figure says 0.8 s per step
    clock = est.StepClock(est.estimate(job, "dev"), clock=lambda: now[0])
    assert clock.seconds_left() == pytest.approx(16.0)
    assert clock.text().startswith("segment 1 of 2, step 0 of 10 - 0%")
    for _ in range(13):  # this device takes 3 s per step
        now[0] += 3.0
        clock.step()
    assert clock.position() == (2, 2, 3, 10)
    assert clock.fraction == pytest.approx(13 / 20)
    assert clock.seconds_left() == pytest.approx(7 * 3.0, rel=0.02)  # the prior weighs one unit of 104
    assert clock.text() == "segment 2 of 2, step 3 of 10 - 65% - about 21 s left"


def test_clock_without_a_figure_waits_for_the_first_step(figures):
    now = [0.0]
    job = est.joint_job("mini", (64, 64), 1, 4)
    clock = est.StepClock(est.estimate(job, "dev"), clock=lambda: now[0])
    assert clock.seconds_left() is None and clock.text() == "step 0 of 4 - 0%"
    now[0] += 2.0
    clock.step()
    assert clock.seconds_left() == pytest.approx(6.0)
    assert clock.text() == "step 1 of 4 - 25% - about 6 s left"


@pytest.mark.parametrize(
    "seconds,text", [(4.4, "4 s"), (89, "89 s"), (185, "3 min 5 s"), (1500, "25 min"), (7450, "2 h 4 min")]
)
def test_format_seconds(seconds, text):
    assert est.format_seconds(seconds) == text
