"""Depth up-scaling (DUS, SOLAR 10.7B §2): the layer map, the config rewrite and the
in-memory transform of a Hugging Face decoder model.

Layer map for an n-layer base and m removed layers: new layer j is a copy of base layer
``src[j]`` with ``src = [0 .. n-m-1] ++ [m .. n-1]``, so s = 2(n - m) layers. Embeddings,
final norm and lm_head are kept once. ``layer_map`` and ``upscale_config_dict`` import no
torch; ``depth_upscale`` does.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from pk.core.errors import UsageError

#: config keys that hold the layer count, by model family (GPT-2 style first via attribute_map)
LAYER_COUNT_KEYS = ("num_hidden_layers", "n_layer", "num_layers")


def layer_map(n_layers: int, n_remove: int) -> list[int]:
    """Source layer of each up-scaled layer: ``[0..n-m-1] ++ [m..n-1]`` (length 2(n-m)).

    Valid m: ``0 <= m <= n/2`` (m = 0 is plain duplication, m = n/2 the identity). Larger m
    would shrink the model, and m >= n removes every layer: both raise UsageError.
    """
    n, m = int(n_layers), int(n_remove)
    if n < 1:
        raise UsageError(f"the base model needs at least one layer, got n = {n}")
    if m < 0:
        raise UsageError(f"--n-remove must be >= 0, got {m}")
    if m >= n:
        raise UsageError(f"--n-remove {m} >= the base's {n} layers would remove every layer; use 0 <= m <= {n // 2}")
    if 2 * m > n:
        raise UsageError(
            f"--n-remove {m} > n/2 = {n / 2:g} gives 2(n-m) = {2 * (n - m)} < {n} layers (a shrink, not an up-scale); "
            f"use 0 <= m <= {n // 2}"
        )
    return list(range(n - m)) + list(range(m, n))


def layer_count(config: Mapping[str, Any]) -> tuple[str, int]:
    """The (key, value) of the layer count in a config dict (``num_hidden_layers`` or kin)."""
    for key in LAYER_COUNT_KEYS:
        value = config.get(key)
        if isinstance(value, int) and value > 0:
            return key, value
    raise UsageError(f"config has none of {', '.join(LAYER_COUNT_KEYS)}; cannot tell how many layers the model has")


def upscale_config_dict(config: Mapping[str, Any], src: list[int]) -> dict[str, Any]:
    """A copy of a config dict for the up-scaled model: the layer count set to ``len(src)``,
    per-layer fields rebuilt by the map (``layer_types[j] = old[src[j]]``, sparse
    ``per_layer_config`` re-keyed); everything else (width, heads, rope, vocab) unchanged."""
    out = copy.deepcopy(dict(config))
    key, n = layer_count(out)
    out[key] = len(src)
    types = out.get("layer_types")
    if isinstance(types, list):
        if len(types) != n:
            raise UsageError(f"config layer_types has {len(types)} entries but the model has {n} layers; "
                             "fix config.json")
        out["layer_types"] = [types[i] for i in src]
    per_layer = out.get("per_layer_config")
    if isinstance(per_layer, Mapping) and per_layer:
        out["per_layer_config"] = {
            str(j): copy.deepcopy(per_layer[k]) for j, i in enumerate(src) for k in (str(i), i) if k in per_layer
        }
    return out


def find_layer_list(model: Any) -> tuple[Any, str]:
    """Return ``(parent_module, attribute)`` of the decoder-layer ``nn.ModuleList``.

    Tries the usual places (``model.layers`` for Llama/Mistral/Qwen2, ``transformer.h`` for
    GPT-2, ``gpt_neox.layers``), then any ModuleList whose length is the config's layer count.
    """
    from torch import nn

    n = int(model.config.num_hidden_layers)
    for path in ("model.layers", "transformer.h", "gpt_neox.layers", "model.decoder.layers", "layers"):
        parent: Any = model
        parts = path.split(".")
        for part in parts[:-1]:
            parent = getattr(parent, part, None)
            if parent is None:
                break
        if parent is not None and isinstance(getattr(parent, parts[-1], None), nn.ModuleList):
            if len(getattr(parent, parts[-1])) == n:
                return parent, parts[-1]
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) == n and name:
            parent_name, _, attr = name.rpartition(".")
            return (model.get_submodule(parent_name) if parent_name else model), attr
    raise UsageError(f"cannot find the decoder layer list of {type(model).__name__} (no ModuleList of {n} layers)")


def depth_upscale(model: Any, n_remove: int) -> Any:
    """Return a new up-scaled model; ``model`` is left untouched.

    Every new layer is a deep copy (no shared modules or storage), each submodule's
    ``layer_idx`` is renumbered to its new position (the KV cache is indexed by it), and the
    config gets the new layer count and per-layer fields. Embeddings, final norm and lm_head
    are copied once.
    """
    from torch import nn

    parent, attr = find_layer_list(model)
    base_layers = getattr(parent, attr)
    src = layer_map(len(base_layers), n_remove)
    # copy everything except the layer list, then add fresh deep copies of the chosen layers
    setattr(parent, attr, nn.ModuleList())
    try:
        new = copy.deepcopy(model)
    finally:
        setattr(parent, attr, base_layers)
    new_parent, _ = find_layer_list_after_copy(new, parent, model)
    layers = nn.ModuleList(copy.deepcopy(base_layers[i]) for i in src)
    for j, layer in enumerate(layers):
        for sub in layer.modules():
            if hasattr(sub, "layer_idx"):
                sub.layer_idx = j
    setattr(new_parent, attr, layers)
    updated = upscale_config_dict(model.config.to_dict(), src)
    for key in (*LAYER_COUNT_KEYS, "layer_types", "per_layer_config"):
        if key in updated and key in model.config.to_dict() and updated[key] != model.config.to_dict()[key]:
            setattr(new.config, key, updated[key])
    return new


def find_layer_list_after_copy(new: Any, old_parent: Any, old_model: Any) -> tuple[Any, str]:
    """The module in ``new`` at the same path as ``old_parent`` in ``old_model``."""
    for name, module in old_model.named_modules():
        if module is old_parent:
            return (new.get_submodule(name) if name else new), name
    raise UsageError("internal error: layer list parent not found in the copied model")
