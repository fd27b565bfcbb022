"""The joint-depth app in a real browser: type a prompt, Generate, see the image, depth map and point cloud."""

from __future__ import annotations

import re

import numpy as np
from PIL import Image

from tests.e2e.conftest import save_screenshot

NATIVE_SIDE = 64  # the tiny model's native size, which the app sets on page load


def test_prompt_to_image_depth_and_point_cloud(start_app, page, browser):
    url = start_app("joint")
    page.goto(url)
    banner = page.locator("#jd-banner")
    banner.get_by_text(f"native size {NATIVE_SIDE} px").wait_for(timeout=60_000)
    assert "tiny" in banner.inner_text() and "No joint weights" in banner.inner_text()
    assert page.locator("#jd-height input[type=number]").input_value() == str(NATIVE_SIDE)

    steps = page.locator("#jd-steps input[type=number]")
    steps.fill("2")
    steps.blur()
    # the estimate under Generate follows the steps (core.estimate's CPU figure for the tiny model)
    page.locator("#jd-generate-estimate").get_by_text("(2 steps, tiny model on cpu)").wait_for(timeout=30_000)
    assert "Estimate: about" in page.locator("#jd-generate-estimate").inner_text()
    page.locator("#jd-prompt textarea").fill("a lighthouse on a cliff at dusk")
    with page.expect_response(re.compile(r"points_1\.ply")) as ply_response:
        page.get_by_role("button", name="Generate", exact=True).click()
        image = page.locator("#jd-images img").first
        image.wait_for(timeout=90_000)
        page.locator("#jd-depth-maps img").first.wait_for(timeout=30_000)
    assert ply_response.value.ok  # the viewer fetched the point cloud

    sizes = page.evaluate(
        """async () => {
            const imgs = [...document.querySelectorAll('#jd-images img, #jd-depth-maps img')];
            await Promise.all(imgs.map(i => i.complete ? null : new Promise(r => i.onload = r)));
            return imgs.map(i => [i.naturalWidth, i.naturalHeight]);
        }"""
    )
    assert sizes == [[NATIVE_SIDE, NATIVE_SIDE]] * 2, sizes
    status = page.locator("#jd-status").inner_text()
    assert "1 sample of 64x64" in status and "2 steps" in status, status
    assert page.locator("#jd-cloud canvas").count() == 1  # the 3-D viewer is drawing
    downloads = page.locator("#jd-downloads").inner_text().replace("\n", "")  # name and suffix are split
    for name in ("image_1.png", "depth_1.png", "depth_1_color.png", "points_1.ply", "params.json"):
        assert name in downloads, downloads

    page.wait_for_timeout(1500)  # let the viewer draw the points before the picture
    save_screenshot(page, "joint_depth")
    assert page.locator("#jd-compare img").count() == 2  # the image | depth slider shows the sample
    save_screenshot(page, "joint_depth_compare", page.locator("#jd-compare"))

    _phone_runs_and_redo(browser, url)


def _params(page, runs: int) -> dict:
    """Once the Runs panel lists `runs` runs: the record of the newest (chosen), from its params.json link."""
    page.locator("#jd-runs img").nth(runs - 1).wait_for(timeout=90_000)
    name = page.locator("#jd-status").inner_text().rsplit("; run ", 1)[1].split(".")[0]
    page.wait_for_function(
        "name => document.querySelector('#jd-run-choice input').value === name", arg=name, timeout=30_000
    )
    page.wait_for_timeout(1000)  # the chosen run's details follow its choice
    link = page.locator("#jd-run-files a[download='params.json']")
    link.wait_for(timeout=30_000)
    return page.request.get(link.get_attribute("href")).json()


def _phone_runs_and_redo(browser, url: str) -> None:
    """At 390x844: the three mode tabs are all shown, the page never scrolls sideways, Generate brings its
    result into view; the Runs panel lists the run, and Redo puts its settings back so that the next run's
    parameters JSON equals the first's."""
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    page.goto(url)
    page.locator("#jd-banner").get_by_text(f"native size {NATIVE_SIDE} px").wait_for(timeout=60_000)
    assert (
        all(tab.is_visible() for tab in page.get_by_role("tab").all())
        and page.get_by_role("tab").count() == 3
    )
    no_sideways = "() => document.documentElement.scrollWidth <= document.documentElement.clientWidth"
    assert page.evaluate(no_sideways)

    steps, seed = page.locator("#jd-steps input[type=number]"), page.locator("#jd-seed input")
    steps.fill("2")
    steps.blur()
    seed.fill("3")
    seed.blur()
    page.locator("#jd-prompt textarea").fill("a red chair")
    page.get_by_role("button", name="Generate", exact=True).click()
    image = page.locator("#jd-images img").first
    image.wait_for(timeout=90_000)
    page.wait_for_timeout(500)  # the scroll to the results
    box = image.bounding_box()
    assert box is not None and 0 <= box["y"] and box["y"] + box["height"] <= 844, box  # in view
    assert page.evaluate(no_sideways)
    first = _params(page, 1)
    assert first["arguments"]["size_wh"] == [NATIVE_SIDE, NATIVE_SIDE] and "side" not in first["arguments"]

    page.locator("#jd-prompt textarea").fill("something else")
    seed.fill("9")
    seed.blur()
    page.locator("#jd-redo").click()
    page.locator("#jd-status").get_by_text("Settings of run").wait_for(timeout=30_000)
    assert page.locator("#jd-prompt textarea").input_value() == "a red chair"
    assert seed.input_value() == "3"
    page.get_by_role("button", name="Generate", exact=True).click()
    second = _params(page, 2)
    assert second["arguments"] == first["arguments"], (second["arguments"], first["arguments"])
    context.close()


def test_an_uploaded_image_gives_its_depth(start_app, page, tmp_path):
    """The image input hands the handler the upload's path (apps.common.gradio.image_upload): a browser
    upload is accepted, a corrupt one is answered with core.imaging's sentence."""
    page.goto(start_app("joint"))
    page.locator("#jd-banner").get_by_text(f"native size {NATIVE_SIDE} px").wait_for(timeout=60_000)
    page.get_by_role("tab", name="Image -> depth").click()
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image at all")
    page.locator("#jd-image input[type=file]").set_input_files(str(broken))
    page.locator("#jd-image-go").click()
    page.get_by_text("broken.png is not a readable image", exact=False).first.wait_for(timeout=30_000)

    good = tmp_path / "good.png"
    Image.fromarray(np.full((NATIVE_SIDE, NATIVE_SIDE, 3), 90, np.uint8)).save(good)
    page.reload()
    # Under load the reloaded page takes a while to render again: a click on the tab before then is lost.
    page.locator("#jd-banner").get_by_text(f"native size {NATIVE_SIDE} px").wait_for(timeout=60_000)
    page.get_by_role("tab", name="Image -> depth").click()
    page.locator("#jd-image input[type=file]").set_input_files(str(good))
    page.locator("#jd-image-go").click()
    page.locator("#jd-status").get_by_text("image_to_depth").wait_for(timeout=90_000)
    assert "1 sample of 64x64" in page.locator("#jd-status").inner_text()
