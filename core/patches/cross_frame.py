"""Cross-keyframe attention: the keyframes of one batch look at each other in every self-attention layer.

A diffusers attention processor for the ``attn1`` (self-attention) layers of ``BasicTransformerBlock`` s.
Each keyframe's queries stay its own; its keys and values are extended with other keyframes' tokens:

- ``"anchor"``: keyframe k attends to [k's tokens, the anchor keyframe's tokens]; the anchor attends to
  itself only, so it is computed exactly as without the processor;
- ``"all"``: keyframe k attends to the tokens of keyframes 0..K-1 (in that order), itself included;
- ``"none"``: keyframe k attends to itself: the stock self-attention.

Keys and values are gathered after the ``to_k`` / ``to_v`` projections (a projection of concatenated tokens
is the concatenation of the projections, so nothing is projected twice), and the softmax runs over the
joined token axis. A keyframe whose key set is only itself therefore goes through the same operations as
``AttnProcessor2_0``: for one keyframe every mode equals the stock UNet output.

Batch layout. The UNet receives ``halves * K`` entries, keyframe-major inside each half: ``[k0..kK-1]``
without guidance, ``[uncond k0..kK-1 | cond k0..kK-1]`` with classifier-free guidance (diffusers' order).
Keyframes only see keyframes of their own half: unconditional with unconditional, conditional with
conditional. The number of halves is read from each call's batch, so the same processor serves a UNet
called with guidance and a ControlNet called on the conditional half only (diffusers' ``guess_mode``).

Cost: ``"all"`` makes every self-attention K times longer (K x the keys for each query); ``"anchor"`` 2x.

Relation to ``core.patches.joint``: the joint patch adds new layers next to ``attn1`` (a hook, its own
weights, partners given per entry); cross-frame attention adds no weights and changes which tokens the
existing ``attn1`` attends to, so it is a processor. Both walk the same blocks
(:func:`core.patches.blocks.self_attention_blocks`) and may be combined: the joint hook reads attn1's input
and adds to its output, whichever processor computed it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention
from torch import nn

from core.errors import InputError
from core.patches.blocks import self_attention_blocks

CrossFrameMode = Literal["anchor", "all", "none"]
CROSS_FRAME_MODES: tuple[str, ...] = CrossFrameMode.__args__


@dataclass(frozen=True)
class AttentionGroup:
    """Batch entries that attend to the same number of entries' tokens.

    ``rows``: LongTensor (n,), the entries whose queries this group holds. ``sources``: LongTensor (n, M),
    row i lists the entries whose keys/values entry ``rows[i]`` attends to, concatenated along the tokens.
    """

    rows: torch.Tensor
    sources: torch.Tensor


def check_cross_frame(num_keyframes: int, mode: str, anchor_index: int) -> None:
    """Raise InputError unless ``mode`` is in CROSS_FRAME_MODES and ``0 <= anchor_index < num_keyframes``."""
    if isinstance(num_keyframes, bool) or not isinstance(num_keyframes, int) or num_keyframes < 1:
        raise InputError(f"The number of keyframes must be a positive integer, got {num_keyframes!r}.")
    if mode not in CROSS_FRAME_MODES:
        raise InputError(f"cross_frame must be one of {', '.join(CROSS_FRAME_MODES)}, got {mode!r}.")
    if isinstance(anchor_index, bool) or not isinstance(anchor_index, int):
        raise InputError(f"anchor_index must be an integer, got {anchor_index!r}.")
    if not 0 <= anchor_index < num_keyframes:
        raise InputError(
            f"anchor_index {anchor_index} is not a keyframe: choose 0 to {num_keyframes - 1} "
            f"({num_keyframes} keyframes)."
        )


def cross_frame_groups(
    batch: int, num_keyframes: int, mode: CrossFrameMode = "anchor", anchor_index: int = 0
) -> tuple[AttentionGroup, ...]:
    """Who attends to whom in a batch of ``batch = halves * num_keyframes`` entries (see the module doc).

    Every entry is in exactly one group. ``"none"`` and ``"all"`` give one group; ``"anchor"`` gives the
    anchors (one per half, attending to themselves) and, when K > 1, the others ([self, anchor]).
    """
    check_cross_frame(num_keyframes, mode, anchor_index)
    if batch < 1 or batch % num_keyframes:
        raise InputError(
            f"Cross-frame attention was set up for {num_keyframes} keyframes but a layer got a batch of "
            f"{batch} entries; the batch must be a whole number of keyframe sets."
        )
    entries = torch.arange(batch)
    first_of_half = entries - entries % num_keyframes  # index of keyframe 0 of each entry's half
    if mode == "none":
        return (AttentionGroup(entries, entries[:, None]),)
    if mode == "all":
        return (AttentionGroup(entries, first_of_half[:, None] + torch.arange(num_keyframes)[None, :]),)
    anchors = first_of_half + anchor_index
    is_anchor = entries == anchors
    groups = [AttentionGroup(entries[is_anchor], entries[is_anchor][:, None])]
    if num_keyframes > 1:
        others = entries[~is_anchor]
        groups.append(AttentionGroup(others, torch.stack([others, anchors[~is_anchor]], dim=1)))
    return tuple(groups)


class CrossFrameAttnProcessor:
    """Self-attention over a keyframe's own tokens and other keyframes' (scaled dot-product attention).

    One instance can serve every ``attn1`` of a model (it holds no per-layer state); the groups of a batch
    size are built once and cached. ``attn1`` layers only: an ``encoder_hidden_states`` (cross-attention)
    or an attention mask is refused, since the extended keys would not match them.
    """

    def __init__(self, num_keyframes: int, mode: CrossFrameMode = "anchor", anchor_index: int = 0):
        check_cross_frame(num_keyframes, mode, anchor_index)
        self.num_keyframes = num_keyframes
        self.mode = mode
        self.anchor_index = anchor_index
        self._groups: dict[tuple[int, torch.device], tuple[AttentionGroup, ...]] = {}

    def groups(self, batch: int, device: torch.device) -> tuple[AttentionGroup, ...]:
        """:func:`cross_frame_groups` for this processor's setting, on ``device`` (cached)."""
        key = (batch, device)
        if key not in self._groups:
            self._groups[key] = tuple(
                AttentionGroup(g.rows.to(device), g.sources.to(device))
                for g in cross_frame_groups(batch, self.num_keyframes, self.mode, self.anchor_index)
            )
        return self._groups[key]

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        *args,
        **kwargs,
    ) -> torch.Tensor:
        if encoder_hidden_states is not None or attention_mask is not None:
            raise InputError(
                "Cross-frame attention applies to self-attention layers without an attention mask only."
            )
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch, channel, height * width).transpose(1, 2)
        batch = hidden_states.shape[0]
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)

        query = attn.to_q(hidden_states)  # (B, L, inner)
        key = attn.to_k(hidden_states)
        value = attn.to_v(hidden_states)
        inner_dim = key.shape[-1]
        head_dim = inner_dim // attn.heads

        def heads(tokens: torch.Tensor) -> torch.Tensor:  # (n, L', inner) -> (n, heads, L', head_dim)
            return tokens.view(tokens.shape[0], -1, attn.heads, head_dim).transpose(1, 2)

        attended = torch.empty_like(query)
        for group in self.groups(batch, query.device):
            rows, sources = group.rows, group.sources
            # Tokens of entry sources[i, 0], then sources[i, 1], ...: one longer key/value sequence per row.
            group_key = key[sources.flatten()].reshape(len(rows), -1, inner_dim)
            group_value = value[sources.flatten()].reshape(len(rows), -1, inner_dim)
            group_query, group_key, group_value = heads(query[rows]), heads(group_key), heads(group_value)
            if attn.norm_q is not None:
                group_query = attn.norm_q(group_query)
            if attn.norm_k is not None:
                group_key = attn.norm_k(group_key)
            out = F.scaled_dot_product_attention(
                group_query, group_key, group_value, attn_mask=None, dropout_p=0.0, is_causal=False
            )
            attended[rows] = out.transpose(1, 2).reshape(len(rows), -1, inner_dim).to(query.dtype)

        hidden_states = attn.to_out[0](attended)
        hidden_states = attn.to_out[1](hidden_states)
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch, channel, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


@contextlib.contextmanager
def cross_frame_attention(
    models: nn.Module | Iterable[nn.Module | None],
    num_keyframes: int,
    mode: CrossFrameMode = "anchor",
    anchor_index: int = 0,
) -> Iterator[CrossFrameAttnProcessor | None]:
    """Within the block, every self-attention of ``models`` (UNet, ControlNet; None entries skipped) is
    cross-frame; on exit each layer gets its previous processor back, also after an exception.

    ``mode="none"`` installs nothing (the stock processors compute the same thing) and yields None;
    otherwise yields the shared :class:`CrossFrameAttnProcessor`.
    """
    check_cross_frame(num_keyframes, mode, anchor_index)
    if mode == "none":
        yield None
        return
    if isinstance(models, nn.Module):
        models = [models]
    layers = [
        block.attn1
        for model in models
        if model is not None
        for block in self_attention_blocks(model).values()
    ]
    processor = CrossFrameAttnProcessor(num_keyframes, mode, anchor_index)
    previous = [layer.processor for layer in layers]
    try:
        for layer in layers:
            layer.set_processor(processor)
        yield processor
    finally:
        for layer, old in zip(layers, previous):
            layer.set_processor(old)
