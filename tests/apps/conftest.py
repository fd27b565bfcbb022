"""Fixtures shared by the app tests."""

from types import SimpleNamespace

import pytest

from apps.drag import ui_canvas

# Every SVD model of the drag backends as offline random 'tiny' weights, on the CPU.
TINY_ENV = {
    "KINEMA_SVD_MODEL": "tiny",
    "KINEMA_SVD_CONTROLNET_MODEL": "tiny",
    "KINEMA_SVD_JOINT_FLOW_MODEL": "tiny",
    "KINEMA_DEVICE": "cpu",
}


@pytest.fixture
def tiny_env(monkeypatch):
    for name, value in TINY_ENV.items():
        monkeypatch.setenv(name, value)


class FakeCanvas:
    """Stands in for streamlit-drawable-canvas: what each mounted canvas (by key) currently holds."""

    def __init__(self) -> None:
        self.held: dict[str, dict] = {}
        self.initial: dict[str, dict] = {}
        self.calls: list[dict] = []
        self.reloads: list[str] = []

    def __call__(self, **kwargs):
        self.calls.append(kwargs)
        key = kwargs["key"]
        # The real component reloads a mounted canvas whose initial_drawing changed and sends it back,
        # which reruns the app: an app that passes a new initial_drawing every run never settles.
        if self.initial.setdefault(key, kwargs["initial_drawing"]) != kwargs["initial_drawing"]:
            self.reloads.append(key)
        drawing = self.held.setdefault(key, kwargs["initial_drawing"])
        return SimpleNamespace(json_data=drawing)

    def last(self, prefix: str = "canvas-") -> dict:
        return [call for call in self.calls if call["key"].startswith(prefix)][-1]

    def draw(self, objects: list[dict], prefix: str = "canvas-") -> None:
        """The user draws: the canvas mounted last under `prefix` now holds `objects`."""
        self.held[self.last(prefix)["key"]] = {"version": "7.4.0", "objects": objects}


@pytest.fixture
def canvas(monkeypatch) -> FakeCanvas:
    fake = FakeCanvas()
    monkeypatch.setattr(ui_canvas, "st_canvas", fake)
    yield fake
    assert fake.reloads == [], "a mounted canvas got a new initial_drawing (endless reruns in a browser)"
