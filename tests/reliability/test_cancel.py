"""Cancellation (`core.cancel`): the token, and each job stopping within one step of being cancelled, with
nothing written. Tiny random models on the CPU; the steps are counted where the jobs check the token."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from apps.drag import job as drag_job
from apps.drag.params import DragParams
from apps.joint_depth import job as joint_job
from apps.keyframe import job as keyframe_job
from apps.keyframe.backends import EditRequest, InterpRequest
from apps.keyframe.job import KeyframeRequest, OutputFiles
from apps.keyframe.sample import SAMPLE_VIDEO
from core.cancel import STOPPED_MESSAGE, Cancelled, CancelToken
from core.config import Settings
from core.errors import KinemaError
from core.trajectory import Trajectories, Trajectory
from tests.reliability.corpus import assert_clear_message, good_image_uint8

STOP_AT = 3  # the step (or frame) during which the run is cancelled


class StepCounter(CancelToken):
    """A token cancelled while the job is in step STOP_AT, as a Stop click or a closed client would; it
    counts the denoising steps that ran (`on_step_end` is called after each)."""

    def __init__(self) -> None:
        super().__init__()
        self.steps = 0

    def on_step_end(self, pipeline, step, timestep, tensors) -> dict:
        self.steps += 1
        if self.steps == STOP_AT:
            self.cancel()
        return super().on_step_end(pipeline, step, timestep, tensors)


class FrameCounter:
    """A progress callback that cancels `token` at its STOP_AT-th event and counts the events."""

    def __init__(self, token: CancelToken) -> None:
        self.token = token
        self.events = 0

    def __call__(self, *event) -> None:
        self.events += 1
        if self.events == STOP_AT:
            self.token.cancel()


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


# -- the token ---------------------------------------------------------------------------------------------


def test_a_token_passes_until_cancelled_then_raises_one_sentence():
    token = CancelToken()
    token.check()
    assert not token.cancelled and token.on_step_end(None, 0, 0, {"latents": 1}) == {}
    token.cancel()
    token.cancel()  # idempotent
    assert token.cancelled
    with pytest.raises(Cancelled) as raised:
        token.check()
    assert isinstance(raised.value, KinemaError) and str(raised.value) == STOPPED_MESSAGE
    assert_clear_message(str(raised.value))
    with pytest.raises(Cancelled):
        token.on_step_end(None, 1, 0, {})


def test_watch_checks_before_passing_each_event_on():
    token, seen = CancelToken(), []
    report = token.watch(lambda *event: seen.append(event))
    report("a", 1, 2)
    token.cancel()
    with pytest.raises(Cancelled):
        report("b", 2, 2)
    assert seen == [("a", 1, 2)]
    CancelToken().watch(None)("no callback is fine")


def test_a_cancel_from_another_thread_is_seen_by_the_next_check():
    token = CancelToken()
    worker = threading.Thread(target=token.cancel)
    worker.start()
    worker.join()
    with pytest.raises(Cancelled):
        token.check()


# -- the three jobs ----------------------------------------------------------------------------------------


@pytest.fixture
def drag_request(tmp_path) -> drag_job.DragRequest:
    image = good_image_uint8()
    tracks = Trajectories((Trajectory(np.array([[0.3, 0.5], [0.7, 0.5]])),))
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    params = DragParams(backend="warp", frames=8, fps=8, max_side=64)
    return drag_job.save_inputs(inputs, image, tracks, params)


def test_the_drag_job_stops_at_the_frame_it_was_cancelled_in_and_writes_nothing(tmp_path, drag_request):
    token = CancelToken()
    counter = FrameCounter(token)
    out = tmp_path / "run"
    with pytest.raises(Cancelled):
        drag_job.run(drag_request, drag_job.DragOutputs.in_folder(out), Settings(device="cpu"), progress=counter,
                     cancel=token)  # fmt: skip
    assert counter.events == STOP_AT  # no frame reported after the cancel
    assert not out.exists() or files_under(out) == []


def test_the_drag_job_on_tiny_svd_stops_within_one_denoising_step(tmp_path, drag_request):
    token = CancelToken()
    counter = FrameCounter(token)
    out = tmp_path / "run"
    params = DragParams(backend="svd", frames=4, fps=8, steps=10, max_side=64)
    request = drag_job.DragRequest(drag_request.image, drag_request.trajectories, params)

    def on_step(event) -> None:  # the denoising steps only (the warp's frames come first)
        if event.stage == "svd" and event.done > 0:
            counter(event)

    with pytest.raises(Cancelled):
        drag_job.run(request, drag_job.DragOutputs.in_folder(out), Settings(svd_model="tiny", device="cpu"),
                     progress=on_step, cancel=token)  # fmt: skip
    assert counter.events == STOP_AT
    assert not out.exists() or files_under(out) == []


def test_the_joint_job_stops_within_one_denoising_step(tmp_path):
    token = StepCounter()
    request = joint_job.JointRequest(prompt="a chair", steps=10, height=64, width=64)
    stages = []
    with pytest.raises(Cancelled):
        joint_job.run_job(request, Settings(sd_model="tiny", device="cpu"), tmp_path / "run",
                          progress=stages.append, cancel=token)  # fmt: skip
    assert token.steps == STOP_AT
    assert stages == ["loading models", "joint: 10 steps"]  # never reached "writing files"
    assert not (tmp_path / "run").exists()


def test_a_cancelled_joint_job_stops_before_its_first_stage(tmp_path):
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        joint_job.run_job(joint_job.JointRequest(steps=2, height=64, width=64), Settings(sd_model="tiny"),
                          tmp_path / "run", cancel=token)  # fmt: skip
    assert not (tmp_path / "run").exists()


def keyframe_request(**changes) -> KeyframeRequest:
    return KeyframeRequest(
        **{"video": str(SAMPLE_VIDEO), "working_side": 64, "keyframes": "uniform:4", **changes}
    )


def test_the_keyframe_job_stops_at_the_frame_it_was_cancelled_in_and_writes_nothing(tmp_path):
    token = CancelToken()
    counter = FrameCounter(token)
    request = keyframe_request(
        edit=EditRequest(backend="filter", filter="adjust"), interp=InterpRequest("flow")
    )
    with pytest.raises(Cancelled):
        keyframe_job.run(request, Settings(device="cpu"), OutputFiles.in_folder(tmp_path / "run"),
                         progress=counter, cancel=token)  # fmt: skip
    assert counter.events == STOP_AT
    assert not (tmp_path / "run").exists() or files_under(tmp_path / "run") == []


def test_the_keyframe_sd_edit_stops_within_one_denoising_step(tmp_path):
    token = StepCounter()
    edit = EditRequest(backend="sd", prompt="night", steps=10, strength=1.0)
    with pytest.raises(Cancelled):
        keyframe_job.run(keyframe_request(edit=edit, interp=InterpRequest("crossfade")),
                         Settings(sd_model="tiny", device="cpu"), OutputFiles.in_folder(tmp_path / "run"),
                         cancel=token)  # fmt: skip
    assert token.steps == STOP_AT
    assert not (tmp_path / "run").exists() or files_under(tmp_path / "run") == []


def test_the_keyframe_svd_inbetweening_stops_within_one_denoising_step(tmp_path):
    token = StepCounter()
    request = keyframe_request(
        edit=EditRequest(backend="filter", filter="adjust"),
        interp=InterpRequest("svd-trf", steps=10),
    )
    with pytest.raises(Cancelled):
        keyframe_job.run(request, Settings(svd_model="tiny", device="cpu"), OutputFiles.in_folder(tmp_path / "run"),
                         cancel=token)  # fmt: skip
    assert token.steps == STOP_AT
    assert not (tmp_path / "run").exists() or files_under(tmp_path / "run") == []
