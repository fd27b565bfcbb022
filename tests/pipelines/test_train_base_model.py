"""python -m core.training.base_model at tiny sizes: the VAE learns and resumes exactly, the temporal VAE shares
its encoder, SD and SVD write pipeline folders that load and sample, bad flags name the flag; the ``mini``
preset loads the committed mini bases."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from safetensors.torch import load_file

from core.data.synthetic import write_image_depth_folder, write_video_folder
from core.errors import ModelNotAvailable
from core.models import load_components
from core.models.presets import MINI_FOLDER, build_preset
from core.training import base_model
from tests.pipelines.training_script import (
    TrainingScript,
    assert_loss_falls,
    assert_resume_reaches_the_same_weights,
    bad_flags_error,
    run_script,
)

SIDE = 32
TINY_VAE = ("--block_out_channels", "32", "32", "32", "--resolution", str(SIDE))
TINY_UNET = ("--block_out_channels", "32", "32", "--layers_per_block", "1", "--resolution", str(SIDE))
LOOP = ("--train_batch_size", "4", "--report_to", "none", "--seed", "0")


def _vae_weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "diffusion_pytorch_model.safetensors")


VAE_SCRIPT = TrainingScript(
    base_model,
    ("--kind", "vae", *TINY_VAE, *LOOP, "--max_train_steps", "8", "--checkpointing_steps", "4"),
    _vae_weights,
)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("data")
    write_image_depth_folder(root / "images", 8, size=(SIDE, SIDE), seed=0)
    write_video_folder(root / "clips", 4, size=(SIDE, SIDE), n_frames=4, fps=8, seed=0)
    return {"images": root / "images", "clips": root / "clips"}


@pytest.fixture(scope="module")
def vae_run(data, tmp_path_factory) -> tuple[dict, Path]:
    output_dir = tmp_path_factory.mktemp("vae")
    return VAE_SCRIPT.train(data["images"], output_dir), output_dir


@pytest.fixture(scope="module")
def temporal_vae(data, vae_run, tmp_path_factory) -> Path:
    output_dir = tmp_path_factory.mktemp("temporal_vae")
    run_script(
        "core.training.base_model",
        *("--kind", "vae", "--temporal", "--init_vae", str(vae_run[1]), "--num_frames", "4"),
        *("--resolution", str(SIDE), *LOOP, "--max_train_steps", "2"),
        *("--data_dir", str(data["clips"]), "--output_dir", str(output_dir)),
    )
    return output_dir


def test_vae_loss_falls_and_saves_its_scaling_factor(vae_run, data):
    from diffusers import AutoencoderKL

    from core.data.image_folder import ImageCaptionFolder

    summary, output_dir = vae_run
    assert_loss_falls(VAE_SCRIPT, summary, below=0.8)
    vae = AutoencoderKL.from_pretrained(output_dir)
    assert list(vae.config.block_out_channels) == [32, 32, 32]
    # 1 / std of the latent means of the training items, as SD measures its own.
    images = ImageCaptionFolder(data["images"], sample_size=SIDE)
    assert vae.config.scaling_factor == pytest.approx(
        base_model.measured_scaling_factor(vae, images), rel=1e-4
    )
    assert vae.config.scaling_factor != 1.0


def test_vae_resume_is_exact(vae_run, data, tmp_path):
    assert_resume_reaches_the_same_weights(
        VAE_SCRIPT, vae_run, data["images"], tmp_path / "resumed", from_step=4
    )


def test_image_vae_also_learns_clip_frames(data):
    args = base_model.build_parser().parse_args(
        VAE_SCRIPT.argv(
            data["images"], Path("unused"), "--extra_clip_dir", str(data["clips"]), "--num_frames", "4"
        )
    )
    base_model.check_args(args)
    task = base_model.build_task(args, accelerator=None)
    assert len(task.dataset) == 8 + 4 * 4
    last_frame = task.dataset[len(task.dataset) - 1]["pixel_values"]
    assert last_frame.shape == (3, SIDE, SIDE) and -1 <= last_frame.min() < last_frame.max() <= 1


def test_temporal_vae_shares_the_image_vae_encoder(vae_run, temporal_vae):
    from diffusers import AutoencoderKL, AutoencoderKLTemporalDecoder

    image_vae = AutoencoderKL.from_pretrained(vae_run[1])
    video_vae = AutoencoderKLTemporalDecoder.from_pretrained(temporal_vae)
    shared = {k: v for k, v in image_vae.state_dict().items() if k.startswith(("encoder.", "quant_conv."))}
    video_state = video_vae.state_dict()
    assert shared and all(torch.equal(v, video_state[k]) for k, v in shared.items())
    assert video_vae.config.scaling_factor == image_vae.config.scaling_factor
    x = torch.rand(4, 3, SIDE, SIDE) * 2 - 1
    with torch.no_grad():
        assert torch.equal(image_vae.encode(x).latent_dist.mode(), video_vae.encode(x).latent_dist.mode())
        assert video_vae.decode(video_vae.encode(x).latent_dist.mode(), num_frames=4).sample.shape == x.shape


def test_decoder_fine_tune_keeps_the_latents_and_decodes_better(data, vae_run, tmp_path):
    """--kind vae --init_vae: the encoder and scaling factor stay exactly (SD trained on them keeps working),
    the decoder learns: the training images' reconstruction error falls."""
    from diffusers import AutoencoderKL

    from core.data.image_folder import ImageCaptionFolder

    run_script(
        "core.training.base_model",
        *("--kind", "vae", "--init_vae", str(vae_run[1]), "--resolution", str(SIDE), *LOOP),
        *("--max_train_steps", "8", "--data_dir", str(data["images"]), "--output_dir", str(tmp_path)),
    )
    before, after = AutoencoderKL.from_pretrained(vae_run[1]), AutoencoderKL.from_pretrained(tmp_path)
    old, new = before.state_dict(), after.state_dict()
    frozen = [k for k in old if k.startswith(("encoder.", "quant_conv."))]
    assert frozen and all(torch.equal(old[k], new[k]) for k in frozen)
    assert not torch.equal(old["decoder.conv_out.weight"], new["decoder.conv_out.weight"])
    assert after.config.scaling_factor == before.config.scaling_factor
    images = ImageCaptionFolder(data["images"], sample_size=SIDE)
    x = torch.stack([images[i]["pixel_values"] for i in range(len(images))])
    with torch.no_grad():
        latents = before.encode(x).latent_dist.mode()
        errors = [float(((vae.decode(latents).sample - x) ** 2).mean()) for vae in (before, after)]
    assert errors[1] < 0.9 * errors[0], errors


