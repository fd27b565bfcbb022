"""The mini bases of `make prove`: five runs of ``python -m core.training.base_model``, then their rows (as jobs of
:func:`core.eval.schedule.run_jobs`: the VAE first, then SD beside the VAE decoders and SVD).

1. the image VAE (``AutoencoderKL``) on the training images and clip frames;
1b. its decoder fine-tuned on, the encoder frozen (``--init_vae``): the latents stay, so SD trains on the first
   run's and its pipeline decodes with this one (as SD1.5's VAE was fine-tuned after SD was trained);
2. SVD's VAE (``AutoencoderKLTemporalDecoder``): the image VAE's encoder, its temporal decoder trained on clips
   from the fine-tuned decoder; SVD's pipeline decodes with it;
3. mini SD (text -> image) on the images and their captions, the image VAE frozen;
4. mini SVD (first frame -> clip) on the clips over the image VAE's encoder (frozen; SVD's training only encodes,
   so it trains beside the temporal decoder, and the run is the same as over the finished temporal VAE).
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from core.eval.learning import MINI_FPS, MINI_FRAMES, MINI_SIDE
from core.eval.schedule import Job, say
from core.training.common import SUMMARY_NAME

if TYPE_CHECKING:
    from prove import Results

# Held-out scenes and clips the base rows are measured on.
HELD_OUT_SCENES = 32
HELD_OUT_CLIPS = 16
# Flags of each run besides --kind, --data_dir, --output_dir (and the VAE folders it reads).
VAE_FLAGS = [
    "--max_train_steps",
    "1200",
    "--train_batch_size",
    "8",
    "--learning_rate",
    "1e-3",
    "--cached_clips",
    "1000",
]
# Chosen on validation scenes (seeds 500 000+): 2000 steps raised their PSNR from 25.0 to 28.5+ dB.
VAE_DECODER_FLAGS = [
    "--max_train_steps",
    "2000",
    "--train_batch_size",
    "8",
    "--learning_rate",
    "5e-4",
    "--cached_clips",
    "1000",
]
# Chosen on validation clips (seeds 500 000+): from the fine-tuned decoder, 600 steps give 28.46 dB and 1200 steps
# 28.75 (100 steps from the first decoder: 26.6).
TEMPORAL_VAE_FLAGS = ["--max_train_steps", "1200", "--train_batch_size", "2", "--learning_rate", "1e-3"]
SD_FLAGS = ["--max_train_steps", "1500", "--train_batch_size", "16", "--learning_rate", "5e-4"]
SVD_FLAGS = ["--max_train_steps", "600", "--train_batch_size", "2", "--learning_rate", "5e-4"]
COMMON_FLAGS = [
    "--resolution", str(MINI_SIDE), "--seed", "0", "--validation_steps", "0", "--checkpointing_steps", "100000",
    "--report_to", "none", "--lr_scheduler", "cosine", "--lr_warmup_steps", "20",
]  # fmt: skip
CLIP_FLAGS = ["--num_frames", str(MINI_FRAMES), "--fps", str(MINI_FPS)]


def _flags(command: list[str]) -> dict[str, object]:
    """The ``--flag value`` pairs of a command line (a switch without a value maps to True)."""
    flags: dict[str, object] = {}
    for i, token in enumerate(command):
        if token.startswith("--"):
            following = command[i + 1] if i + 1 < len(command) else "--"
            flags[token[2:]] = True if following.startswith("--") else following
    return flags


def _same_value(recorded: object, given: object) -> bool:
    if given is True or isinstance(recorded, bool):
        return recorded is given
    try:
        return float(recorded) == float(given)
    except (TypeError, ValueError):
        return str(recorded) == str(given)


def _finished_run(folder: Path, command: list[str]) -> float | None:
    """The wall time of the run in ``folder`` when it finished with the flags of ``command``, else None."""
    summary = folder / SUMMARY_NAME
    if not summary.is_file():
        return None
    recorded = json.loads(summary.read_text())
    same = all(_same_value(recorded["args"].get(k), v) for k, v in _flags(command).items())
    return recorded["wall_time_s"] if same else None


def _not_weights(folder: str, names: list[str]) -> list[str]:
    return [n for n in names if n not in ("config.json", "diffusion_pytorch_model.safetensors")]


def base_jobs(
    work: Path,
    images: Path,
    clips: Path,
    run_command: Callable[[list[str], Path, int], float],
    results: Results,
    install: Callable[[Path, str], int] | None,
) -> tuple[list[Job], dict[str, Path]]:
    """The jobs that train the bases (four, and the image decoder fine-tuned) into WORK/bases, put each pipeline
    together and measure the base rows (then install sd/ and svd/ with ``install``); returns them and the
    pipeline folders ({"sd": folder, "svd": folder}) the controls train on once "sd pipeline" / "svd pipeline"
    are done. Each job notes its wall time and rows in ``results``."""
    out = work / "bases"
    python = [sys.executable, "-m", "core.training.base_model", *COMMON_FLAGS]
    runs = {
        "vae": ["--kind", "vae", "--data_dir", str(images), "--extra_clip_dir", str(clips), *VAE_FLAGS],
        "vae_decoder": [
            "--kind", "vae", "--init_vae", str(out / "vae"), "--data_dir", str(images), "--extra_clip_dir", str(clips),
            *VAE_DECODER_FLAGS,
        ],
        "temporal_vae": [
            "--kind", "vae", "--temporal", "--init_vae", str(out / "vae_decoder"), "--data_dir", str(clips),
            *CLIP_FLAGS, *TEMPORAL_VAE_FLAGS,
        ],
        "sd": ["--kind", "sd", "--vae", str(out / "vae"), "--data_dir", str(images), *SD_FLAGS],
        # Over the image VAE (the temporal VAE's encoder): the same run, while the temporal decoder trains beside it.
        "svd": ["--kind", "svd", "--vae", str(out / "vae"), "--data_dir", str(clips), *CLIP_FLAGS, *SVD_FLAGS],
    }  # fmt: skip
    needs = {
        "vae": (),
        "vae_decoder": ("vae",),
        "temporal_vae": ("vae_decoder",),
        "sd": ("vae",),
        "svd": ("vae",),
    }

    def train(name: str) -> Callable[[int], None]:
        def job(threads: int) -> None:
            command = [*python, *runs[name], "--output_dir", str(out / name)]
            finished = _finished_run(out / name, command)
            if finished is not None:  # a finished run with the same flags (an interrupted proof, rerun)
                say(f"base {name}: kept the finished run in {out / name}")
                results.timings[f"train base {name}"] = finished
                return
            say(f"base {name}: training")
            shutil.rmtree(out / name, ignore_errors=True)
            results.timings[f"train base {name}"] = run_command(
                command, work / "logs" / f"base_{name}.log", threads
            )

        return job

    def pipeline(vae: str, name: str) -> Callable[[int], None]:
        # The pipelines decode with the last decoders: SD's with the fine-tuned one, SVD's with the temporal one
        # trained from it (the same encoder and scaling factor as the VAE SD and SVD trained on: the same latents).
        return lambda threads: shutil.copytree(
            out / vae, out / name / "vae", dirs_exist_ok=True, ignore=_not_weights
        )

    def measure_rows(threads: int) -> None:
        from core.eval.proof_bases import save_samples, sd_rows, svd_rows, vae_rows

        started = time.perf_counter()
        with results.evaluating(threads):
            results.rows["bases"] = [
                *vae_rows(out / "sd", out / "svd", HELD_OUT_SCENES),
                *sd_rows(out / "sd", HELD_OUT_SCENES),
                *svd_rows(out / "svd", HELD_OUT_CLIPS),
            ]
            save_samples(out / "sd", out / "svd", work / "samples")
        results.timings["evaluate bases"] = time.perf_counter() - started
        if install is not None:
            for name in ("sd", "svd"):
                results.sizes[name] = install(out / name, name)

    jobs = [Job(f"base {name}", train(name), tuple(f"base {n}" for n in needs[name])) for name in runs]
    jobs += [
        Job("sd pipeline", pipeline("vae_decoder", "sd"), ("base sd", "base vae_decoder")),
        Job("svd pipeline", pipeline("temporal_vae", "svd"), ("base svd", "base temporal_vae")),
        Job("base rows", measure_rows, ("sd pipeline", "svd pipeline")),
    ]
    return jobs, {"sd": out / "sd", "svd": out / "svd"}
