"""The weights states (core.models.status), the offline-models switch every app shares (apps.common.offline),
the landing page's backend states (apps.front.landing) and the switch in the drag app and the Gradio header.
The browser and process side is tests/e2e/test_front_door.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from apps.common import offline
from apps.common.catalog import APPS
from apps.front.landing import app_states, backend_state, landing_html
from core.config import MINI_WEIGHTS, Settings
from core.models import status
from core.models.presets import MINI_FOLDER
from core.models.status import mini_available, weights_status

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def no_minis(monkeypatch, tmp_path):
    """As on a checkout where `make prove` has not installed the mini models."""
    monkeypatch.setattr(status, "MINI_FOLDER", tmp_path / "no-minis")


def test_weights_status_of_each_kind_of_setting(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert weights_status("svd_controlnet_model", "").state == "unset"
    assert weights_status("sd_model", "tiny").state == "tiny"
    for setting in ("sd_model", "svd_model", *MINI_WEIGHTS):
        assert mini_available(setting), setting  # the committed mini models
    assert weights_status("sd_model", "mini").state == "mini"
    assert weights_status("joint_weights", str(MINI_FOLDER / "joint_lora")).state == "mini"

    folder = tmp_path / "sd"
    folder.mkdir()
    empty = weights_status("sd_model", str(folder))
    assert empty.state == "missing" and "no model_index.json in that folder" in empty.why
    assert "KINEMA_SD_MODEL" in empty.why  # the loaders' sentence
    (folder / "model_index.json").write_text("{}")
    assert weights_status("sd_model", str(folder)).state == "ready"
    assert weights_status("svd_interp_lora", str(tmp_path / "gone")).why.startswith("The weights")

    hub = weights_status("svd_model", "nobody-has/this-model-cached")
    assert hub.state == "missing" and "offline and not in the cache" in hub.why
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert weights_status("svd_model", "nobody-has/this-model-cached").state == "download"


def test_offline_settings_switch_every_model_to_mini_or_else_tiny(no_minis, monkeypatch):
    configured = Settings(sd_model="/nope", svd_model="tiny", controlnet_model="x/y", sam_model="tiny")
    # With no mini model installed: the tiny presets where they exist, nothing where they do not.
    fallback = offline.offline_settings(configured)
    assert (fallback.sd_model, fallback.svd_model, fallback.svd_controlnet_model) == ("tiny", "tiny", "tiny")
    assert (fallback.joint_weights, fallback.controlnet_model, fallback.sam_model) == ("", "", "")
    assert offline.switch_label(("sd_model", "joint_weights")) == (
        "Switch to the offline tiny models (this page only)"
    )
    assert "`tiny` for sd_model (no mini model installed): random test weights" in offline.in_use_note(
        fallback, ("sd_model", "joint_weights")
    )
    monkeypatch.undo()  # the committed mini models
    switched = offline.offline_settings(configured)
    assert (switched.sd_model, switched.svd_model) == ("mini", "mini")
    assert switched.joint_weights == str(MINI_FOLDER / "joint_lora")
    assert (switched.output_dir, switched.max_frames) == (configured.output_dir, configured.max_frames)
    assert offline.switch_label(("sd_model", "joint_weights")) == (
        "Switch to the offline mini models (this page only)"
    )


def test_only_configured_weights_that_are_missing_call_for_the_switch():
    settings = Settings(sd_model="/nope/sd", svd_model="tiny", svd_interp_lora="")
    missing = offline.missing_weights_of(settings, ("sd_model", "svd_model", "svd_interp_lora"))
    assert [s.setting for s in missing] == ["sd_model"]  # an empty optional setting is no reason
    assert offline.offer_note(missing).startswith("**Weights missing** (`KINEMA_SD_MODEL`)")
    assert offline.missing_weights_of(Settings(sd_model="tiny"), ("sd_model",)) == []


def test_landing_states_come_from_the_apps_registries(no_minis):
    settings = Settings(sd_model="/nope/sd", svd_model="tiny", svd_controlnet_model="tiny")
    states = {key: {s.label: s.text for s in rows} for key, rows in app_states(settings).items()}
    assert list(states) == list(APPS)
    assert states["drag"] == {
        "Warp preview (instant, no weights)": "ready (no weights)",
        "SVD": "ready: tiny random weights (noise)",
        "SVD + flow ControlNet": "ready: tiny random weights (noise)",
        "SVD joint video + flow, experimental": "needs KINEMA_SVD_JOINT_FLOW_MODEL",  # no mini installed
    }
    assert states["joint"] == {
        "Stable Diffusion 1.5 with the joint depth patch": "needs KINEMA_SD_MODEL, KINEMA_JOINT_WEIGHTS"
    }
    assert states["keyframe"]["Inbetween: SVD + LoRA (svd-lora)"] == "needs KINEMA_SVD_INTERP_LORA"
    html = landing_html(settings, "http://example.org:8501/")
    assert html.count("<section class='app'") == 3
    assert "href='http://example.org:8501/?models=offline'" in html and "href='/joint/offline/'" in html


def test_a_backend_needing_missing_weights_names_mini_when_installed():
    state = backend_state("b", ("sd_model", "joint_weights"), Settings(sd_model="/nope/sd"))
    assert (state.ready, state.text) == (
        False,
        "needs KINEMA_SD_MODEL, KINEMA_JOINT_WEIGHTS (mini available)",
    )
    ready = backend_state("b", ("svd_model",), Settings(svd_model="mini"))
    assert (ready.ready, ready.text) == (True, "ready: mini models")


def test_drag_app_switches_to_the_offline_models_for_its_page(monkeypatch, tmp_path, canvas):
    monkeypatch.setenv("KINEMA_SVD_MODEL", "/nope/svd")
    monkeypatch.setenv("KINEMA_DEVICE", "cpu")
    monkeypatch.setenv("KINEMA_OUTPUT_DIR", str(tmp_path))
    at = AppTest.from_file(str(ROOT / "apps" / "drag" / "app.py"), default_timeout=60).run()
    assert "KINEMA_SVD_MODEL" in at.warning[0].value
    at.button(key="offline-switch").click().run()
    assert not at.exception
    assert at.query_params[offline.QUERY_KEY] == offline.QUERY_VALUE
    assert "Offline models in use on this page" in at.info[0].value
    assert at.selectbox(key="sample").value.startswith("synthetic scene for the mini models")
    assert "SVD + flow ControlNet (mini, trained)" in at.radio(key="backend").options  # the mini models
    at.button(key="offline-back").click().run()
    assert offline.QUERY_KEY not in at.query_params and at.warning
