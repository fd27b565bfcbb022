"""Named LoRA adapters on any torch model: add, save, load (as a new adapter or onto an existing one), switch.

One code path for every model: peft injects the LoRA layers, so diffusers' SD UNet (which has
``PeftAdapterMixin``) and SVD UNet (which has not) behave the same.

Conventions (SEED_NOTES, "LoRA conventions"):

- An adapter is ``LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian",
  target_modules=DEFAULT_TARGETS)`` under a name such as ``y_lora``. ``target_modules`` is a list of module
  names (a module matches when its dotted path ends with one) or one regex that must match a whole path.
- A file is safetensors in diffusers' LoRA format: peft's state dict converted with
  ``convert_state_dict_to_diffusers``, keys prefixed ``unet.``, and the adapter config in the header under
  diffusers' ``lora_adapter_metadata`` key. ``StableDiffusionPipeline.load_lora_weights`` reads our SD files
  as they are, and :func:`load_lora` needs nothing but the path.
- Adding or loading an adapter makes it active *beside* the adapters already active (peft and diffusers
  would deactivate them); :func:`set_active_loras` chooses the active set and weights explicitly.
- As with peft and diffusers, the first adapter freezes the model's own parameters (``requires_grad=False``)
  so that only LoRA weights train; deleting adapters leaves them frozen. On CPU a frozen weight can take
  another matmul path than a trainable one (~1e-6 in the SVD UNet's temporal attention): compare outputs
  of models whose parameters are in the same ``requires_grad`` state.

Files are read with safetensors only (never pickle); a missing, unreadable or mismatching file raises
:class:`~core.errors.InputError`.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import safetensors.torch
import torch
from diffusers.loaders.lora_base import LORA_ADAPTER_METADATA_KEY
from diffusers.loaders.peft import PeftAdapterMixin
from diffusers.utils import convert_state_dict_to_diffusers, convert_unet_state_dict_to_peft
from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model, set_peft_model_state_dict
from peft.tuners.lora import LoraLayer
from safetensors import SafetensorError, safe_open

from core.errors import InputError

DEFAULT_TARGETS: tuple[str, ...] = ("to_k", "to_q", "to_v", "to_out.0")
DEFAULT_PREFIX = "unet"
SUFFIX = ".safetensors"

# Our own header entry, {"name": ..., "prefix": ...}; the config lives in diffusers' entry.
_HEADER_KEY = "kinema_lora"
# The LoraConfig fields that decide which layers an adapter has and how it scales: written to files and the
# only ones read back (a file's header must not reach peft options that run code or rewrite base weights).
_CONFIG_FIELDS = (
    "r",
    "lora_alpha",
    "target_modules",
    "exclude_modules",
    "rank_pattern",
    "alpha_pattern",
    "use_rslora",
    "use_dora",
    "lora_bias",
    "init_lora_weights",
    "lora_dropout",
)
# Initialisations that leave the base weights alone: gaussian/True start as a no-op (B = 0), False is random.
_INITS = ("gaussian", True, False)
# Used as a ModuleDict key and inside state-dict keys, so no dots and no parameter names.
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_RESERVED_NAMES = {"weight", "bias", "base_layer"}


# -- inspection ------------------------------------------------------------------------------------


def list_loras(model: torch.nn.Module) -> list[str]:
    """Names of the LoRA adapters of ``model``, in the order they were added."""
    return [
        name for name, config in getattr(model, "peft_config", {}).items() if isinstance(config, LoraConfig)
    ]


def active_loras(model: torch.nn.Module) -> list[str]:
    """Names of the adapters that are active (applied when adapters are enabled), in :func:`list_loras` order."""
    active = {name for layer in _lora_layers(model) for name in layer.active_adapters}
    return [name for name in list_loras(model) if name in active]


def lora_enabled(model: torch.nn.Module) -> bool:
    """Whether adapters are switched on (:func:`set_lora_enabled`); True for a model without adapters."""
    return all(not layer.disable_adapters for layer in _lora_layers(model))


def lora_modules(model: torch.nn.Module, name: str) -> list[str]:
    """Dotted paths of the modules that carry adapter ``name``."""
    _require(model, name)
    return [
        path for path, module in model.named_modules() if isinstance(module, LoraLayer) and name in module.r
    ]


# -- adding, switching, deleting -------------------------------------------------------------------


def add_lora(
    model: torch.nn.Module,
    name: str,
    rank: int = 4,
    target_modules: Sequence[str] | str = DEFAULT_TARGETS,
    alpha: float | None = None,
    init: bool | str = "gaussian",
) -> list[str]:
    """Add a new LoRA adapter ``name`` to ``model`` and make it active beside the active ones.

    ``target_modules``: module names matched as suffixes of dotted paths (default: the attention projections
    ``to_k``, ``to_q``, ``to_v``, ``to_out.0``), or one regex string matched against whole paths, e.g.
    ``r".*attn1\\.to_(q|k)"``. ``alpha`` defaults to ``rank`` (LoRA scale 1). ``init``: ``"gaussian"``
    (default) or ``True`` start as a no-op; ``False`` starts random (tests). Returns the adapted module paths.
    Raises InputError for a taken or malformed name, a bad rank/alpha, or targets that match no module.
    """
    _check_name(name)
    if name in list_loras(model):
        raise InputError(f"This model already has a LoRA adapter named '{name}': choose another name.")
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise InputError(f"LoRA rank must be a positive integer, got {rank!r}.")
    if alpha is not None and not (isinstance(alpha, int | float) and alpha > 0):
        raise InputError(f"LoRA alpha must be a positive number, got {alpha!r}.")
    if not _valid_init(init):
        raise InputError(f"LoRA init must be one of {_INITS}, got {init!r}.")
    targets = target_modules if isinstance(target_modules, str) else list(target_modules)
    config = LoraConfig(
        r=rank, lora_alpha=rank if alpha is None else alpha, init_lora_weights=init, target_modules=targets
    )
    _inject(model, name, config)
    return lora_modules(model, name)


def set_active_loras(
    model: torch.nn.Module, names: str | Sequence[str], weights: float | Sequence[float] | None = None
) -> None:
    """Make exactly ``names`` active, each scaled by its weight (default 1.0: the trained strength).

    A weight multiplies the adapter's ``alpha / rank`` scale; adapters left out are not applied. An empty
    ``names`` applies none (the base model).
    """
    names = [names] if isinstance(names, str) else list(names)
    for name in names:
        _require(model, name)
    if weights is None:
        weights = [1.0] * len(names)
    elif isinstance(weights, int | float):
        weights = [float(weights)] * len(names)
    elif len(weights) != len(names):
        raise InputError(f"Got {len(weights)} LoRA weights for {len(names)} adapters: give one per adapter.")
    for layer in _lora_layers(model):
        layer.set_adapter(names)
        for name, weight in zip(names, weights):
            layer.set_scale(name, weight)


def set_lora_enabled(model: torch.nn.Module, enabled: bool) -> None:
    """Switch all LoRA adapters off (the base model's output, exactly) or back on, keeping the active set.

    A model without adapters is left as it is.
    """
    for layer in _lora_layers(model):
        layer.enable_adapters(enabled)


def delete_lora(model: torch.nn.Module, name: str) -> None:
    """Remove adapter ``name``; a layer left with no adapter is replaced by its original module."""
    _require(model, name)
    _remove(model, name)


# -- files -----------------------------------------------------------------------------------------


def save_lora(model: torch.nn.Module, name: str, path: str | Path, prefix: str = DEFAULT_PREFIX) -> Path:
    """Write adapter ``name`` to a safetensors file and return its path.

    ``path``: a ``.safetensors`` file, or a folder (the file is then ``folder/NAME.safetensors``). Keys are in
    diffusers' format under ``prefix`` (``unet``: the component both SD and SVD pipelines name their UNet);
    the header holds the adapter config, so loading needs no other argument.
    """
    _require(model, name)
    file = _file_for_save(Path(path), name)
    tensors = {
        _join(prefix, key): value.detach().to("cpu").contiguous()
        for key, value in _diffusers_keys(get_peft_model_state_dict(model, adapter_name=name)).items()
    }
    config = model.peft_config[name]
    fields = {_join(prefix, f): _jsonable(getattr(config, f)) for f in _CONFIG_FIELDS}
    header = {
        "format": "pt",
        LORA_ADAPTER_METADATA_KEY: json.dumps(fields, sort_keys=True),
        _HEADER_KEY: json.dumps({"name": name, "prefix": prefix}),
    }
    file.parent.mkdir(parents=True, exist_ok=True)
    # Write then rename, so an interrupted save never leaves a truncated file under the final name.
    partial = file.with_name(file.name + ".partial")
    try:
        safetensors.torch.save_file(tensors, str(partial), metadata=header)
        os.replace(partial, file)
    finally:
        partial.unlink(missing_ok=True)
    return file


def load_lora(model: torch.nn.Module, path: str | Path, name: str | None = None) -> str:
    """Load a LoRA file into ``model`` as adapter ``name`` and return the name used.

    ``path``: a ``.safetensors`` file, or a folder holding ``NAME.safetensors`` or a single ``.safetensors``
    file. ``name`` defaults to the name saved in the file, else the file's stem. When the model has no
    adapter of that name one is added (and made active beside the active ones); when it has one, the file's
    weights replace that adapter's weights (resume, evaluate) and the active set is kept.

    Every tensor of the file must fill a LoRA weight of the adapter and every weight must be filled, with
    equal shapes; a file that does not fit (other rank, other target modules, another model) raises
    InputError and leaves the model as it was. Files without a config in their header (e.g. written by
    ``StableDiffusionPipeline.save_lora_weights`` from peft weights) are read with alpha = rank.
    """
    file = _file_for_load(Path(path), name)
    tensors, header = _read(file)
    info = _header_json(header, _HEADER_KEY, file) or {}
    name = name or info.get("name") or file.stem
    _check_name(name)
    prefix = info.get("prefix")
    if prefix is None:
        prefix = DEFAULT_PREFIX if all(key.startswith(DEFAULT_PREFIX + ".") for key in tensors) else ""
    if not isinstance(prefix, str):
        raise InputError(f"LoRA file {file} has a malformed header (prefix {prefix!r}).")
    weights = _peft_keys(tensors, prefix, file)
    config = _config_from_header(header, prefix, weights, file)
    if name in list_loras(model):
        _check_same_scaling(model.peft_config[name], config, name, file)
        _load_weights(model, name, weights, file)
        return name
    flags = _requires_grad(model)
    # The values drawn to initialise the new layers are overwritten; keep them out of the caller's RNG stream.
    with torch.random.fork_rng(devices=[]):
        _inject(model, name, config)
    try:
        _load_weights(model, name, weights, file)
    except InputError:
        _remove(model, name)
        _restore_requires_grad(flags)
        raise
    return name


# -- helpers ---------------------------------------------------------------------------------------


def _lora_layers(model: torch.nn.Module) -> list[LoraLayer]:
    return [module for module in model.modules() if isinstance(module, LoraLayer)]


def _check_name(name: object) -> None:
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name in _RESERVED_NAMES:
        raise InputError(
            f"LoRA adapter names are letters, digits, '_' and '-' (starting with a letter or '_', not one of "
            f"{sorted(_RESERVED_NAMES)}), got {name!r}."
        )


def _valid_init(init: object) -> bool:
    return any(type(init) is type(choice) and init == choice for choice in _INITS)


def _require(model: torch.nn.Module, name: str) -> None:
    names = list_loras(model)
    if name not in names:
        raise InputError(f"This model has no LoRA adapter named '{name}' (it has: {names or 'none'}).")


def _requires_grad(model: torch.nn.Module) -> dict[torch.nn.Parameter, bool]:
    return {param: param.requires_grad for param in model.parameters()}


def _restore_requires_grad(flags: dict[torch.nn.Parameter, bool]) -> None:
    for param, flag in flags.items():
        param.requires_grad_(flag)


def _set_active(model: torch.nn.Module, names: list[str]) -> None:
    """Activate ``names`` on every LoRA layer, keeping the adapters' scales."""
    for layer in _lora_layers(model):
        layer.set_adapter(names)


def _inject(model: torch.nn.Module, name: str, config: LoraConfig) -> None:
    """Add the (freshly initialised) layers of a new adapter; keep the active set and the on/off switch.

    A failed injection leaves the model as it was, ``requires_grad`` flags included.
    """
    active = active_loras(model)
    enabled = lora_enabled(model)
    flags = _requires_grad(model)
    try:
        with warnings.catch_warnings():
            # peft warns whenever a model already carries adapters; several named adapters are the point here.
            warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute")
            inject_adapter_in_model(config, model, adapter_name=name)
    except ValueError as err:
        _remove(model, name)
        _restore_requires_grad(flags)
        raise InputError(
            f"Cannot add LoRA adapter '{name}' to this {type(model).__name__}: target_modules "
            f"{repr(config.target_modules)[:120]} must match Linear, Conv or Embedding layers of it "
            f"(peft: {' '.join(str(err).split())[:200]})."
        ) from err
    if isinstance(model, PeftAdapterMixin):
        # diffusers' own adapter methods (disable_adapters, set_adapter, ...) check this flag.
        model._hf_peft_config_loaded = True
    _set_active(model, [*active, name])
    if not enabled:
        set_lora_enabled(model, False)


def _remove(model: torch.nn.Module, name: str) -> None:
    """Delete adapter ``name`` wherever it is (also half-injected); unwrap layers left without adapters."""
    active = [other for other in active_loras(model) if other != name]
    with warnings.catch_warnings():
        # peft warns when it picks a new active adapter per layer; the active set is restored below.
        warnings.simplefilter("ignore")
        for layer in _lora_layers(model):
            layer.delete_adapter(name)
    for path, layer in list(model.named_modules()):
        if isinstance(layer, LoraLayer) and not layer.r:
            parent, _, child = path.rpartition(".")
            setattr(model.get_submodule(parent), child, layer.get_base_layer())
    configs = getattr(model, "peft_config", None)
    if configs is not None:
        configs.pop(name, None)
        if not configs:
            del model.peft_config
            if isinstance(model, PeftAdapterMixin):
                model._hf_peft_config_loaded = False
    _set_active(model, active)


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _jsonable(value: object) -> object:
    return sorted(value) if isinstance(value, set) else value


def _diffusers_keys(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """peft keys -> diffusers keys (``to_q.lora_A`` -> ``to_q.lora.down``), when that round-trips.

    diffusers renames only the attention projections; with other targets the renamed keys would mix two
    styles, and diffusers' loader decides from the first key alone whether to rename back. Then (or if a key
    would not come back unchanged) peft's names are kept for all keys: diffusers reads those as they are.
    """
    renamed = convert_state_dict_to_diffusers(weights)
    mixed = any("lora_A" in key or "lora_B" in key for key in renamed)
    if mixed or convert_unet_state_dict_to_peft(renamed).keys() != weights.keys():
        return weights
    return renamed


def _file_for_save(path: Path, name: str) -> Path:
    if path.suffix == SUFFIX:
        return path
    if path.is_file() or (path.suffix and not path.is_dir()):
        raise InputError(
            f"LoRA files are safetensors: give a path ending in {SUFFIX} or a folder, not {path}."
        )
    return path / f"{name}{SUFFIX}"


def _file_for_load(path: Path, name: str | None) -> Path:
    if path.is_dir():
        if name and (path / f"{name}{SUFFIX}").is_file():
            return path / f"{name}{SUFFIX}"
        files = sorted(path.glob(f"*{SUFFIX}"))
        if len(files) != 1:
            raise InputError(
                f"Folder {path} holds {len(files)} {SUFFIX} files: give the file itself, or the adapter name "
                f"of a NAME{SUFFIX} file in it."
            )
        return files[0]
    if not path.is_file():
        raise InputError(f"LoRA file {path} does not exist.")
    return path


def _read(file: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    try:
        with safe_open(str(file), framework="pt", device="cpu") as reader:
            header = reader.metadata() or {}
            tensors = {key: reader.get_tensor(key) for key in reader.keys()}
    except (SafetensorError, OSError) as err:
        raise InputError(f"{file} is not a readable safetensors LoRA file ({err}).") from err
    return tensors, header


def _header_json(header: dict[str, str], key: str, file: Path) -> dict | None:
    raw = header.get(key)
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as err:
        raise InputError(f"LoRA file {file} has a malformed '{key}' header entry ({err}).") from err
    if not isinstance(value, dict):
        raise InputError(f"LoRA file {file} has a malformed '{key}' header entry (not a JSON object).")
    return value


def _peft_keys(tensors: dict[str, torch.Tensor], prefix: str, file: Path) -> dict[str, torch.Tensor]:
    """File tensors -> peft's adapter state dict (prefix removed, diffusers names renamed back)."""
    if not tensors:
        raise InputError(f"LoRA file {file} holds no tensors.")
    start = prefix + "." if prefix else ""
    foreign = sorted(key for key in tensors if not key.startswith(start))
    if foreign:
        raise InputError(f"LoRA file {file} holds weights outside '{prefix}' (e.g. {foreign[0]}).")
    weights = convert_unet_state_dict_to_peft({key[len(start) :]: value for key, value in tensors.items()})
    not_lora = sorted(
        key for key, value in weights.items() if ".lora_" not in key or not value.is_floating_point()
    )
    if not_lora:
        raise InputError(f"{file} is not a LoRA file: '{not_lora[0]}' is not a LoRA weight.")
    return weights


def _config_from_header(
    header: dict[str, str], prefix: str, weights: dict[str, torch.Tensor], file: Path
) -> LoraConfig:
    start = prefix + "." if prefix else ""
    saved = _header_json(header, LORA_ADAPTER_METADATA_KEY, file) or {}
    fields = {key[len(start) :]: value for key, value in saved.items() if key.startswith(start)}
    fields = {key: value for key, value in fields.items() if key in _CONFIG_FIELDS}
    if not fields:
        # No config saved: one rank read from the shapes, alpha = rank, exactly the modules in the file.
        ranks = {
            key.removesuffix(".lora_A.weight"): v.shape[0]
            for key, v in weights.items()
            if key.endswith(".lora_A.weight")
        }
        if len(set(ranks.values())) != 1:
            raise InputError(
                f"LoRA file {file} has no config in its header and {len(set(ranks.values()))} different ranks: "
                "save it with core.lora.save_lora."
            )
        rank = next(iter(ranks.values()))
        fields = {"r": rank, "lora_alpha": rank, "target_modules": sorted(ranks)}
    rank, alpha, targets = fields.get("r"), fields.get("lora_alpha"), fields.get("target_modules")
    valid = (
        isinstance(rank, int)
        and not isinstance(rank, bool)
        and rank >= 1
        and isinstance(alpha, int | float)
        and alpha > 0
        and (
            isinstance(targets, str) or isinstance(targets, list) and all(isinstance(t, str) for t in targets)
        )
        and _valid_init(fields.get("init_lora_weights", "gaussian"))
    )
    if not valid:
        raise InputError(f"LoRA file {file} has a malformed config in its header: {fields}.")
    try:
        return LoraConfig(**fields)
    except (TypeError, ValueError) as err:
        raise InputError(f"LoRA file {file} has a config peft rejects ({err}).") from err


def _check_same_scaling(existing: LoraConfig, loaded: LoraConfig, name: str, file: Path) -> None:
    """Resuming must not change how the adapter scales; which modules it covers is checked by the keys."""
    keys = ("r", "lora_alpha", "rank_pattern", "alpha_pattern", "use_rslora", "use_dora")
    differences = [
        f"{key} {getattr(loaded, key)!r} in the file, {getattr(existing, key)!r} in the model"
        for key in keys
        if getattr(loaded, key) != getattr(existing, key)
    ]
    if differences:
        raise InputError(f"LoRA file {file} does not match adapter '{name}': {'; '.join(differences)}.")


def _load_weights(model: torch.nn.Module, name: str, weights: dict[str, torch.Tensor], file: Path) -> None:
    """Copy ``weights`` into adapter ``name``, requiring the same keys and shapes on both sides."""
    expected = get_peft_model_state_dict(model, adapter_name=name)
    unused = sorted(weights.keys() - expected.keys())
    unfilled = sorted(expected.keys() - weights.keys())
    reshaped = sorted(k for k in weights.keys() & expected.keys() if weights[k].shape != expected[k].shape)
    problems = []
    if unused:
        problems.append(f"{len(unused)} tensors of the file have no place in the model (e.g. {unused[0]})")
    if unfilled:
        problems.append(f"{len(unfilled)} adapter weights are missing from the file (e.g. {unfilled[0]})")
    if reshaped:
        key = reshaped[0]
        problems.append(
            f"{len(reshaped)} tensors differ in shape (e.g. {key}: {tuple(weights[key].shape)} in the file, "
            f"{tuple(expected[key].shape)} in the model)"
        )
    if problems:
        raise InputError(
            f"LoRA file {file} does not fit adapter '{name}' of this {type(model).__name__}: "
            f"{'; '.join(problems)}. Was it saved from another model, rank or set of target modules?"
        )
    set_peft_model_state_dict(model, weights, adapter_name=name)
