"""Fixtures shared by the app tests."""

import pytest

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
