"""The SD proofs' own helpers: the style set's tint and how much of it an image carries."""

import json

import numpy as np
import pytest

from core.data.synthetic import write_image_depth_folder
from core.eval.proof_sd import (
    PROOFS,
    TINT_UNIT,
    mean_colour,
    tint_fraction,
    tinted,
    write_tinted_folder,
)
from core.imaging import load_image


def test_tinted_adds_the_tint_in_unit_rgb_and_clips():
    image = np.array([[[100, 100, 100], [250, 128, 5]]], np.uint8)
    out = tinted(image, (0.1, 0.0, -0.1))
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, [[[126, 100, 74], [255, 128, 0]]])  # 100 +- 25.5 rounds to 126 / 74


def test_tint_fraction_is_zero_at_the_reference_one_with_the_whole_tint():
    reference = np.array([0.4, 0.5, 0.6])
    tint = np.array([0.1, 0.0, -0.1])
    images = [
        np.broadcast_to(colour, (4, 4, 3)).astype(np.float32) for colour in (reference, reference + tint)
    ]
    images.append(np.broadcast_to(reference + 0.5 * tint + [0.0, 0.2, 0.0], (4, 4, 3)).astype(np.float32))
    # The green change is orthogonal to the tint: it does not count.
    np.testing.assert_allclose(tint_fraction(images, reference, tint), [0.0, 1.0, 0.5], atol=1e-6)


def test_mean_colour_reads_uint8_and_unit_images_alike():
    uint8 = np.full((2, 3, 3), 51, np.uint8)
    unit = np.full((5, 5, 3), 0.6, np.float32)
    np.testing.assert_allclose(mean_colour([uint8, unit]), [0.4, 0.4, 0.4], atol=1e-6)


def test_write_tinted_folder_keeps_the_captions_and_tints_the_first_n(tmp_path):
    write_image_depth_folder(tmp_path / "images", 3, size=(16, 16), seed=0)
    out = write_tinted_folder(tmp_path / "images", tmp_path / "style", n=2)
    rows = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    source = [json.loads(line) for line in (tmp_path / "images" / "metadata.jsonl").read_text().splitlines()]
    assert rows == source[:2]
    for row in rows:
        original = load_image(tmp_path / "images" / row["file_name"])
        np.testing.assert_array_equal(load_image(out / row["file_name"]), tinted(original))
    assert (
        mean_colour([load_image(out / r["file_name"]) for r in rows])[0]
        > mean_colour([load_image(tmp_path / "images" / r["file_name"]) for r in rows])[0]
        + 0.5 * TINT_UNIT[0]
    )
    with pytest.raises(ValueError, match="holds 3 images; the style set needs 4"):
        write_tinted_folder(tmp_path / "images", tmp_path / "more", n=4)


def test_the_proofs_cover_the_two_sd_trainers_and_only_joint_lora_has_a_gap():
    assert [p.trainer for p in PROOFS] == ["joint_lora", "sd_lora"]
    assert [p.gap is not None for p in PROOFS] == [True, False]
