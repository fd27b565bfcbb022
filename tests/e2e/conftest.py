"""Real-browser fixtures: Debian's chromium driven by Playwright, apps started as the launcher does.

Browser tests skip when chromium is absent, except in CI (CI=true), where `make test` installs it and
a missing browser is a failure.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from apps.__main__ import APPS

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "assets" / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox", "--headless", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def browser():
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is missing in CI: `make test` should have installed Debian's chromium")
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    yield page
    context.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def start_app(tmp_path):
    """Start an app by launcher key on a free port with tiny models; returns its URL."""
    started: list[subprocess.Popen] = []

    def start(key: str, timeout: float = 120.0) -> str:
        app = dataclasses.replace(APPS[key], port=_free_port())
        env = {
            **os.environ,
            "KINEMA_SD_MODEL": "tiny",
            "KINEMA_SVD_MODEL": "tiny",
            "KINEMA_DEVICE": "cpu",
            "KINEMA_OUTPUT_DIR": str(tmp_path / "outputs"),
            "HF_HUB_OFFLINE": "1",
            "GRADIO_ANALYTICS_ENABLED": "False",
        }
        log = open(tmp_path / f"{key}.log", "w")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(app.command("127.0.0.1"), env=env, stdout=log, stderr=subprocess.STDOUT)
        started.append(proc)
        url = app.url("127.0.0.1")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{key} exited early:\n{(tmp_path / f'{key}.log').read_text()[-3000:]}")
            try:
                urllib.request.urlopen(url, timeout=2)
                return url
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"{key} did not answer on {url} within {timeout:.0f} s")

    yield start
    for proc in started:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def save_screenshot(page, name: str, element=None) -> Path:
    """Take a full-page screenshot NAME.png (of `element` only, a locator, when given): into
    assets/screenshots/ (the README's pictures) when KINEMA_UPDATE_SCREENSHOTS=1 (`make screenshots`), else
    into a temporary folder so a test run leaves the working tree clean."""
    if os.environ.get("KINEMA_UPDATE_SCREENSHOTS") == "1":
        folder = SCREENSHOTS
    else:
        folder = Path(tempfile.gettempdir()) / "kinema-screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    if element is not None:
        element.screenshot(path=str(path))
    else:
        page.screenshot(path=str(path), full_page=True)
    return path
