"""Optical flow: estimation (OpenCV DIS / Farneback, optional RAFT), warping, composition, colours.

Flow is float32 (H,W,2) in pixels, (dx, dy), from frame t to frame t+1 unless named otherwise.
"""

from core.flow.warp import backward_warp, forward_splat, invert_flow, warp_field

__all__ = ["backward_warp", "forward_splat", "invert_flow", "warp_field"]
