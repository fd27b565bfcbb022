"""Where the apps' size and step controls start.

The presets run anywhere, but on a CPU their cost depends on the start values far more than users expect: the
tiny SVD's VAE only halves the picture, so at the keyframe app's usual 512 px working size its UNet attends over
256x256 latents and one inbetweening ran for more than 15 minutes on 2 cores. So when a preset model (``tiny`` or
``mini``) runs on the CPU, the size and step controls start where a first run takes about a minute on 2 cores
(``core.estimate``'s figures; the app shows the estimate of each run before it starts), and say so; the user
may change them as they like. The ``mini`` models start at their own size and steps on any device.
"""

from __future__ import annotations

from dataclasses import dataclass

from apps.common.examples import MINI_STEPS, is_mini
from core.config import Settings
from core.eval.learning import MINI_SIDE
from core.models.presets import MINI, TINY

CPU_SIDE = 64  # px
# Steps by model and pipeline kind ("sd": joint depth and SD edits; "svd": inbetweening, which costs a step per
# frame of every segment, twice for svd-trf).
CPU_STEPS = {TINY: {"sd": 15, "svd": 4}, MINI: {"sd": MINI_STEPS, "svd": MINI_STEPS}}


@dataclass(frozen=True)
class StartValues:
    """A control group's start: ``side`` px, ``steps``, and ``note`` (a sentence for the UI, "" for none)."""

    side: int
    steps: int
    note: str = ""


def start_values(model: str, kind: str, settings: Settings, side: int, steps: int) -> StartValues:
    """The start values for ``model`` (a model setting) running ``kind`` ("sd" or "svd"); ``side`` and ``steps``
    are the app's usual ones, kept for real weights."""
    if model in CPU_STEPS and settings.resolved_device() == "cpu":
        steps = CPU_STEPS[model][kind]
        note = (
            f"Start values sized for the CPU with the `{model}` model: {CPU_SIDE} px, {steps} steps (a first run "
            "in about a minute on 2 cores); change them as you like."
        )
        return StartValues(CPU_SIDE, steps, note)
    if is_mini(model):
        return StartValues(MINI_SIDE, MINI_STEPS)
    return StartValues(side, steps)
