"""The learning proofs of the SD control trainers: ``joint_lora`` (image + depth) and ``sd_lora`` (a style).

Both train on the mini SD base (``ProofPaths.sd``) at ``MINI_SIDE`` px and are measured on held-out image
scenes (:func:`core.data.synthetic.make_image_scene`, seeds from :func:`~core.eval.learning.held_out_seeds`),
which carry exact depth. Disparity is the convention throughout (larger = nearer), as the loaders and
:mod:`core.eval.joint_depth` use it.

joint_lora (:data:`JOINT_LORA`):

- image -> depth: scale-and-shift-invariant AbsRel and delta1 (:func:`core.eval.metrics.ssi_absrel_delta1`) of
  the depth :class:`~core.pipelines.joint_sd.JointSDPipeline` generates from each scene's image against the
  exact disparity (:func:`core.eval.joint_depth.evaluate_depth_consistency`), against the untrained patch (a
  fresh patch: the stock UNet) and a constant map;
- depth -> image and joint generation: depth consistency of the generated pair, the AbsRel of the pair's depth
  against the depth the TRAINED image -> depth mode reads from the pair's image, trained against untrained;
- the conditioning gap (:func:`joint_gap`): the trainer's own loss (:func:`~core.training.joint_lora.pair_\
  denoising_errors`) on the depth entries of held-out pairs, with each depth's true image as its partner and
  with the images rolled across the batch, the same noise and timesteps in both.

sd_lora (:data:`SD_LORA`): a palette style learned from ``STYLE_IMAGES`` images. The first training scenes are
rendered again with their back wall in :data:`STYLE_WALL` (:func:`write_style_folder`); the LoRA trains on them
with their captions. On held-out captions the samples with the LoRA and the base's at the same seeds are
compared by :func:`style_fraction`: how much of the style set's mean colour shift their mean colour carries.
The style must be one the mini VAE can draw. On the style set's scenes, 0.3% of a global colour cast (0.12, 0,
-0.12) in unit RGB, the earlier probe, survives the VAE's round trip (it learned only these scenes' colours and
maps a cast back onto them), so no UNet could learn that cast; 82% of the orange wall's colour shift survives
(orange is an object colour it learned). sd_lora has no condition beyond the caption, so no gap.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from core.data.synthetic import (
    PALETTE,
    make_image_scene,
    random_image_spec,
    render_image_scene,
    write_image_depth_folder,
)
from core.eval.learning import (
    HELD_OUT_SEED,
    MINI_SIDE,
    TRAIN_SEED,
    ControlProof,
    ProofPaths,
    Row,
    held_out_seeds,
    measure,
    shuffled,
    training_flags,
)
from core.eval.metrics import ssi_absrel_delta1
from core.imaging import load_image, uint8_to_unit

# Sampling of every row: few steps, no classifier-free guidance (the pipelines' deterministic DDIM-like
# schedulers give stable numbers at this count on the mini base).
SAMPLING = {"num_inference_steps": 10, "guidance_scale": 1.0}
# Held-out scenes per row: quick (the slow tests) and full (make prove).
SCENES = {True: 4, False: 8}
# Pairs per batch of the conditioning gap (the partner images roll across it).
GAP_BATCH = 4

STYLE_IMAGES = 20
# The style: the back wall (always light blue-grey in the scenes) painted in this palette colour.
STYLE_WALL = "orange"
# The style target: the LoRA's samples carry at least this fraction of the style's colour shift more than the base's.
STYLE_TARGET = 0.5

IMAGE_TO_DEPTH = "image_to_depth vs truth"
FLAT = "flat map vs truth"


# -- models ------------------------------------------------------------------------------------------


def sd_pipeline(sd_folder: str | Path):
    """A fresh ``StableDiffusionPipeline`` (its own modules, not the loader's cache) of a base folder."""
    from diffusers import StableDiffusionPipeline

    from core.models import load_components

    pipe = StableDiffusionPipeline(**load_components("sd", str(sd_folder)))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def joint_pipeline(sd_folder: str | Path, joint_weights: str | Path | None):
    """A :class:`~core.pipelines.joint_sd.JointSDPipeline` over a fresh base, with ``joint_weights`` (a
    ``joint_lora`` output folder) or, for None, the untrained patch (exactly the stock UNet)."""
    from core.pipelines.joint_sd import JointSDPipeline

    return JointSDPipeline.from_stock(sd_pipeline(sd_folder), joint_weights=joint_weights)


# -- joint_lora --------------------------------------------------------------------------------------


def _joint_train_argv(paths: ProofPaths, quick: bool) -> list[str]:
    # Quick: 60 steps of 4 pairs took 320-380 s on the shared 2 cores (5-6 s a step under load) and left a
    # conditioning gap of only 3e-4. Full: the length was chosen on validation scenes (seeds 500 000+, never
    # the held-out ones): image -> depth AbsRel 0.387 after 300 steps, 0.316 after 600, 0.291 after 1000
    # (untrained 0.651).
    steps, batch = (60, 4) if quick else (1000, 8)
    return training_flags(paths.sd, paths.images, steps=steps, learning_rate=1e-3, batch=batch)


def pair_consistency(pipe, reader, scenes, mode: str) -> list[float]:
    """AbsRel of each generated pair's depth against the depth ``reader`` reads from the pair's image.

    ``pipe``, ``reader``: joint pipelines; ``scenes``: image scenes, scene i sampled with seed
    ``HELD_OUT_SEED + i`` and its caption; ``mode``: "joint" (both from noise) or "depth_to_image" (the
    scene's exact disparity given). The reader runs image -> depth on the pair's image with the same caption
    and seed. Returns one AbsRel per scene (:func:`~core.eval.metrics.ssi_absrel_delta1`).
    """
    from core.data.synthetic import disparity_of

    values = []
    for i, scene in enumerate(scenes):
        seed = HELD_OUT_SEED + i
        if mode == "joint":
            pair = pipe(scene.caption, height=MINI_SIDE, width=MINI_SIDE, seed=seed, **SAMPLING)
        else:
            pair = pipe(scene.caption, depth=disparity_of(scene.depth), seed=seed, **SAMPLING)
        read = reader(scene.caption, image=pair.images[0], seed=seed, **SAMPLING).depth[0]
        values.append(ssi_absrel_delta1(pair.depth[0], read)[0])
    return values


def _joint_evaluate(paths: ProofPaths, quick: bool) -> list[Row]:
    from core.eval.joint_depth import evaluate_depth_consistency

    n = SCENES[quick]
    trained = joint_pipeline(paths.sd, paths.weights["joint_lora"])
    untrained = joint_pipeline(paths.sd, None)
    figures = {
        name: evaluate_depth_consistency(pipe, samples=n, size=MINI_SIDE, seed=HELD_OUT_SEED, **SAMPLING)
        for name, pipe in (("trained", trained), ("untrained", untrained))
    }

    def per_scene(name: str, row: str, k: int):  # k = 0: AbsRel, 1: delta1
        return measure(values[k] for values in figures[name][row]["per_sample"])

    absrel = per_scene("trained", IMAGE_TO_DEPTH, 0)
    absrel_untrained = per_scene("untrained", IMAGE_TO_DEPTH, 0)
    where = f"{n} held-out scenes, {SAMPLING['num_inference_steps']} steps"
    rows = [
        Row(
            "joint_lora",
            f"image -> depth: scale-shift-invariant AbsRel vs exact depth, lower is better ({where})",
            absrel,
            {"untrained patch": absrel_untrained, "constant depth": per_scene("trained", FLAT, 0)},
            target="<= 0.5x the untrained patch's",
            met=absrel.mean <= 0.5 * absrel_untrained.mean,
        ),
        Row(
            "joint_lora",
            f"image -> depth: delta1 (< 1.25) vs exact depth, higher is better ({where})",
            per_scene("trained", IMAGE_TO_DEPTH, 1),
            {
                "untrained patch": per_scene("untrained", IMAGE_TO_DEPTH, 1),
                "constant depth": per_scene("trained", FLAT, 1),
            },
        ),
    ]
    scenes = [make_image_scene((MINI_SIDE, MINI_SIDE), seed) for seed in held_out_seeds(n)]
    for mode, label in (("depth_to_image", "depth -> image"), ("joint", "joint generation")):
        rows.append(
            Row(
                "joint_lora",
                f"{label}: AbsRel of the pair's depth vs the trained image -> depth of its image, lower is "
                f"better ({where})",
                measure(pair_consistency(trained, trained, scenes, mode)),
                {"untrained patch": measure(pair_consistency(untrained, trained, scenes, mode))},
            )
        )
    return rows


def held_out_pairs(folder: str | Path, n: int):
    """``n`` held-out image + depth pairs as the trainer's loader serves them (64 px, disparity in [-1,1]).

    Written once into ``folder`` by :func:`~core.data.synthetic.write_image_depth_folder` from
    ``HELD_OUT_SEED`` and read by :class:`~core.data.image_depth.ImageDepthFolder`.
    """
    from core.data.image_depth import ImageDepthFolder

    folder = Path(folder)
    if not (folder / "metadata.jsonl").is_file() or len(read_metadata(folder)) < n:
        write_image_depth_folder(folder, n, size=(MINI_SIDE, MINI_SIDE), seed=HELD_OUT_SEED)
    dataset = ImageDepthFolder(folder, sample_size=MINI_SIDE)
    return [dataset[i] for i in range(n)]


@torch.no_grad()
def joint_gap(
    sd_folder: str | Path, joint_weights: str | Path | None, pairs_folder: str | Path, n_batches: int
) -> tuple[float, float]:
    """(loss with the true image partners, loss with them rolled across the batch) of the depth entries.

    ``n_batches`` batches of ``GAP_BATCH`` held-out pairs (:func:`held_out_pairs` in ``pairs_folder``); per
    batch one draw of noise and timesteps (seeded by the batch index) serves both losses, which are the
    trainer's denoising errors (:func:`~core.training.joint_lora.pair_denoising_errors`: image and depth at
    one timestep, as in training and as the image -> depth mode noises its given image) averaged over the
    depth entries. ``joint_weights`` None measures the untrained patch, whose depth entries cannot see their
    partners: its two losses are equal.
    """
    from core.training.joint_lora import pair_denoising_errors
    from core.training.sd_lora import load_sd_for_training, tokenize_captions

    parts, noise_scheduler = load_sd_for_training(str(sd_folder))
    unet, vae, text_encoder = parts["unet"], parts["vae"], parts["text_encoder"]
    patch = _patched(unet, joint_weights)
    pairs = held_out_pairs(pairs_folder, n_batches * GAP_BATCH)
    totals = {"true": 0.0, "shuffled": 0.0}
    for b in range(n_batches):
        batch = pairs[b * GAP_BATCH : (b + 1) * GAP_BATCH]
        images, depths = (
            vae.encode(torch.stack([pair[key] for pair in batch])).latent_dist.mode()
            * vae.config.scaling_factor
            for key in ("pixel_values", "depth_values")
        )
        text = text_encoder(tokenize_captions(parts["tokenizer"], [p["caption"] for p in batch]))[0]
        generator = torch.Generator().manual_seed(b)
        noise = torch.randn((2 * GAP_BATCH, *images.shape[1:]), generator=generator)
        steps = torch.randint(
            0, noise_scheduler.config.num_train_timesteps, (GAP_BATCH,), generator=generator
        )
        for name, partners in (("true", images), ("shuffled", shuffled(images))):
            latents = torch.cat([partners, depths])
            errors = pair_denoising_errors(
                unet, patch, noise_scheduler, latents, noise, steps.repeat(2), text
            )
            totals[name] += float(errors[GAP_BATCH:].mean()) / n_batches
    return totals["true"], totals["shuffled"]


def _patched(unet, joint_weights: str | Path | None):
    """Patch ``unet`` for two modalities and load ``joint_weights`` (None: leave the patch untrained)."""
    from core.patches.joint import apply_joint_patch

    patch = apply_joint_patch(unet, modalities=2)
    if joint_weights is not None:
        patch.load(joint_weights)
    return patch


def _joint_gap(paths: ProofPaths, n_batches: int) -> tuple[float, float]:
    return joint_gap(paths.sd, paths.weights["joint_lora"], paths.work / "held_out_image_depth", n_batches)


JOINT_LORA = ControlProof("joint_lora", _joint_train_argv, _joint_evaluate, _joint_gap)


# -- sd_lora -----------------------------------------------------------------------------------------


def read_metadata(folder: Path) -> list[dict]:
    """The rows of ``folder/metadata.jsonl`` (``file_name``, ``text``)."""
    lines = (folder / "metadata.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def write_style_folder(images_folder: str | Path, out_folder: str | Path, n: int = STYLE_IMAGES) -> Path:
    """The first ``n`` scenes of a training folder, their wall in :data:`STYLE_WALL`, with their captions.

    ``images_folder``: written by :func:`~core.data.synthetic.write_image_depth_folder` from ``TRAIN_SEED``
    (scene i from seed ``TRAIN_SEED + i``); each scene is rendered again at its image's size, the same in all
    but the wall's colour, into ``out_folder`` (the same layout). Raises ValueError for a folder with fewer
    than ``n`` images or another seed (a caption that does not match). Returns ``out_folder``.
    """
    import PIL.Image

    images_folder, out_folder = Path(images_folder), Path(out_folder)
    rows = read_metadata(images_folder)[:n]
    if len(rows) < n:
        raise ValueError(f"{images_folder} holds {len(rows)} images; the style set needs {n}.")
    (out_folder / "images").mkdir(parents=True, exist_ok=True)
    for i, row in enumerate(rows):
        spec = random_image_spec(TRAIN_SEED + i)
        if spec.caption != row["text"]:
            raise ValueError(f"{images_folder} is not a folder of training scenes from seed {TRAIN_SEED}.")
        size = load_image(images_folder / row["file_name"]).shape[:2]
        scene = render_image_scene(replace(spec, wall_color=PALETTE[STYLE_WALL]), size)
        PIL.Image.fromarray(scene.image_uint8).save(out_folder / row["file_name"])
    (out_folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return out_folder


def mean_colour(images) -> np.ndarray:
    """Mean RGB (3,) in unit range of images: uint8 (H,W,3) or unit floats (H,W,3), each weighted alike."""
    return np.mean(
        [np.asarray(_unit(image), np.float64).reshape(-1, 3).mean(axis=0) for image in images], axis=0
    )


def _unit(image: np.ndarray) -> np.ndarray:
    return uint8_to_unit(image) if image.dtype == np.uint8 else image


def style_fraction(images, reference_colour: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """How much of a colour ``shift`` (3,) each image carries: ``(mean colour - reference) . shift / |shift|^2``
    (N,). 0: the reference colour; 1: the reference plus the whole shift. Images as in :func:`mean_colour`.
    """
    shift = np.asarray(shift, np.float64)
    return np.array([(mean_colour([image]) - reference_colour) @ shift / (shift @ shift) for image in images])


def _style_folder(paths: ProofPaths) -> Path:
    return paths.work / "sd_lora_style"


def _style_train_argv(paths: ProofPaths, quick: bool) -> list[str]:
    write_style_folder(paths.images, _style_folder(paths))
    steps = 60 if quick else 300
    return training_flags(paths.sd, _style_folder(paths), steps=steps, learning_rate=1e-3, batch=4)


@dataclass(frozen=True)
class StyleSamples:
    """Samples of held-out captions with and without the style LoRA, seed ``HELD_OUT_SEED + k`` for caption k,
    unit float (H,W,3); the style set's mean colour shift and its scenes' own mean colour, unit RGB (3,)."""

    base: list[np.ndarray]
    lora: list[np.ndarray]
    shift: np.ndarray
    reference_colour: np.ndarray


def style_samples(paths: ProofPaths, n: int) -> StyleSamples:
    """Render :class:`StyleSamples` for ``n`` held-out captions (files under ``paths.work/sd_lora_samples``)."""
    from core.lora import load_lora
    from core.training.sd_lora import ADAPTER_NAME, WEIGHTS_NAME, render_samples

    rows = read_metadata(_style_folder(paths))
    reference_colour = mean_colour([load_image(paths.images / row["file_name"]) for row in rows])
    styled = [load_image(_style_folder(paths) / row["file_name"]) for row in rows]
    shift = mean_colour(styled) - reference_colour
    prompts = [make_image_scene((MINI_SIDE, MINI_SIDE), seed).caption for seed in held_out_seeds(n)]
    pipe = sd_pipeline(paths.sd)
    rendered = {}
    for name in ("base", "lora"):
        if name == "lora":
            load_lora(pipe.unet, paths.weights["sd_lora"] / WEIGHTS_NAME, ADAPTER_NAME)
        folder = paths.work / "sd_lora_samples" / name
        folder.mkdir(parents=True, exist_ok=True)
        rendered[name] = render_samples(
            pipe, folder, prompts=prompts, size=MINI_SIDE, seed=HELD_OUT_SEED, **SAMPLING
        )
    return StyleSamples(rendered["base"], rendered["lora"], shift, reference_colour)


def _style_evaluate(paths: ProofPaths, quick: bool) -> list[Row]:
    n = SCENES[quick]
    samples = style_samples(paths, n)
    lora = measure(style_fraction(samples.lora, samples.reference_colour, samples.shift))
    base = measure(style_fraction(samples.base, samples.reference_colour, samples.shift))
    shift = ", ".join(f"{value:+.2f}" for value in samples.shift)
    return [
        Row(
            "sd_lora",
            f"style learned from {STYLE_IMAGES} images, the wall painted {STYLE_WALL}: fraction of their mean "
            f"colour shift ({shift} unit RGB) in the mean colour of samples, vs the unstyled scenes ({n} held-out "
            f"captions, one seed each, {SAMPLING['num_inference_steps']} steps)",
            lora,
            {"base": base},
            target=f"LoRA - base >= {STYLE_TARGET} (at least half the style learned)",
            met=lora.mean - base.mean >= STYLE_TARGET,
        )
    ]


SD_LORA = ControlProof("sd_lora", _style_train_argv, _style_evaluate)

PROOFS: tuple[ControlProof, ...] = (JOINT_LORA, SD_LORA)
