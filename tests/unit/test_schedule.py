"""core.eval.schedule: jobs start after what they need, never more than the slots at once, cores shared out,
and the first failure stops what depends on it."""

import threading
import time

import pytest

from core.eval.schedule import Job, check_graph, run_jobs


class Recorder:
    """Jobs that sleep, noting when each starts and ends, its threads and how many ran at once."""

    def __init__(self):
        self.lock = threading.Lock()
        self.events: list[tuple[str, str]] = []
        self.threads: dict[str, int] = {}
        self.now = self.most = 0

    def job(self, name: str, needs: tuple[str, ...] = (), seconds: float = 0.15, fail: bool = False) -> Job:
        def work(threads: int) -> None:
            with self.lock:
                self.events.append(("start", name))
                self.threads[name] = threads
                self.now += 1
                self.most = max(self.most, self.now)
            time.sleep(seconds)
            with self.lock:
                self.now -= 1
                self.events.append(("end", name))
            if fail:
                raise RuntimeError(f"{name} failed")

        return Job(name, work, needs)

    def index(self, kind: str, name: str) -> int:
        return self.events.index((kind, name))


def test_jobs_start_after_all_they_need_and_never_more_than_the_slots_at_once():
    rec = Recorder()
    jobs = [
        rec.job("vae"),
        rec.job("decoder", ("vae",)),
        rec.job("sd", ("vae",)),
        rec.job("svd", ("decoder",)),
        rec.job("lora", ("sd",)),
        rec.job("rows", ("sd", "svd")),
    ]
    times = run_jobs(jobs, slots=2, cores=2)
    assert set(times) == {job.name for job in jobs} and all(t >= 0.15 for t in times.values())
    for job in jobs:
        for need in job.needs:
            assert rec.index("end", need) < rec.index("start", job.name)
    assert rec.most == 2


def test_a_job_alone_gets_every_core_and_ready_jobs_share_them():
    rec = Recorder()
    run_jobs([rec.job("first"), rec.job("a", ("first",)), rec.job("b", ("first",))], slots=4, cores=4)
    assert rec.threads == {"first": 4, "a": 2, "b": 2}
    rec = Recorder()
    run_jobs([rec.job("a", seconds=0.3), rec.job("b", seconds=0.3), rec.job("c")], slots=3, cores=2)
    # Two cores for three ready jobs: two start with one thread each, the third once a core is free (with the
    # cores free by then: one, or both when the two ended before it started).
    assert rec.threads["a"] == rec.threads["b"] == 1 and rec.threads["c"] in (1, 2)
    assert rec.index("start", "c") > min(rec.index("end", "a"), rec.index("end", "b")) and rec.most == 2


def test_the_first_failure_stops_its_dependents_lets_running_jobs_finish_and_is_raised():
    rec = Recorder()
    jobs = [
        rec.job("broken", fail=True),
        rec.job("slow", seconds=0.3),
        rec.job("after", ("broken",)),
        rec.job("later", ("slow",)),
    ]
    with pytest.raises(RuntimeError, match="broken failed"):
        run_jobs(jobs, slots=2, cores=2)
    started = {name for kind, name in rec.events if kind == "start"}
    assert started == {"broken", "slow"} and ("end", "slow") in rec.events


@pytest.mark.parametrize(
    "jobs, message",
    [
        ([Job("a", print), Job("a", print)], "repeat"),
        ([Job("a", print, ("b",))], "not there"),
        ([Job("a", print, ("b",)), Job("b", print, ("a",))], "cycle"),
    ],
)
def test_bad_graphs_are_refused_before_anything_runs(jobs, message):
    with pytest.raises(ValueError, match=message):
        check_graph(jobs)
    with pytest.raises(ValueError, match=message):
        run_jobs(jobs, slots=1, cores=1)
