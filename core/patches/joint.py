"""The joint-diffusion patch: one diffusers UNet denoises K modalities of the same samples together.

For image + depth (K = 2) a batch holds image entries ``x`` and depth entries ``y``; the patch lets every
entry attend to its partner (x_i <-> y_i) in every transformer block and gives the second modality its own
LoRA. A freshly patched UNet computes exactly (bit for bit) what the stock UNet computes: the new layers
only change the output once they are trained or loaded.

What :func:`apply_joint_patch` does to every ``BasicTransformerBlock`` (all 16 of SD1.5's UNet; the
spatial blocks of SVD's UNet, whose ``TemporalBasicTransformerBlock`` s are left alone):

- adds ``block.joint_attn``, a copy of the self-attention ``attn1`` (its weights to start from, diffusers'
  default processor), and ``block.joint_conv``, a kernel-1 ``Conv1d(dim, dim)`` over the tokens with zero
  weight and bias;
- hooks ``attn1``: the joint attention runs on attn1's own input (the block's normalised hidden states),
  with the partners' normalised hidden states, concatenated along the token axis, as keys and values, and
  ``joint_conv`` of its output is added to attn1's output. Diffusers' ``BasicTransformerBlock.forward``
  itself stays in place, so every branch of it (norm types, positional embeddings, gates, GLIGEN, chunked
  feed-forward) runs exactly as in the stock model, and removing the hook restores the stock forward;
- adds LoRA adapters through :mod:`core.lora`, each applied only to the batch entries its mask selects: one
  per modality on the joint layers (``xy_lora``: x entries attending to y; ``yx_lora``: y attending to x)
  and one per modality after the first on the ordinary attention ``attn1``/``attn2`` (``y_lora``). For
  K = 3 (e.g. image, depth, normals) the names are ``xyz_lora``, ``yxz_lora``, ``zxy_lora`` and ``y_lora``,
  ``z_lora``, and each entry's keys/values are its two partners' tokens, concatenated.

Batch layout. Pairing and masks are given over the batch the UNet receives (for SVD: over the videos;
blocks that see frames or pixels as extra batch entries, batch-major, get each entry's value repeated).
The simplest call is :meth:`JointPatch.set_batch_layout` with the modality of every entry: the j-th entry
of one modality is paired with the j-th entry of every other modality. So ``[x1, x2, y1, y2]`` is
``[0, 0, 1, 1]``, interleaved ``[x1, y1, x2, y2]`` is ``[0, 1, 0, 1]``, and a classifier-free-guidance
batch that repeats the pair batch per half, ``[x1..xn, y1..yn | x1..xn, y1..yn]`` (unconditional half
first, as diffusers' pipelines do), is ``[0]*n + [1]*n + [0]*n + [1]*n``: a pipeline must keep the samples
in the same order inside every modality and every half. Any other pairing is given as partner indices with
:meth:`JointPatch.set_pairing`, masks with :meth:`JointPatch.set_lora_mask`. Without a pairing the joint
layers are skipped; without a mask an adapter applies to every entry.

Masked LoRA keeps unselected entries exact: the 0/1 mask multiplies the adapter's rank-r activations (the
output of peft's ``lora_A``; ``lora_B`` has no bias), so an unselected entry's update is exactly zero and
its output ``base + 0`` is bit for bit its output without the adapter. Masking the narrow side costs r
multiplications per token instead of one per output channel. Masked adapters must stay unmerged (merged
weights ignore masks).

:meth:`JointPatch.save` writes ``joint_layers.safetensors`` (the joint attention and conv weights) and one
:mod:`core.lora` file per adapter; :meth:`JointPatch.load` reads them into a freshly patched UNet.
:func:`remove_joint_patch` removes the hooks, the added modules and the patch's adapters.
"""

from __future__ import annotations

import copy
import functools
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import safetensors.torch
import torch
from diffusers.models.attention import BasicTransformerBlock
from diffusers.models.attention_processor import AttnProcessor2_0
from peft.tuners.lora import LoraLayer
from safetensors import SafetensorError, safe_open
from torch import nn
from torch.utils.hooks import RemovableHandle

