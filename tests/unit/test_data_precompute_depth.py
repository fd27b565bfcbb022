"""precompute-depth with a tiny random DPT built in code, and with an injected estimator."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.data.image_depth import ImageDepthFolder, load_depth_map
from core.data.precompute_depth import load_depth_estimator, main, precompute_depth
from core.data.synthetic import write_image_depth_folder
from core.errors import InputError, ModelNotAvailable
from core.imaging import load_image


@pytest.fixture(scope="module")
def tiny_dpt(tmp_path_factory) -> str:
    """A random-weight DPT depth estimator (about 140 kB) saved like a hub checkpoint."""
    from transformers import DPTConfig, DPTForDepthEstimation, DPTImageProcessorPil

    torch.manual_seed(0)
    config = DPTConfig(
        hidden_size=16,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=32,
        image_size=32,
        patch_size=8,
        backbone_out_indices=[0, 1, 2, 3],
        neck_hidden_sizes=[8, 8, 8, 8],
        fusion_hidden_size=8,
        head_hidden_size=8,
        reassemble_factors=[4, 2, 1, 0.5],
    )
    folder = tmp_path_factory.mktemp("tiny_dpt")
    DPTForDepthEstimation(config).eval().save_pretrained(folder)
    DPTImageProcessorPil(size={"height": 32, "width": 32}).save_pretrained(folder)
    return str(folder)


def test_command_fills_depth_folder_with_the_model_prediction(tmp_path, tiny_dpt, capsys):
    write_image_depth_folder(tmp_path, 3, size=(40, 56))
    for p in (tmp_path / "depth").iterdir():
        p.unlink()
    assert main(["--images", str(tmp_path / "images"), "--model", tiny_dpt, "--device", "cpu"]) == 0
    assert "3 written" in capsys.readouterr().out
    written = sorted(p.name for p in (tmp_path / "depth").iterdir())
    assert written == ["scene_00000.png", "scene_00001.png", "scene_00002.png"]

    estimator = load_depth_estimator(tiny_dpt, "cpu")
    image = load_image(tmp_path / "images" / "scene_00001.png")
    prediction = estimator(image)
    assert prediction.shape == (40, 56) and prediction.dtype == np.float32
    stored = load_depth_map(tmp_path / "depth" / "scene_00001.png")
    low, high = prediction.min(), prediction.max()
    np.testing.assert_allclose(stored, (prediction - low) / (high - low), atol=1 / 65535 + 1e-6)

    item = ImageDepthFolder(tmp_path, sample_size=(40, 56))[1]
    assert item["depth_values"].shape == (3, 40, 56)
    assert item["depth_values"].min() == -1.0 and item["depth_values"].max() == 1.0

    # A second run keeps what is there.
    assert main(["--images", str(tmp_path), "--model", tiny_dpt, "--device", "cpu"]) == 0
    assert "0 written, 3 already there" in capsys.readouterr().out


def test_missing_model_names_the_model_flag(tmp_path, monkeypatch, capsys):
    write_image_depth_folder(tmp_path, 1, size=(16, 16))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for model in (str(tmp_path / "no_such_model"), "someone/not-a-cached-depth-model"):
        with pytest.raises(ModelNotAvailable, match="--model"):
            load_depth_estimator(model, "cpu")
        assert main(["--images", str(tmp_path / "images"), "--model", model]) == 2
        assert "--model" in capsys.readouterr().err


def test_wrong_image_folder_fails_before_loading_a_model(tmp_path, capsys):
    assert main(["--images", str(tmp_path / "nothing"), "--model", "unused"]) == 2
    assert "--images" in capsys.readouterr().err
    with pytest.raises(InputError, match="no .jpg or .png"):
        precompute_depth(tmp_path, lambda image: image[..., 0].astype(np.float32))


def test_injected_estimator_npy_output_and_unreadable_images(tmp_path):
    write_image_depth_folder(tmp_path, 2, size=(24, 32))
    (tmp_path / "images" / "broken.png").write_bytes(b"\x89PNG not really")

    def brightness(image_uint8: np.ndarray) -> np.ndarray:
        return image_uint8.astype(np.float32).mean(-1)

    out = tmp_path / "predicted"
    counts = precompute_depth(tmp_path / "images", brightness, out, fmt="npy", progress=False)
    assert counts == {"written": 2, "existing": 0, "unreadable": 1}
    image = load_image(tmp_path / "images" / "scene_00000.png")
    np.testing.assert_array_equal(np.load(out / "scene_00000.npy"), brightness(image))
    counts = precompute_depth(tmp_path / "images", brightness, out, fmt="npy", overwrite=True, progress=False)
    assert counts["written"] == 2


def test_metric_model_output_is_inverted_to_disparity(tmp_path):
    from PIL import Image
    from transformers import (
        DepthAnythingConfig,
        DepthAnythingForDepthEstimation,
        Dinov2Config,
        DPTImageProcessorPil,
        pipeline,
    )

    torch.manual_seed(0)
    backbone = Dinov2Config(
        hidden_size=16,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=32,
        image_size=28,
        patch_size=14,
        out_indices=[1, 2, 3, 4],
        reshape_hidden_states=False,
    )
    config = DepthAnythingConfig(
        backbone_config=backbone,
        neck_hidden_sizes=[8, 8, 8, 8],
        fusion_hidden_size=8,
        head_hidden_size=8,
        reassemble_hidden_size=16,
        patch_size=14,
        depth_estimation_type="metric",
        max_depth=20,
    )
    DepthAnythingForDepthEstimation(config).eval().save_pretrained(tmp_path)
    DPTImageProcessorPil(size={"height": 28, "width": 28}).save_pretrained(tmp_path)
    image = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    metres = pipeline("depth-estimation", model=str(tmp_path))(Image.fromarray(image))["predicted_depth"]
    metres = metres.numpy().squeeze()
    assert metres.min() > 0
    np.testing.assert_allclose(load_depth_estimator(str(tmp_path), "cpu")(image), 1.0 / metres, rtol=1e-6)
