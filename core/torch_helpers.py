"""Torch helpers shared by built-ins and plugins (import only from heavy modules)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn


def to_device(batch: Any, device: str) -> Any:
    """Move a tensor, or a dict of tensors (other values kept), to ``device``."""
    if isinstance(batch, Mapping):
        return {k: v.to(device) if hasattr(v, "to") else v for k, v in batch.items()}
    return batch.to(device) if hasattr(batch, "to") else batch


def make_optimizer(name: str, params: Any, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay, momentum=0.9)
    raise ValueError(f"optimizer must be adam, adamw or sgd, got {name!r}")


@torch.no_grad()
def classification_metrics(model: Any, data: Any, split: str, batch_size: int, device: str,
                           examples: dict[str, Any] | None = None) -> dict[str, float]:
    """Accuracy, macro-F1 and mean cross-entropy of ``model.predict`` on a split.

    ``examples``, when given, receives the per-example ``accuracy`` (0/1) and ``loss``
    arrays in loader order, whose means are the returned figures (for paired bootstraps)."""
    was_training = model.training
    model.eval()
    preds, labels, losses = [], [], []
    with torch.no_grad():
        for batch in data.loader(split, batch_size):
            batch = to_device(batch, device)
            logits = model.predict(batch)
            losses.append(nn.functional.cross_entropy(logits, batch["y"], reduction="none").double().cpu())
            preds.append(logits.argmax(-1).cpu())
            labels.append(batch["y"].cpu())
    model.train(was_training)
    p, y, per_loss = torch.cat(preds), torch.cat(labels), torch.cat(losses)
    correct = (p == y).double()
    if examples is not None:
        examples.update({"accuracy": correct.numpy(), "loss": per_loss.numpy()})
    n = max(int(y.shape[0]), 1)
    return {"accuracy": float(correct.sum()) / n, "macro_f1": macro_f1(p, y), "loss": float(per_loss.sum()) / n}


def macro_f1(pred: torch.Tensor, target: torch.Tensor, num_classes: int | None = None) -> float:
    """Unweighted mean of per-class F1 over classes present in target or prediction."""
    c = int(num_classes or int(max(pred.max(), target.max())) + 1)
    scores = []
    for k in range(c):
        tp = int(((pred == k) & (target == k)).sum())
        fp = int(((pred == k) & (target != k)).sum())
        fn = int(((pred != k) & (target == k)).sum())
        if tp + fp + fn == 0:
            continue
        scores.append(2 * tp / (2 * tp + fp + fn))
    return float(sum(scores) / len(scores)) if scores else 0.0



def check_updates(updates: Sequence[Any]) -> float:
    """Validate ``(state, weight, meta)`` updates; return the total weight."""
    if not updates:
        raise ValueError("no client updates to aggregate (empty round)")
    total = 0.0
    for _state, weight, _meta in updates:
        if weight < 0:
            raise ValueError(f"client weight must be >= 0, got {weight}")
        total += float(weight)
    if total <= 0:
        raise ValueError("total client weight is zero; nothing to average")
    return total


