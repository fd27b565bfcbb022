"""The learning proof of the mini bases (``python -m core.training.base_model``), on held-out synthetic scenes.

Rows (:class:`core.eval.learning.Row`) for the proof table (``make prove``):

- :func:`vae_rows`: reconstruction PSNR (dB) of the SD VAE on held-out images and clip frames, and of the SVD
  VAE (shared encoder, temporal decoder) on held-out clips; target >= 28 dB.
- :func:`sd_rows`: held-out denoising loss (epsilon MSE) of the mini SD against the same architecture untrained,
  the same noise and timesteps for both.
- :func:`svd_rows`: held-out EDM loss (:mod:`core.training.svd_base`) of the mini SVD against its architecture
  untrained, the same noise levels and noise for both.
- :func:`save_samples`: a few samples from held-out captions (SD) and first frames (SVD), as PNGs.

Scenes are rendered in memory (:func:`core.data.synthetic.make_image_scene`, ``make_video_scene``) at
``MINI_SIDE`` px from :func:`core.eval.learning.held_out_seeds`: never a training seed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from core.eval.learning import MINI_FPS, MINI_FRAMES, MINI_SIDE, Row, held_out_seeds, measure
from core.imaging import from_signed, to_signed

VAE_TARGET_DB = 28.0
# "Clearly below untrained": the trained loss at most this fraction of the untrained one.
LOSS_RATIO_TARGET = 0.7
# DDPM timesteps at which each held-out image is noised (SD), spread over the schedule.
SD_TIMESTEPS = tuple(range(50, 1000, 100))
# Standard-normal quantiles of ln(sigma) at which each held-out clip is noised (SVD): EDM's training law.
SVD_SIGMA_QUANTILES = (-1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5)
UNTRAINED_SEED = 0


def _held_out_images(n_scenes: int):
    from core.data.synthetic import make_image_scene

    return [make_image_scene((MINI_SIDE, MINI_SIDE), seed) for seed in held_out_seeds(n_scenes)]


def _held_out_clips(n_clips: int) -> list[np.ndarray]:
    """Held-out clips (T,H,W,3) uint8 (``MINI_FRAMES`` frames at ``MINI_FPS``)."""
    from core.data.synthetic import make_video_scene

    size = (MINI_SIDE, MINI_SIDE)
    return [
        make_video_scene(size, MINI_FRAMES, seed, fps=MINI_FPS).frames_uint8
        for seed in held_out_seeds(n_clips)
    ]


@torch.no_grad()
def round_trip(vae, frames_uint8: np.ndarray, temporal: bool) -> np.ndarray:
    """decode(mode(encode(x))) of the frames (N,H,W,3) uint8, as uint8; a clip at once when ``temporal``."""
    latents = vae.encode(to_signed(frames_uint8)).latent_dist.mode()
    kwargs = {"num_frames": len(frames_uint8)} if temporal else {}
    return from_signed(vae.decode(latents, **kwargs).sample.clamp(-1, 1))


def _reconstruction_psnr(vae, frames_uint8: np.ndarray, temporal: bool) -> float:
    """Mean PSNR (dB) over the frames (N,H,W,3) of their :func:`round_trip`."""
    from core.eval.metrics import psnr_db

    decoded = round_trip(vae, frames_uint8, temporal)
    return float(np.mean([psnr_db(a, b) for a, b in zip(decoded, frames_uint8)]))


def vae_rows(sd_folder: str | Path, svd_folder: str | Path, n_scenes: int) -> list[Row]:
    """Reconstruction PSNR of the mini VAEs on ``n_scenes`` held-out images and clips (module docstring)."""
    from core.training.base_vae import load_vae

    sd_vae, svd_vae = load_vae(sd_folder), load_vae(svd_folder, temporal=True)
    images = np.stack([scene.image_uint8 for scene in _held_out_images(n_scenes)])
    clips = _held_out_clips(n_scenes)
    measured = {
        ("mini VAE (SD)", "images"): [_reconstruction_psnr(sd_vae, image[None], False) for image in images],
        ("mini VAE (SD)", "clip frames"): [_reconstruction_psnr(sd_vae, clip, False) for clip in clips],
        ("mini VAE (SVD, temporal decoder)", "clip frames"): [
            _reconstruction_psnr(svd_vae, clip, True) for clip in clips
        ],
    }
    rows = []
    for (trained, data), values in measured.items():
        value = measure(values)
        met = value.mean >= VAE_TARGET_DB
        rows.append(
            Row(
                trained=trained,
                metric=f"reconstruction PSNR on held-out {data}, dB, higher is better",
                value=value,
                target=f">= {VAE_TARGET_DB:g} dB",
                met=met,
                note=""
                if met
                else "missed: more VAE training steps or capacity are needed (see the run's summary)",
            )
        )
    return rows


def _loss_row(trained: str, metric: str, trained_losses: list[float], untrained_losses: list[float]) -> Row:
    value, untrained = measure(trained_losses), measure(untrained_losses)
    return Row(
        trained=trained,
        metric=metric,
        value=value,
        baselines={"untrained": untrained},
        target=f"<= {LOSS_RATIO_TARGET:g}x untrained",
        met=value.mean <= LOSS_RATIO_TARGET * untrained.mean,
    )


def _untrained(model: torch.nn.Module) -> torch.nn.Module:
    """A freshly initialised model of ``model``'s architecture (diffusers or transformers), seeded."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(UNTRAINED_SEED)
        if hasattr(model, "from_config"):
            return type(model).from_config(model.config).eval()
        return type(model)(model.config).eval()


