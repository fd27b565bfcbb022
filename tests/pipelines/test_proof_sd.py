"""The SD proofs on tiny SD: the conditioning gap sees the partner images only through the joint layers, and
the proofs' training flags are ones the trainers accept."""

import argparse

import pytest
import torch

from core.data.synthetic import write_image_depth_folder
from core.eval.learning import ProofPaths
from core.eval.proof_sd import PROOFS, joint_gap
from core.models import tiny_sd_components
from core.patches.joint import JOINT_CONV, apply_joint_patch
from core.training import joint_lora, sd_lora


def test_the_untrained_patch_has_no_gap_and_trained_joint_layers_do(tmp_path):
    pairs = tmp_path / "pairs"
    true, rolled = joint_gap("tiny", None, pairs, n_batches=1)
    assert true == rolled > 0  # a fresh patch computes the stock UNet: the partner cannot matter

    patch = apply_joint_patch(tiny_sd_components()["unet"], modalities=2)
    torch.manual_seed(0)
    with torch.no_grad():
        for block in patch.blocks.values():
            getattr(block, JOINT_CONV).weight.normal_(std=0.5)
    patch.save(tmp_path / "joint")
    true, rolled = joint_gap("tiny", tmp_path / "joint", pairs, n_batches=1)
    assert abs(true - rolled) > 1e-6  # measured 1.3e-5 on random tiny weights; float noise is ~1e-7


@pytest.mark.parametrize("quick", [True, False])
def test_train_argv_are_flags_the_trainers_accept(tmp_path, quick):
    write_image_depth_folder(tmp_path / "images", 20, size=(16, 16), seed=0)
    paths = ProofPaths(
        tmp_path / "sd", tmp_path / "svd", tmp_path / "images", tmp_path / "clips", {}, tmp_path
    )
    for proof, script in zip(PROOFS, (joint_lora, sd_lora), strict=True):
        args = script.build_parser().parse_args(
            [*proof.train_argv(paths, quick), "--output_dir", str(tmp_path)]
        )
        script.check_args(args)
        assert isinstance(args, argparse.Namespace) and args.resolution == 64
        assert (args.max_train_steps < 200) == quick
    assert (tmp_path / "sd_lora_style" / "metadata.jsonl").is_file()  # the style set sd_lora trains on
