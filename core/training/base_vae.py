"""The VAEs that start from a trained image VAE (:mod:`core.training.base_model`, ``--kind vae --init_vae``): its
encoder is copied and frozen, so the latent space and the scaling factor stay and every model trained on its
latents keeps working. :func:`temporal_vae_from`: SVD's VAE, a temporal decoder (``--temporal``);
:func:`decoder_fine_tune_from`: the same image VAE with its decoder trained on (as SD's VAE was fine-tuned for
sharper decodes without retraining SD). :func:`load_vae` loads any of them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from core.errors import InputError


def _subfolder(folder: Path) -> str | None:
    """Where a VAE sits: in a pipeline folder its ``vae/``, else the folder itself (None)."""
    return "vae" if (folder / "model_index.json").is_file() else None


def load_vae(folder: str | Path, temporal: bool = False):
    """The VAE of a VAE folder or of a pipeline folder (its ``vae/``), frozen, in eval mode."""
    from diffusers import AutoencoderKL, AutoencoderKLTemporalDecoder

    cls = AutoencoderKLTemporalDecoder if temporal else AutoencoderKL
    folder = Path(folder)
    subfolder = _subfolder(folder)
    try:
        vae = cls.from_pretrained(str(folder), subfolder=subfolder, local_files_only=True)
    except (OSError, ValueError) as err:
        raise InputError(
            f"{folder} holds no {cls.__name__} ({type(err).__name__}); check the VAE flag."
        ) from err
    return vae.requires_grad_(False).eval()


def svd_vae(folder: str | Path):
    """The VAE SVD's base trains over (``--kind svd --vae``): a temporal VAE folder, or an image VAE folder whose
    encoder and scaling factor it shares, its temporal decoder as :func:`temporal_vae_from` starts it (untrained;
    SVD's training only encodes, so the trained temporal VAE can be put into the pipeline folder afterwards). The
    skeleton is built without touching torch's RNG, so the run is the same with either folder."""
    from diffusers import AutoencoderKL

    folder = Path(folder)
    config = folder / (_subfolder(folder) or "") / "config.json"
    if config.is_file() and json.loads(config.read_text()).get("_class_name") == AutoencoderKL.__name__:
        with torch.random.fork_rng():
            vae = temporal_vae_from(load_vae(folder), folder)
        return vae.requires_grad_(False).eval()
    return load_vae(folder, temporal=True)


def temporal_vae_from(image_vae, source: str | Path):
    """SVD's VAE whose encoder and quant_conv are ``image_vae``'s (copied, frozen; ``source``: its folder, for
    the error) and whose temporal decoder trains; the scaling factor is the image VAE's, so both encode to the
    same latents.

    The decoder starts from the image decoder, as SVD's started from SD's: every spatial weight whose name and
    shape match (the ResNet blocks' become ``spatial_res_block``'s), and the final temporal convolution as the
    identity; the temporal blocks and mixing factors start fresh."""
    from diffusers import AutoencoderKLTemporalDecoder

    config = image_vae.config
    vae = AutoencoderKLTemporalDecoder(
        in_channels=config.in_channels,
        out_channels=config.out_channels,
        down_block_types=tuple(config.down_block_types),
        block_out_channels=tuple(config.block_out_channels),
        layers_per_block=config.layers_per_block,
        latent_channels=config.latent_channels,
        sample_size=config.sample_size,
        scaling_factor=config.scaling_factor,
    )
    shared = {k: v for k, v in image_vae.state_dict().items() if k.startswith(("encoder.", "quant_conv."))}
    missing, _ = vae.load_state_dict(shared, strict=False)
    if any(k.startswith(("encoder.", "quant_conv.")) for k in missing):
        raise InputError(f"{source}: its encoder does not fit SVD's VAE ({missing[:3]}).")
    vae.encoder.requires_grad_(False)
    vae.quant_conv.requires_grad_(False)
    _start_from_image_decoder(vae, image_vae)
    return vae


@torch.no_grad()
def _start_from_image_decoder(vae, image_vae) -> None:
    """Copy the image decoder's spatial weights into ``vae.decoder`` and make ``time_conv_out`` the identity."""
    target = vae.decoder.state_dict()
    for name, value in image_vae.decoder.state_dict().items():
        name = re.sub(r"(resnets\.\d+\.)", r"\1spatial_res_block.", name)
        if name in target and target[name].shape == value.shape:
            target[name].copy_(value)
    time_conv = vae.decoder.time_conv_out  # Conv3d, kernel (3,1,1): the middle tap passes each frame through
    time_conv.weight.zero_()
    time_conv.weight[:, :, time_conv.kernel_size[0] // 2, 0, 0] = torch.eye(time_conv.out_channels)
    time_conv.bias.zero_()


def decoder_fine_tune_from(image_vae):
    """``image_vae`` with its decoder (and post_quant_conv) trainable and its encoder frozen: decoding learns
    on, the latents stay exactly those of ``image_vae``."""
    image_vae.decoder.requires_grad_(True)
    image_vae.post_quant_conv.requires_grad_(True)
    return image_vae
