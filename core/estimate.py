"""How long a diffusion job will take: an estimate before it starts, refined from its own steps as it runs.

A job is a :class:`Job`: a kind of pipeline (:data:`KINDS`), the model that runs it, the working size and its
segments (one pipeline call each: SVD inbetweening makes one per pair of keyframes). A segment is ``steps``
denoising steps over ``frames`` images (video frames, keyframes edited together, joint samples); each step
costs ``calls`` evaluations of the pipeline's step as measured (2 for svd-trf, which predicts forward and
backward), and its first ``reinjected_steps`` steps ``1 + repeats`` times that (noise re-injection). Costs are
counted in *units*: one measured step of one frame.

Seconds per unit come from :data:`FIGURES`, measured per device, kind and model, at one or more square sizes.
Time grows linearly with frames, and with the pixel count by the power fitted between the two nearest measured
sizes (outside them, the nearest pair's power; one size only: linearly). Model ``tiny`` and ``mini`` are the
presets; any other model setting counts as ``full`` (the real SD / SVD architectures). Where nothing is measured
for the device, kind and model, the estimate is unknown (``seconds`` None) rather than a guess.

Devices are named by :func:`device_name`: ``cpu`` or ``cuda:<GPU name>``. The CPU figures were measured on a
2-core machine with one torch thread per process (``OMP_NUM_THREADS=1``) by ``tests/benchmarks/step_times.py``;
another CPU runs at another speed, which is why :class:`StepClock` replaces the figure by the job's own rate as
its steps come in.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from core.models.presets import MINI, TINY

KINDS = ("joint", "sd-edit", "svd")  # joint SD pair (image + depth); SD img2img over keyframes; an SVD video


@dataclass(frozen=True)
class Figure:
    """A measured step time: ``unit_s`` seconds per denoising step per frame, for ``kind`` on ``device`` with
    ``model`` ("tiny", "mini" or "full") at ``side_px`` x ``side_px``; ``source`` says how it was measured."""

    device: str
    kind: str
    model: str
    side_px: int
    unit_s: float
    source: str


_CPU = "tests/benchmarks/step_times.py, 2-core x86 CPU shared with other jobs, OMP_NUM_THREADS=1, 2026-12-05"
# The lowest of repeated runs (the machine was shared, so slower runs measured the neighbours). SD: guidance 7.5
# (the batch doubled); svd: one prediction per step (svd-lora's pass; svd-trf is calls=2 of it).
FIGURES: tuple[Figure, ...] = (
    Figure("cpu", "joint", MINI, 64, 0.2003, _CPU),
    Figure("cpu", "sd-edit", MINI, 64, 0.0902, _CPU),
    Figure("cpu", "sd-edit", MINI, 128, 0.1568, _CPU),
    Figure("cpu", "svd", MINI, 64, 0.0572, _CPU),
    Figure("cpu", "svd", MINI, 128, 0.1508, _CPU),
    Figure("cpu", "joint", TINY, 64, 0.2414, _CPU),
    Figure("cpu", "sd-edit", TINY, 64, 0.1081, _CPU),
    Figure("cpu", "svd", TINY, 64, 0.4359, _CPU),
    Figure(
        "cuda:NVIDIA H200",
        "joint",
        "full",
        512,
        0.035,
        "make bench-gpu on an H200, 2026-12-04 (README, 'GPU memory and speed'): ~35 ms per joint SD step, fp16",
    ),
)


def model_class(model: str) -> str:
    """The figures' name for a model setting: the presets by name, anything else (real weights) "full"."""
    return model if model in (TINY, MINI) else "full"


def device_name(device: str) -> str:
    """``cpu``, ``mps`` or ``cuda:<GPU name>`` for a resolved torch device ("cuda", "cuda:1", "cpu" ...)."""
    if not device.startswith("cuda"):
        return device.split(":")[0]
    import torch

    return f"cuda:{torch.cuda.get_device_name(torch.device(device))}"


