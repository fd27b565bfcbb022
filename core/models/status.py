"""What a model setting's weights are, found without loading them: the state the landing page shows for each
backend and the test behind the apps' offer of the offline models (``apps/common/offline.py``).

:func:`weights_status` answers for one Settings field and its value, with the loaders' own tests
(:func:`core.models.loading.names_local_path`, the presets, :func:`core.models.loading.find_joint_weights`,
the Hugging Face cache they read offline) and their sentence (:func:`core.models.loading.missing_weights`):

- ``ready``: a local folder holding the file its loader reads first, or a hub id in the Hugging Face cache;
- ``download``: a hub id not in the cache while online (downloaded on first use);
- ``tiny`` / ``mini``: the presets (``mini`` only when its folder in ``assets/models/mini`` holds the weights);
- ``missing``: configured, but not there (``why`` says what is wrong, as the loader would);
- ``unset``: an optional setting left empty (the backend that needs it is not offered).

A status is a cheap look at files, not a guarantee: a folder can hold the right file name and still fail to
load; the loader then says so when a run asks for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from core.config import ENV_PREFIX, MINI_WEIGHTS
from core.models.loading import find_joint_weights, hub_offline, missing_weights, names_local_path
from core.models.presets import MINI, MINI_FOLDER, TINY

State = Literal["ready", "download", "tiny", "mini", "missing", "unset"]
USABLE: tuple[State, ...] = ("ready", "download", "tiny", "mini")
# The file each loader reads first in a folder (or hub repository) of that setting.
_FIRST_FILE = {
    "sd_model": "model_index.json",
    "svd_model": "model_index.json",
    "controlnet_model": "config.json",
    "svd_controlnet_model": "config.json",
    "svd_joint_flow_model": "joint_layers.safetensors",
    "sam_model": "config.json",
}
# The mini folder of the settings whose `mini` is a model kind (the others: core.config.MINI_WEIGHTS).
_MINI_KIND = {"sd_model": "sd", "svd_model": "svd"}


@dataclass(frozen=True)
class WeightsStatus:
    """The state of one model setting: `setting` (a Settings field), its `model` value, `state`, and `why`
    (for ``missing``: the loaders' one sentence naming the variable to set; else "")."""

    setting: str
    model: str
    state: State
    why: str = ""

    @property
    def usable(self) -> bool:
        """Whether a run can use these weights (as far as files tell)."""
        return self.state in USABLE

    @property
    def variable(self) -> str:
        """The environment variable of the setting, e.g. ``KINEMA_SD_MODEL``."""
        return f"{ENV_PREFIX}{self.setting.upper()}"


def mini_folder(setting: str) -> Path | None:
    """The folder of the ``mini`` model of `setting` in ``assets/models/mini`` (None: there is no mini one)."""
    trainer = _MINI_KIND.get(setting) or MINI_WEIGHTS.get(setting)
    return MINI_FOLDER / trainer if trainer else None


def mini_available(setting: str) -> bool:
    """Whether the ``mini`` weights of `setting` are installed (``make prove`` writes them)."""
    folder = mini_folder(setting)
    return folder is not None and _holds_weights(setting, folder)


def weights_status(setting: str, model: str) -> WeightsStatus:
    """The state of the weights `model` that `setting` names (see the module docstring). No weights load."""
    if not model:
        return WeightsStatus(setting, model, "unset")
    if model == TINY:
        return WeightsStatus(setting, model, "tiny")
    folder = mini_folder(setting)
    if model == MINI or (folder is not None and Path(model) == folder):
        if mini_available(setting):
            return WeightsStatus(setting, model, "mini")
        return _missing(setting, model, "the mini weights are not installed: run 'make prove'")
    if names_local_path(model) or setting in MINI_WEIGHTS:  # trained weights are always folders or files
        local = Path(model).expanduser()
        if not local.exists():
            return _missing(setting, model, "no such folder")
        if _holds_weights(setting, local):
            return WeightsStatus(setting, model, "ready")
        return _missing(setting, model, f"no {_FIRST_FILE.get(setting, 'weights')} in that folder")
    if _in_hub_cache(model, _FIRST_FILE.get(setting, "config.json")):
        return WeightsStatus(setting, model, "ready")
    if hub_offline():
        return _missing(setting, model, "offline and not in the cache")
    return WeightsStatus(setting, model, "download")


def _holds_weights(setting: str, path: Path) -> bool:
    if setting == "joint_weights":
        return bool(find_joint_weights(path))
    if setting == "svd_interp_lora":  # a LoRA folder or its .safetensors file
        return path.is_file() or any(path.glob("*.safetensors"))
    return (path / _FIRST_FILE[setting]).is_file()


def _in_hub_cache(repo_id: str, filename: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(repo_id, filename), str)
    except ValueError:  # not a valid repository id
        return False


def _missing(setting: str, model: str, why: str) -> WeightsStatus:
    if setting in ("joint_weights", "svd_interp_lora"):  # not among the loaders' sentences: say it alike
        sentence = (
            f"The weights '{model}' are not available ({why}): set {ENV_PREFIX}{setting.upper()} (or "
            f"--{setting.replace('_', '-')}) to a folder its trainer wrote, or to '{MINI}'."
        )
    else:
        sentence = str(missing_weights(setting, model, why))
    return WeightsStatus(setting, model, "missing", sentence)
