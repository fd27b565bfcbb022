"""The conditioning gap (core.eval.proof_svd) of the SVD controls on the mini SVD, within the CI budget.

On 2 held-out batches of 4 a trainer's own loss is compared with the true condition and with the conditions rolled
across the batch (gap = 1 - loss(true) / loss(rolled)). The untrained flow ControlNet has exactly none (zero
convs). The head+tail LoRA's quick run (``train_argv(paths, quick=True)``, 30 steps on 32 training clips) must add
a measured margin over the mini SVD's own gap (it already reads the last frame's conditioning channel).

Measured on the committed mini SVD (one torch thread, 2 cores, 110 s for both tests): svd_interp_lora 0.1074
at init, 0.1332 after the quick run. The quick runs of the ControlNet, the flow LoRA and the joint patch measured
no gain on held-out clips (ControlNet -0.0000, flow LoRA 0.0317 -> 0.0018, joint 0.0000 -> 0.0017 on the earlier
mini SVD), so they are not in CI; ``make prove`` reports their full runs. What CI does guard for the ControlNet is
that its condition path learns from the first steps: 10 steps of the proof's settings on 4 clips leave a gap on
those same clips of 0.0032 (0.0043 on the previous mini SVD; there, with the earlier zero-conv conditioning embedding
and one learning rate 0.0000, with the He init alone 0.0002, with the new layers' 10x alone 0.0030).
"""

import importlib
from dataclasses import replace
from pathlib import Path

import pytest

from core.data.synthetic import write_video_folder
from core.eval.learning import MINI_FPS, MINI_FRAMES, MINI_SIDE, TRAIN_SEED, ProofPaths, conditioning_gap
from core.eval.proof_svd import PROOFS, paired_losses, trainer_args

pytestmark = pytest.mark.slow

MINI_SVD = Path(__file__).resolve().parents[2] / "assets" / "models" / "mini" / "svd"
N_CLIPS, N_BATCHES = 32, 2
PROOF = {proof.trainer: proof for proof in PROOFS}
# The least gain of the quick interp LoRA run's gap over the gap at init, and the largest gap at init (the
# mini SVD's own), from the measurements above with head-room.
INTERP_GAIN, INTERP_AT_INIT = 0.015, 0.15
# The least gap of the ControlNet's 10-step run on its own 4 clips (measured 0.0032).
CONTROLNET_TRAINED_GAP, CONTROLNET_STEPS = 0.002, "10"


@pytest.fixture(scope="module")
def paths(tmp_path_factory) -> ProofPaths:
    if not (MINI_SVD / "model_index.json").is_file():
        pytest.skip(f"The mini SVD is not in {MINI_SVD} (make prove writes it).")
    root = tmp_path_factory.mktemp("proof_svd")
    clips = root / "clips"
    write_video_folder(
        clips, N_CLIPS, size=(MINI_SIDE, MINI_SIDE), n_frames=MINI_FRAMES, fps=MINI_FPS, seed=TRAIN_SEED
    )
    return ProofPaths(MINI_SVD, MINI_SVD, root, clips, {}, root)


def test_the_untrained_controlnet_cannot_use_its_condition(paths):
    # Zero convs: the residuals are exactly zero, so the rolled tracks change nothing.
    assert abs(conditioning_gap(*PROOF["svd_flow_controlnet"].gap(paths, N_BATCHES))) <= 1e-6


def test_a_quick_interp_lora_run_reads_the_tail_frame_more(paths):
    proof = PROOF["svd_interp_lora"]
    out = paths.work / "runs" / proof.trainer
    argv = [*proof.train_argv(paths, True), "--output_dir", str(out)]
    assert importlib.import_module(f"core.training.{proof.trainer}").main(argv) == 0
    untrained = conditioning_gap(*proof.gap(paths, N_BATCHES))
    learned = conditioning_gap(*proof.gap(replace(paths, weights={proof.trainer: out}), N_BATCHES))
    print(f"svd_interp_lora: gap at init {untrained:.4f}, after the quick run {learned:.4f}")
    assert 0 < untrained <= INTERP_AT_INIT  # the mini SVD itself reads the last frame's conditioning channel
    assert learned - untrained >= INTERP_GAIN


def test_ten_controlnet_steps_already_read_the_tracks_of_their_clips(paths):
    proof = PROOF["svd_flow_controlnet"]
    clips = paths.work / "four_clips"
    write_video_folder(
        clips, 4, size=(MINI_SIDE, MINI_SIDE), n_frames=MINI_FRAMES, fps=MINI_FPS, seed=TRAIN_SEED
    )
    four = replace(paths, clips=clips)
    out = paths.work / "runs" / "controlnet_10"
    steps = ["--max_train_steps", CONTROLNET_STEPS, "--checkpointing_steps", CONTROLNET_STEPS]
    argv = [*proof.train_argv(four, False), *steps, "--output_dir", str(out)]
    assert importlib.import_module(f"core.training.{proof.trainer}").main(argv) == 0

    trained = replace(four, weights={proof.trainer: out})
    task = importlib.import_module(f"core.training.{proof.trainer}").build_task(
        trainer_args(proof.trainer, trained, "--conditioning_dropout", "0"), None
    )
    task.load_weights(task.models, out)
    for model in task.models.values():
        model.eval()
    batch = task.collate_fn([task.dataset[i] for i in range(4)])
    # The same batch under 4 draws of noise and noise levels, with its own tracks and with them rolled.
    losses = paired_losses(lambda b: task.compute_loss(b, task.models), [batch] * 4, "flow_condition")
    gap = conditioning_gap(*losses)
    print(f"svd_flow_controlnet: gap on its own 4 clips after {CONTROLNET_STEPS} steps {gap:.4f}")
    assert gap >= CONTROLNET_TRAINED_GAP
