"""Flow throughput at 512x512: DIS (default and ultrafast) against Farneback, splatting against gathering.

Run: .venv/bin/python tests/benchmarks/run.py flow
"""

from __future__ import annotations

from harness import Row, median_seconds

from core.eval.fixtures import load_photo
from core.eval.flow import synthetic_case
from core.flow import backward_warp, estimate_flow, forward_splat

SIZE_PX = 512


def run() -> list[Row]:
    # A real photo (astronaut is 512x512) under a smooth non-rigid motion.
    case = synthetic_case(load_photo("astronaut", SIZE_PX), "smooth_random")
    a, b = case.frame_a_uint8, case.frame_b_uint8
    assert a.shape[:2] == (SIZE_PX, SIZE_PX)
    fps = {
        method: 1.0 / median_seconds(lambda m=method: estimate_flow(a, b, m), repeat=7)
        for method in ("dis", "dis_ultrafast", "farneback")
    }
    rows = [
        Row(
            "flow_512", f"{method} throughput", fps[method], "frames/s", "farneback", fps["farneback"], target
        )
        for method, target in (("dis", ">= 20 frames/s on 2 cores"), ("dis_ultrafast", "preview speed"))
    ]
    flow = case.flow_px
    splat_s = median_seconds(lambda: forward_splat(a, flow))
    gather_s = median_seconds(lambda: backward_warp(a, -flow))
    rows.append(
        Row("flow_512", "forward_splat time", splat_s, "s", "backward_warp", gather_s, "<= 0.15 s on 2 cores")
    )
    return rows
