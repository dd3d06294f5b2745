"""Pop: scores every item by its training interaction count (ties broken by item id order
of torch's sort, i.e. not at all: equal counts get equal scores)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from pk.core.contracts import DatasetInfo


class Pop(nn.Module):
    """``counts`` [N + 1] buffer, filled while training: ``loss`` adds the batch's items
    (``seq`` and ``target``; padding ignored) when ``self.training`` and returns a zero
    that still has a gradient, so any trainer can "train" it."""

    def __init__(self, num_items: int, smoothing: float = 0.0) -> None:
        super().__init__()
        self.register_buffer("counts", torch.zeros(num_items + 1))
        self.smoothing = smoothing
        self.anchor = nn.Parameter(torch.zeros(()))

    def loss(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        if self.training:
            with torch.no_grad():
                for part in (batch["seq"].flatten(), batch["target"].flatten()):
                    self.counts.index_add_(0, part, torch.ones_like(part, dtype=self.counts.dtype))
                self.counts[0] = 0
        return self.anchor * 0.0

    def predict(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        B = batch["seq"].shape[0]
        scores = (self.counts + self.smoothing).log1p() + self.anchor
        scores = scores.expand(B, -1).clone()
        scores[:, 0] = float("-inf")
        return scores


def build_pop(config: Any, info: DatasetInfo) -> Pop:
    if not info.num_items:
        raise ValueError("pop needs a next-item dataset (info.num_items)")
    return Pop(info.num_items, getattr(config, "smoothing", 0.0))
