"""Shared helpers for `make bench`: timing and the result rows every benchmark returns.

Every benchmark module `tests/benchmarks/bench_*.py` defines `run() -> list[Row]`. A row compares a
candidate against a baseline measured in the same run, so the ratio means something on any machine;
absolute targets (e.g. "<= 150 ms on 2 cores") are printed beside it for the record, never asserted.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass


@dataclass
class Row:
    benchmark: str
    metric: str
    value: float
    unit: str
    baseline: str
    baseline_value: float
    target: str = ""

    @property
    def ratio(self) -> float:
        """candidate / baseline (for times: < 1 means the candidate is faster)."""
        return self.value / self.baseline_value if self.baseline_value else float("nan")

    def as_dict(self) -> dict:
        return {**asdict(self), "ratio": self.ratio}


def median_seconds(fn: Callable[[], object], repeat: int = 5, warmup: int = 1) -> float:
    """Median wall time of `fn()` over `repeat` runs after `warmup` untimed runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
