"""The front door as `make demo` starts it (`python -m apps all` on free ports), in a real browser and as
processes: the landing page lists the three apps with their backend states and opens each; a missing model
is offered the offline models, one click switches that page (only) and a run works there; SIGTERM to the
launcher stops every server within 5 s and a restart binds the same ports.

The server runs with a Stable Diffusion folder that does not exist (the joint app's missing weights) and the
tiny SVD. The tests share it and run in file order: the last one stops it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from apps.common.catalog import FAVICON, ROOT
from tests.e2e.conftest import _free_port, save_screenshot

MISSING_SD = "/nonexistent/stable-diffusion"
STARTUP_S = 120
STOP_S = 5  # the acceptance bound: every server gone this long after SIGTERM


def _launch(port: int, drag_port: int, env: dict, log: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "apps", "all", "--port", str(port), "--drag-port", str(drag_port)]
    with open(log, "a") as out:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def _wait_until_served(url: str, launcher: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if launcher.poll() is not None:
            raise RuntimeError(f"the launcher exited early:\n{log.read_text()[-3000:]}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"nothing answered on {url} within {STARTUP_S} s:\n{log.read_text()[-3000:]}")


def _children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][0] != "Z"  # a zombie is gone too


@pytest.fixture(scope="module")
def front_door(tmp_path_factory):
    folder = tmp_path_factory.mktemp("front")
    env = {
        **os.environ,
        "KINEMA_SD_MODEL": MISSING_SD,
        "KINEMA_SVD_MODEL": "tiny",
        "KINEMA_DEVICE": "cpu",
        "KINEMA_OUTPUT_DIR": str(folder / "outputs"),
        "HF_HUB_OFFLINE": "1",
        "GRADIO_ANALYTICS_ENABLED": "False",
    }
    port, drag_port, log = _free_port(), _free_port(), folder / "launcher.log"
    launcher = _launch(port, drag_port, env, log)
    _wait_until_served(f"http://127.0.0.1:{port}/", launcher, log)
    _wait_until_served(f"http://127.0.0.1:{drag_port}/", launcher, log)
    door = {"launcher": launcher, "port": port, "drag_port": drag_port, "env": env, "log": log}
    yield door
    if door["launcher"].poll() is None:  # the last test stops it; this is for a failed one
        door["launcher"].send_signal(signal.SIGTERM)
        door["launcher"].wait(timeout=30)


def test_landing_page_lists_the_apps_with_their_states_and_opens_each(front_door, browser):
    url = f"http://127.0.0.1:{front_door['port']}/"
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.goto(url)
    cards = page.locator("section.app")
    assert cards.count() == 3
    states = {
        key: page.locator(f"#app-{key} .backends").inner_text() for key in ("drag", "joint", "keyframe")
    }
    assert "Warp preview (instant, no weights): ready (no weights)" in states["drag"]
    assert "SVD: ready: tiny random weights (noise)" in states["drag"]
    assert "needs KINEMA_SVD_CONTROLNET_MODEL (mini available)" in states["drag"]
    assert "needs KINEMA_SD_MODEL, KINEMA_JOINT_WEIGHTS (mini available)" in states["joint"], states["joint"]
    assert "Edit: Filter (no weights): ready (no weights)" in states["keyframe"]
    assert "Edit: Stable Diffusion: needs KINEMA_SD_MODEL (mini available)" in states["keyframe"]
    pictures = page.evaluate("[...document.querySelectorAll('section.app img')].map(i => i.naturalWidth)")
    assert pictures == [480, 480, 480]  # every picture loaded
    assert urllib.request.urlopen(f"{url}joint/favicon.ico").read() == FAVICON.read_bytes()
    save_screenshot(page, "landing")

    titles = {"joint": "Joint depth + image", "keyframe": "Keyframe edit + interpolation"}
    for key, title in titles.items():
        page.goto(url)
        page.locator(f"#app-{key} a.open").click()
        page.wait_for_url(f"{url}{key}/")
        page.locator("#app-header h1").get_by_text(title).wait_for(timeout=30_000)
        assert page.title() == title
        # Both use the missing SD weights: both offer their offline copy.
        assert page.locator("#offline-switch").get_attribute("href") in ("offline/", f"{url}{key}/offline/")
    page.goto(url)
    drag_link = page.locator("#app-drag a.open").get_attribute("href")
    assert drag_link == f"http://127.0.0.1:{front_door['drag_port']}/"  # the host this page was opened on
    page.locator("#app-drag a.open").click()
    page.get_by_role("heading", name="Drag to video").wait_for(timeout=60_000)
    assert page.title() == "Drag to video"
    assert page.locator("[data-testid='stAppDeployButton']").count() == 0  # viewer mode: no developer toolbar

    phone = browser.new_context(viewport={"width": 390, "height": 844})
    narrow = phone.new_page()
    narrow.goto(url)
    widths = narrow.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert widths[0] <= widths[1], widths
    phone.close()
    context.close()


def test_missing_weights_offer_switches_this_page_to_the_offline_models(front_door, page):
    joint = f"http://127.0.0.1:{front_door['port']}/joint/"
    page.goto(joint)
    note = page.locator("#offline-note")
    note.get_by_text("KINEMA_SD_MODEL").wait_for(timeout=30_000)
    switch = page.locator("#offline-switch")
    assert switch.inner_text() == "Switch to the offline mini models (this page only)"
    switch.click()
    page.wait_for_url(f"{joint}offline/")
    label = page.locator("#offline-label").inner_text()
    assert "Offline models in use on this page" in label and "mini for sd_model, joint_weights" in label, (
        label
    )
    page.locator("#jd-banner").get_by_text("native size 64 px").wait_for(timeout=60_000)
    steps = page.locator("#jd-steps input[type=number]")
    steps.fill("2")
    steps.blur()
    page.locator("#jd-prompt textarea").fill("a red ball on a blue floor")
    page.get_by_role("button", name="Generate", exact=True).click()
    page.locator("#jd-images img").first.wait_for(timeout=90_000)
    status = page.locator("#jd-status").inner_text()
    assert "model mini" in status and "joint weights joint_lora" in status, status
    # The run's files are served under the mount path too (apps.common.gradio.served_copies).
    record = page.locator("#jd-downloads a[href$='params.json']").first.get_attribute("href")
    assert "/joint/offline/gradio_api/file=" in record, record
    assert page.request.get(record).ok

    page.goto(joint)  # the switch held for that page only: the app's own address still offers it
    page.locator("#offline-note").get_by_text("Weights missing").wait_for(timeout=30_000)


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _stop_within(launcher: subprocess.Popen, seconds: float) -> float:
    """SIGTERM to the launcher; how long until every server it started is gone (fails past `seconds`). The
    launcher itself then exits (its own interpreter's exit is not part of the bound)."""
    servers = _children(launcher.pid)
    start = time.monotonic()
    launcher.send_signal(signal.SIGTERM)
    while any(_alive(pid) for pid in servers) and time.monotonic() - start < seconds:
        time.sleep(0.05)
    elapsed = time.monotonic() - start
    assert not [pid for pid in servers if _alive(pid)], f"servers left after {elapsed:.1f} s"
    assert launcher.wait(timeout=30) == 0
    return elapsed


def test_sigterm_stops_every_server_and_a_restart_binds_the_same_ports(front_door):
    launcher, port, drag_port = front_door["launcher"], front_door["port"], front_door["drag_port"]
    assert len(_children(launcher.pid)) == 2  # the front door and the drag app
    assert _stop_within(launcher, STOP_S) <= STOP_S
    assert _port_free(port) and _port_free(drag_port)

    again = _launch(port, drag_port, front_door["env"], front_door["log"])
    front_door["launcher"] = again  # the fixture stops it if this test fails
    _wait_until_served(f"http://127.0.0.1:{drag_port}/", again, front_door["log"])
    # Both servers started on the same ports: "Port ... is not available" would have ended the launcher.
    assert again.poll() is None
    _stop_within(again, STOP_S)
