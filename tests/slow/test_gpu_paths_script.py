"""tests/benchmarks/gpu_paths.py runs end to end (on the CPU with the tiny presets: --tiny), so the GPU benchmark
is ready when a GPU is lent: model folders saved and loaded through the settings, a drag SVD path in default and
low-VRAM mode, rows in the JSON."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import gpu_paths  # noqa: E402


@pytest.mark.slow
def test_gpu_benchmark_runs_on_tiny_models(tmp_path, monkeypatch):
    # The script points the KINEMA_* settings at its folders: registered here, they are restored afterwards.
    for name in (
        "SD_MODEL",
        "SVD_MODEL",
        "SVD_CONTROLNET_MODEL",
        "SVD_JOINT_FLOW_MODEL",
        "LOW_VRAM",
        "DEVICE",
    ):
        monkeypatch.setenv(f"KINEMA_{name}", "")
    out = tmp_path / "gpu.json"
    argv = ["--tiny", "--steps", "1", "--work", str(tmp_path / "work"), "--json", str(out)]
    assert gpu_paths.main([*argv, "--paths", "drag svd", "--skip", "vae", "steps"]) == 0
    report = json.loads(out.read_text())
    rows = {(r["path"], r["mode"]): r for r in report["rows"]}
    assert set(rows) == {("drag svd", "default"), ("drag svd", "low-vram")}
    assert all(
        r["note"] in ("", f"time x{r['extra'].get('time_vs_default', 0):.2f} default") for r in rows.values()
    )
    assert (tmp_path / "work" / "out" / "drag-svd.mp4").is_file()
    assert (tmp_path / "work" / "svd" / "model_index.json").is_file()