@dataclass(frozen=True)
class Segment:
    """One pipeline call: ``steps`` steps over ``frames`` images; ``calls`` measured steps per step; the first
    ``reinjected_steps`` steps are taken ``1 + repeats`` times."""

    steps: int
    frames: int = 1
    calls: float = 1.0
    reinjected_steps: int = 0
    repeats: int = 0

    def step_units(self) -> list[float]:
        """The cost of each step, in units (one measured step of one frame)."""
        base = self.frames * self.calls
        return [base * (1 + (self.repeats if i < self.reinjected_steps else 0)) for i in range(self.steps)]


@dataclass(frozen=True)
class Job:
    """A diffusion job: ``kind`` (one of :data:`KINDS`) with ``model`` (a model setting) at ``side_hw`` px."""

    kind: str
    model: str
    side_hw: tuple[int, int]
    segments: tuple[Segment, ...]

    @property
    def steps(self) -> int:
        return sum(s.steps for s in self.segments)

    def step_units(self) -> list[float]:
        """The cost of every step of the job in order, in units."""
        return [units for segment in self.segments for units in segment.step_units()]


def svd_inbetween_job(
    model: str, side_hw: tuple[int, int], gaps: Sequence[int], steps: int, backend: str, repeats: int = 0
) -> Job:
    """SVD inbetweening: one segment per keyframe gap of >= 2 frames (``gaps``: frame differences of neighbouring
    keyframes), each ``gap + 1`` frames; svd-trf predicts twice per step; noise re-injection repeats the first
    half of the steps (as core.pipelines.svd_interpolate does)."""
    calls = 2.0 if backend == "svd-trf" else 1.0
    segments = tuple(
        Segment(steps, gap + 1, calls, -(-steps // 2) if repeats else 0, repeats) for gap in gaps if gap >= 2
    )
    return Job("svd", model, side_hw, segments)


def sd_edit_job(model: str, side_hw: tuple[int, int], keyframes: int, steps: int, strength: float) -> Job:
    """SD img2img over ``keyframes`` at once: ``int(steps * strength)`` steps run (at least 1)."""
    return Job("sd-edit", model, side_hw, (Segment(max(1, int(steps * strength)), keyframes),))


def joint_job(model: str, side_hw: tuple[int, int], batch: int, steps: int) -> Job:
    """The joint SD pipeline: ``batch`` samples of image + depth."""
    return Job("joint", model, side_hw, (Segment(steps, batch),))


def unit_seconds(device: str, kind: str, model: str, side_hw: tuple[int, int]) -> tuple[float, Figure] | None:
    """Seconds per unit at ``side_hw`` from :data:`FIGURES` (scaled by pixel count as the module says), with
    the nearest figure used; None when nothing is measured for this device, kind and model class."""
    figures = sorted(
        (f for f in FIGURES if f.device == device and f.kind == kind and f.model == model_class(model)),
        key=lambda f: f.side_px,
    )
    if not figures:
        return None
    pixels = side_hw[0] * side_hw[1]
    if len(figures) == 1:
        figure = figures[0]
        return figure.unit_s * pixels / figure.side_px**2, figure
    # The pair of measured sizes around this size (or the nearest pair outside them).
    upper = next((i for i, f in enumerate(figures) if f.side_px**2 >= pixels), len(figures) - 1)
    low, high = figures[max(upper - 1, 0)], figures[max(upper, 1)]
    power = math.log(high.unit_s / low.unit_s) / math.log(high.side_px**2 / low.side_px**2)
    nearest = min((low, high), key=lambda f: abs(math.log(pixels / f.side_px**2)))
    return nearest.unit_s * (pixels / nearest.side_px**2) ** power, nearest


@dataclass(frozen=True)
class Estimate:
    """``seconds`` of denoising for ``job`` on ``device`` at ``unit_s`` seconds per unit, from ``figure``
    (all None: unknown)."""

    job: Job
    device: str
    unit_s: float | None = None
    figure: Figure | None = None

    @property
    def seconds(self) -> float | None:
        return None if self.unit_s is None else self.unit_s * sum(self.job.step_units())

    def text(self) -> str:
        """One line for the UI, e.g. "Estimate: about 40 s (30 steps, mini model on cpu)."."""
        model = model_class(self.job.model)
        if self.seconds is None:
            return (
                f"Estimate: unknown (nothing measured for the {model} model on {self.device}); "
                f"{self.job.steps} steps, timed as they run."
            )
        return f"Estimate: about {format_seconds(self.seconds)} ({self.job.steps} steps, {model} model on {self.device})."


def estimate(job: Job, device: str) -> Estimate:
    """The time ``job`` takes on ``device`` (a :func:`device_name`) from the measured figures."""
    found = unit_seconds(device, job.kind, job.model, job.side_hw)
    return Estimate(job, device, *found) if found else Estimate(job, device)


def format_seconds(seconds: float) -> str:
    """ "12 s", "3 min 5 s", "2 h 4 min": rounded to what a person waiting cares about."""
    seconds = max(0, round(seconds))
    if seconds < 90:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s" if minutes < 10 and seconds else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


PRIOR_UNITS = 1.0  # how many units of observed time outweigh the measured figure (halfway after one unit)


class StepClock:
    """Progress of a running job, fed one call of :meth:`step` per denoising step (pipelines'
    ``callback_on_step_end``): where it is ("segment k of n, step i of N"), the overall percent (by cost) and
    the time left.

    The rate (seconds per unit) starts at the estimate's and moves to the job's own: after ``u`` units done in
    ``t`` seconds it is ``(t + PRIOR_UNITS * prior) / (u + PRIOR_UNITS)``, so an unknown or wrong figure is
    replaced by what this device does within a few steps.
    """

    def __init__(self, prior: Estimate, clock: Callable[[], float] = time.perf_counter):
        self.job = prior.job
        self._prior_unit_s = prior.unit_s
        self._units = self.job.step_units()
        self._total = sum(self._units) or 1.0
        self._clock = clock
        self._started = clock()
        self.done = 0

    def step(self) -> None:
        """One more step finished."""
        self.done = min(self.done + 1, len(self._units))

    @property
    def fraction(self) -> float:
        """Done, by cost, in [0, 1]."""
        return sum(self._units[: self.done]) / self._total

    def position(self) -> tuple[int, int, int, int]:
        """(segment k, segments n, steps done in segment k, its steps N), k counted from 1: the segment of the
        last finished step (the first before any)."""
        steps = [s.steps for s in self.job.segments]
        if not steps:
            return 0, 0, 0, 0
        done = self.done
        for k, n in enumerate(steps):
            if done <= n:
                return k + 1, len(steps), done, n
            done -= n
        return len(steps), len(steps), steps[-1], steps[-1]

    def seconds_left(self) -> float | None:
        """Seconds until the last step, from the rate described above; None while neither a figure nor a
        finished step gives one."""
        units = sum(self._units[: self.done])
        elapsed = self._clock() - self._started
        if self._prior_unit_s is None:
            if not units:
                return None
            rate = elapsed / units
        else:
            rate = (elapsed + PRIOR_UNITS * self._prior_unit_s) / (units + PRIOR_UNITS)
        return rate * (self._total - units)

    def text(self) -> str:
        """E.g. "segment 2 of 3, step 4 of 15 - 47% - about 30 s left" (no segment part for one segment)."""
        k, n, i, steps = self.position()
        where = f"segment {k} of {n}, step {i} of {steps}" if n > 1 else f"step {i} of {steps}"
        left = self.seconds_left()
        tail = "" if left is None else f" - about {format_seconds(left)} left"
        return f"{where} - {self.fraction:.0%}{tail}"
