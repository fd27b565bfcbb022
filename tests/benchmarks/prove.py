"""`make prove`: train the mini bases and every control from scratch, measure each on held-out scenes, one table.

    python tests/benchmarks/prove.py                 # everything from scratch; installs assets/models/mini/
    python tests/benchmarks/prove.py --quick         # the controls only, short runs on the installed mini bases
    python tests/benchmarks/prove.py --only bases    # the bases alone (installed), no controls
    python tests/benchmarks/prove.py --only joint_lora svd_flow_lora   # some controls (on the installed bases)
    python tests/benchmarks/prove.py --jobs 1        # one training at a time (default: one per core, at most 4)

Every step is a plain command line (printed as it runs, so any row can be reproduced alone): the data writers
of :mod:`core.data.synthetic`, ``python -m core.training.base_model`` for the bases, ``python -m
core.training.<trainer>`` for the controls with the flags their :class:`~core.eval.learning.ControlProof`
gives. Seeds are fixed; held-out scenes come from seeds no training run sees (:mod:`core.eval.learning`). The
runs are jobs of :func:`core.eval.schedule.run_jobs`: each starts once what it trains on is done, ``--jobs`` at
once (the SD controls train while mini SVD still does); evaluations run one at a time in this process.

The full run writes the trained weights into ``assets/models/mini/`` (``--no-install`` keeps them in the work
folder only), the table on stdout and everything measured in ``bench-results/prove.json`` (``--json``).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path[:0] = [str(ROOT), str(HERE)]

from core.eval.learning import (  # noqa: E402
    MINI_FPS,
    MINI_FRAMES,
    MINI_SIDE,
    TRAIN_SEED,
    ControlProof,
    ProofPaths,
    Row,
    conditioning_gap,
    measure,
)
from core.eval.report import table, write_json  # noqa: E402
from core.eval.schedule import Job, run_jobs, say  # noqa: E402

MINI_DIR = ROOT / "assets" / "models" / "mini"
# Training scenes: image scenes (SD, joint depth, the VAE) and sprite clips (SVD and its controls).
N_IMAGES = {False: 2000, True: 200}
N_CLIPS = {False: 600, True: 60}
GAP_BATCHES = 4
# What a weights folder keeps when installed: the weights and their configs, and the run's summary.
INSTALLED = ("*.safetensors", "*.json", "*.txt", "**/*.safetensors", "**/*.json", "**/*.txt")


def _proofs() -> list[tuple[str, ControlProof]]:
    """(the base it trains on: "sd" or "svd", the proof) of every control trainer, in table order."""
    from core.eval.proof_sd import PROOFS as SD_PROOFS
    from core.eval.proof_svd import PROOFS as SVD_PROOFS

    return [*(("sd", proof) for proof in SD_PROOFS), *(("svd", proof) for proof in SVD_PROOFS)]


@dataclass
class Results:
    """What the jobs measure: rows by job (bases, then each trainer), wall times, installed sizes. Evaluations
    run in this process one at a time (:meth:`evaluating`) while other jobs' training runs go on beside them."""

    rows: dict[str, list[Row]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @contextmanager
    def evaluating(self, threads: int) -> Iterator[None]:
        with self.lock:
            torch.set_num_threads(threads)
            yield


def run_command(argv: list[str], log: Path, threads: int) -> float:
    """Run ``argv`` (printed first) with ``threads`` torch threads, its output into ``log``; return the wall time.
    Raises on failure."""
    say(f"  $ OMP_NUM_THREADS={threads} " + " ".join(argv))
    started = time.perf_counter()
    with open(log, "w", encoding="utf-8") as out:
        env = {**_env(), "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        done = subprocess.run(argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env)
    if done.returncode:
        tail = log.read_text(encoding="utf-8", errors="replace")[-3000:]
        raise RuntimeError(f"{argv[2] if len(argv) > 2 else argv} failed (exit {done.returncode}):\n{tail}")
    return time.perf_counter() - started


def _env() -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}


def write_data(work: Path, quick: bool) -> tuple[Path, Path]:
    """The training image scenes and clips (seeds from TRAIN_SEED), written once per work folder."""
    from core.data.synthetic import write_image_depth_folder, write_video_folder

    images, clips = work / "data" / "images", work / "data" / "clips"
    if not (images / "metadata.jsonl").is_file():
        write_image_depth_folder(images, N_IMAGES[quick], size=(MINI_SIDE, MINI_SIDE), seed=TRAIN_SEED)
    if not (clips / "metadata.csv").is_file():
        size = (MINI_SIDE, MINI_SIDE)
        write_video_folder(
            clips, N_CLIPS[quick], size=size, n_frames=MINI_FRAMES, fps=MINI_FPS, seed=TRAIN_SEED
        )
    return images, clips


def install(folder: Path, name: str) -> int:
    """Copy the weights of a finished run into assets/models/mini/NAME (replacing it); return its size in bytes."""
    target = MINI_DIR / name
    staging = target.with_name(f".{name}.new")
    shutil.rmtree(staging, ignore_errors=True)
    for pattern in INSTALLED:
        for file in folder.glob(pattern):
            relative = file.relative_to(folder)
            if relative.parts[0].startswith(("checkpoint-", "validation", "logs")):
                continue
            (staging / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(file, staging / relative)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return sum(f.stat().st_size for f in target.rglob("*") if f.is_file())


def gap_row(proof: ControlProof, paths: ProofPaths) -> Row:
    true, shuffled = proof.gap(paths, GAP_BATCHES)
    gap = conditioning_gap(true, shuffled)
    return Row(
        proof.trainer,
        "conditioning gap: 1 - loss(true) / loss(shuffled), held-out",
        measure([gap]),
        {"loss true": measure([true]), "loss shuffled": measure([shuffled])},
        ">= 0.10",
        gap >= 0.10,
    )


def _scheduling_rank(
    item: tuple[str, ControlProof], chosen: list[tuple[str, ControlProof]]
) -> tuple[bool, bool]:
    """Which ready control starts first when a job slot frees (the table keeps its own order): the SVD controls
    (their base is ready last), and among them a chain (svd_flow_lora, then svd_joint_flow on it) before the
    lone ones. Chosen by simulating the schedule with the runs' measured times: 63 min against 67.5 in table
    order on 2 cores."""
    base, proof = item
    in_chain = bool(proof.needs) or any(proof.trainer in other.needs for _, other in chosen)
    return base == "sd", not in_chain


def control_job(
    proof: ControlProof,
    paths: ProofPaths,
    work: Path,
    quick: bool,
    results: Results,
    needs: tuple[str, ...],
    install_weights: bool,
) -> Job:
    """The job that trains ``proof``'s control (a subprocess), then measures its rows and gap in this process."""

    def job(threads: int) -> None:
        output = work / "runs" / proof.trainer
        shutil.rmtree(output, ignore_errors=True)
        python = [sys.executable, "-m", f"core.training.{proof.trainer}"]
        command = [*python, *proof.train_argv(paths, quick), "--output_dir", str(output)]
        say(f"{proof.trainer}: training")
        log = work / "logs" / f"{proof.trainer}.log"
        results.timings[f"train {proof.trainer}"] = run_command(command, log, threads)
        paths.weights[proof.trainer] = output
        with results.evaluating(threads):
            say(f"{proof.trainer}: evaluating on held-out scenes")
            measured = time.perf_counter()
            rows = proof.evaluate(paths, quick)
            if proof.gap is not None:
                rows.append(gap_row(proof, paths))
            results.timings[f"evaluate {proof.trainer}"] = time.perf_counter() - measured
        results.rows[proof.trainer] = rows
        if install_weights:
            results.sizes[proof.trainer] = install(output, proof.trainer)

    return Job(proof.trainer, job, needs + proof.needs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make prove", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="Controls only, short runs, on the installed bases."
    )
    parser.add_argument(
        "--only", nargs="+", default=None, help="Run only these stages: 'bases' and/or control trainer names."
    )
    parser.add_argument(
        "--work", type=Path, default=ROOT / "prove-work", help="Work folder (data, runs, logs)."
    )
    parser.add_argument("--json", type=Path, default=ROOT / "bench-results" / "prove.json")
    parser.add_argument("--no-install", action="store_true", help="Leave assets/models/mini/ as it is.")
    parser.add_argument(
        "--bases",
        type=Path,
        default=MINI_DIR,
        help="Folder holding the sd/ and svd/ bases the controls train on, when the bases are not trained in "
        "this run (default: the installed assets/models/mini).",
    )
    cores = os.cpu_count() or 1
    parser.add_argument(
        "--jobs",
        type=int,
        default=min(cores, 4),
        help="Trainings run side by side, the cores shared among them (default: one per core, at most 4; "
        "1 runs everything in turn).",
    )
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    started = time.perf_counter()
    work = args.work / ("quick" if args.quick else "full")
    (work / "logs").mkdir(parents=True, exist_ok=True)
    install_weights = not (args.quick or args.no_install)

    print(f"data -> {work / 'data'}", flush=True)
    images, clips = write_data(work, args.quick)
    results = Results()
    jobs: list[Job] = []
    bases = {"sd": args.bases / "sd", "svd": args.bases / "svd"}
    base_needs: dict[str, tuple[str, ...]] = {"sd": (), "svd": ()}
    if not args.quick and (not args.only or "bases" in args.only):
        from prove_bases import base_jobs

        base, bases = base_jobs(
            work, images, clips, run_command, results, install if install_weights else None
        )
        jobs += base
        base_needs = {"sd": ("sd pipeline",), "svd": ("svd pipeline",)}
    paths = ProofPaths(bases["sd"], bases["svd"], images, clips, {}, work)
    controls = [] if args.only == ["bases"] else _proofs()
    chosen = [(base, proof) for base, proof in controls if not args.only or proof.trainer in args.only]
    for base, proof in sorted(chosen, key=lambda item: _scheduling_rank(item, chosen)):
        needs = tuple(n for n in proof.needs if n not in {p.trainer for _, p in chosen})
        if needs:
            parser.error(f"{proof.trainer} needs {', '.join(needs)} in the same run (add it to --only)")
        jobs.append(control_job(proof, paths, work, args.quick, results, base_needs[base], install_weights))
    run_jobs(jobs, slots=args.jobs, cores=max(cores, args.jobs))
    timings, sizes = results.timings, results.sizes
    rows = [row for key in ["bases", *(p.trainer for _, p in chosen)] for row in results.rows.get(key, [])]

    wall = time.perf_counter() - started
    print()
    print(
        table(
            [
                ("trained", "<20"),
                ("metric", "<58"),
                ("value", "<18"),
                ("baselines", "<60"),
                ("target", "<24"),
                ("met", "<5"),
            ],
            [
                (
                    row.trained,
                    row.metric,
                    str(row.value),
                    "; ".join(f"{name} {m}" for name, m in row.baselines.items()),
                    row.target or "reported",
                    {True: "yes", False: "NO", None: "-"}[row.met],
                )
                for row in rows
            ],
        )
    )
    notes = [f"  {row.trained}: {row.note}" for row in rows if row.note]
    if notes:
        print("\nnotes:\n" + "\n".join(notes))
    if sizes:
        print(
            "\ninstalled in assets/models/mini/: "
            + ", ".join(f"{k} {v / 2**20:.1f} MB" for k, v in sizes.items())
        )
    print(
        f"\nwall time {wall / 60:.1f} min on {os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), "
        f"{args.jobs} jobs at once"
    )
    write_json(
        args.json,
        {
            "quick": args.quick,
            "wall_time_s": wall,
            "cpu_cores": os.cpu_count(),
            "jobs": args.jobs,
            "timings_s": timings,
            "installed_bytes": sizes,
            "rows": [row.as_json() for row in rows],
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
