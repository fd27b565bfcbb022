"""The one owner of what is attached to a shared cached module: joint patches and LoRA adapters.

:mod:`core.models.loading` loads each model once per process and every pipeline of that model shares its
modules. Some runs need something on the UNet that no other run may see: the joint-depth app's joint patch with
the joint weights the user picked, the keyframe app's SVD interpolation LoRA, the drag app's joint video+flow
patch. :func:`attached` is the only place that puts such things on a shared module and takes them off again:

    with attached(pipe.unet, JointWeights(folder)) as (patch,):
        out = pipe(...)

- What to attach is data: :class:`JointWeights` (a joint patch, untrained or with a ``JointPatch.save`` folder's
  weights) and :class:`LoraWeights` (a LoRA file as a named adapter, switched on). They are attached in the
  order given, and the context yields what each attached (the :class:`~core.patches.joint.JointPatch`, the
  adapter's name).
- Exact restore: on exit (normal or by an exception, also when an attachment fails half way) everything is
  detached in reverse order, and the module's ``requires_grad`` flags (adapters freeze the base weights) and
  its adapters' on/off switch are set back. Its ``state_dict`` and its forward output are then bit for bit
  what they were on entry.
- Thread safety: each module has one re-entrant lock, held for the whole ``with`` block. Two requests that
  attach different weights to the same module run one after the other and never see each other's state; the
  same thread may nest blocks (the inner one restores the state the outer one made). A run that needs the
  module as loaded, with nothing attached, holds it with ``attached(module)``.
- Cost: attaching loads the weights again for every block (a joint patch also copies the attention layers):
  small next to a diffusion run, and it keeps the loaders' cache the only cache.
- Attaching does not touch the caller's torch random stream (new layers are initialised on a forked one).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from core import lora
from core.errors import InputError
from core.patches.joint import JointPatch, apply_joint_patch

_LOCKS: weakref.WeakKeyDictionary[nn.Module, threading.RLock] = weakref.WeakKeyDictionary()
_LOCKS_LOCK = threading.Lock()


@dataclass(frozen=True)
class JointWeights:
    """A joint patch (:mod:`core.patches.joint`) to attach, parked (it computes the stock output until a
    pipeline sets its batch layout).

    folder: a folder written by ``JointPatch.save`` (joint layers and the adapters it holds), or "" for the
        untrained patch (zero-initialised joint layers: the stock model's output).
    modalities: K, the modalities the patch pairs.
    fresh_lora_rank: give the untrained patch its joint and modality adapters at this rank (no-ops until
        trained); None adds only what ``folder`` holds.
    """

    folder: str = ""
    modalities: int = 2
    fresh_lora_rank: int | None = None

    def attach(self, module: nn.Module) -> JointPatch:
        """Patch ``module`` and load ``folder``; raises InputError (nothing left behind) when it does not fit."""
        rank = self.fresh_lora_rank
        patch = apply_joint_patch(module, self.modalities, joint_lora_rank=rank, y_lora_rank=rank)
        try:
            if self.folder:
                patch.load(self.folder)
        except InputError:
            patch.remove()
            raise
        patch.park()
        return patch

    def detach(self, module: nn.Module, patch: JointPatch) -> None:
        patch.remove()


@dataclass(frozen=True)
class LoraWeights:
    """A LoRA file (:mod:`core.lora` format; a file, or a folder holding it) to attach as adapter ``name``,
    active beside the active adapters, adapters switched on."""

    path: str
    name: str

    def attach(self, module: nn.Module) -> str:
        """Load the adapter; raises InputError when ``module`` has one of that name or the file does not fit."""
        if self.name in lora.list_loras(module):
            raise InputError(f"The model already carries a LoRA adapter named '{self.name}'.")
        lora.load_lora(module, self.path, name=self.name)
        lora.set_lora_enabled(module, True)
        return self.name

    def detach(self, module: nn.Module, name: str) -> None:
        lora.delete_lora(module, name)


Attachment = JointWeights | LoraWeights


def _lock_of(module: nn.Module) -> threading.RLock:
    """The lock :func:`attached` holds on ``module`` (one per module, created on first use)."""
    with _LOCKS_LOCK:
        if module not in _LOCKS:
            _LOCKS[module] = threading.RLock()
        return _LOCKS[module]


@contextmanager
def attached(module: nn.Module, *attachments: Attachment) -> Iterator[tuple]:
    """Hold ``module`` alone with ``attachments`` attached; restore it exactly on exit (see the module docs).

    Yields a tuple with what each attachment attached, in order. Raises what an attachment raises (InputError
    for weights that do not fit), after taking off what was attached before it.
    """
    with _lock_of(module):
        requires_grad = {param: param.requires_grad for param in module.parameters()}
        adapters_enabled = lora.lora_enabled(module)
        try:
            with ExitStack() as stack:
                attached_now = []
                for attachment in attachments:
                    with torch.random.fork_rng(devices=[]):
                        handle = attachment.attach(module)
                    stack.callback(attachment.detach, module, handle)
                    attached_now.append(handle)
                yield tuple(attached_now)
        finally:
            for param, flag in requires_grad.items():
                param.requires_grad_(flag)
            lora.set_lora_enabled(module, adapters_enabled)