@torch.no_grad()
def sd_denoising_losses(parts: dict, unet, text_encoder, n_scenes: int) -> list[float]:
    """Per held-out scene: epsilon MSE of ``unet`` (with ``text_encoder`` on the scene's caption) at
    :data:`SD_TIMESTEPS`, noise seeded by the scene's seed; the VAE, tokenizer and schedule of ``parts``."""
    from diffusers import DDPMScheduler

    from core.training.sd_lora import tokenize_captions

    vae, tokenizer = parts["vae"], parts["tokenizer"]
    noise_scheduler = DDPMScheduler.from_config(parts["scheduler"].config)
    timesteps = torch.tensor(SD_TIMESTEPS)
    losses = []
    for seed, scene in zip(held_out_seeds(n_scenes), _held_out_images(n_scenes)):
        latents = (
            vae.encode(to_signed(scene.image_uint8[None])).latent_dist.mode() * vae.config.scaling_factor
        )
        latents = latents.expand(len(timesteps), -1, -1, -1)
        noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(seed))
        text = text_encoder(tokenize_captions(tokenizer, [scene.caption] * len(timesteps)))[0]
        predicted = unet(noise_scheduler.add_noise(latents, noise, timesteps), timesteps, text).sample
        losses.append(float(F.mse_loss(predicted, noise)))
    return losses


def sd_rows(sd_folder: str | Path, n_scenes: int) -> list[Row]:
    """Held-out denoising loss of the mini SD against its architecture untrained (module docstring)."""
    from core.models import load_components

    parts = load_components("sd", str(sd_folder))
    trained = sd_denoising_losses(parts, parts["unet"], parts["text_encoder"], n_scenes)
    untrained = sd_denoising_losses(
        parts, _untrained(parts["unet"]), _untrained(parts["text_encoder"]), n_scenes
    )
    metric = "held-out denoising loss (epsilon MSE, 10 timesteps per image), lower is better"
    return [_loss_row("mini SD", metric, trained, untrained)]