from core import lora
from core.errors import InputError
from core.patches.blocks import self_attention_blocks

JOINT_ATTN = "joint_attn"
JOINT_CONV = "joint_conv"
JOINT_FILE = "joint_layers.safetensors"
# peft target regexes (matched against whole module paths): the joint layers, and the ordinary attention.
JOINT_TARGETS = rf".*\.{JOINT_ATTN}\.(to_q|to_k|to_v|to_out\.0)"
ORDINARY_TARGETS = r".*\.attn[12]\.(to_q|to_k|to_v|to_out\.0)"
MODALITY_LETTERS = "xyzw"

_PATCH_ATTR = "_kinema_joint_patch"
_HEADER_KEY = "kinema_joint"


def joint_lora_names(modalities: int) -> tuple[str, ...]:
    """The joint-layer adapter of each modality, in modality order: ``("xy_lora", "yx_lora")`` for 2."""
    letters = MODALITY_LETTERS[:modalities]
    return tuple(own + letters.replace(own, "") + "_lora" for own in letters)


def modality_lora_names(modalities: int) -> tuple[str, ...]:
    """The ordinary-attention adapter of each modality after the first: ``("y_lora",)`` for 2."""
    return tuple(f"{letter}_lora" for letter in MODALITY_LETTERS[1:modalities])


def pairing_from_layout(modality_of_entry: Sequence[int] | torch.Tensor, modalities: int = 2) -> torch.Tensor:
    """Partner indices, LongTensor (B, K-1), of a batch whose entry i is of modality ``modality_of_entry[i]``.

    The j-th entry of modality m is paired with the j-th entry of every other modality; row i lists entry
    i's partners in modality order. Raises InputError unless all K modalities hold the same number (>= 1) of
    entries. Example: ``[0, 1, 0, 1]`` (x1, y1, x2, y2) -> ``[[1], [0], [3], [2]]``.
    """
    layout = _layout(modality_of_entry, modalities)
    by_rank = torch.stack([torch.nonzero(layout == m).flatten() for m in range(modalities)])  # (K, n)
    partners = torch.empty(len(layout), modalities - 1, dtype=torch.long)
    for m in range(modalities):
        others = [o for o in range(modalities) if o != m]
        partners[by_rank[m]] = by_rank[others].T
    return partners


