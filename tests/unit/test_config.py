import argparse
from pathlib import Path

import pytest
import torch

from core.config import Settings
from core.errors import InputError


def test_defaults_name_the_real_models():
    s = Settings.from_env({})
    assert s.sd_model == "stable-diffusion-v1-5/stable-diffusion-v1-5"
    assert s.svd_model == "stabilityai/stable-video-diffusion-img2vid-xt"
    assert s.device == "auto" and s.dtype == "auto" and s.offload == "none"


def test_env_vars_are_read_and_coerced():
    s = Settings.from_env(
        {"KINEMA_SD_MODEL": "/models/sd", "KINEMA_MAX_FRAMES": "14", "KINEMA_OUTPUT_DIR": "/tmp/x"}
    )
    assert s.sd_model == "/models/sd"
    assert s.max_frames == 14
    assert s.output_dir == Path("/tmp/x")


def test_cli_overrides_env_and_unset_flags_keep_env():
    parser = argparse.ArgumentParser()
    Settings.add_arguments(parser)
    args = parser.parse_args(["--svd-model", "tiny", "--max-image-side", "512"])
    s = Settings.from_args(args, {"KINEMA_SVD_MODEL": "env-choice", "KINEMA_SD_MODEL": "env-sd"})
    assert s.svd_model == "tiny"
    assert s.sd_model == "env-sd"
    assert s.max_image_side == 512


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"KINEMA_DEVICE": "tpu"}, "KINEMA_DEVICE"),
        ({"KINEMA_MAX_FRAMES": "many"}, "KINEMA_MAX_FRAMES"),
        ({"KINEMA_OFFLOAD": "always"}, "KINEMA_OFFLOAD"),
    ],
)
def test_bad_values_raise_input_error_naming_the_variable(env, names):
    with pytest.raises(InputError, match=names):
        Settings.from_env(env)


def test_negative_limits_are_refused():
    with pytest.raises(InputError, match="max_frames"):
        Settings.from_env({}, max_frames=0)


def test_auto_device_and_dtype_on_this_machine():
    s = Settings.from_env({})
    expected = "cuda" if torch.cuda.is_available() else s.resolved_device()
    assert s.resolved_device() == expected
    assert s.resolved_dtype() == (torch.float16 if expected == "cuda" else torch.float32)
    explicit = Settings.from_env({"KINEMA_DEVICE": "cpu", "KINEMA_DTYPE": "bfloat16"})
    assert explicit.resolved_device() == "cpu" and explicit.resolved_dtype() == torch.bfloat16


def test_upload_limit_in_bytes():
    assert Settings.from_env({}, max_upload_mb=3).max_upload_bytes == 3 * 1024 * 1024


def test_joint_weights_and_the_svd_interp_lora_are_separate_settings():
    s = Settings.from_env({"KINEMA_JOINT_WEIGHTS": "runs/joint", "KINEMA_SVD_INTERP_LORA": "runs/interp"})
    assert (s.joint_weights, s.svd_interp_lora) == ("runs/joint", "runs/interp")
    assert Settings.from_env({"KINEMA_JOINT_WEIGHTS": "runs/joint"}).svd_interp_lora == ""
    parser = argparse.ArgumentParser()
    Settings.add_arguments(parser)
    args = parser.parse_args(["--svd-interp-lora", "lora.safetensors"])
    assert Settings.from_args(args, {}).svd_interp_lora == "lora.safetensors"
    assert not hasattr(s, "lora_path")


def test_the_sam_setting_is_empty_unless_set_by_env_or_flag():
    assert Settings.from_env({}).sam_model == ""  # no learned segmenter: GrabCut
    assert (
        Settings.from_env({"KINEMA_SAM_MODEL": "facebook/sam-vit-base"}).sam_model == "facebook/sam-vit-base"
    )
    parser = argparse.ArgumentParser()
    Settings.add_arguments(parser)
    args = parser.parse_args(["--sam-model", "/weights/sam"])
    assert Settings.from_args(args, {"KINEMA_SAM_MODEL": "env-sam"}).sam_model == "/weights/sam"


def test_mini_names_the_mini_folder_of_each_trained_weights_setting():
    from core.config import MINI_WEIGHTS
    from core.models.presets import MINI_FOLDER

    env = {f"KINEMA_{name.upper()}": "mini" for name in MINI_WEIGHTS}
    settings = Settings.from_env({**env, "KINEMA_SD_MODEL": "mini", "KINEMA_SVD_MODEL": "mini"})
    for name, trainer in MINI_WEIGHTS.items():
        assert getattr(settings, name) == str(MINI_FOLDER / trainer)
    assert (settings.sd_model, settings.svd_model) == ("mini", "mini")  # presets, loaded by core.models
    assert settings.replace(joint_weights="mini").joint_weights == str(MINI_FOLDER / "joint_lora")
    assert Settings.from_env({"KINEMA_JOINT_WEIGHTS": "runs/mini"}).joint_weights == "runs/mini"