@torch.no_grad()
def svd_edm_losses(parts: dict, unet, n_clips: int) -> list[float]:
    """Per held-out clip: SVD's EDM loss (:mod:`core.training.svd_base`) of ``unet`` at the noise levels of
    :data:`SVD_SIGMA_QUANTILES`, conditioned on the clip's first frame; noise seeded by the clip's seed."""
    from core.pipelines.svd_common import SVDPipelineBase
    from core.training import svd_base

    pipe = svd_base.training_pipeline(SVDPipelineBase, {**parts, "unet": unet})
    z = torch.tensor(SVD_SIGMA_QUANTILES)
    sigmas = torch.exp(svd_base.P_MEAN + svd_base.P_STD * z)
    noise_aug = 0.02
    losses = []
    for seed, clip in zip(held_out_seeds(n_clips), _held_out_clips(n_clips)):
        pixels = to_signed(clip)[None]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            latents = svd_base.encode_clip_latents(pipe, pixels).expand(len(sigmas), -1, -1, -1, -1)
            embeddings, condition = svd_base.encode_conditioning_frames(pipe, pixels[:, 0], noise_aug)
            edm = svd_base.edm_inputs(latents, svd_base.P_MEAN, svd_base.P_STD, sigmas=sigmas)
        time_ids = svd_base.added_time_ids(MINI_FPS, torch.full((len(sigmas),), 127.0), noise_aug)
        predicted = svd_base.unet_output(
            unet,
            edm,
            condition.expand(len(sigmas), -1, -1, -1),
            embeddings.expand(len(sigmas), -1, -1),
            time_ids,
        )
        losses.append(float(edm.loss(predicted)))
    return losses


def svd_rows(svd_folder: str | Path, n_clips: int) -> list[Row]:
    """Held-out EDM loss of the mini SVD against its architecture untrained (module docstring)."""
    from core.models import load_components

    parts = load_components("svd", str(svd_folder))
    trained = svd_edm_losses(parts, parts["unet"], n_clips)
    untrained = svd_edm_losses(parts, _untrained(parts["unet"]), n_clips)
    metric = "held-out EDM loss (7 noise levels per clip, first-frame conditioned), lower is better"
    return [_loss_row("mini SVD", metric, trained, untrained)]


@torch.no_grad()
def save_samples(
    sd_folder: str | Path, svd_folder: str | Path, out_dir: str | Path, n: int = 4, steps: int = 25
) -> list[Path]:
    """Samples of the mini bases on ``n`` held-out scenes into ``out_dir``: ``sd_K.png`` (the scene's caption,
    seed K, guidance 3) next to ``sd_K_scene.png`` (the held-out scene of that caption), and ``svd_K.png`` (the
    clip generated from a held-out first frame, frames side by side) above its held-out clip. Returns the paths."""
    import PIL.Image
    from diffusers import StableDiffusionPipeline, StableVideoDiffusionPipeline

    from core.models import load_components

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sd = StableDiffusionPipeline(**load_components("sd", str(sd_folder)))
    svd = StableVideoDiffusionPipeline(**load_components("svd", str(svd_folder)))
    for pipe in (sd, svd):
        pipe.set_progress_bar_config(disable=True)
    written = []
    for k, (scene, clip) in enumerate(zip(_held_out_images(n), _held_out_clips(n))):
        image = sd(
            scene.caption,
            height=MINI_SIDE,
            width=MINI_SIDE,
            num_inference_steps=steps,
            guidance_scale=3.0,
            generator=torch.Generator().manual_seed(k),
            output_type="np",
        ).images[0]
        PIL.Image.fromarray((image * 255).round().astype(np.uint8)).save(out_dir / f"sd_{k}.png")
        PIL.Image.fromarray(scene.image_uint8).save(out_dir / f"sd_{k}_scene.png")
        frames = svd(
            PIL.Image.fromarray(clip[0]),
            height=MINI_SIDE,
            width=MINI_SIDE,
            num_frames=MINI_FRAMES,
            num_inference_steps=steps,
            fps=MINI_FPS,
            decode_chunk_size=MINI_FRAMES,
            generator=torch.Generator().manual_seed(k),
            output_type="np",
        ).frames[0]
        generated = (np.concatenate(list(frames), axis=1) * 255).round().astype(np.uint8)
        PIL.Image.fromarray(np.concatenate([generated, np.concatenate(list(clip), axis=1)])).save(
            out_dir / f"svd_{k}.png"
        )
        written += [out_dir / f"sd_{k}.png", out_dir / f"sd_{k}_scene.png", out_dir / f"svd_{k}.png"]
    return written
