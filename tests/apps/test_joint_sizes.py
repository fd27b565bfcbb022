"""The joint-depth record states the sizes a run used, and an input cropped to fit is said (issue 19.3)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from apps.joint_depth import job
from apps.joint_depth.job import JointRequest
from core.config import Settings


def test_the_record_names_only_the_sizes_the_run_used_and_a_crop_is_said(tmp_path):
    settings = Settings(sd_model="tiny", device="cpu", output_dir=tmp_path / "outputs")
    fast = {"steps": 1, "guidance": 1.0, "prompt": "a chair"}

    done = job.run_job(JointRequest.from_ui(settings, mode="joint", height=64, width=64, **fast), settings)
    arguments = done.record.arguments
    assert "side" not in arguments and (arguments["height"], arguments["width"]) == (64, 64)
    assert arguments["size_wh"] == [64, 64] and done.notes == []

    wide = tmp_path / "wide.png"  # 451x300, as chelsea: at 128 px it becomes 128x64, a crop of a quarter
    Image.fromarray(np.full((300, 451, 3), 90, np.uint8)).save(wide)
    request = JointRequest.from_ui(settings, mode="image_to_depth", side=128, input_path=str(wide), **fast)
    done = job.run_job(request, settings)
    arguments = done.record.arguments
    assert "height" not in arguments and "width" not in arguments and arguments["side"] == 128
    assert arguments["size_wh"] == [128, 64] and done.images_uint8.shape[1:3] == (64, 128)
    (note,) = done.notes
    assert (
        note.startswith("The image (451x300) was centre-cropped to 451x226 to make 128x64") and "25%" in note
    )
    assert job.request_from_record(done.record) == JointRequest(
        **{**vars(request), "height": 512, "width": 512}
    )

    square = tmp_path / "square.png"  # fits without a crop: nothing to say
    Image.fromarray(np.full((128, 128, 3), 90, np.uint8)).save(square)
    assert (
        job.prepare_image(square, settings, 128, notes=(notes := [])).shape == (128, 128, 3) and notes == []
    )
