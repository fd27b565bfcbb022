"""The seed handbook's names for the joint patch, for porting handbook code; new code uses :mod:`core.patches.joint`.

Handbook code patches a UNet and adds its adapters once::

    apply_patch(unet)
    initialize_joint_layers(unet)
    unet.add_adapter(lora_config, adapter_name="y_lora")  # peft, as the handbook did
    hack_lora_forward(unet)

and sets the masks before each UNet call, e.g. for the batch ``[x, y]``::

    set_patch_lora_mask(unet, "xy_lora", [1, 0])
    set_patch_lora_mask(unet, "yx_lora", [0, 1])
    set_patch_lora_mask(unet, "y_lora", [0, 1])
    set_joint_attention_mask(unet, [1, 0])  # True marks x

Each function here does what the handbook's did, as one call of the :class:`~core.patches.joint.JointPatch`
the UNet carries; its docstring names that call. Two modalities (x, y), as in the handbook. In our API the
whole mask block above is ``joint_patch_of(unet).set_batch_layout([0, 1])``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from core.errors import InputError
from core.patches.joint import JointPatch, apply_joint_patch, joint_patch_of, pairing_from_layout


def apply_patch(unet: nn.Module) -> JointPatch:
    """Handbook ``apply_patch(unet)``: ``apply_joint_patch(unet)`` (two modalities, no adapters).

    Adds a joint attention (a copy of ``attn1``) and a zero 1-D conv to every ``BasicTransformerBlock``; the
    UNet's output is unchanged until they are trained. Returns the patch.
    """
    return apply_joint_patch(unet)


def initialize_joint_layers(unet: nn.Module) -> None:
    """Handbook ``initialize_joint_layers(unet)``: ``joint_patch_of(unet).reset_joint_layers()``.

    Each joint attention gets its block's self-attention weights, each joint conv zeros. ``apply_patch``
    already leaves the layers so; calling this later undoes what training did to them.
    """
    _patch_of(unet).reset_joint_layers()


def hack_lora_forward(unet: nn.Module) -> None:
    """Handbook ``hack_lora_forward(unet)``: ``joint_patch_of(unet).track_loras()``.

    From now on each of the patch's adapters the UNet has (``xy_lora``, ``yx_lora``, ``y_lora``, however they
    were added) applies only to the batch entries its mask selects (:func:`set_patch_lora_mask`).
    """
    _patch_of(unet).track_loras()


def set_patch_lora_mask(unet: nn.Module, name: str, mask: Sequence[bool] | torch.Tensor | None) -> None:
    """Handbook ``set_patch_lora_mask(unet, name, mask)``: ``joint_patch_of(unet).set_lora_mask(name, mask)``.

    Adapter ``name`` applies only to the entries where ``mask`` (B booleans or 0/1) is true; ``None``: to all.
    """
    _patch_of(unet).set_lora_mask(name, mask)


def set_joint_attention_mask(unet: nn.Module, mask: Sequence[bool] | torch.Tensor) -> None:
    """Handbook ``set_joint_attention_mask(unet, mask)``: ``joint_patch_of(unet).set_pairing(...)``.

    ``mask`` (B booleans or 0/1) marks the x entries; the j-th x entry and the j-th y entry attend to each other
    in the joint layers, so ``[1, 0]`` pairs the batch ``[x, y]`` and ``[1, 1, 0, 0]`` pairs ``[x1, x2, y1, y2]``.
    The pairing is ``pairing_from_layout`` of the modality of each entry (x: 0, y: 1). The LoRA masks stay as
    they are, as in the handbook. Raises InputError unless x and y entries are equally many.
    """
    patch = _patch_of(unet)
    if patch.modalities != 2:
        raise InputError(
            f"A joint-attention mask pairs two modalities; this patch has {patch.modalities}: use set_batch_layout."
        )
    try:
        values = torch.as_tensor(mask)
    except (TypeError, ValueError, RuntimeError):
        values = None
    if values is None or values.ndim != 1 or not bool(((values == 0) | (values == 1)).all()):
        raise InputError(f"A joint-attention mask must be B booleans (or 0/1), got {mask!r}.")
    patch.set_pairing(pairing_from_layout((values == 0).long()))


def _patch_of(unet: nn.Module) -> JointPatch:
    patch = joint_patch_of(unet)
    if patch is None:
        raise InputError("This UNet carries no joint patch: call apply_patch(unet) first.")
    return patch
