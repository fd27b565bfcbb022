"""diffusers pipelines of Kinema, one module each; import the module you need (nothing is imported here).

- ``core.pipelines.svd_trajectory``: SVD video from a first frame and a guide video (SDEdit), drag-to-video.
- ``core.pipelines.svd_interpolate``: SVD inbetweening between keyframes (time-reversal fusion or a
  head-and-tail LoRA), loops and keyframe chains.
- ``core.pipelines.svd_common``: the steps both SVD pipelines share.
"""
