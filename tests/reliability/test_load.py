"""A bounded load test of a Gradio app on loopback (the joint-depth app, tiny SD, 64 px): 20 concurrent clients
all served in the order they queued; a full queue refused with a clear message; a client that goes away and a
Stop through the API each free the one "gpu" slot within one denoising step.

The server runs in this process, so the tests see its steps: `steps` wraps `CancelToken.on_step_end` (every
denoising step of a run passes there) to log each step and, where a test needs slow runs, to make each step
take STEP_S; `cancels` wraps `CancelToken.cancel` to log when the server stops a run (a Stop or a gone client
reaching it: "within one step" is counted from there, so a client's own request delay on a loaded machine
does not count as a step). `starts` wraps the job to log when each run gets the slot.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import httpx
import pytest
from gradio_client import Client
from gradio_client.utils import Status

from apps.common.gradio import STOPPED, launch_kwargs
from apps.joint_depth import job
from apps.joint_depth.app import SERVED_FOLDERS, build_demo
from core.cancel import STOPPED_MESSAGE, CancelToken
from core.config import Settings
from tests.reliability.corpus import assert_clear_message

CLIENTS = 20
STEP_S = 0.1  # a slow run's step
SLOW_STEPS = 60  # a slow run: 6 s, far longer than any measurement below
FAST = {"steps": 2, "guidance": 7.5, "batch": 1, "weights": "", "max_points": 500}
SLACK_S = 1.0  # scheduling and the next run's set-up (text encoder, latents) before its first step


class Log:
    """What the server did, in order: runs starting (prompt, time), denoising steps and cancels (token, time)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.starts: list[tuple[str, float]] = []
        self.steps: list[tuple[int, float]] = []
        self.cancels: list[tuple[int, float]] = []
        self.step_s = 0.0

    def started(self, prompt: str) -> float:
        return next(t for p, t in self.starts if p == prompt)

    def steps_after(self, moment: float, token: int) -> int:
        return sum(1 for owner, t in self.steps if owner == token and t > moment)

    def cancelled(self, token: int) -> float:
        """When the server cancelled the run of `token` (its first cancel)."""
        return next(t for owner, t in self.cancels if owner == token)

    def token_of_run(self, after: float) -> int:
        """The token of the first step logged after `after`."""
        return next(owner for owner, t in self.steps if t > after)


@pytest.fixture
def log(monkeypatch) -> Log:
    record = Log()
    on_step_end, cancel, run_job = CancelToken.on_step_end, CancelToken.cancel, job.run_job

    def step(self, *args):
        with record.lock:
            record.steps.append((id(self), time.perf_counter()))
        time.sleep(record.step_s)
        return on_step_end(self, *args)

    def cancelled(self):
        with record.lock:
            record.cancels.append((id(self), time.perf_counter()))
        return cancel(self)

    def run(request, *args, **kwargs):
        with record.lock:
            record.starts.append((request.prompt, time.perf_counter()))
        return run_job(request, *args, **kwargs)

    monkeypatch.setattr(CancelToken, "on_step_end", step)
    monkeypatch.setattr(CancelToken, "cancel", cancelled)
    monkeypatch.setattr(job, "run_job", run)
    return record


@contextmanager
def served(tmp_path, max_size: int) -> Iterator[str]:
    settings = Settings(sd_model="tiny", device="cpu", output_dir=tmp_path / "outputs")
    demo = build_demo(settings)
    demo.queue(max_size=max_size).launch(
        prevent_thread_lock=True, quiet=True, **launch_kwargs(settings, *SERVED_FOLDERS)
    )
    try:
        yield demo.local_url
    finally:
        demo.close()


@pytest.fixture(scope="module")
def url(tmp_path_factory) -> Iterator[str]:
    with served(tmp_path_factory.mktemp("load"), max_size=32) as local_url:  # the apps' queue size
        yield local_url


def submit(client: Client, prompt: str, **options):
    return client.submit(prompt, "", 64, 64, api_name="/generate", **{**FAST, **options})


def wait_queued(handle, timeout_s: float = 20.0) -> None:
    """Until the server has the job (queued or running): joins arrive in the order this waits for them."""
    deadline = time.monotonic() + timeout_s
    while handle.status().code in (Status.STARTING, Status.JOINING_QUEUE):
        assert time.monotonic() < deadline, "the job never reached the queue"
        time.sleep(0.02)


