"""flow+svd-lora: the flow frames refined by SVD conditioned on both keyframes with svd-lora's head-and-tail LoRA,
from the app's handlers and the CLI (tiny SVD, a random LoRA); the refine strength recorded and put back by Redo;
the backend refused in one line while no LoRA is set."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from apps.common.history import RunEntry
from apps.common.runs import RunRecord
from apps.keyframe import cli, compare
from apps.keyframe.backends import INTERP_LORA, InterpRequest
from apps.keyframe.handlers import Handlers
from apps.keyframe.sample import SAMPLE_VIDEO
from apps.keyframe.views import inbetween_estimate
from core import lora
from core.config import Settings
from core.models import load_pipeline, tiny_svd_components
from core.pipelines.svd_interpolate import SVDInterpolatePipeline

KEYS = "0, 5, 10"
PREFIX = "python -m apps.keyframe.cli: error: "


@pytest.fixture(scope="module")
def interp_lora(tmp_path_factory):
    """A head-and-tail LoRA for the tiny SVD UNet with random weights (a visible change, as a trained one)."""
    unet = tiny_svd_components()["unet"]
    lora.add_lora(unet, "trained", init=False)
    return lora.save_lora(unet, "trained", tmp_path_factory.mktemp("lora") / "interp.safetensors")


@pytest.fixture
def calls(monkeypatch):
    """Each SVDInterpolatePipeline call's keyword arguments, with the adapters its UNet carried then."""
    seen: list[dict] = []
    original = SVDInterpolatePipeline.__call__

    def spy(pipe, *args, **kwargs):
        seen.append({**kwargs, "adapters": lora.list_loras(pipe.unet)})
        return original(pipe, *args, **kwargs)

    monkeypatch.setattr(SVDInterpolatePipeline, "__call__", spy)
    return seen


def test_the_app_refines_with_both_keyframes_and_the_lora_and_redo_restores_it(tmp_path, interp_lora, calls):
    settings = Settings.from_env(
        {}, svd_model="tiny", svd_interp_lora=str(interp_lora), device="cpu", output_dir=tmp_path
    )
    h = Handlers(settings)
    session, *_ = h.load_video(str(SAMPLE_VIDEO), 0, "1.0", 64, "uniform", 5, "flow", None, "dis")
    session, *_ = h.edit_all(session, KEYS, backend="filter", filter="adjust", adjust_hue_deg=90.0)
    controls = ("flow+svd-lora", None, "dis", 127, 2, 0, 8, None, 0, 0.5)  # refine strength 0.5: 1 of 2 steps
    session, *_, status = h.inbetween(session, KEYS, *controls)

    edited = np.stack([session.edited[k] for k in (0, 5, 10)])
    assert np.array_equal(session.result_uint8[[0, 5, 10]], edited)  # the keyframes exactly as edited
    made = [(c["mode"], c["adapters"], c["strength"]) for c in calls]
    assert made == [("svd-lora", [INTERP_LORA], 0.5)] * 2  # one call per gap, the LoRA on
    for call, (head, tail) in zip(calls, [edited[:2], edited[1:]]):
        # Conditioned on the gap's head AND tail keyframe, refining the flow frames between them.
        assert np.array_equal(call["head_image"], head) and np.array_equal(call["tail_image"], tail)
        assert np.array_equal(call["guide_video"][0], head) and np.array_equal(call["guide_video"][-1], tail)
    assert not np.array_equal(session.result_uint8[1:5], calls[0]["guide_video"][1:-1])  # SVD repainted them
    assert lora.list_loras(load_pipeline("svd", settings).unet) == []  # off the shared UNet again

    record_path = tmp_path / "keyframe" / re.search(r"; run (\S+)\.", status)[1] / "params.json"
    record = RunRecord.read(record_path)
    assert record.settings["svd_interp_lora"] == interp_lora.name  # named, not the server path
    inbetween = record.arguments["inbetween"]
    assert (inbetween["backend"], inbetween["refine_strength"]) == ("flow+svd-lora", 0.5)
    redo = dict(zip(compare.REDO_CONTROLS, compare.redo_values(RunEntry(record_path, record))))
    redone = [redo[name] for name in ("interp_backend", "refine_strength", "interp_steps")]
    assert redone == ["flow+svd-lora", 0.5, 2]

    # The estimate (and the progress's "step i of N") counts the steps the strength runs, and no re-injection:
    # a unit is a step over one frame; each of the 2 gaps is one call over 6 frames.
    def units(backend: str, strength: float) -> list[float]:
        request = InterpRequest(backend, steps=10, noise_reinjection=2, refine_strength=strength)
        return inbetween_estimate(settings, session.video, [0, 5, 10], request).job.step_units()

    assert units("flow+svd-lora", 0.3) == [6.0] * 2 * 3 and units("flow+svd", 1.0) == [6.0] * 2 * 10
    assert units("svd-lora", 0.3) == ([18.0] * 5 + [6.0] * 5) * 2  # its first 5 steps taken 3 times


def test_the_cli_runs_it_with_the_lora_and_refuses_it_without(
    tmp_path, interp_lora, calls, capsys, monkeypatch
):
    monkeypatch.delenv("KINEMA_SVD_INTERP_LORA", raising=False)
    out = tmp_path / "refined.mp4"
    args = ["--video", str(SAMPLE_VIDEO), "--out", str(out), "--working-size", "64", "--end", "1.0"]
    args += ["--keyframes", KEYS.replace(" ", ""), "--edit", "identity", "--interp", "flow+svd-lora"]
    args += ["--interp-steps", "2", "--refine-strength", "0.5", "--svd-model", "tiny", "--device", "cpu"]
    assert cli.main(args) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line == (
        f"{PREFIX}The flow+svd-lora backend needs KINEMA_SVD_INTERP_LORA (or --svd-interp-lora): set it to "
        "weights that python -m core.training.svd_interp_lora wrote, or to 'mini'."
    )
    assert not out.exists()

    assert cli.main([*args, "--svd-interp-lora", str(interp_lora)]) == 0, capsys.readouterr().err
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["arguments"]["inbetween"]["backend"] == "flow+svd-lora"
    assert record["settings"]["svd_interp_lora"] == str(interp_lora)
    assert len(calls) == 2 and all(c["adapters"] == [INTERP_LORA] for c in calls)
