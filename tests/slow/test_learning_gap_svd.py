"""The conditioning gap of the four SVD control trainers on the mini SVD (core.eval.proof_svd).

Each trainer runs its quick training (``train_argv(paths, quick=True)``) on 32 training clips; on held-out clips
its own loss with the true condition must then be clearly below the loss with the conditions rolled across the
batch, while the control at init (no weights) shows no gap. The margins are what was measured, with head-room
(the numbers beside each).
"""

import importlib
from dataclasses import replace
from pathlib import Path

import pytest

from core.data.synthetic import write_video_folder
from core.eval.learning import MINI_FPS, MINI_FRAMES, MINI_SIDE, TRAIN_SEED, ProofPaths, conditioning_gap
from core.eval.proof_svd import PROOFS

pytestmark = pytest.mark.slow

MINI_SVD = Path(__file__).resolve().parents[2] / "assets" / "models" / "mini" / "svd"
N_CLIPS, N_BATCHES = 32, 2
# trainer -> (smallest gap after the quick run, largest |gap| of the control at init).
GAP_BOUNDS = {
    "svd_flow_controlnet": (0.10, 1e-6),
    "svd_interp_lora": (0.10, 0.05),
    "svd_flow_lora": (0.10, 0.05),
    "svd_joint_flow": (0.0, 1e-6),
}


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


@pytest.fixture(scope="module")
def trained(paths):
    """trainer -> the folder of its quick run, trained on first use (the joint trainer after the flow LoRA)."""
    weights: dict[str, Path] = {}

    def train(name: str) -> Path:
        if name not in weights:
            proof = next(p for p in PROOFS if p.trainer == name)
            for need in proof.needs:
                train(need)
            out = paths.work / "runs" / name
            argv = [*proof.train_argv(replace(paths, weights=dict(weights)), True), "--output_dir", str(out)]
            assert importlib.import_module(f"core.training.{name}").main(argv) == 0
            weights[name] = out
        return weights[name]

    return train


@pytest.mark.parametrize("proof", PROOFS, ids=lambda proof: proof.trainer)
def test_a_quick_run_learns_to_use_its_condition(proof, paths, trained):
    needs = {name: trained(name) for name in proof.needs}
    untrained = conditioning_gap(*proof.gap(replace(paths, weights=needs), N_BATCHES))
    learned = conditioning_gap(*proof.gap(replace(paths, weights={**needs, proof.trainer: trained(proof.trainer)}), N_BATCHES))
    print(f"{proof.trainer}: gap at init {untrained:.4f}, after the quick run {learned:.4f}")
    least, at_init = GAP_BOUNDS[proof.trainer]
    assert abs(untrained) <= at_init
    assert learned >= least
