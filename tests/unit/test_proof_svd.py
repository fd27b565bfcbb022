"""core.eval.proof_svd's helpers: the sprites' tracks as drags, the held-out cases, the paired losses of the
conditioning gap, and every proof's training flags against its trainer's own checks."""

import importlib
from pathlib import Path

import numpy as np
import pytest
import torch

from core.data.synthetic import make_video_scene
from core.eval import proof_svd
from core.eval.learning import HELD_OUT_SEED, MINI_FRAMES, MINI_SIDE, ProofPaths
from core.trajectory import tracks_to_px


def test_sprite_tracks_are_the_exact_centres_of_the_sprites_seen_throughout():
    scene = make_video_scene((MINI_SIDE, MINI_SIDE), MINI_FRAMES, HELD_OUT_SEED)
    seen = scene.track_visible.all(axis=0)
    tracks_norm = proof_svd.sprite_tracks_norm(scene)
    assert tracks_norm.shape == (seen.sum(), MINI_FRAMES, 2)
    assert (tracks_norm >= 0).all() and (tracks_norm <= 1).all()
    np.testing.assert_allclose(
        tracks_to_px(tracks_norm, MINI_SIDE, MINI_SIDE),
        scene.tracks_px[:, seen].transpose(1, 0, 2),
        atol=1e-9,
    )


@pytest.mark.parametrize("quick", [True, False])
def test_held_out_cases_are_scenes_with_tracks_times_seeds(quick):
    cases = proof_svd.held_out_cases(quick)
    n_scenes, n_seeds = proof_svd.QUICK_CASES if quick else proof_svd.FULL_CASES
    assert [seed for _, seed in cases] == list(range(n_seeds)) * n_scenes
    scenes = [scene for scene, seed in cases if seed == 0]
    assert all(len(proof_svd.sprite_tracks_norm(scene)) for scene in scenes)
    # Held-out seeds: the first scene is HELD_OUT_SEED's, or a later one when that one had no track seen throughout.
    first = make_video_scene((MINI_SIDE, MINI_SIDE), MINI_FRAMES, HELD_OUT_SEED)
    if first.track_visible.all(axis=0).any():
        assert np.array_equal(scenes[0].frames_uint8, first.frames_uint8)


def test_motion_ceilings_score_a_perfect_sampler_worse_than_the_mean_of_its_draws():
    from core.flow import flows_to_video
    from core.training.svd_flow_lora import mean_epe

    sampler, mean, zero = [], [], []
    for case, (scene, _) in enumerate(proof_svd.held_out_cases(quick=True)):
        truth_px = flows_to_video(scene.flow_px)
        ceilings = proof_svd.motion_ceilings(scene, truth_px, case)
        assert ceilings == proof_svd.motion_ceilings(scene, truth_px, case)
        sampler.append(ceilings["sampler_epe_px"])
        mean.append(ceilings["mean_epe_px"])
        zero.append(mean_epe(np.zeros_like(truth_px), truth_px))
    # A draw of the motion misses by the spread of two draws; their mean by about one, as zero flow does.
    assert np.mean(sampler) > 1.1 * np.mean(mean)
    assert 0.8 < np.mean(mean) / np.mean(zero) < 1.25


def test_paired_losses_see_the_same_noise_and_roll_only_the_condition():
    x = torch.arange(8.0).reshape(4, 2)
    batches = [{"x": x, "condition": x.clone()}, {"x": -x, "condition": -x.clone()}]

    def uses_condition(batch):
        return ((batch["x"] - batch["condition"]) ** 2).mean() + torch.rand(())

    def ignores_it(batch):
        return batch["x"].abs().mean() + torch.rand(())

    true, rolled = proof_svd.paired_losses(uses_condition, batches, "condition")

    def noise(seed: int) -> float:
        torch.manual_seed(seed)
        return float(torch.rand(()))

    expected_noise = (noise(0) + noise(1)) / 2  # batch i is scored after reseeding with i
    assert true == pytest.approx(expected_noise)
    assert rolled > true + 1
    same_true, same_rolled = proof_svd.paired_losses(ignores_it, batches, "condition")
    assert same_true == same_rolled


def test_every_proofs_training_flags_pass_its_trainers_checks(tmp_path):
    clips, flow_lora = tmp_path / "clips", tmp_path / "flow"
    clips.mkdir()
    flow_lora.mkdir()
    paths = ProofPaths(Path("sd"), Path("svd"), Path("images"), clips, {"svd_flow_lora": flow_lora}, tmp_path)
    assert [proof.trainer for proof in proof_svd.PROOFS] == [
        "svd_flow_controlnet",
        "svd_interp_lora",
        "svd_flow_lora",
        "svd_joint_flow",
    ]
    for proof in proof_svd.PROOFS:
        module = importlib.import_module(f"core.training.{proof.trainer}")
        steps = []
        for quick in (True, False):
            argv = [*proof.train_argv(paths, quick), "--output_dir", str(tmp_path / proof.trainer)]
            args = module.build_parser().parse_args(argv)
            module.check_args(args)
            assert (args.pretrained_model, args.data_dir) == ("svd", str(clips))
            assert (args.resolution, args.width, args.num_frames) == (MINI_SIDE, MINI_SIDE, MINI_FRAMES)
            steps.append(args.max_train_steps)
        assert steps[0] < steps[1]
        assert proof.gap is not None
    assert proof_svd.PROOFS[-1].needs == ("svd_flow_lora",)


def test_held_out_clips_are_written_once_and_leave_no_scratch(tmp_path):
    paths = ProofPaths(Path("sd"), Path("svd"), Path("images"), Path("clips"), {}, tmp_path / "work")
    folder = proof_svd.held_out_clip_folder(paths, 2)
    videos = sorted((folder / "videos").iterdir())
    assert len(videos) == 2 and (folder / "metadata.csv").is_file()
    written = videos[0].stat().st_mtime_ns
    assert proof_svd.held_out_clip_folder(paths, 2) == folder
    assert videos[0].stat().st_mtime_ns == written
    assert [p.name for p in paths.work.iterdir()] == [folder.name]
