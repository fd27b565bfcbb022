"""The drag app in a real browser: draw a trajectory with the mouse, generate, play the video; a drag on an
object moves it and holds the background."""

from __future__ import annotations

import io
import re

import numpy as np
from PIL import Image

from apps.drag import overlay
from core.video import read_video
from tests.e2e.conftest import save_screenshot

START, END = (0.35, 0.45), (0.60, 0.35)  # drag on the canvas, as fractions of its size
WORKING_SIDE_PX = 512  # the app's default working size; the astronaut sample is square
DISC, DISC_RADIUS, DISC_TO = (0.35, 0.5), 0.14, (0.65, 0.5)  # the object drag's scene, fractions of the side


def _drag(page, canvas, start: tuple[float, float], end: tuple[float, float]) -> None:
    """A mouse drag in 12 moves across the canvas, from `start` to `end` (fractions of its size)."""
    canvas.wait_for(timeout=60_000)
    box = canvas.bounding_box()

    def at(fraction: tuple[float, float]) -> tuple[float, float]:
        return box["x"] + box["width"] * fraction[0], box["y"] + box["height"] * fraction[1]

    page.mouse.move(*at(start))
    page.mouse.down()
    for k in range(1, 13):
        page.mouse.move(*at(tuple(s + (e - s) * k / 12 for s, e in zip(start, end))))
    page.mouse.up()


def test_draw_generate_and_play(start_app, page):
    page.goto(start_app("drag"))
    canvas = page.locator("canvas.upper-canvas")  # Fabric's event layer, inside the component's shadow root
    _drag(page, canvas, START, END)

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


def disc_scene_png(path, side: int = 512) -> None:
    """A red disc (DISC, DISC_RADIUS) on a smoothly striped grey background, `side` px square."""
    ys, xs = np.mgrid[0:side, 0:side] / side
    grey = 110 + 40 * np.sin(xs * 40) * np.cos(ys * 30)
    image = np.repeat(grey[..., None], 3, axis=2)
    image[(xs - DISC[0]) ** 2 + (ys - DISC[1]) ** 2 <= DISC_RADIUS**2] = (220, 40, 30)
    Image.fromarray(image.astype(np.uint8)).save(path)


def test_a_drag_on_an_object_moves_it_and_the_background_holds(start_app, page, tmp_path):
    """Issue 15's acceptance in a browser: upload a picture with a clear object, drag from it, generate
    (warp backend, objects engine: the defaults), and read the video the page plays."""
    scene = tmp_path / "disc.png"
    disc_scene_png(scene)
    page.goto(start_app("drag"))
    canvas = page.locator("canvas.upper-canvas")
    canvas.wait_for(timeout=60_000)
    page.get_by_role("radiogroup").get_by_text("Upload", exact=True).click()
    page.get_by_text("Upload an image in the sidebar").wait_for(timeout=30_000)
    page.wait_for_timeout(1000)  # the rerun settles (an upload during it can leave the canvas unmounted)
    page.locator("input[type=file]").first.set_input_files(str(scene))  # the image's uploader comes first
    page.wait_for_timeout(5000)  # the canvas remounts with the uploaded picture
    _drag(page, canvas, DISC, DISC_TO)
    page.get_by_text(re.compile(r"1 track, 2 points")).wait_for(timeout=30_000)

    page.get_by_role("button", name="Generate").click()
    page.locator("video").nth(3).wait_for(timeout=120_000)  # the preview, then the result's three videos
    src = page.evaluate("() => document.querySelectorAll('video')[1].currentSrc")
    response = page.request.get(src)
    assert response.ok
    video = tmp_path / "result.mp4"
    video.write_bytes(response.body())
    frames = read_video(video).frames_uint8.astype(int)
    assert frames.shape == (14, WORKING_SIDE_PX, WORKING_SIDE_PX, 3)
    corner = frames[:, : WORKING_SIDE_PX // 5, -WORKING_SIDE_PX // 5 :]  # top right, far from the disc
    change = np.abs(corner - corner[:1])
    # Still: within a grey level but for H.264's odd pixel (measured: mean 0.0005, max 2 levels).
    assert (change <= 1).mean() > 0.999 and change.mean() < 0.05, (change.mean(), change.max())
    end_x, end_y = (round(v * WORKING_SIDE_PX) for v in DISC_TO)
    start_x, start_y = (round(v * WORKING_SIDE_PX) for v in DISC)
    red = np.array([220, 40, 30])
    assert np.abs(frames[-1, end_y, end_x] - red).max() < 20  # the disc arrived
    assert np.abs(frames[-1, start_y, start_x] - red).max() > 60  # and left where it was


def _swipe(page, cdp, canvas, start: tuple[float, float], end: tuple[float, float]) -> None:
    """A finger swipe in 12 moves across the canvas, from `start` to `end` (fractions of its size)."""
    box = canvas.bounding_box()

    def at(fraction: tuple[float, float]) -> list[dict]:
        return [{"x": box["x"] + box["width"] * fraction[0], "y": box["y"] + box["height"] * fraction[1]}]

    cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": at(start)})
    for k in range(1, 13):
        point = tuple(s + (e - s) * k / 12 for s, e in zip(start, end))
        cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": at(point)})
    cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})