def test_sd_folder_loads_and_samples(data, vae_run, tmp_path):
    from diffusers import StableDiffusionPipeline

    summary = run_script(
        "core.training.base_model",
        *("--kind", "sd", "--vae", str(vae_run[1]), *TINY_UNET, *LOOP, "--max_train_steps", "2"),
        *("--data_dir", str(data["images"]), "--output_dir", str(tmp_path)),
    )
    parts = load_components("sd", str(tmp_path))
    # The trained UNet and text encoder, not the fresh ones written when the run started.
    trained = load_file(tmp_path / "unet" / "diffusion_pytorch_model.safetensors")
    assert all(torch.equal(v, parts["unet"].state_dict()[k]) for k, v in trained.items())
    assert summary["trained_parameters"] == sum(
        p.numel() for name in ("unet", "text_encoder") for p in parts[name].parameters()
    )
    image = StableDiffusionPipeline(**parts)(
        "a red sphere", height=SIDE, width=SIDE, num_inference_steps=2, output_type="np"
    ).images[0]
    assert image.shape == (SIDE, SIDE, 3) and np.isfinite(image).all()


def test_svd_folder_loads_and_samples(data, temporal_vae, tmp_path):
    from diffusers import StableVideoDiffusionPipeline

    run_script(
        "core.training.base_model",
        *("--kind", "svd", "--vae", str(temporal_vae), *TINY_UNET, *LOOP, "--max_train_steps", "2"),
        *("--num_frames", "4", "--data_dir", str(data["clips"]), "--output_dir", str(tmp_path)),
    )
    parts = load_components("svd", str(tmp_path))
    assert json.loads((tmp_path / "scheduler" / "scheduler_config.json").read_text())["prediction_type"] == (
        "v_prediction"
    )
    frames = StableVideoDiffusionPipeline(**parts)(
        PIL.Image.new("RGB", (SIDE, SIDE)),
        height=SIDE,
        width=SIDE,
        num_frames=4,
        num_inference_steps=2,
        decode_chunk_size=4,
        output_type="np",
    ).frames[0]
    assert frames.shape == (4, SIDE, SIDE, 3) and np.isfinite(frames).all()


def test_svd_trains_the_same_over_the_image_vae_as_over_the_temporal_vae(
    data, vae_run, temporal_vae, tmp_path
):
    # SVD's training only encodes, and both VAEs share the encoder, so make prove trains SVD while the temporal
    # decoder still trains: the run over the image VAE must be the very same run.
    def svd_run(vae: Path, out: Path) -> dict[str, torch.Tensor]:
        run_script(
            "core.training.base_model",
            *("--kind", "svd", "--vae", str(vae), *TINY_UNET, *LOOP, "--max_train_steps", "2"),
            *("--num_frames", "4", "--data_dir", str(data["clips"]), "--output_dir", str(out)),
        )
        return load_file(out / "unet" / "diffusion_pytorch_model.safetensors")

    over_temporal, over_image = svd_run(temporal_vae, tmp_path / "a"), svd_run(vae_run[1], tmp_path / "b")
    assert over_temporal.keys() == over_image.keys()
    assert all(torch.equal(over_temporal[k], over_image[k]) for k in over_temporal)
    skeleton = load_file(tmp_path / "b" / "vae" / "diffusion_pytorch_model.safetensors")
    encoder = _vae_weights(vae_run[1])
    assert all(
        torch.equal(skeleton[k], encoder[k]) for k in encoder if k.startswith(("encoder.", "quant_conv."))
    )


@pytest.mark.parametrize(
    ("extra", "flag"),
    [
        (("--temporal",), "--init_vae"),
        (("--kind", "sd"), "--vae"),
        (("--config", "{not json"), "--config"),
        (("--encoder_config", "[1, 2]"), "--encoder_config"),
        (("--caption_dropout", "1.5"), "--caption_dropout"),
        (("--resolution", "30"), "--resolution"),
        (("--block_out_channels", "32", "0"), "--block_out_channels"),
    ],
)
def test_bad_flags_name_the_flag(data, tmp_path, capsys, extra, flag):
    err = bad_flags_error(VAE_SCRIPT, data["images"], tmp_path / "out", capsys, *extra)
    assert flag in err


def test_mini_preset_loads_the_committed_bases():
    if not (MINI_FOLDER / "sd" / "model_index.json").is_file():
        with pytest.raises(ModelNotAvailable, match="make prove"):
            load_components("sd", "mini")
        pytest.skip("the mini bases are not in assets/models/mini")
    sd, svd = load_components("sd", "mini"), load_components("svd", "mini")
    assert 2 ** (len(sd["vae"].config.block_out_channels) - 1) == 4 and sd["unet"].config.in_channels == 4
    assert svd["vae"].config.scaling_factor == sd["vae"].config.scaling_factor
    with pytest.raises(ModelNotAvailable, match="no controlnet"):
        build_preset("mini", "controlnet")
