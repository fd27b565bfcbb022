"""Model loading: tiny presets, the real from_pretrained path on saved folders, missing weights (one sentence
shape for every model setting, the loaders and the drag backends)."""

import re

import numpy as np
import pytest
import torch
from PIL import Image

from core import models
from core.config import Settings
from core.errors import ModelNotAvailable
from core.models.presets import PRESETS, build_preset, is_preset

TINY = Settings.from_env({}, sd_model="tiny", svd_model="tiny", device="cpu")


def _sd_images(pipe, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return pipe("a red sphere left of a blue cube", num_inference_steps=2, height=64, width=64,
                generator=generator, output_type="np").images  # fmt: skip


def _svd_frames(pipe, seed=0):
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    generator = torch.Generator().manual_seed(seed)
    out = pipe(image, height=64, width=64, num_frames=3, num_inference_steps=2, decode_chunk_size=2,
               generator=generator, output_type="np")  # fmt: skip
    return np.asarray(out.frames)


def _assert_same_weights(a: torch.nn.Module, b: torch.nn.Module):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def test_offline_tokenizer_is_byte_level_and_pads_to_77():
    tok = models.offline_clip_tokenizer()
    assert len(tok) == 514
    ids = tok("Ünïcode & spaces", padding="max_length", max_length=77).input_ids
    assert len(ids) == 77 and max(ids) < 514
    assert ids[0] == tok.bos_token_id
    assert tok.decode(tok("a red sphere").input_ids, skip_special_tokens=True) == "a red sphere"


def test_tiny_components_are_deterministic_by_seed():
    a, b, c = models.tiny_sd_components(0), models.tiny_sd_components(0), models.tiny_sd_components(1)
    _assert_same_weights(a["unet"], b["unet"])
    assert not torch.equal(a["unet"].conv_in.weight, c["unet"].conv_in.weight)
    # Building tiny models must not disturb the caller's random stream.
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    models.tiny_svd_components(0)
    assert torch.equal(torch.rand(3), expected)


def test_tiny_sd_same_seed_same_images():
    pipe = models.load_pipeline("sd", TINY)
    first, second, other = _sd_images(pipe, 0), _sd_images(pipe, 0), _sd_images(pipe, 1)
    assert first.shape == (1, 64, 64, 3) and first.min() >= 0 and first.max() <= 1
    assert np.array_equal(first, second)
    assert not np.array_equal(first, other)


def test_tiny_svd_same_seed_same_frames():
    pipe = models.load_pipeline("svd", TINY)
    first, second = _svd_frames(pipe), _svd_frames(pipe)
    assert first.shape == (1, 3, 64, 64, 3)
    assert np.array_equal(first, second)


def test_load_pipeline_shares_weights_between_calls():
    a = models.load_pipeline("sd", TINY)
    b = models.load_pipeline("sd", TINY)
    assert a is not b and a.unet is b.unet


@pytest.mark.parametrize(("kind", "run"), [("sd", _sd_images), ("svd", _svd_frames)])
def test_saved_tiny_pipeline_loads_back_through_the_real_path(tmp_path, kind, run):
    original = models.load_pipeline(kind, TINY)
    original.save_pretrained(tmp_path)
    reloaded = models.load_pipeline(kind, TINY.replace(**{f"{kind}_model": str(tmp_path)}))
    for name in ("unet", "vae"):
        _assert_same_weights(getattr(original, name), getattr(reloaded, name))
    # Weights are bit-identical; the outputs can still differ in the last float bits because BLAS
    # kernels take different paths for differently aligned buffers (seen: <= 3e-5 after 2 SVD steps).
    np.testing.assert_allclose(run(reloaded), run(original), rtol=0, atol=1e-4)


@pytest.mark.parametrize(
    ("kind", "model", "setting"),
    [
        ("sd", "nobody/no-such-model", "KINEMA_SD_MODEL"),
        ("svd", "nobody/no-such-svd", "KINEMA_SVD_MODEL"),
        ("sd", "/definitely/not/here", "KINEMA_SD_MODEL"),
    ],
)
def test_missing_weights_name_the_setting(kind, model, setting):
    with pytest.raises(ModelNotAvailable) as info:
        models.load_pipeline(kind, TINY.replace(**{f"{kind}_model": model}))
    message = str(info.value)
    assert setting in message and model in message and "\n" not in message


def test_folder_without_model_index_is_reported(tmp_path):
    (tmp_path / "unet").mkdir()
    with pytest.raises(ModelNotAvailable, match="no model_index.json"):
        models.load_components("sd", str(tmp_path))


def test_controlnet_is_optional_tiny_or_reported_missing(tmp_path):
    assert models.load_controlnet(TINY) is None
    tiny = models.load_controlnet(TINY.replace(controlnet_model="tiny"))
    assert tiny.config.cross_attention_dim == 32
    tiny.save_pretrained(tmp_path / "cn")
    reloaded = models.load_controlnet(TINY.replace(controlnet_model=str(tmp_path / "cn")))
    _assert_same_weights(tiny, reloaded)
    with pytest.raises(ModelNotAvailable, match="KINEMA_CONTROLNET_MODEL"):
        models.load_controlnet(TINY.replace(controlnet_model="nobody/no-controlnet"))


def test_the_tiny_sam_is_a_preset_of_the_sam_setting():
    segmenter = models.load_sam(TINY.replace(sam_model="tiny"))
    assert segmenter.model.config.vision_config.image_size == 64
    assert segmenter.mask(np.zeros((20, 30, 3), np.uint8), (3.0, 4.0)).shape == (20, 30)


def test_presets_are_found_by_name():
    assert (
        is_preset("tiny")
        and not is_preset("runwayml/stable-diffusion-v1-5")
        and list(PRESETS) == ["tiny", "mini"]
    )
    _assert_same_weights(build_preset("tiny", "svd")["unet"], models.tiny_svd_components()["unet"])
    assert set(PRESETS["tiny"]) == {"sd", "svd", "controlnet", "svd_controlnet", "sam"}
    assert set(PRESETS["mini"]) == {"sd", "svd"}


def _missing_weights_shape(setting: str) -> re.Pattern:
    """The one sentence every missing model gets: what, why, the env variable and flag, where, and tiny."""
    flag = "--" + setting.replace("_", "-")
    return re.compile(
        rf"^[A-Z][\w +-]* weights( '[^']*')? are not available \([^\n]+\): set KINEMA_{setting.upper()} "
        rf"\(or {flag}\) to [^\n]+, or to 'tiny' for [^\n]+\.$"
    )


def _missing_svd_joint_flow(tmp_path):
    models.load_svd_joint_flow(TINY.replace(svd_joint_flow_model=str(tmp_path / "none")))


def _missing_svd_controlnet(tmp_path):
    (tmp_path / "config.json").write_text('{"_class_name": "UNet2DConditionModel"}')
    models.load_svd_controlnet(TINY.replace(svd_controlnet_model=str(tmp_path)))


def _unconfigured_drag_backend(tmp_path):
    from apps.drag import backends

    backends.require("svd-controlnet", TINY.replace(svd_controlnet_model=""))


@pytest.mark.parametrize(
    ("setting", "load"),
    [
        (
            "sd_model",
            lambda tmp_path: models.load_pipeline("sd", TINY.replace(sd_model=str(tmp_path / "no"))),
        ),
        ("svd_model", lambda tmp_path: models.load_components("svd", "nobody/no-such-svd")),
        (
            "controlnet_model",
            lambda tmp_path: models.load_controlnet(TINY.replace(controlnet_model="nobody/no")),
        ),
        ("svd_controlnet_model", _missing_svd_controlnet),
        ("svd_joint_flow_model", _missing_svd_joint_flow),
        ("svd_controlnet_model", _unconfigured_drag_backend),
        ("sam_model", lambda tmp_path: models.load_sam(TINY.replace(sam_model=str(tmp_path / "no")))),
        ("sam_model", lambda tmp_path: models.load_sam(TINY.replace(sam_model="nobody/no-such-sam"))),
    ],
)
def test_every_missing_model_gets_the_same_sentence_and_the_offer_of_tiny(tmp_path, setting, load):
    assert set(models.WEIGHT_SETTINGS) == {"sd_model", "svd_model", "controlnet_model", "svd_controlnet_model",
                                           "svd_joint_flow_model", "sam_model"}  # fmt: skip
    with pytest.raises(ModelNotAvailable) as info:
        load(tmp_path)
    assert _missing_weights_shape(setting).match(str(info.value)), str(info.value)


def test_an_empty_setting_is_not_told_to_stay_empty():
    named = str(models.missing_weights("svd_controlnet_model", "runs/cn", "no config.json in that folder"))
    empty = str(models.missing_weights("svd_controlnet_model", "", "the setting is empty"))
    assert named.startswith(
        "Flow ControlNet weights 'runs/cn' are not available (no config.json in that folder)"
    )
    assert named.endswith(", or leave it empty to go without the ControlNet backend.")
    assert empty.startswith("Flow ControlNet weights are not available (the setting is empty): set ")
    assert empty.endswith("or to 'tiny' for offline random test weights.")


def test_joint_weights_are_checked_against_the_cached_model_and_left_off_it(tmp_path):
    from core.errors import InputError
    from core.patches.joint import apply_joint_patch, joint_patch_of

    apply_joint_patch(models.tiny_svd_components()["unet"], 2).save(tmp_path)
    models.check_joint_weights(str(tmp_path), "svd", "tiny")  # saved from a tiny SVD UNet: fits
    with pytest.raises(InputError, match="does not fit this UNet's joint layers"):
        models.check_joint_weights(str(tmp_path), "sd", "tiny")
    for kind in ("sd", "svd"):
        assert joint_patch_of(models.load_pipeline(kind, TINY).unet) is None
