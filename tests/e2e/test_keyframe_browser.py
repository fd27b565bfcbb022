"""The keyframe app in a real browser: upload the sample clip, load, add a keyframe by clicking a frame,
filter-edit, flow-inbetween in the low-VRAM mode, play."""

from __future__ import annotations

import re

from apps.keyframe.sample import SAMPLE_FPS, SAMPLE_FRAMES, SAMPLE_SIZE, SAMPLE_VIDEO
from tests.e2e.conftest import save_screenshot

TIMEOUT_MS = 90_000


def test_upload_edit_inbetween_and_play(start_app, page):
    page.goto(start_app("keyframe"))
    page.locator("#kf-video input[type=file]").set_input_files(str(SAMPLE_VIDEO))
    # the upload is probed: its length fills the trim range
    page.get_by_text(f"{SAMPLE_FRAMES} frames, {SAMPLE_FPS:g} fps").wait_for(timeout=TIMEOUT_MS)

    status = page.locator("#kf-status")
    page.locator("#kf-load").click()
    page.get_by_text(f"Loaded {SAMPLE_FRAMES} frames of {SAMPLE_SIZE}x{SAMPLE_SIZE}").wait_for(
        timeout=TIMEOUT_MS
    )
    assert page.locator("#kf-keys textarea, #kf-keys input").first.input_value() == "0, 8, 16, 23"
    assert page.locator("#kf-frames img").count() == SAMPLE_FRAMES

    # click frame 5 in the strip, make it a keyframe
    page.locator("#kf-frames img").nth(5).click()
    page.wait_for_function(
        "() => document.querySelector('#kf-selected input').value === '5'", timeout=TIMEOUT_MS
    )
    page.get_by_role("button", name="Add / remove the selected frame").click()
    page.get_by_text("Keyframe 5 added; 5 keyframes.").wait_for(timeout=TIMEOUT_MS)
    assert page.locator("#kf-keys textarea, #kf-keys input").first.input_value() == "0, 5, 8, 16, 23"

    page.locator("#kf-edit-all").click()  # the default edit: the cartoon filter
    page.get_by_text(re.compile(r"Edited 5 keyframes in")).wait_for(timeout=TIMEOUT_MS)
    assert page.get_by_text("5: edited (cartoon)").count() >= 1
    compare = page.locator("#kf-compare img")  # the selected keyframe 5: original | edited
    compare.nth(1).wait_for(timeout=TIMEOUT_MS)
    assert compare.count() == 2

    low_vram = page.locator("#kf-low-vram input[type=checkbox]")
    assert low_vram.is_visible() and not low_vram.is_checked()  # starts at the server's setting
    low_vram.check()  # this run only: the record says so
    page.locator("#kf-inbetween").click()
    page.get_by_text(re.compile(r"24 frames at 10 fps from 5 keyframes \(flow\)")).wait_for(
        timeout=TIMEOUT_MS
    )
    video = page.locator("#kf-result video")
    video.wait_for(timeout=TIMEOUT_MS)
    state = video.evaluate(
        """async (v) => {
            for (let i = 0; i < 100 && v.readyState < 1; i++) await new Promise(r => setTimeout(r, 100));
            return {src: v.currentSrc, ready: v.readyState, duration: v.duration,
                    width: v.videoWidth, height: v.videoHeight, error: v.error && v.error.code};
        }"""
    )
    assert state["error"] is None and state["ready"] >= 1, state  # HAVE_METADATA at least: it plays
    assert abs(state["duration"] - SAMPLE_FRAMES / SAMPLE_FPS) < 0.05, state
    assert (state["width"], state["height"]) == (SAMPLE_SIZE, SAMPLE_SIZE)
    response = page.request.get(state["src"])
    assert response.ok and response.headers["content-type"] == "video/mp4"
    assert "; run " in status.inner_text()
    record = page.locator("#kf-downloads a[download='params.json']").get_attribute("href")
    record = page.request.get(record).json()
    assert record["settings"]["low_vram"] is True
    save_screenshot(page, "keyframe")
    save_screenshot(page, "keyframe_compare", page.locator("#kf-compare"))

    # original | result: frame i of both by the scrubber
    frame = page.locator("#kf-frame img")
    frame.nth(1).wait_for(timeout=TIMEOUT_MS)
    first = frame.nth(1).get_attribute("src")
    scrub = page.locator("#kf-scrub input[type=number]")
    scrub.fill("12")
    scrub.blur()
    page.wait_for_function(
        "src => document.querySelectorAll('#kf-frame img')[1].src !== src", arg=first, timeout=TIMEOUT_MS
    )

    # the Runs panel lists the run with its record; Redo puts its keyframes and settings back
    page.locator("#kf-runs img").first.wait_for(timeout=TIMEOUT_MS)
    listed = page.locator("#kf-run-files a[download='params.json']")
    listed.wait_for(timeout=TIMEOUT_MS)
    assert page.request.get(listed.get_attribute("href")).json() == record
    keys = page.locator("#kf-keys textarea, #kf-keys input").first
    keys.fill("0, 23")
    low_vram.uncheck()
    page.locator("#kf-redo").click()
    page.get_by_text("Settings of run").first.wait_for(timeout=TIMEOUT_MS)
    assert keys.input_value() == "0, 5, 8, 16, 23" and low_vram.is_checked()

    phone = page.context.browser.new_context(viewport={"width": 390, "height": 844})
    small = phone.new_page()
    small.goto(page.url)
    no_sideways = "() => document.documentElement.scrollWidth <= document.documentElement.clientWidth"
    small.locator("#kf-sample").click()
    small.get_by_text(f"{SAMPLE_FRAMES} frames, {SAMPLE_FPS:g} fps").wait_for(timeout=TIMEOUT_MS)
    assert small.evaluate(no_sideways)
    small.locator("#kf-load").click()
    small.locator("#kf-frames img").nth(SAMPLE_FRAMES - 1).wait_for(state="attached", timeout=TIMEOUT_MS)
    assert small.evaluate(no_sideways)
    phone.close()
