"""Progress you can follow, in a real browser (keyframe app, tiny models on the CPU): the estimate under the
inbetween button, "segment k of n, step i of N" while svd-trf runs, a Stop that ends the run within one step
and frees the slot for the next job, and every column of the frame strip inside the page at desktop and phone
widths, keyframes marked."""

from __future__ import annotations

import re
import time
from pathlib import Path

from apps.keyframe.sample import SAMPLE_VIDEO

TIMEOUT_MS = 90_000
STEPS = 8
PROGRESS = re.compile(r"segment (\d+) of (\d+), step (\d+) of (\d+)")


def _steps_done(text: str) -> int | None:
    """Steps of the whole job done, from the progress line ("segment k of n, step i of N")."""
    found = PROGRESS.search(text)
    return None if found is None else (int(found[1]) - 1) * int(found[4]) + int(found[3])


def _strip_inside(page) -> dict:
    return page.evaluate(
        """() => {
            const items = [...document.querySelectorAll('#kf-frames .thumbnail-item')].map(e => e.getBoundingClientRect());
            const captions = [...document.querySelectorAll('#kf-frames .caption-label')];
            return {count: items.length, width: document.documentElement.clientWidth,
                    scroll: document.documentElement.scrollWidth,
                    right: Math.max(...items.map(r => r.right)), left: Math.min(...items.map(r => r.left)),
                    truncated: captions.filter(c => c.scrollWidth > c.clientWidth + 1).length,
                    keys: captions.filter(c => c.innerText.startsWith('key ')).length};
        }"""
    )


def test_estimate_segment_progress_stop_and_strip(start_app, page, tmp_path):
    page.goto(start_app("keyframe"))
    # The CPU-sized start for the tiny model, said on the page; an "empty = ..." field shows empty, not 0.
    assert "Start values sized for the CPU" in page.locator("#kf-start-note").inner_text()
    assert page.locator("#kf-end textarea, #kf-end input").first.input_value() == ""
    page.locator("#kf-video input[type=file]").set_input_files(str(SAMPLE_VIDEO))
    page.get_by_text("24 frames, 10 fps").wait_for(timeout=TIMEOUT_MS)
    page.locator("#kf-load").click()
    page.get_by_text("Loaded 24 frames of 64x64").wait_for(timeout=TIMEOUT_MS)

    for width, height in ((1440, 900), (390, 844)):
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_timeout(300)
        strip = _strip_inside(page)
        assert strip["count"] == 24 and strip["scroll"] <= strip["width"], strip
        assert strip["left"] >= 0 and strip["right"] <= strip["width"], strip  # every column in view
        assert strip["truncated"] == 0 and strip["keys"] == 4, strip  # keyframes 0, 8, 16, 23 marked
    page.set_viewport_size({"width": 1440, "height": 900})

    keys = page.locator("#kf-keys textarea, #kf-keys input").first
    keys.fill("0, 12, 23")  # two SVD segments
    keys.press("Enter")
    page.get_by_text("3 keyframes.").wait_for(timeout=TIMEOUT_MS)
    page.locator("#kf-edit-all").click()  # the cartoon filter
    page.get_by_text(re.compile(r"Edited 3 keyframes in")).wait_for(timeout=TIMEOUT_MS)

    page.locator("#kf-interp-backend").get_by_text("SVD + trajectory (svd-trf)").click()
    # The backend's own update (its start steps and estimate) lands before the steps are typed, not after.
    page.wait_for_function(
        "() => /tiny model on cpu/.test(document.querySelector('#kf-inbetween-estimate').innerText)",
        timeout=TIMEOUT_MS,
    )
    steps = page.locator("#kf-interp-steps input[type=number]")
    steps.fill(str(STEPS))
    steps.press("Enter")
    line = page.locator("#kf-inbetween-estimate")
    page.wait_for_function(
        f"() => /Estimate: about .*\\({2 * STEPS} steps, tiny model on cpu\\)/"
        ".test(document.querySelector('#kf-inbetween-estimate').innerText)",
        timeout=TIMEOUT_MS,
    )

    page.locator("#kf-inbetween").click()
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    shown = line.inner_text()
    while not _steps_done(shown) and time.monotonic() < deadline:  # until the first step is done
        page.wait_for_timeout(50)
        shown = line.inner_text()
    done = _steps_done(shown)
    assert done and re.search(rf"segment 1 of 2, step \d of {STEPS} - \d+% - about \d", shown), shown
    page.locator("#kf-inbetween-stop").click()
    # Steps shown until the server answers the Stop (it cancelled the run by then): a slow request is no step.
    status = page.locator("#kf-status")
    while "Stopped." not in status.inner_text():
        done = max(done, _steps_done(line.inner_text()) or 0)
        assert time.monotonic() < deadline
        page.wait_for_timeout(50)
    # The page takes the next click once the stopped run's progress is gone (a pending run ignores clicks).
    page.wait_for_function(
        "() => /^(Estimate|No diffusion)/.test(document.querySelector('#kf-inbetween-estimate').innerText)",
        timeout=TIMEOUT_MS,
    )

    # The slot is free: the next job (flow) runs and finishes.
    page.locator("#kf-interp-backend").get_by_text("Optical flow (no weights)").click()
    page.locator("#kf-inbetween").click()
    page.get_by_text(re.compile(r"24 frames at 10 fps from 3 keyframes \(flow\)")).wait_for(
        timeout=TIMEOUT_MS
    )
    assert page.locator("#kf-inbetween-estimate .error").count() == 0  # no stale "Error" badge
    # The stopped run's thread has ended once its (empty) run folder is gone: only the flow run's is left.
    runs = tmp_path / "outputs" / "keyframe"
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while len(list(runs.iterdir())) > 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(list(runs.iterdir())) == 1
    # Steps the server ran (the pipeline's progress bar in the app's log) against those seen up to the Stop.
    assert _steps_run(tmp_path / "keyframe.log") - done <= 1, done


def _steps_run(log: Path) -> int:
    """Denoising steps the app's svd-trf pipeline reported in its log (its tqdm bar restarts per segment)."""
    counts = [
        int(n) for n in re.findall(r"inbetweening \(svd-trf\):\s+\d+%\|[^|]*\|\s*(\d+)/", log.read_text())
    ]
    total, last = 0, 0
    for count in counts:
        if count < last:  # the next segment's bar
            total += last
        last = count
    return total + last
