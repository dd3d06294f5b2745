"""Growable embedding tables.

``resize_rows(table, n_rows, ...)`` returns a new table whose first ``min(old, n_rows)`` rows are
bit-identical copies of the old ones; rows appended at the end follow the init policy:
"normal" (N(0, std) drawn from ``generator``), "mean" (mean of the old real rows, row 0 =
padding excluded) or "zero". ``set_item_count(model, n)`` applies it to a pk-seqrec model's
tied ``item_embedding`` (SASRec, GRU4Rec: scores are ``h @ item_embedding.weight.T``), so the
model then scores items ``1..n``.
"""

from __future__ import annotations

import torch
from torch import nn

from pk.core.errors import ConfigError

POLICIES = ("normal", "mean", "zero")


def new_rows(old: torch.Tensor, count: int, policy: str, std: float, generator: torch.Generator | None) -> torch.Tensor:
    """``count`` rows [count, H] for new ids under ``policy`` (see the module docstring)."""
    if policy not in POLICIES:
        raise ConfigError(f"trainer.init must be one of {', '.join(POLICIES)}, got {policy!r}")
    H = old.shape[1]
    if policy == "normal":
        return (torch.randn(count, H, generator=generator, dtype=torch.float32) * std).to(old.dtype).to(old.device)
    if policy == "mean" and old.shape[0] > 1:
        return old[1:].mean(0, keepdim=True).expand(count, H).clone()
    return torch.zeros(count, H, dtype=old.dtype, device=old.device)


def resize_rows(table: nn.Embedding, n_rows: int, policy: str = "normal", std: float = 0.02,
                generator: torch.Generator | None = None) -> nn.Embedding:
    """A new ``nn.Embedding`` with ``n_rows`` rows (same padding_idx); old rows copied exactly."""
    old = table.weight.detach()
    keep = min(old.shape[0], n_rows)
    weight = torch.empty(n_rows, old.shape[1], dtype=old.dtype, device=old.device)
    weight[:keep] = old[:keep]
    if n_rows > keep:
        weight[keep:] = new_rows(old, n_rows - keep, policy, std, generator)
    out = nn.Embedding(n_rows, old.shape[1], padding_idx=table.padding_idx).to(old.device)
    with torch.no_grad():
        out.weight.copy_(weight)
    return out


def item_count(model: nn.Module) -> int:
    """Number of real items the model scores (its item table has that many + 1 rows)."""
    table = getattr(model, "item_embedding", None)
    if not isinstance(table, nn.Embedding):
        raise ConfigError(f"{type(model).__name__} has no item_embedding table; streaming needs sasrec or gru4rec")
    return int(table.num_embeddings) - 1


def set_item_count(model: nn.Module, n_items: int, policy: str = "normal", std: float = 0.02,
                   generator: torch.Generator | None = None) -> int:
    """Resize the model's item table to ``n_items`` real items (+ padding row); returns the
    number of rows added. Rows of items ``1..min(old, new)`` are left bit-identical."""
    old = item_count(model)
    if n_items != old:
        model.item_embedding = resize_rows(model.item_embedding, n_items + 1, policy, std, generator)
        if hasattr(model, "num_items"):
            model.num_items = n_items
    return max(0, n_items - old)
