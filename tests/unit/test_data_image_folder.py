"""ImageCaptionFolder: captions by column, folders without metadata, missing and broken images."""

import json

import numpy as np
import pytest
import torch

from core.data.image_folder import ImageCaptionFolder, read_metadata_rows
from core.data.synthetic import make_image_scene, write_image_depth_folder
from core.errors import InputError


def _captions(root) -> list[str]:
    return [json.loads(line)["text"] for line in (root / "metadata.jsonl").read_text().splitlines()]


def test_items_are_the_metadata_rows_with_their_captions(tmp_path):
    write_image_depth_folder(
        tmp_path, 3, size=(32, 48), seed=5
    )  # also writes depth/*.png: not training images
    ds = ImageCaptionFolder(tmp_path, sample_size=16)
    assert len(ds) == 3 and ds.captions == _captions(tmp_path)
    item = ds[1]
    assert item["caption"] == _captions(tmp_path)[1]
    assert item["pixel_values"].shape == (3, 16, 16) and item["pixel_values"].dtype == torch.float32
    # The centre 32x32 of the 32x48 scene, halved by 2x2 averaging (what INTER_AREA does for a factor of 2).
    crop = make_image_scene((32, 48), 6).image_uint8[:, 8:40].astype(np.float32)
    expected = crop.reshape(16, 2, 16, 2, 3).mean((1, 3))
    got = (item["pixel_values"].permute(1, 2, 0).numpy() + 1) * 127.5
    assert np.abs(got - expected).max() <= 1.0


def test_caption_column_and_default_caption(tmp_path):
    write_image_depth_folder(tmp_path, 2, size=(16, 16))
    rows = [
        {"file_name": "images/scene_00000.png", "prompt": "a custom caption"},
        {"file_name": "images/scene_00001.png", "text": "no prompt column here"},
    ]
    (tmp_path / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    ds = ImageCaptionFolder(tmp_path, sample_size=16, caption_column="prompt", default_caption="a scene")
    assert ds.captions == ["a custom caption", "a scene"]
    with pytest.raises(InputError, match="'caption' column"):
        ImageCaptionFolder(tmp_path, sample_size=16, caption_column="caption")


def test_without_metadata_every_image_of_images_gets_the_default_caption(tmp_path):
    write_image_depth_folder(tmp_path, 2, size=(16, 16))
    (tmp_path / "metadata.jsonl").unlink()
    ds = ImageCaptionFolder(tmp_path, sample_size=8, default_caption="a photo")
    assert len(ds) == 2 and ds.captions == ["a photo", "a photo"]
    assert read_metadata_rows(tmp_path) is None
    (tmp_path / "metadata.csv").write_text("file_name,text\nimages/scene_00001.png,two cubes\n")
    assert ImageCaptionFolder(tmp_path, sample_size=8).captions == ["two cubes"]


def test_missing_and_broken_images_are_skipped_and_counted(tmp_path):
    write_image_depth_folder(tmp_path, 3, size=(16, 16))
    (tmp_path / "images" / "scene_00000.png").unlink()  # named by a row, missing: dropped at construction
    (tmp_path / "images" / "scene_00001.png").write_bytes(np.random.default_rng(0).bytes(200))  # corrupt
    ds = ImageCaptionFolder(tmp_path, sample_size=16)
    assert len(ds) == 2 and len(ds.skipped) == 1
    # Item 0 (corrupt) falls through to the next usable one.
    assert ds[0]["caption"] == ds[1]["caption"] == _captions(tmp_path)[2]
    assert len(ds.skipped) == 2


def test_random_crop_is_reproducible_with_a_seed(tmp_path):
    write_image_depth_folder(tmp_path, 1, size=(24, 64))
    a, b, c = (ImageCaptionFolder(tmp_path, 16, crop="random", seed=s)[0]["pixel_values"] for s in (1, 1, 2))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_bad_folders_raise_input_error(tmp_path):
    with pytest.raises(InputError, match="not a folder"):
        ImageCaptionFolder(tmp_path / "missing")
    (tmp_path / "metadata.jsonl").write_text("{not json\n")
    with pytest.raises(InputError, match="line 1"):
        ImageCaptionFolder(tmp_path)
    (tmp_path / "metadata.jsonl").unlink()
    with pytest.raises(InputError, match="No usable image"):
        ImageCaptionFolder(tmp_path)