def _idle(page) -> None:
    """Wait until the script has finished its run (Streamlit's running icon is gone)."""
    page.wait_for_timeout(300)  # a click's rerun has started
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=stStatusWidgetRunningIcon]')", timeout=60_000
    )


def _fitted(page, canvas, width_px: int = 390) -> dict:
    """The canvas's box once it lies within the page's `width_px` and stays put (a canvas mounts at its
    largest, then takes its column's width, which the browser reports; it is drawn on once settled)."""
    canvas.wait_for(timeout=60_000)
    last = None
    for _ in range(60):
        page.wait_for_timeout(750)
        box = canvas.bounding_box()
        if box is not None and box == last and box["x"] + box["width"] <= width_px:
            return box
        last = box
    raise AssertionError(f"the canvas does not settle within the {width_px} px page: {last}")


def test_on_a_phone_the_canvas_fits_touch_draws_and_tracks_show_their_colours(browser, start_app, tmp_path):
    """Issue 19 (1, 2, 6) and 18.3 at 390 x 844 with touch: the canvas fits its column without a sideways
    scroll, a swipe draws a track (in image pixels) and a tap an anchor, each track's arrow head is in its
    list colour on the canvas, the toolbar leaves the help text free, a track starting outside the motion
    brush is warned about, and a result has its frame scrubber."""
    context = browser.new_context(viewport={"width": 390, "height": 844}, has_touch=True, is_mobile=True)
    page = context.new_page()
    cdp = context.new_cdp_session(page)
    page.goto(start_app("drag"))
    canvas = page.locator("canvas.upper-canvas").first
    box = _fitted(page, canvas)
    assert box["x"] >= 0 and box["width"] == box["height"] > 300, box
    assert page.evaluate("() => document.documentElement.scrollWidth <= document.documentElement.clientWidth")

    help_text = page.get_by_text("Drag from where the content starts")
    assert help_text.bounding_box()["y"] + help_text.bounding_box()["height"] <= box["y"] - 40  # toolbar room
    tracks = [((0.2, 0.3), (0.45, 0.4)), ((0.8, 0.2), (0.6, 0.6))]  # canvas fractions
    for number, (start, end) in enumerate(tracks, 1):
        canvas.scroll_into_view_if_needed()
        _swipe(page, cdp, canvas, start, end)
        page.get_by_text(re.compile(rf"{number} track, \d+ points, \d+ px")).wait_for(timeout=30_000)
    row = page.get_by_text(re.compile(r"1 track, \d+ points, \d+ px")).inner_text()
    expected_px = WORKING_SIDE_PX * np.hypot(*np.subtract(tracks[0][1], tracks[0][0]))
    assert abs(float(re.search(r"(\d+) px", row).group(1)) - expected_px) <= 3, row

    _idle(page)
    yellow = np.array(overlay.colour_of(1))  # track 2's list colour
    for _ in range(10):  # the canvas's background follows the drawing (arrow heads, numbers)
        box = canvas.bounding_box()
        shot = np.asarray(Image.open(io.BytesIO(page.screenshot(clip=box))).convert("RGB")).astype(int)
        (tip_x, tip_y), (from_x, from_y) = (np.multiply(p, shot.shape[1::-1]) for p in tracks[1][::-1])
        direction = np.array([tip_x - from_x, tip_y - from_y]) / np.hypot(tip_x - from_x, tip_y - from_y)
        normal = np.array([-direction[1], direction[0]])
        sides = [
            np.round([tip_x, tip_y] - 11 * direction + side * 4 * normal).astype(int) for side in (-1, 1)
        ]
        found = [shot[y, x] for x, y in sides]  # inside the arrow head, beside the stroke
        if all(np.abs(pixel - yellow).max() <= 40 for pixel in found):
            break
        page.wait_for_timeout(500)
    else:
        raise AssertionError(f"track 2's arrow head is not in its colour {yellow}: {found}")

    page.get_by_text("Anchor (pin a point)").click()
    _idle(page)  # the canvas remounts with the anchor tool
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    page.touchscreen.tap(box["x"] + 0.5 * box["width"], box["y"] + 0.8 * box["height"])
    page.get_by_text(re.compile(r"3 anchor at \(256, 410\) px")).wait_for(timeout=30_000)

    page.get_by_text("The whole picture (sheet)").click()
    _idle(page)
    page.get_by_text("Motion brush (optional)").click()
    page.get_by_text("Use a motion brush").click()
    _idle(page)
    brush = page.locator("canvas.upper-canvas").nth(1)
    _fitted(page, brush)
    brush.scroll_into_view_if_needed()
    _swipe(page, cdp, brush, (0.6, 0.9), (0.9, 0.9))  # far from both tracks' starts
    page.get_by_text("Tracks 1, 2 start outside the motion brush").wait_for(timeout=30_000)

    page.get_by_role("button", name="Generate").click()
    page.get_by_text(re.compile(r"Frame 1 of 14: trajectories \| video \| motion")).wait_for(timeout=60_000)
    scrubber = page.get_by_role("slider").last  # the result's, below everything else
    scrubber.focus()
    page.keyboard.press("End")
    page.get_by_text("Frame 14 of 14: trajectories | video | motion").wait_for(timeout=30_000)
    assert page.evaluate("() => document.documentElement.scrollWidth <= document.documentElement.clientWidth")
    save_screenshot(page, "drag_phone")
    context.close()
