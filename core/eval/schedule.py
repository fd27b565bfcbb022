"""Run the stages of a proof side by side: jobs that wait for the jobs they need, a few at once on the CPU cores.

``make prove`` trains a dozen models, most of them independent of each other (the SD controls need mini SD, not
mini SVD). Run one after another they leave all cores but one idle (each run is one torch thread: tiny models do
not gain from more); :func:`run_jobs` runs every job as soon as the jobs it needs are done, at most ``slots`` at
once, and hands a job the cores no other ready job can use (the first VAE, which everything waits for, gets them
all).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass


def say(line: str) -> None:
    """Print one line whole (``print`` writes the text and its newline apart: lines of jobs side by side mix)."""
    sys.stdout.write(f"{line}\n")
    sys.stdout.flush()


@dataclass(frozen=True)
class Job:
    """One stage: ``work(threads)`` does it with that many torch threads; it starts once ``needs`` are done."""

    name: str
    work: Callable[[int], None]
    needs: tuple[str, ...] = ()


def check_graph(jobs: Sequence[Job]) -> None:
    """Raise ValueError for a repeated name, a need that is no job, or a cycle."""
    names = [job.name for job in jobs]
    if len(set(names)) != len(names):
        raise ValueError(f"Job names repeat: {sorted(n for n in set(names) if names.count(n) > 1)}.")
    unknown = sorted({need for job in jobs for need in job.needs} - set(names))
    if unknown:
        raise ValueError(f"Jobs need jobs that are not there: {unknown}.")
    done: set[str] = set()
    left = list(jobs)
    while left:
        ready = [job for job in left if set(job.needs) <= done]
        if not ready:
            raise ValueError(f"Jobs wait on each other in a cycle: {sorted(job.name for job in left)}.")
        done.update(job.name for job in ready)
        left = [job for job in left if job.name not in done]


def run_jobs(jobs: Sequence[Job], *, slots: int, cores: int) -> dict[str, float]:
    """Run ``jobs`` (each once its needs are done; in list order among those ready), at most ``slots`` at once.

    A job gets ``cores`` shared among the jobs that could start with it: free cores // min(ready jobs, free
    slots), at least 1, and starts only while a core is free. Returns each job's wall time (s). The first job
    that raises stops new starts; the running ones finish; then its error is raised."""
    check_graph(jobs)
    if slots < 1 or cores < 1:
        raise ValueError(f"slots and cores must be at least 1, got {slots} and {cores}.")
    done: set[str] = set()
    running: dict[str, int] = {}  # name -> threads
    started: set[str] = set()
    failures: list[BaseException] = []
    times: dict[str, float] = {}
    changed = threading.Condition()

    def work(job: Job, threads: int) -> None:
        began = time.perf_counter()
        try:
            job.work(threads)
        except BaseException as err:  # noqa: BLE001 - handed to the caller's thread below
            with changed:
                failures.append(err)
        else:
            with changed:
                done.add(job.name)
        finally:
            with changed:
                times[job.name] = time.perf_counter() - began
                del running[job.name]
                changed.notify_all()

    with changed:
        while len(done) < len(jobs):
            if failures:
                if not running:
                    raise failures[0]
            else:
                ready = [job for job in jobs if job.name not in started and set(job.needs) <= done]
                free_slots, free_cores = slots - len(running), cores - sum(running.values())
                while ready and free_slots > 0 and free_cores > 0:
                    threads = max(1, free_cores // min(len(ready), free_slots))
                    job = ready.pop(0)
                    started.add(job.name)
                    running[job.name] = threads
                    free_slots, free_cores = free_slots - 1, free_cores - threads
                    threading.Thread(target=work, args=(job, threads), daemon=True).start()
            changed.wait()
    return times
