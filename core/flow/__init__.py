"""Optical flow: estimation (OpenCV DIS / Farneback, optional RAFT), warping, composition, colours.

Flow is float32 (H,W,2) in pixels, (dx, dy), from frame t to frame t+1 unless named otherwise.
Accuracy against known flow: `python -m core.eval.flow` (see core/eval/flow.py).
"""

from core.flow.estimate import METHODS, estimate_flow, estimate_video_flow, occlusion_mask
from core.flow.ops import accumulate_flows, chain_flows, compose_flow, resize_flow
from core.flow.visualize import color_wheel, flow_legend, flow_to_color, render_flow_video
from core.flow.warp import backward_warp, forward_splat, invert_flow, warp_field

__all__ = [
    "METHODS",
    "accumulate_flows",
    "backward_warp",
    "chain_flows",
    "color_wheel",
    "compose_flow",
    "estimate_flow",
    "estimate_video_flow",
    "flow_legend",
    "flow_to_color",
    "forward_splat",
    "invert_flow",
    "occlusion_mask",
    "render_flow_video",
    "resize_flow",
    "warp_field",
]
