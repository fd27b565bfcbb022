"""The drag app in a real browser: draw a trajectory with the mouse, generate, play the video."""

from __future__ import annotations

import re

from tests.e2e.conftest import save_screenshot

START, END = (0.35, 0.45), (0.60, 0.35)  # drag on the canvas, as fractions of its size
WORKING_SIDE_PX = 512  # the app's default working size; the astronaut sample is square


def test_draw_generate_and_play(start_app, page):
    page.goto(start_app("drag"))
    canvas = page.locator("canvas.upper-canvas")  # Fabric's event layer, inside the component's shadow root
    canvas.wait_for(timeout=60_000)
    box = canvas.bounding_box()

    def at(fraction: tuple[float, float]) -> tuple[float, float]:
        return box["x"] + box["width"] * fraction[0], box["y"] + box["height"] * fraction[1]

    page.mouse.move(*at(START))
    page.mouse.down()
    for k in range(1, 13):
        page.mouse.move(*at(tuple(s + (e - s) * k / 12 for s, e in zip(START, END))))
    page.mouse.up()

    row = page.get_by_text(re.compile(r"1 track, 2 points, \d+ px"))
    row.wait_for(timeout=30_000)
    length_px = float(re.search(r"(\d+) px", row.inner_text()).group(1))
    expected_px = WORKING_SIDE_PX * ((END[0] - START[0]) ** 2 + (END[1] - START[1]) ** 2) ** 0.5
    assert abs(length_px - expected_px) <= 3  # the drawn line arrives in image pixels

    page.locator("video").first.wait_for(timeout=30_000)  # the warp's preview video follows the drawing
    assert page.locator("video").count() == 1

    page.get_by_role("button", name="Generate").click()
    page.locator("video").nth(3).wait_for(timeout=60_000)  # the preview, then the result's three videos
    state = page.evaluate(
        """async () => {
            const v = document.querySelectorAll('video')[1];
            for (let i = 0; i < 100 && v.readyState < 2; i++) await new Promise(r => setTimeout(r, 100));
            return {src: v.currentSrc, ready: v.readyState, duration: v.duration,
                    width: v.videoWidth, height: v.videoHeight, error: v.error && v.error.code};
        }"""
    )
    assert state["error"] is None and state["ready"] >= 2, state  # HAVE_CURRENT_DATA: a frame decoded
    assert abs(state["duration"] - 14 / 7) < 0.05, state  # 14 frames at 7 fps
    assert (state["width"], state["height"]) == (WORKING_SIDE_PX, WORKING_SIDE_PX)
    response = page.request.get(state["src"])
    assert response.ok and response.headers["content-type"] == "video/mp4"

    page.set_viewport_size({"width": 1400, "height": 1750})  # Streamlit scrolls inside the page
    page.wait_for_timeout(500)
    save_screenshot(page, "drag")
