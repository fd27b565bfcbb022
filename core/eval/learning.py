"""What every learning-proof row shares: held-out seeds, a measure over seeds, the row, the conditioning gap.

The proof (``make prove``, ``tests/benchmarks/prove.py``) trains the mini bases and every control from scratch
on synthetic scenes (:mod:`core.data.synthetic`) and measures each on scenes it never saw:

- training scenes use seeds ``TRAIN_SEED + i``, held-out scenes ``HELD_OUT_SEED + i``: the two ranges never
  meet (:func:`held_out_seeds`);
- a number measured on several held-out scenes (or sampling seeds) is a :class:`Measure`: mean, spread
  (population standard deviation) and the values;
- a :class:`Row` is one line of the table: what was trained, the metric, its measure, the baselines' measures,
  the target in words and whether it was met (None when the row is reported without a target).

The conditioning gap of a conditioned model (:func:`conditioning_gap`): on held-out batches, the denoising loss
with each example's true condition against the loss with the conditions shuffled across the batch, the same
noise and noise levels in both; a model that uses its condition has a clearly lower true loss.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

TRAIN_SEED = 0
HELD_OUT_SEED = 1_000_000
# Frame and image side of every mini model and its synthetic scenes, and the clip length.
MINI_SIDE = 64
MINI_FRAMES = 8
MINI_FPS = 8


def held_out_seeds(n: int) -> list[int]:
    """The seeds of ``n`` held-out scenes: ``HELD_OUT_SEED``, ``HELD_OUT_SEED + 1``, ..."""
    return [HELD_OUT_SEED + i for i in range(n)]


def train_seeds(n: int) -> list[int]:
    """The seeds of ``n`` training scenes; they never reach the held-out range."""
    if n > HELD_OUT_SEED - TRAIN_SEED:
        raise ValueError(f"{n} training scenes would reach the held-out seeds.")
    return [TRAIN_SEED + i for i in range(n)]


@dataclass(frozen=True)
class Measure:
    """A number measured several times: ``mean``, ``spread`` (population standard deviation), ``values``."""

    mean: float
    spread: float
    values: tuple[float, ...]

    def __str__(self) -> str:
        return f"{self.mean:.4g} ± {self.spread:.2g}"


def measure(values: Iterable[float]) -> Measure:
    """The :class:`Measure` of ``values`` (at least one, all finite)."""
    values = tuple(float(v) for v in values)
    if not values or not all(math.isfinite(v) for v in values):
        raise ValueError(f"A measure needs finite values, got {values}.")
    mean = sum(values) / len(values)
    spread = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    return Measure(mean, spread, values)


@dataclass(frozen=True)
class Row:
    """One line of the learning-proof table.

    trained: what was trained ("joint_lora"). metric: what was measured, with its unit and direction
    ("image -> depth AbsRel, lower is better"). value: the trained model's measure. baselines: name -> measure.
    target: the target in words ("<= 0.5x untrained patch"), "" when the row is only reported. met: whether
    the target was met, None without a target. note: anything the reader must know (e.g. a miss, and what was
    tried).
    """

    trained: str
    metric: str
    value: Measure
    baselines: dict[str, Measure] = field(default_factory=dict)
    target: str = ""
    met: bool | None = None
    note: str = ""

    def as_json(self) -> dict:
        return asdict(self)


def conditioning_gap(loss_true: float, loss_shuffled: float) -> float:
    """The relative drop of the denoising loss that the true condition brings: ``1 - true / shuffled``
    (0.25: the true condition's loss is 25% lower; 0 or less: the model ignores its condition)."""
    if not loss_shuffled > 0:
        raise ValueError(f"The shuffled-condition loss must be positive, got {loss_shuffled}.")
    return 1.0 - loss_true / loss_shuffled


def shuffled(condition: torch.Tensor) -> torch.Tensor:
    """``condition`` (B,...) with every example given another example's: rolled by one along the batch, so
    no example keeps its own (B >= 2)."""
    if condition.shape[0] < 2:
        raise ValueError("Shuffling conditions across a batch needs at least 2 examples.")
    return torch.roll(condition, shifts=1, dims=0)


def training_flags(
    model: str | Path, data_dir: str | Path, *, steps: int, learning_rate: float, batch: int
) -> list[str]:
    """The flags every proof run of a trainer shares: the base ``model``, the data, ``MINI_SIDE`` px, batch,
    steps and learning rate, one checkpoint at the end, no validation or tracker, seed 0."""
    return [
        "--pretrained_model", str(model),
        "--data_dir", str(data_dir),
        "--resolution", str(MINI_SIDE),
        "--train_batch_size", str(batch),
        "--max_train_steps", str(steps),
        "--learning_rate", str(learning_rate),
        "--checkpointing_steps", str(steps),
        "--validation_steps", "0",
        "--report_to", "none",
        "--seed", "0",
    ]  # fmt: skip


@dataclass(frozen=True)
class ProofPaths:
    """Where a proof run keeps things.

    sd, svd: the mini base pipeline folders (``save_pretrained``). images: the training image scenes
    (:func:`core.data.synthetic.write_image_depth_folder`, seeds from ``TRAIN_SEED``, ``MINI_SIDE`` px). clips:
    the training clips (:func:`core.data.synthetic.write_video_folder`, seeds from ``TRAIN_SEED``, ``MINI_SIDE``
    px, ``MINI_FRAMES`` frames at ``MINI_FPS``). weights: trainer name -> the ``--output_dir`` of its finished
    run (those trained so far). work: a scratch folder for anything else (held-out samples, a style set).
    """

    sd: Path
    svd: Path
    images: Path
    clips: Path
    weights: dict[str, Path]
    work: Path


@dataclass(frozen=True)
class ControlProof:
    """How the proof trains and measures one control trainer (``python -m core.training.<trainer>``).

    train_argv(paths, quick): the script's flags except ``--output_dir`` (the proof adds it); ``quick`` asks
    for the short run of the slow tests. evaluate(paths, quick): the table rows, on held-out scenes.
    gap(paths, n_batches): (loss with the true conditions, loss with them shuffled) on held-out batches, the
    same noise in both (:func:`conditioning_gap`); None for a trainer without a condition. needs: the trainers
    whose weights must exist first (svd_joint_flow starts from svd_flow_lora's).
    """

    trainer: str
    train_argv: Callable[[ProofPaths, bool], list[str]]
    evaluate: Callable[[ProofPaths, bool], list[Row]]
    gap: Callable[[ProofPaths, int], tuple[float, float]] | None = None
    needs: tuple[str, ...] = ()