class JointPatch:
    """The joint patch on one UNet: its added layers, hooks, pairing and LoRA masks.

    One object holds the state every patched block reads (pairing, masks), so a setter called once before
    a UNet call reaches all blocks. Made by :func:`apply_joint_patch`; ``blocks`` maps each patched block's
    path in the UNet to the block.
    """

    def __init__(self, unet: nn.Module, modalities: int, blocks: dict[str, BasicTransformerBlock]):
        self.unet = unet
        self.modalities = modalities
        self.blocks = blocks
        self.joint_lora_names = joint_lora_names(modalities)
        self.modality_lora_names = modality_lora_names(modalities)
        self._partners: torch.Tensor | None = None  # (B, K-1) long
        self._lora_masks: dict[str, torch.Tensor] = {}  # adapter name -> (B,) bool
        # Pairing and masks expanded to a block's batch, on its device: built once per UNet call shape.
        self._expanded: dict[tuple, torch.Tensor] = {}
        self._joint_hooks: list[RemovableHandle] = []
        self._lora_hooks: dict[str, list[RemovableHandle]] = {}

    @property
    def lora_names(self) -> tuple[str, ...]:
        """Names of all adapters the patch may carry (present or not)."""
        return self.joint_lora_names + self.modality_lora_names

    # -- pairing and masks -----------------------------------------------------------------------------

    def set_batch_layout(self, modality_of_entry: Sequence[int] | torch.Tensor) -> None:
        """Pair and mask a batch from the modality (0..K-1) of each of its B entries.

        Sets the pairing of :func:`pairing_from_layout` and every adapter's mask: a modality's joint adapter
        (``xy_lora`` for 0) and its ordinary adapter (``y_lora`` for 1) apply to that modality's entries only.
        """
        layout = _layout(modality_of_entry, self.modalities)
        self.set_pairing(pairing_from_layout(layout, self.modalities))
        for m, name in enumerate(self.joint_lora_names):
            self._lora_masks[name] = layout == m
        for m, name in enumerate(self.modality_lora_names, start=1):
            self._lora_masks[name] = layout == m
        self._expanded.clear()
        self.track_loras()

    def set_pairing(self, partner_index: Sequence | torch.Tensor | None) -> None:
        """Set whom each entry attends to in the joint layers, or ``None`` to skip the joint layers.

        ``partner_index``: integers (B, K-1), row i = the batch indices of entry i's partners, whose tokens
        are concatenated as the keys/values of entry i; for K = 2 also (B,).
        """
        if partner_index is None:
            self._partners = None
        else:
            partners = _as_tensor(partner_index, "Partner indices")
            if partners.ndim == 1 and self.modalities == 2:
                partners = partners[:, None]
            batch = partners.shape[0] if partners.ndim else 0
            if (
                partners.ndim != 2
                or batch == 0
                or partners.shape[1] != self.modalities - 1
                or partners.is_floating_point()
                or partners.dtype == torch.bool
                or partners.min() < 0
                or partners.max() >= batch
            ):
                raise InputError(
                    f"Partner indices must be integers of shape (B, {self.modalities - 1}) with values in "
                    f"[0, B), got {partner_index!r}."
                )
            self._partners = partners.long()
        self._expanded.clear()

    def set_lora_mask(self, name: str, mask: Sequence[bool] | torch.Tensor | None) -> None:
        """Apply adapter ``name`` only to the entries where ``mask`` (B,) is true; ``None``: to all entries."""
        if name not in self.lora_names:
            raise InputError(
                f"The joint patch has no adapter '{name}': choose one of {list(self.lora_names)}."
            )
        if mask is None:
            self._lora_masks.pop(name, None)
        else:
            values = _as_tensor(mask, "A LoRA mask")
            if values.ndim != 1 or values.numel() == 0 or not _is_binary(values):
                raise InputError(f"A LoRA mask must be B booleans (or 0/1), got {mask!r}.")
            self._lora_masks[name] = values.bool()
        self._expanded.clear()
        self.track_loras()

    def park(self) -> None:
        """Leave the patch inert for any batch: joint layers skipped, every adapter masked off (stock output)."""
        self.set_pairing(None)
        for name in self.lora_names:
            # One False entry expands to every entry of whatever batch comes next.
            self.set_lora_mask(name, [False])

    # -- saving and loading ----------------------------------------------------------------------------

    def joint_parameters(self) -> Iterator[nn.Parameter]:
        """The joint layers' own weights (no LoRA), e.g. for an optimizer; ``requires_grad`` is the caller's."""
        return iter(self._joint_weights().values())

    def joint_state_dict(self) -> dict[str, torch.Tensor]:
        """The joint layers' own weights (no LoRA) by path, e.g. ``<block path>.joint_attn.to_q.weight``."""
        return {key: value.detach() for key, value in self._joint_weights().items()}

    def save(self, folder: str | Path) -> Path:
        """Write ``folder/joint_layers.safetensors`` and ``folder/NAME.safetensors`` per adapter; returns folder."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {key: value.to("cpu").contiguous() for key, value in self.joint_state_dict().items()}
        header = {"format": "pt", _HEADER_KEY: json.dumps({"modalities": self.modalities})}
        file = folder / JOINT_FILE
        partial = file.with_name(file.name + ".partial")  # never leave a truncated file under the final name
        safetensors.torch.save_file(tensors, str(partial), metadata=header)
        os.replace(partial, file)
        present = lora.list_loras(self.unet)
        for name in self.lora_names:
            if name in present:
                lora.save_lora(self.unet, name, folder)
            else:
                # A stale file of an adapter the model no longer has would come back on load.
                (folder / f"{name}{lora.SUFFIX}").unlink(missing_ok=True)
        return folder

    def load(self, folder: str | Path) -> None:
        """Load a folder written by :meth:`save`: the joint weights, and each adapter file it holds.

        An adapter the UNet lacks is added; one it has gets the file's weights. Raises InputError when the
        folder has no joint file or its weights do not fit this patch (other UNet or number of modalities).
        """
        folder = Path(folder)
        file = folder / JOINT_FILE
        if not file.is_file():
            raise InputError(f"{folder} holds no {JOINT_FILE}: give a folder written by JointPatch.save.")
        try:
            with safe_open(str(file), framework="pt", device="cpu") as reader:
                header = reader.metadata() or {}
                tensors = {key: reader.get_tensor(key) for key in reader.keys()}
            saved = json.loads(header.get(_HEADER_KEY, "{}")).get("modalities")
        except (SafetensorError, OSError, json.JSONDecodeError, AttributeError) as err:
            raise InputError(f"{file} is not a readable joint-patch file ({err}).") from err
        if saved != self.modalities:
            raise InputError(f"{file} was saved for {saved} modalities, this patch has {self.modalities}.")
        weights = self._joint_weights()
        misfits = sorted(weights.keys() ^ tensors.keys()) or sorted(
            key for key in weights if weights[key].shape != tensors[key].shape
        )
        if misfits:
            raise InputError(
                f"{file} does not fit this UNet's joint layers (e.g. {misfits[0]}): was it saved from another "
                "model?"
            )
        with torch.no_grad():
            for key, param in weights.items():
                param.copy_(tensors[key])
        for name in self.lora_names:
            path = folder / f"{name}{lora.SUFFIX}"
            if path.is_file():
                lora.load_lora(self.unet, path, name=name)
        self.track_loras()

    def reset_joint_layers(self) -> None:
        """Give the joint layers the state :func:`apply_joint_patch` gives them: each ``joint_attn`` the weights
        of its block's ``attn1``, each ``joint_conv`` zeros, so the UNet computes the stock output again
        (adapters aside). The joint adapters, pairing and masks are kept."""
        with torch.no_grad():
            for block in self.blocks.values():
                stock = _base_parameters(block.attn1)
                for key, param in _base_parameters(getattr(block, JOINT_ATTN)).items():
                    param.copy_(stock[key])
                conv = getattr(block, JOINT_CONV)
                nn.init.zeros_(conv.weight)
                nn.init.zeros_(conv.bias)

    def remove(self) -> None:
        """Undo the patch: hooks, the patch's adapters and the joint layers go; the stock UNet stays."""
        for handle in self._joint_hooks:
            handle.remove()
        self._untrack_loras()
        present = lora.list_loras(self.unet)
        for name in self.lora_names:
            if name in present:
                lora.delete_lora(self.unet, name)
        for block in self.blocks.values():
            delattr(block, JOINT_ATTN)
            delattr(block, JOINT_CONV)
        delattr(self.unet, _PATCH_ATTR)

    # -- internals -------------------------------------------------------------------------------------

    def _joint_weights(self) -> dict[str, nn.Parameter]:
        return {
            f"{path}.{part}.{key}": param
            for path, block in self.blocks.items()
            for part in (JOINT_ATTN, JOINT_CONV)
            for key, param in _base_parameters(getattr(block, part)).items()
        }

    def _rows(self, what: str, rows: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """The pairing (``what="partners"``) or an adapter's mask (``what=name``) over a block's ``rows``."""
        key = (what, rows, device, dtype)
        if key not in self._expanded:
            base = self._partners if what == "partners" else self._lora_masks[what]
            batch = base.shape[0]
            if rows % batch:
                raise InputError(
                    f"The joint patch was set for a batch of {batch} entries but a block got {rows}: call "
                    "set_batch_layout with the batch the UNet receives."
                )
            repeat = rows // batch  # frames (SVD spatial blocks) or pixels (temporal blocks) per entry
            if what == "partners":
                offsets = torch.arange(repeat)[None, :, None]
                expanded = (base[:, None, :] * repeat + offsets).reshape(rows, -1)
            else:
                expanded = base.repeat_interleave(repeat)
            self._expanded[key] = expanded.to(device=device, dtype=dtype)
        return self._expanded[key]

    def _add_joint_output(
        self, block: BasicTransformerBlock, attn1: nn.Module, args: tuple, kwargs: dict, output: torch.Tensor
    ) -> torch.Tensor:
        """attn1's forward hook: attn1 output + joint_conv(joint_attn(tokens, partners' tokens))."""
        if self._partners is None:
            return output
        tokens = args[0] if args else kwargs["hidden_states"]  # (N, L, C): the block's normalised states
        rows, _, dim = tokens.shape
        partners = self._rows("partners", rows, tokens.device, torch.long)  # (N, K-1)
        partner_tokens = tokens[partners.flatten()].reshape(rows, -1, dim)  # (N, (K-1) L, C)
        joint = getattr(block, JOINT_ATTN)(tokens, encoder_hidden_states=partner_tokens)
        return output + getattr(block, JOINT_CONV)(joint.transpose(1, 2)).transpose(1, 2)

    def _mask_lora_activations(
        self, name: str, lora_a: nn.Module, args: tuple, down: torch.Tensor
    ) -> torch.Tensor:
        """lora_A's forward hook: zero the rank-r activations (N, ..., r) of the entries the mask leaves out."""
        if name not in self._lora_masks:
            return down
        mask = self._rows(name, down.shape[0], down.device, down.dtype)
        return down * mask.view(-1, *[1] * (down.ndim - 1))

    def track_loras(self) -> None:
        """Mask every adapter of the patch that the UNet has now: (re)hook its ``lora_A`` layers.

        Adapters added through :func:`apply_joint_patch`, :meth:`load` or :mod:`core.lora` followed by
        :meth:`set_lora_mask` / :meth:`set_batch_layout` are already masked; call this after adding one of the
        patch's adapters (``y_lora``, ...) another way, e.g. with peft's ``unet.add_adapter`` directly.
        """
        self._untrack_loras()
        present = lora.list_loras(self.unet)
        for name in self.lora_names:
            if name not in present:
                continue
            handles = []
            for path in lora.lora_modules(self.unet, name):
                layer = self.unet.get_submodule(path)
                if name in layer.lora_variant or layer.lora_B[name].bias is not None:
                    raise InputError(
                        f"Adapter '{name}' is not a plain LoRA (it has DoRA or a bias): it cannot be masked."
                    )
                hook = functools.partial(self._mask_lora_activations, name)
                handles.append(layer.lora_A[name].register_forward_hook(hook))
            self._lora_hooks[name] = handles

    def _untrack_loras(self) -> None:
        for handles in self._lora_hooks.values():
            for handle in handles:
                handle.remove()
        self._lora_hooks.clear()


def apply_joint_patch(
    unet: nn.Module,
    modalities: int = 2,
    joint_lora_rank: int | None = None,
    y_lora_rank: int | None = None,
) -> JointPatch:
    """Patch every ``BasicTransformerBlock`` of ``unet`` in place for joint diffusion of ``modalities``.

    ``modalities``: K, 2 to 4 (x, y, z, w). ``joint_lora_rank``: add the joint adapters (``xy_lora``,
    ``yx_lora``) at this rank; ``y_lora_rank``: add the ordinary-attention adapters of modalities 1..K-1
    (``y_lora``, ...) at this rank; ``None`` adds none (:meth:`JointPatch.load` can add them from files). New
    adapters start as no-ops (peft's gaussian init, B = 0) and, as peft does, freeze the UNet's parameters.
    Apply the patch before adding other LoRA adapters. Returns the patch; the UNet's output is unchanged
    until the joint layers or adapters change. Raises InputError for a UNet already patched, one without
    transformer blocks, or blocks whose ``attn1`` is not a self-attention.
    """
    if joint_patch_of(unet) is not None:
        raise InputError("This UNet already carries the joint patch: remove it first (remove_joint_patch).")
    if (
        isinstance(modalities, bool)
        or not isinstance(modalities, int)
        or not 2 <= modalities <= len(MODALITY_LETTERS)
    ):
        raise InputError(
            f"The joint patch pairs 2 to {len(MODALITY_LETTERS)} modalities, got {modalities!r}."
        )
    blocks = self_attention_blocks(unet)
    for block in blocks.values():
        if any(isinstance(module, LoraLayer) for module in block.attn1.modules()):
            raise InputError("This UNet already has LoRA adapters: apply the joint patch before adding them.")
    patch = JointPatch(unet, modalities, blocks)
    for block in blocks.values():
        joint_attn = copy.deepcopy(block.attn1)
        # Diffusers' default processor: a processor patched onto attn1 (e.g. cross_frame) must not carry over.
        joint_attn.set_processor(AttnProcessor2_0())
        setattr(block, JOINT_ATTN, joint_attn)
        weight = block.attn1.to_q.weight
        conv = nn.Conv1d(block.dim, block.dim, kernel_size=1, device=weight.device, dtype=weight.dtype)
        setattr(block, JOINT_CONV, conv)
        hook = functools.partial(patch._add_joint_output, block)
        patch._joint_hooks.append(block.attn1.register_forward_hook(hook, with_kwargs=True))
    patch.reset_joint_layers()  # joint_attn already holds attn1's weights (a deep copy); this zeroes joint_conv
    # A plain attribute (not a submodule): state_dict and module walks do not see it.
    setattr(unet, _PATCH_ATTR, patch)
    if joint_lora_rank is not None:
        for name in patch.joint_lora_names:
            lora.add_lora(unet, name, joint_lora_rank, target_modules=JOINT_TARGETS)
    if y_lora_rank is not None:
        for name in patch.modality_lora_names:
            lora.add_lora(unet, name, y_lora_rank, target_modules=ORDINARY_TARGETS)
    patch.track_loras()
    return patch


def joint_patch_of(unet: nn.Module) -> JointPatch | None:
    """The joint patch ``unet`` carries, or None."""
    return getattr(unet, _PATCH_ATTR, None)


def remove_joint_patch(unet: nn.Module) -> None:
    """Restore ``unet``'s stock structure and forward (see :meth:`JointPatch.remove`)."""
    patch = joint_patch_of(unet)
    if patch is None:
        raise InputError("This UNet carries no joint patch to remove.")
    patch.remove()


def _base_parameters(module: nn.Module) -> dict[str, nn.Parameter]:
    """``module``'s own parameters (no LoRA) under the names they have without adapters (peft's ``base_layer.``
    dropped), so keys and files do not depend on adapters."""
    return {
        key.replace("base_layer.", ""): param
        for key, param in module.named_parameters()
        if "lora_" not in key
    }


def _layout(modality_of_entry: Sequence[int] | torch.Tensor, modalities: int) -> torch.Tensor:
    """Check a per-entry modality vector: integers in [0, K), every modality equally often (>= once)."""
    layout = _as_tensor(modality_of_entry, "A batch layout")
    valid = (
        layout.ndim == 1
        and layout.numel() > 0
        and not layout.is_floating_point()
        and layout.dtype != torch.bool
        and bool(layout.min() >= 0)
        and bool(layout.max() < modalities)
    )
    if not valid or len(set(torch.bincount(layout.long(), minlength=modalities).tolist())) != 1:
        raise InputError(
            f"A batch layout lists each entry's modality (0..{modalities - 1}), every modality equally often, "
            f"got {modality_of_entry!r}."
        )
    return layout.long()


def _is_binary(values: torch.Tensor) -> bool:
    return values.dtype == torch.bool or bool(((values == 0) | (values == 1)).all())


def _as_tensor(values: object, what: str) -> torch.Tensor:
    try:
        return torch.as_tensor(values)
    except (TypeError, ValueError, RuntimeError) as err:
        raise InputError(f"{what} must be a list or tensor of numbers, got {values!r}.") from err
