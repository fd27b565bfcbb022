"""Cost of the joint patch: the patched SD1.5 UNet against the stock one on the same pair batch.

Full SD1.5 architecture with random weights, one [x, y] pair (batch 2) of 32x32 latents (256x256 pixels),
fp32, no grad. The patched UNet carries the joint layers and its three adapters (rank 16, masked per
entry); it is timed with the adapters on and off. Time: median of one UNet call over rounds that
alternate the variants (so load changes on a shared machine hit all of them alike). Peak memory: on CUDA
the peak allocated by torch; on the CPU the peak resident set size of a fresh subprocess per variant,
reset (Linux ``/proc/self/clear_refs``) after the UNet is built so the transient peak of random
initialisation does not hide the call: weights + patch + activations of one call.

Run: .venv/bin/python tests/benchmarks/run.py joint_patch
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from pathlib import Path

import torch
from harness import Row, median_seconds

from core import lora
from core.patches.joint import apply_joint_patch
from tests.support.full_architecture import full_architecture_random

ROOT = Path(__file__).resolve().parents[2]
LATENT_PX = 32
LORA_RANK = 16
VARIANTS = ("stock", "patched")
ROUNDS = 3


def _inputs(device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(2, 4, LATENT_PX, LATENT_PX, generator=generator)
    text = torch.randn(2, 77, 768, generator=generator)
    return latents.to(device), torch.tensor([500], device=device), text.to(device)


def _unet(variant: str, device: torch.device):
    unet = full_architecture_random("sd15", components=("unet",))["unet"].to(device)
    if variant == "patched":
        apply_joint_patch(unet, joint_lora_rank=LORA_RANK, y_lora_rank=LORA_RANK).set_batch_layout([0, 1])
    return unet


def _call(unet, inputs) -> torch.Tensor:
    with torch.no_grad():
        out = unet(*inputs[:2], encoder_hidden_states=inputs[2]).sample
    if out.is_cuda:
        torch.cuda.synchronize()
    return out


def _peak_rss_bytes(variant: str) -> float:
    """Peak RSS of a fresh process that builds ``variant`` and calls it once (see the module docstring)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, __file__, "peak-rss", variant], capture_output=True, text=True, env=env, check=True
    )
    return float(done.stdout.strip().splitlines()[-1])


def _vm_hwm_bytes() -> float:
    status = Path("/proc/self/status").read_text()
    return float(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) * 1024


def _peak_cuda_bytes(variant: str, device: torch.device) -> float:
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    unet = _unet(variant, device)
    _call(unet, _inputs(device))
    peak = float(torch.cuda.max_memory_allocated(device))
    del unet
    return peak


def _median_call_seconds(device: torch.device) -> dict[str, float]:
    """Median call time per variant, over rounds that alternate the variants."""
    inputs = _inputs(device)
    stock, patched = _unet("stock", device), _unet("patched", device)

    def adapters_off() -> torch.Tensor:
        lora.set_lora_enabled(patched, False)
        try:
            return _call(patched, inputs)
        finally:
            lora.set_lora_enabled(patched, True)

    calls = {
        "stock": lambda: _call(stock, inputs),
        "patched": lambda: _call(patched, inputs),
        "patched, adapters off": adapters_off,
    }
    # The patch starts as a no-op: a benchmark of a patch that changed the output would mean nothing.
    outputs = {variant: call() for variant, call in calls.items()}  # also the warm-up
    assert max((out - outputs["stock"]).abs().max().item() for out in outputs.values()) <= 1e-5
    times = {variant: [] for variant in calls}
    for _ in range(ROUNDS):
        for variant, call in calls.items():
            times[variant].append(median_seconds(call, repeat=1, warmup=0))
    return {variant: statistics.median(values) for variant, values in times.items()}


def run() -> list[Row]:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    seconds = _median_call_seconds(device)
    if device.type == "cuda":
        peak = {variant: _peak_cuda_bytes(variant, device) for variant in VARIANTS}
        how = "peak CUDA allocated"
    else:
        peak = {variant: _peak_rss_bytes(variant) for variant in VARIANTS}
        how = "peak RSS of the call"
    mib = 2.0**20
    name = f"joint_patch_sd15_{device.type}"
    timed = {
        "UNet call, joint + adapters": "patched",
        "UNet call, joint, adapters off": "patched, adapters off",
    }
    rows = [
        Row(name, metric, seconds[variant], "s", "stock UNet", seconds["stock"], "<= 1.3x")
        for metric, variant in timed.items()
    ]
    rows.append(Row(name, how, peak["patched"] / mib, "MiB", "stock UNet", peak["stock"] / mib, "reported"))
    return rows


if __name__ == "__main__":
    # Child process of _peak_rss_bytes: build one variant, call it once, print the peak RSS in bytes.
    if sys.argv[1:2] == ["peak-rss"]:
        cpu = torch.device("cpu")
        unet = _unet(sys.argv[2], cpu)
        Path("/proc/self/clear_refs").write_text("5")  # peak RSS := current RSS (Linux)
        _call(unet, _inputs(cpu))
        print(_vm_hwm_bytes())
