"""The SD proofs' own helpers: the style set (the wall repainted) and how much of its colour shift an image carries."""

import json

import numpy as np
import pytest

from core.data.synthetic import PALETTE, write_image_depth_folder
from core.eval.proof_sd import (
    PROOFS,
    STYLE_WALL,
    mean_colour,
    style_fraction,
    write_style_folder,
)
from core.imaging import load_image


def test_style_fraction_is_zero_at_the_reference_one_with_the_whole_shift():
    reference = np.array([0.4, 0.5, 0.6])
    shift = np.array([0.1, 0.0, -0.1])
    images = [
        np.broadcast_to(colour, (4, 4, 3)).astype(np.float32) for colour in (reference, reference + shift)
    ]
    images.append(np.broadcast_to(reference + 0.5 * shift + [0.0, 0.2, 0.0], (4, 4, 3)).astype(np.float32))
    # The green change is orthogonal to the shift: it does not count.
    np.testing.assert_allclose(style_fraction(images, reference, shift), [0.0, 1.0, 0.5], atol=1e-6)


def test_mean_colour_reads_uint8_and_unit_images_alike():
    uint8 = np.full((2, 3, 3), 51, np.uint8)
    unit = np.full((5, 5, 3), 0.6, np.float32)
    np.testing.assert_allclose(mean_colour([uint8, unit]), [0.4, 0.4, 0.4], atol=1e-6)


def test_write_style_folder_repaints_only_the_wall_of_the_first_n_and_keeps_the_captions(tmp_path):
    write_image_depth_folder(tmp_path / "images", 3, size=(24, 24), seed=0)
    out = write_style_folder(tmp_path / "images", tmp_path / "style", n=2)
    rows = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    source = [json.loads(line) for line in (tmp_path / "images" / "metadata.jsonl").read_text().splitlines()]
    assert rows == source[:2]
    wall = np.asarray(PALETTE[STYLE_WALL])
    for row in rows:
        original = load_image(tmp_path / "images" / row["file_name"]).astype(np.float32) / 255
        styled = load_image(out / row["file_name"]).astype(np.float32) / 255
        changed = np.abs(styled - original).max(axis=2) > 2 / 255
        assert 0.2 < changed.mean() < 0.8  # the wall: the top of the frame, not the floor or the objects
        assert changed[0].all() and not changed[-1].any()
        # The wall's pixels are the new colour, shaded: proportional to it.
        hue = styled[changed] / styled[changed].sum(axis=1, keepdims=True)
        np.testing.assert_allclose(hue, np.broadcast_to(wall / wall.sum(), hue.shape), atol=0.02)
    with pytest.raises(ValueError, match="holds 3 images; the style set needs 4"):
        write_style_folder(tmp_path / "images", tmp_path / "more", n=4)
    write_image_depth_folder(tmp_path / "other", 2, size=(24, 24), seed=5)
    with pytest.raises(ValueError, match="not a folder of training scenes from seed 0"):
        write_style_folder(tmp_path / "other", tmp_path / "wrong", n=2)


def test_the_proofs_cover_the_two_sd_trainers_and_only_joint_lora_has_a_gap():
    assert [p.trainer for p in PROOFS] == ["joint_lora", "sd_lora"]
    assert [p.gap is not None for p in PROOFS] == [True, False]