def wait_steps(log: Log, count: int, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while len(log.steps) < count:
        assert time.monotonic() < deadline, "the run never started its steps"
        time.sleep(0.02)


def test_twenty_concurrent_clients_are_all_served_in_the_order_they_queued(url, log):
    clients = [Client(url, verbose=False) for _ in range(CLIENTS)]
    try:
        handles = []
        for i, client in enumerate(clients):
            handles.append(submit(client, f"client {i}"))
            wait_queued(handles[-1])
        results = [handle.result(timeout=120) for handle in handles]
    finally:
        for client in clients:
            client.close()
    assert [prompt for prompt, _ in log.starts] == [f"client {i}" for i in range(CLIENTS)]
    assert all(result[4].startswith("1 sample of 64x64") for result in results), results
    assert len({result[3][-1] for result in results}) == CLIENTS  # each its own run record


def test_a_full_queue_is_refused_with_a_clear_message(tmp_path, log):
    log.step_s = STEP_S
    with served(tmp_path, max_size=2) as local_url:
        client = Client(local_url, verbose=False)
        try:
            running = submit(client, "running", steps=SLOW_STEPS)
            wait_steps(log, 1)
            queued = [submit(client, f"queued {i}") for i in range(2)]
            for handle in queued:
                wait_queued(handle)
            with pytest.raises(Exception) as refused:
                submit(client, "one too many").result(timeout=30)
            assert_clear_message(str(refused.value))
            assert "queue is full" in str(refused.value).lower()
            answer = httpx.post(
                f"{local_url}gradio_api/queue/join",
                json={"data": [], "fn_index": 0, "session_hash": "raw-client"},
            )
            assert answer.status_code == 503
            assert_clear_message(answer.json()["detail"])
            # Stop is not queued (queue=False): a browser (and this POST) reaches it even when the queue is
            # full; gradio_client would send it through the full queue.
            stop = httpx.post(
                f"{local_url}gradio_api/run/stop_generate",
                json={"data": [], "session_hash": client.session_hash},
            )
            assert stop.status_code == 200 and stop.json()["data"] == [STOPPED]
            with pytest.raises(Exception, match="stopped"):
                running.result(timeout=30)
            for handle in queued:  # the queued ones are still served
                assert handle.result(timeout=60)[4].startswith("1 sample")
        finally:
            client.close()


def test_a_stop_through_the_api_frees_the_slot_within_one_step(url, log):
    log.step_s = STEP_S
    first, second = Client(url, verbose=False), Client(url, verbose=False)
    try:
        begun = time.perf_counter()
        stopped_run = submit(first, "stopped", steps=SLOW_STEPS)
        wait_steps(log, 3)
        token = log.token_of_run(begun)
        waiting = submit(second, "next")
        wait_queued(waiting)
        assert first.predict(api_name="/stop_generate") == STOPPED
        with pytest.raises(Exception) as raised:
            stopped_run.result(timeout=30)
        assert STOPPED_MESSAGE in str(raised.value)
        assert waiting.result(timeout=60)[4].startswith("1 sample")
    finally:
        first.close()
        second.close()
    stop_at = log.cancelled(token)
    assert log.steps_after(stop_at, token) <= 1
    assert log.started("next") - stop_at < STEP_S + SLACK_S


class GoneClient:
    """A browser-like client on raw HTTP: a heartbeat stream, a queued event and its data stream; `leave`
    closes both streams as a closed tab or a killed client does."""

    def __init__(self, url: str, session: str) -> None:
        self.base, self.session = f"{url}gradio_api", session
        self.open = ExitStack()  # holds the streams open until `leave`
        self.http = self.open.enter_context(httpx.Client(timeout=None))
        self.open.enter_context(self.http.stream("GET", f"{self.base}/heartbeat/{session}"))

    def join(self, demo_config: dict, prompt: str, steps: int) -> None:
        components = {c["id"]: c for c in demo_config["components"]}
        fn_index, dependency = next(
            (i, d) for i, d in enumerate(demo_config["dependencies"]) if d.get("api_name") == "generate"
        )
        data = [components[i]["props"].get("value") for i in dependency["inputs"]]
        data[:4] = [prompt, "", 64, 64]
        data[5] = steps  # inputs: prompt, negative, height, width, then weights, steps, ...
        body = {"data": data, "fn_index": fn_index, "session_hash": self.session}
        assert self.http.post(f"{self.base}/queue/join", json=body).status_code == 200
        stream = self.http.stream("GET", f"{self.base}/queue/data", params={"session_hash": self.session})
        self.messages = self.open.enter_context(stream).iter_lines()

    def wait_for(self, text: str) -> None:
        for line in self.messages:
            if text in line:
                return
        raise AssertionError(f"the stream ended before {text!r}")

    def leave(self) -> None:
        self.open.close()


def test_a_client_that_goes_away_frees_the_slot_within_one_step(url, log):
    log.step_s = STEP_S
    config = httpx.get(f"{url}config").json()
    gone, other = GoneClient(url, "a-client-that-leaves"), Client(url, verbose=False)
    try:
        begun = time.perf_counter()
        gone.join(config, "abandoned", SLOW_STEPS)
        gone.wait_for("process_starts")
        wait_steps(log, 3)
        token = log.token_of_run(begun)
        waiting = submit(other, "after the abandoned run")
        wait_queued(waiting)
        gone.leave()
        assert waiting.result(timeout=60)[4].startswith("1 sample")
    finally:
        other.close()
    left_at = log.cancelled(token)
    assert log.steps_after(left_at, token) <= 1
    assert log.started("after the abandoned run") - left_at < STEP_S + SLACK_S
