"""Optical flow: estimation (OpenCV DIS / Farneback, optional RAFT), warping, composition, colours.

The flow-index convention (one for all of core)
    A flow field is float32 (H,W,2) in pixels, (dx, dy), on the grid of the frame the motion starts
    from. Flows of a T-frame clip, `flows_px` (T-1,H,W,2), hold at index t the motion from frame t to
    frame t+1: `estimate_video_flow`, `accumulate_flows`, `core.flow.tracks`, `core.engines.warp`,
    `core.engines.interpolate`, `core.motion` and the drag app's flow output all use it.

    Two other layouts exist where a model or a frame index needs them; each is named where it is used:
    - A flow video (T,H,W,2), aligned with the clip's frames: frame 0 is zero and frame t+1 holds
      flows_px[t] (the motion t -> t+1, on frame t's grid). The video models generate and are
      conditioned on this layout: `core.trajectory.sparse_flow` / `sparse_flow_mask`,
      `core.flow.encoding`, the pipelines `svd_flow`, `svd_joint_flow` and `svd_trajectory` (the flow
      ControlNet's condition). `flows_to_video` and `video_to_flows` convert; nothing converts by hand.
    - A displacement from frame 0 (T,H,W,2): index t holds the motion from frame 0 to frame t, frame 0
      zero (`core.trajectory.dense_displacement`, `backward_flow`; `accumulate_flows` gives the
      same from flows without the zero frame: its entry t is frame 0 -> t+1).

Accuracy against known flow: `python -m core.eval.flow` (see core/eval/flow.py).
"""

from core.flow.estimate import METHODS, estimate_flow, estimate_video_flow, occlusion_mask
from core.flow.ops import (
    accumulate_flows,
    chain_flows,
    compose_flow,
    flows_to_video,
    resize_flow,
    video_to_flows,
)
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
    "flows_to_video",
    "forward_splat",
    "invert_flow",
    "occlusion_mask",
    "render_flow_video",
    "resize_flow",
    "video_to_flows",
    "warp_field",
]
