"""Image + depth folder dataset on folders written by the synthetic generator."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from core.data.image_depth import ImageDepthFolder, load_depth_map, normalize_disparity
from core.data.synthetic import disparity_of, make_image_scene, write_image_depth_folder
from core.errors import InputError


def test_normalize_disparity_maps_percentiles_to_the_ends_and_is_affine_invariant():
    rng = np.random.default_rng(0)
    x = rng.uniform(0.1, 2.0, (40, 50))
    out = normalize_disparity(x)
    low, high = np.percentile(x, [2, 98])
    np.testing.assert_allclose(out, np.clip(2 * (x - low) / (high - low) - 1, -1, 1), atol=1e-6)
    assert out.dtype == np.float32 and out.min() == -1.0 and out.max() == 1.0
    np.testing.assert_allclose(normalize_disparity(3.7 * x + 11.0), out, atol=1e-5)
    # A few wild outliers only saturate themselves.
    spiked = x.copy()
    spiked[0, :5] = 1e6
    np.testing.assert_allclose(normalize_disparity(spiked)[1:], out[1:], atol=0.05)


def test_normalize_disparity_degenerate_maps():
    np.testing.assert_array_equal(normalize_disparity(np.full((4, 4), 3.0)), np.zeros((4, 4)))
    x = np.zeros((10, 10))
    x[0, 0] = 1.0  # the percentiles coincide: fall back to min / max
    out = normalize_disparity(x)
    assert out[0, 0] == 1.0 and out[5, 5] == -1.0
    y = np.linspace(0, 1, 100).reshape(10, 10)
    y[3, 3] = np.nan  # non-finite = far
    assert normalize_disparity(y)[3, 3] == -1.0
    with pytest.raises(InputError):
        normalize_disparity(np.zeros((2, 2, 2)))


@pytest.mark.parametrize("depth_format", ["png", "npy"])
def test_items_have_shapes_ranges_captions_and_the_true_depth(tmp_path, depth_format):
    write_image_depth_folder(tmp_path, 3, size=(48, 64), seed=10, depth_format=depth_format)
    ds = ImageDepthFolder(tmp_path, sample_size=(48, 64))
    assert len(ds) == 3 and ds.skipped == {}
    for i in range(3):
        item = ds[i]
        scene = make_image_scene((48, 64), 10 + i)
        assert item["caption"] == scene.caption
        for key in ("pixel_values", "depth_values"):
            assert item[key].shape == (3, 48, 64) and item[key].dtype == torch.float32
            assert item[key].min() >= -1.0 and item[key].max() <= 1.0
        # Same size: no resampling, so the pixels come back exactly.
        np.testing.assert_array_equal(
            np.round((item["pixel_values"].permute(1, 2, 0).numpy() + 1) * 127.5).astype(np.uint8),
            scene.image_uint8,
        )
        depth = item["depth_values"].numpy()
        np.testing.assert_array_equal(depth[0], depth[2])
        expected = normalize_disparity(disparity_of(scene.depth))
        # .npy is exact; a 16-bit PNG quantises the disparity to 1/65535 of its maximum.
        np.testing.assert_allclose(depth[0], expected, atol=1e-5 if depth_format == "npy" else 2e-3)
        # Near = +1: the nearest pixel saturates high, the farthest one low.
        assert depth[0][np.unravel_index(np.argmin(scene.depth), scene.depth.shape)] == 1.0
        assert depth[0][np.unravel_index(np.argmax(scene.depth), scene.depth.shape)] == -1.0


def test_resize_and_crop_keep_image_and_depth_aligned(tmp_path):
    write_image_depth_folder(tmp_path, 1, size=(64, 96), seed=3, depth_format="npy")
    item = ImageDepthFolder(tmp_path, sample_size=32)[0]
    assert item["pixel_values"].shape == (3, 32, 32) and item["depth_values"].shape == (3, 32, 32)
    # The centre crop of a 64x96 image is columns 16..80, then halved. Check it against the scene
    # rendered directly, downsampled by 2x2 averaging (what INTER_AREA does for a factor of 2).
    scene = make_image_scene((64, 96), 3)
    crop = scene.image_uint8[:, 16:80].astype(np.float32).reshape(32, 2, 32, 2, 3).mean((1, 3))
    got = (item["pixel_values"].permute(1, 2, 0).numpy() + 1) * 127.5
    assert np.abs(got - crop).max() <= 1.0


def test_random_crop_is_reproducible_with_a_seed(tmp_path):
    write_image_depth_folder(tmp_path, 2, size=(40, 80), seed=0)
    a = ImageDepthFolder(tmp_path, sample_size=32, crop="random", seed=1)
    b = ImageDepthFolder(tmp_path, sample_size=32, crop="random", seed=1)
    c = ImageDepthFolder(tmp_path, sample_size=32, crop="random", seed=2)
    torch.testing.assert_close(a[0]["pixel_values"], b[0]["pixel_values"])
    assert not torch.equal(a[0]["pixel_values"], c[0]["pixel_values"])


def test_stored_depth_is_inverted_to_disparity(tmp_path):
    write_image_depth_folder(tmp_path, 1, size=(32, 32), seed=4, depth_format="npy")
    reference = ImageDepthFolder(tmp_path, sample_size=32)[0]["depth_values"]
    scene = make_image_scene((32, 32), 4)
    np.save(tmp_path / "depth" / "scene_00000.npy", scene.depth)  # z-depth, larger = farther
    inverted = ImageDepthFolder(tmp_path, sample_size=32, stored="depth")[0]["depth_values"]
    torch.testing.assert_close(inverted, reference, atol=1e-5, rtol=0)


def test_missing_captions_get_the_default_and_metadata_csv_works(tmp_path):
    write_image_depth_folder(tmp_path, 2, size=(16, 16))
    (tmp_path / "metadata.jsonl").unlink()
    assert ImageDepthFolder(tmp_path, sample_size=16)[0]["caption"] == ""
    assert ImageDepthFolder(tmp_path, sample_size=16, default_caption="a scene")[1]["caption"] == "a scene"
    (tmp_path / "metadata.csv").write_text("file_name,text\nimages/scene_00001.png,two cubes\n")
    ds = ImageDepthFolder(tmp_path, sample_size=16)
    assert [ds[0]["caption"], ds[1]["caption"]] == ["", "two cubes"]


def test_broken_pairs_are_skipped_counted_and_replaced_deterministically(tmp_path):
    write_image_depth_folder(tmp_path, 4, size=(16, 16))
    (tmp_path / "depth" / "scene_00000.png").unlink()  # no depth: dropped at construction
    (tmp_path / "images" / "scene_00002.png").write_bytes(np.random.default_rng(0).bytes(300))  # corrupt
    np.save(tmp_path / "depth" / "scene_00003.npy", np.zeros((2, 3, 4)))  # .npy wins over .png; wrong shape
    ds = ImageDepthFolder(tmp_path, sample_size=16)
    assert len(ds) == 3 and len(ds.skipped) == 1
    captions = json.loads((tmp_path / "metadata.jsonl").read_text().splitlines()[1])["text"]
    items = [ds[i] for i in range(len(ds))]
    # Items 1 (corrupt image) and 2 (bad depth) fall through to the next usable one: index 0.
    assert [it["caption"] for it in items] == [captions] * 3
    assert len(ds.skipped) == 3
    reasons = " | ".join(ds.skipped.values())
    assert "no depth map" in reasons and "not a readable image" in reasons and "2-D" in reasons
    assert "3 image(s) skipped" in ds.skip_report()


def test_nothing_usable_raises_input_error(tmp_path):
    with pytest.raises(InputError, match="no images/ folder"):
        ImageDepthFolder(tmp_path)
    write_image_depth_folder(tmp_path, 2, size=(16, 16))
    for p in (tmp_path / "images").iterdir():
        p.write_bytes(b"not an image")
    ds = ImageDepthFolder(tmp_path, sample_size=16)
    with pytest.raises(InputError, match="No usable image"):
        ds[0]
    for p in (tmp_path / "depth").iterdir():
        p.unlink()
    with pytest.raises(InputError, match="No usable image.*2 skipped"):
        ImageDepthFolder(tmp_path, sample_size=16)


def test_load_depth_map_refuses_pickles_and_other_formats(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match="not a readable"):
        load_depth_map(tmp_path / "obj.npy")
    with pytest.raises(InputError, match=".png or .npy"):
        load_depth_map(tmp_path / "depth.exr")


def test_depth_at_another_resolution_is_resized_onto_the_image(tmp_path):
    write_image_depth_folder(tmp_path, 1, size=(32, 48), depth_format="npy")
    ramp = np.tile(np.linspace(0.0, 1.0, 12, dtype=np.float32), (8, 1))  # nearer to the right
    np.save(tmp_path / "depth" / "scene_00000.npy", ramp)
    depth = ImageDepthFolder(tmp_path, sample_size=(32, 48))[0]["depth_values"][0]
    assert depth.shape == (32, 48)
    assert (depth[:, 1:] >= depth[:, :-1]).all() and depth[:, 0].max() == -1.0 and depth[:, -1].min() == 1.0
