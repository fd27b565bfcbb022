"""Finding the layers a patch changes: the self-attention transformer blocks of a diffusers model.

Shared by the patches that work on ``BasicTransformerBlock.attn1`` (``cross_frame``; ``joint`` walks the same
blocks with the same rule). ``TemporalBasicTransformerBlock`` (SVD's temporal layers) is not a subclass of
``BasicTransformerBlock`` and is never returned.
"""

from __future__ import annotations

from diffusers.models.attention import BasicTransformerBlock
from torch import nn

from core.errors import InputError


def self_attention_blocks(model: nn.Module) -> dict[str, BasicTransformerBlock]:
    """Every ``BasicTransformerBlock`` of ``model`` (a UNet, a ControlNet), by its path in the model.

    Raises InputError when the model has none, or when a block's ``attn1`` attends to the text instead of
    to the block's own tokens (``only_cross_attention``): patches of the self-attention cannot apply there.
    """
    blocks = {path: m for path, m in model.named_modules() if isinstance(m, BasicTransformerBlock)}
    if not blocks:
        raise InputError(
            f"This {type(model).__name__} has no BasicTransformerBlock (no self-attention to patch)."
        )
    for path, block in blocks.items():
        if block.only_cross_attention or block.attn1.is_cross_attention:
            raise InputError(f"Block {path} has no self-attention: its attn1 attends to the text.")
    return blocks
