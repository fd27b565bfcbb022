"""The per-run low-VRAM choice every app offers (``Settings.low_vram`` for one run): its label and help."""

from __future__ import annotations

from core.config import Settings

LOW_VRAM_LABEL = "Low-VRAM mode (slower; for GPUs with 8 GB)"


def low_vram_help(settings: Settings) -> str:
    """The sentence beside the checkbox: what the mode does on this server's device."""
    if settings.resolved_device() == "cpu":
        return "No effect on the CPU besides smaller chunks (same result up to rounding); saves GPU memory."
    return (
        "Keeps each model on the CPU until it runs and runs the UNet in smaller pieces: about 7 GB of GPU "
        "memory at most, the same result up to rounding, slower."
    )
