"""Models: where weights come from and who may change the shared modules.

- :mod:`core.models.loading`: every loader (SD, SVD, their ControlNets, SAM, the joint video+flow model,
  joint-weight folders), cached once per process, and :func:`~core.models.loading.missing_weights`, the one
  sentence for weights that are not there.
- :mod:`core.models.presets`: model settings built in code (``tiny``) and the offline CLIP tokenizer.
- :mod:`core.models.state`: the one place that attaches patches and adapters to a shared cached module
  (``attached``, thread-safe, exact restore). Imported on its own (it pulls in peft and the patches).

The loaders' and presets' public names are importable from ``core.models`` itself.
"""

from core.models.loading import (
    WEIGHT_SETTINGS,
    check_joint_weights,
    clear_cache,
    find_joint_weights,
    hub_offline,
    joint_weights_folder,
    load_components,
    load_controlnet,
    load_pipeline,
    load_sam,
    load_svd_controlnet,
    load_svd_joint_flow,
    missing_weights,
)
from core.models.presets import (
    PRESETS,
    TINY,
    offline_clip_tokenizer,
    tiny_sd_components,
    tiny_svd_components,
    write_offline_clip_tokenizer,
)

__all__ = [
    "PRESETS",
    "TINY",
    "WEIGHT_SETTINGS",
    "check_joint_weights",
    "clear_cache",
    "find_joint_weights",
    "hub_offline",
    "joint_weights_folder",
    "load_components",
    "load_controlnet",
    "load_pipeline",
    "load_sam",
    "load_svd_controlnet",
    "load_svd_joint_flow",
    "missing_weights",
    "offline_clip_tokenizer",
    "tiny_sd_components",
    "tiny_svd_components",
    "write_offline_clip_tokenizer",
]
