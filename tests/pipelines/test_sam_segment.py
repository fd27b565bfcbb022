"""The optional learned segmenter of the object-aware drags: a tiny random SAM saved as a folder, loaded through
KINEMA_SAM_MODEL and prompted at the drag start. Its masks mean nothing, so these check shapes, the point, the
rules both segmenters share and the errors, not quality."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from core.config import Settings
from core.engines.objects import object_layers, segment_object
from core.errors import ModelNotAvailable
from core.models import load_sam
from core.models.presets import tiny_sam
from core.trajectory import Trajectories, Trajectory

HEIGHT, WIDTH = 96, 128
DISC_RADIUS_PX = 0.06 * HEIGHT  # the speck -> disc rule's disc, for this image


@pytest.fixture(scope="module")
def sam_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sam")
    tiny = tiny_sam()
    tiny["model"].save_pretrained(folder)
    tiny["processor"].save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def segmenter(sam_folder):
    return load_sam(Settings.from_env({"KINEMA_SAM_MODEL": str(sam_folder)}, device="cpu"))


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(0).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)


def _points_on_and_off(image, segmenter):
    """Grid points (x, y) where the tiny SAM's own mask holds the point, largest part first, and where it does not."""
    on, off = [], []
    for y in range(6, HEIGHT, 12):
        for x in range(6, WIDTH, 12):
            raw = segmenter.mask(image, (x, y))
            (on if raw[y, x] else off).append(((x, y), -raw.sum()))
    return [point for point, _ in sorted(on, key=lambda item: item[1])], [point for point, _ in off]


def test_the_setting_loads_the_saved_folder_once(sam_folder, segmenter):
    assert load_sam(Settings.from_env({}, device="cpu")) is None  # absent: the GrabCut path
    assert load_sam(Settings.from_env({}, sam_model=str(sam_folder), device="cpu")) is segmenter
    reference = tiny_sam()["model"].state_dict()
    loaded = segmenter.model.state_dict()
    assert loaded.keys() == reference.keys()
    assert all(torch.equal(loaded[key], reference[key]) for key in reference)


def test_the_learned_path_gives_an_image_sized_mask_holding_the_point(image, segmenter):
    for point in [(40.0, 30.0), (-0.5, -0.5), (WIDTH - 0.6, HEIGHT - 0.6)]:
        raw = segmenter.mask(image, point)
        mask = segment_object(image, point, segmenter=segmenter)
        assert raw.shape == mask.shape == (HEIGHT, WIDTH) and raw.dtype == mask.dtype == bool
        column, row = (min(n - 1, max(0, round(v))) for v, n in zip(point, (WIDTH, HEIGHT), strict=True))
        assert mask[row, column]


def test_the_drags_on_one_image_encode_it_once(image, segmenter, monkeypatch):
    encoded = []
    encode = segmenter.model.get_image_embeddings
    monkeypatch.setattr(
        segmenter.model, "get_image_embeddings", lambda pixels: encoded.append(1) or encode(pixels)
    )
    other = image[::-1].copy()
    for picture, point in [(other, (5, 5)), (other, (50, 40)), (image, (5, 5)), (image, (60, 20))]:
        segment_object(picture, point, segmenter=segmenter)
    assert len(encoded) == 2


def test_grow_shrink_and_the_speck_rule_apply_to_the_learned_mask(image, segmenter):
    import cv2

    on, off = _points_on_and_off(image, segmenter)
    (x, y) = on[0]
    raw = segmenter.mask(image, (x, y))
    _, parts = cv2.connectedComponents(raw.astype(np.uint8))
    mask = segment_object(image, (x, y), segmenter=segmenter)
    assert np.array_equal(mask, parts == parts[y, x])  # SAM's part under the point, not GrabCut's
    grown = segment_object(image, (x, y), grow_px=2, segmenter=segmenter)
    shrunk = segment_object(image, (x, y), grow_px=-1, segmenter=segmenter)
    assert shrunk.sum() < mask.sum() < grown.sum() and (shrunk <= mask).all() and (mask <= grown).all()
    # Off SAM's mask (or on a speck of it) the patch around the point moves, as on the GrabCut path.
    (x, y) = off[0]
    disc = segment_object(image, (x, y), segmenter=segmenter)
    assert disc.sum() == pytest.approx(np.pi * DISC_RADIUS_PX**2, rel=0.1)
    assert disc[y, x] and not disc[y, min(WIDTH - 1, x + round(DISC_RADIUS_PX) + 2)]


def test_object_layers_segment_with_the_segmenter(image, segmenter):
    starts = [(40.0, 30.0), (100.0, 70.0)]
    drags = Trajectories(
        tuple(
            Trajectory(
                np.array([(np.array(p) + 0.5) / (WIDTH, HEIGHT), (np.array(p) + 10.5) / (WIDTH, HEIGHT)])
            )
            for p in starts
        )
    )
    layers = object_layers(image, drags, grow_px=1, segmenter=segmenter)
    assert np.array_equal(layers[0].mask, segment_object(image, starts[0], grow_px=1, segmenter=segmenter))


def _sentence(folder) -> str:
    with pytest.raises(ModelNotAvailable) as info:
        load_sam(Settings.from_env({}, sam_model=str(folder), device="cpu"))
    message = str(info.value)
    assert "KINEMA_SAM_MODEL (or --sam-model)" in message and str(folder) in message and "\n" not in message
    assert message.endswith("or leave it empty to segment with GrabCut, without weights.")
    return message


def test_a_missing_or_unfit_folder_is_one_sentence_naming_the_setting(tmp_path, sam_folder):
    assert "(no such folder)" in _sentence(tmp_path / "no-sam")
    without_processor = tmp_path / "model-only"
    tiny_sam()["model"].save_pretrained(without_processor)
    assert "(no preprocessor_config.json or processor_config.json in that folder)" in _sentence(
        without_processor
    )
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "clip_vision_model"}))
    (other / "preprocessor_config.json").write_text((sam_folder / "processor_config.json").read_text())
    assert "(it holds a clip_vision_model model, not SAM)" in _sentence(other)
    partial = tmp_path / "partial"
    partial.mkdir()
    for name in ("config.json", "processor_config.json"):
        (partial / name).write_text((sam_folder / name).read_text())
    state = tiny_sam()["model"].state_dict()
    save_file({k: v.clone() for k, v in state.items() if not k.startswith("mask_decoder.")},
              partial / "model.safetensors")  # fmt: skip
    assert "its weights lack" in _sentence(partial)
