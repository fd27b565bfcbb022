"""The offline first run, one helper for the three apps: when configured weights are missing, the app offers
one click to the offline models, ``mini`` (trained from scratch on synthetic scenes, ``make prove``; the apps
then start at their size and put their synthetic examples first) or, where a mini model is not installed,
``tiny`` (random weights, said so).

What is switched: every model setting (:func:`offline_settings`), so the page runs one coherent toy setup.
Where: the switch is per page, never per server. The Gradio apps serve a second copy of themselves built with
:func:`offline_settings` at ``<app>/offline/`` (:func:`apps.common.gradio.mount_app`), the drag app reads
``?models=offline`` from its own URL (:mod:`apps.common.streamlit`); other users, and the same user's other
tabs, keep the configured models. The switched page says which models run (:func:`in_use_note`) and links
back. When: a setting the app uses is configured but missing (:func:`missing_weights_of`,
:func:`core.models.status.weights_status`); an optional setting left empty is no reason to offer it.
"""

from __future__ import annotations

from collections.abc import Iterable

from apps.common.examples import MINI_DESCRIPTION
from core.config import Settings
from core.models.presets import MINI, TINY
from core.models.status import WeightsStatus, mini_available, weights_status

OFFLINE_PATH = "offline"  # the Gradio apps' offline copy: <app path>/offline/
QUERY_KEY, QUERY_VALUE = "models", "offline"  # the drag app's switch: ?models=offline
# Every model setting the switch sets, and its value where no mini model is installed ("": left out).
_WITHOUT_MINI = {
    "sd_model": TINY,
    "svd_model": TINY,
    "svd_controlnet_model": TINY,
    "svd_joint_flow_model": TINY,
    "joint_weights": "",
    "svd_interp_lora": "",
    "controlnet_model": "",  # the keyframe edits' SD ControlNet has no offline model
    "sam_model": "",  # GrabCut, no weights
}
TINY_DESCRIPTION = "random test weights, so the outputs are noise; `make prove` installs the mini models"


def offline_choice(setting: str) -> str:
    """What the switch sets `setting` to: ``mini`` when installed, else ``tiny`` or nothing."""
    return MINI if mini_available(setting) else _WITHOUT_MINI[setting]


def offline_settings(settings: Settings) -> Settings:
    """`settings` with every model setting on its offline choice (limits, device and output folder kept)."""
    return settings.replace(**{name: offline_choice(name) for name in _WITHOUT_MINI})


def missing_weights_of(settings: Settings, models: Iterable[str]) -> list[WeightsStatus]:
    """The settings among `models` (Settings fields an app uses) that are configured but whose weights are
    not there."""
    found = (weights_status(name, getattr(settings, name)) for name in models)
    return [status for status in found if status.state == "missing"]


def switch_label(models: Iterable[str]) -> str:
    """The switch's text (plain, for a button): mini models when every one of `models` that the switch sets
    has one installed, else tiny ones too."""
    chosen = {offline_choice(name) for name in models} - {""}
    kind = TINY if chosen == {TINY} else MINI if chosen == {MINI} else f"{MINI} and {TINY}"
    return f"Switch to the offline {kind} models (this page only)"


def offer_note(missing: list[WeightsStatus]) -> str:
    """The sentence before the switch (Markdown), naming the variables whose weights are missing."""
    names = ", ".join(f"`{status.variable}`" for status in missing)
    return (
        f"**Weights missing** ({names}). Without them, try the controls on the offline models and their "
        "synthetic examples:"
    )


def in_use_note(settings: Settings, models: Iterable[str]) -> str:
    """The label of a switched page (Markdown): which offline models run, what they are, that it is this
    page only."""
    used = [(name, getattr(settings, name)) for name in models if getattr(settings, name)]
    minis = [name for name, value in used if value != TINY]
    tinies = [name for name, value in used if value == TINY]
    parts = []
    if minis:
        parts.append(f"`{MINI}` for {', '.join(minis)}: {MINI_DESCRIPTION}")
    if tinies:
        parts.append(f"`{TINY}` for {', '.join(tinies)} (no mini model installed): {TINY_DESCRIPTION}")
    return (
        f"**Offline models in use on this page**: {'; '.join(parts)}. Other pages and users keep the "
        "configured models."
    )
