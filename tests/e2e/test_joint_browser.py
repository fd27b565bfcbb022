"""The joint-depth app in a real browser: type a prompt, Generate, see the image, depth map and point cloud."""

from __future__ import annotations

import re

import numpy as np
from PIL import Image

from tests.e2e.conftest import save_screenshot

NATIVE_SIDE = 64  # the tiny model's native size, which the app sets on page load


def test_prompt_to_image_depth_and_point_cloud(start_app, page):
    page.goto(start_app("joint"))
    banner = page.locator("#jd-banner")
    banner.get_by_text(f"native size {NATIVE_SIDE} px").wait_for(timeout=60_000)
    assert "tiny" in banner.inner_text() and "No joint weights" in banner.inner_text()
    assert page.locator("#jd-height input[type=number]").input_value() == str(NATIVE_SIDE)

    steps = page.locator("#jd-steps input[type=number]")
    steps.fill("2")
    steps.blur()
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
    page.get_by_role("tab", name="Image -> depth").click()
    page.locator("#jd-image input[type=file]").set_input_files(str(good))
    page.locator("#jd-image-go").click()
    page.locator("#jd-status").get_by_text("image_to_depth").wait_for(timeout=90_000)
    assert "1 sample of 64x64" in page.locator("#jd-status").inner_text()
