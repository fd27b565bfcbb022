"""The pieces every SVD training script shares (core.training.svd_base), checked against diffusers' SVD
scheduler and our SVD pipelines' own conditioning."""

import argparse

import pytest
import torch

from core.models import tiny_svd_components
from core.pipelines.svd_common import SVDPipelineBase
from core.training import svd_base
from core.training.common import add_common_args

FRAMES = 4


def test_edm_preconditioning_is_the_svd_schedulers():
    scheduler = tiny_svd_components()["scheduler"]
    scheduler.set_timesteps(6)
    generator = torch.Generator().manual_seed(0)
    x0, noise, output = torch.randn(3, 1, 2, 4, 5, 5, generator=generator)
    for index, t in enumerate(scheduler.timesteps):
        sigma = scheduler.sigmas[index].reshape(1)
        c_skip, c_out, c_in, c_noise = svd_base.edm_preconditioning(sigma)
        torch.testing.assert_close(c_noise, t.reshape(1))  # continuous timestep 0.25 ln(sigma)
        x = x0 + sigma * noise
        scheduler._step_index = index
        torch.testing.assert_close(c_in * x, scheduler.scale_model_input(x, t))
        scheduler._step_index = index
        denoised = scheduler.step(output, t, x).pred_original_sample
        torch.testing.assert_close(c_skip * x + c_out * output, denoised)
        # The training target is the output that denoises x to x0 (in float64: at sigma 0.002 the float32
        # difference x0 - c_skip x loses digits, which is why training uses the closed form).
        sigma64, x0_64, noise64 = sigma.double(), x0.double(), noise.double()
        c_skip, c_out, _, _ = svd_base.edm_preconditioning(sigma64)
        x, target = x0_64 + sigma64 * noise64, svd_base.v_target(x0_64, noise64, sigma64)
        torch.testing.assert_close(c_skip * x + c_out * target, x0_64)
        torch.testing.assert_close(target, (x0_64 - c_skip * x) / c_out)


def test_sigmas_are_log_normal():
    torch.manual_seed(0)
    log_sigmas = svd_base.sample_sigmas(200_000, svd_base.P_MEAN, svd_base.P_STD).log()
    assert abs(log_sigmas.mean().item() - 0.7) < 0.01 and abs(log_sigmas.std().item() - 1.6) < 0.01


def test_added_time_ids_follow_the_pipelines_order():
    pipe = SVDPipelineBase(**tiny_svd_components())
    pipe._guidance_scale = 1.0  # no guidance: one row per video
    expected = pipe._conditioning(
        torch.zeros(1, 1, 32), torch.zeros(1, FRAMES, 4, 2, 2), 7, 90, 0.02
    ).added_time_ids
    got = svd_base.added_time_ids(7, torch.tensor([90.0]), 0.02)
    assert torch.equal(got, expected) and got.tolist() == [[6.0, 90.0, pytest.approx(0.02)]]


def test_edm_inputs_noise_the_latents_with_the_sigmas_then_the_noise_drawn():
    latents = torch.randn(2, FRAMES, 4, 3, 3)
    torch.manual_seed(5)
    edm = svd_base.edm_inputs(latents, 0.7, 1.6)
    torch.manual_seed(5)
    sigmas = svd_base.sample_sigmas(2, 0.7, 1.6)
    noise = torch.randn_like(latents)
    sigmas_5d = sigmas[:, None, None, None, None]
    c_skip, c_out, c_in, c_noise = svd_base.edm_preconditioning(sigmas_5d)
    assert torch.equal(edm.sigmas, sigmas) and torch.equal(edm.timesteps, c_noise.flatten())
    assert torch.equal(edm.model_input, c_in * (latents + sigmas_5d * noise))
    # The target denoises the noisy input to the clean latents through the scheduler's x0 formula.
    x = latents + sigmas_5d * noise
    torch.testing.assert_close(c_skip * x + c_out * edm.target, latents, atol=1e-5, rtol=0)


def test_drop_conditioning_zeroes_whole_clips_with_one_draw_per_clip():
    embeddings = torch.randn(6, 1, 8)
    latents = torch.randn(6, 4, 3, 3).half()
    flow = torch.randn(6, FRAMES, 3, 3, 3)
    torch.manual_seed(1)
    dropped = svd_base.drop_conditioning(0.5, embeddings, latents, flow)
    torch.manual_seed(1)
    keep = (torch.rand(6) >= 0.5).tolist()
    assert 0 < sum(keep) < 6  # both kinds of clip at this seed
    for before, after in zip((embeddings, latents, flow), dropped):
        assert after.dtype == before.dtype and after.shape == before.shape
        for clip, kept in enumerate(keep):
            assert torch.equal(after[clip], before[clip] if kept else torch.zeros_like(before[clip]))
    kept = svd_base.drop_conditioning(0.0, embeddings, flow)
    assert torch.equal(kept[0], embeddings) and torch.equal(kept[1], flow)
    assert not svd_base.drop_conditioning(1.0, flow)[0].any()


def test_unet_input_puts_one_frames_condition_on_every_frame():
    edm = svd_base.edm_inputs(torch.randn(2, FRAMES, 4, 3, 3), 0.7, 1.6)
    condition = torch.randn(2, 4, 3, 3)
    sample = svd_base.unet_input(edm, condition)
    assert sample.shape == (2, FRAMES, 8, 3, 3) and torch.equal(sample[:, :, :4], edm.model_input)
    assert all(torch.equal(sample[:, t, 4:], condition) for t in range(FRAMES))
    per_frame = torch.randn(2, FRAMES, 4, 3, 3)
    assert torch.equal(svd_base.unet_input(edm, per_frame)[:, :, 4:], per_frame)


def test_validation_sampling_comes_from_the_flags_with_a_fresh_generator_per_call(tmp_path):
    parser = argparse.ArgumentParser()
    add_common_args(parser)
    svd_base.add_svd_video_args(parser, lora=False)
    flags = ["--output_dir", str(tmp_path), "--data_dir", str(tmp_path), "--seed", "5", "--fps", "9"]
    flags += ["--motion_bucket_id", "40", "--validation_inference_steps", "3"]
    sampling = svd_base.ValidationSampling.from_args(parser.parse_args(flags), item={})
    assert sampling.record() == {
        "seed": 5,
        "fps": 9,
        "motion_bucket_id": 40,
        "noise_aug_strength": 0.02,
        "num_inference_steps": 3,
        "min_guidance_scale": 1.0,
        "max_guidance_scale": 3.0,
    }
    first, second = sampling.pipeline_kwargs(), sampling.pipeline_kwargs()
    assert first.keys() == {*sampling.record()} - {"seed"} | {"generator"}
    expected = torch.randn(4, generator=torch.Generator().manual_seed(5))
    assert torch.equal(torch.randn(4, generator=first["generator"]), expected)
    assert torch.equal(torch.randn(4, generator=second["generator"]), expected)  # not the first's, used up
