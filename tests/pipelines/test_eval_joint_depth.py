"""core.eval.joint_depth on the tiny SD model: the rows of the depth consistency figure, the table and its JSON."""

import json
import re

import numpy as np
import pytest
from diffusers import StableDiffusionPipeline

from core.data.synthetic import disparity_of, make_image_scene
from core.eval import joint_depth
from core.eval.joint_depth import evaluate_depth_consistency
from core.eval.metrics import ssi_absrel_delta1
from core.models import clear_cache, tiny_sd_components
from core.pipelines.joint_sd import JointSDPipeline


@pytest.fixture(scope="module")
def pipe():
    """A freshly patched tiny joint pipeline (zero-initialised joint layers and LoRAs)."""
    pipeline = JointSDPipeline.from_stock(StableDiffusionPipeline(**tiny_sd_components(0)))
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def test_evaluate_depth_consistency_rows(pipe):
    size = 32
    truth = {}

    def estimator(image_uint8):  # a perfect estimator on the scenes, a flat guess elsewhere
        return truth.get(image_uint8.tobytes(), np.ones(image_uint8.shape[:2], np.float32))

    for i in range(2):
        scene = make_image_scene((size, size), seed=10 + i)
        truth[scene.image_uint8.tobytes()] = disparity_of(scene.depth)
    results = evaluate_depth_consistency(
        pipe, samples=2, size=size, num_inference_steps=2, seed=10, estimator=estimator
    )
    assert list(results) == [
        "image_to_depth vs truth",
        "flat map vs truth",
        "joint: depth vs estimator",
        "estimator vs truth",
    ]
    assert results["estimator vs truth"]["absrel"] < 1e-6 and results["estimator vs truth"]["delta1"] == 1.0
    scene = make_image_scene((size, size), seed=10)
    flat = ssi_absrel_delta1(np.full((size, size), 0.5), disparity_of(scene.depth))
    assert results["flat map vs truth"]["per_sample"][0] == pytest.approx(flat)
    generated = pipe(scene.caption, image=scene.image_uint8, num_inference_steps=2, seed=10).depth[0]
    expected = ssi_absrel_delta1(generated, disparity_of(scene.depth))
    assert results["image_to_depth vs truth"]["per_sample"][0] == pytest.approx(expected)
    for row in results.values():
        assert 0 <= row["absrel"] and 0 <= row["delta1"] <= 1


def test_command_prints_the_table_and_writes_its_numbers(capsys, tmp_path):
    path = tmp_path / "joint_depth.json"
    clear_cache()  # the command patches the cached tiny UNet: keep it away from other tests' pipelines
    try:
        code = joint_depth.main(
            ["--sd-model", "tiny", "--samples", "2", "--size", "32", "--steps", "1", "--device", "cpu"]
            + ["--json", str(path)]
        )
    finally:
        clear_cache()
    printed = capsys.readouterr().out
    assert code == 0
    numbers = json.loads(path.read_text())
    assert numbers["sd_model"] == "tiny" and numbers["joint_weights"] is None
    assert list(numbers["rows"]) == ["image_to_depth vs truth", "flat map vs truth"]
    for name, row in numbers["rows"].items():
        (line,) = re.findall(
            rf"^{re.escape(name)}\s+(\d\.\d{{4}})\s+(\d\.\d{{4}})\s+\d+\.\d\d$", printed, re.M
        )
        assert [float(v) for v in line] == pytest.approx([row["absrel"], row["delta1"]], abs=5e-5)
        assert len(row["per_sample"]) == 2
        assert row["absrel"] == pytest.approx(np.mean([a for a, _ in row["per_sample"]]))
    # The flat map's row needs no model: it is the metric of a constant against each scene's truth.
    truths = [disparity_of(make_image_scene((32, 32), seed).depth) for seed in (0, 1)]
    flat = [ssi_absrel_delta1(np.full((32, 32), 0.5), t) for t in truths]
    np.testing.assert_allclose(numbers["rows"]["flat map vs truth"]["per_sample"], flat, rtol=1e-12)


def test_command_reports_a_missing_model_in_one_line(capsys, tmp_path):
    code = joint_depth.main(["--sd-model", str(tmp_path / "no-model"), "--json", str(tmp_path / "x.json")])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no-model" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.json").exists()
