"""Pop: ranks items by their training interaction count.

``counts`` [N + 1] is a buffer filled while training (``loss`` adds, when ``self.training``,
each (user, position) of the batch once: every trained target in ``targets``, plus the
user's first item in the row that trains position 1; rows may overlap, so ``seq`` items
are not counted as such). One epoch gives ``SeqBundle.train_item_counts()``. Scores are
``exp(log_temperature) * log1p(counts)``: the one learned scalar (fitted by the
cross-entropy of the popularity distribution) never changes the ranking, but gives ``loss``
a real gradient so any trainer can run it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from pk.core.contracts import DatasetInfo


class Pop(nn.Module):
    """``predict`` -> [B, N + 1] popularity scores (column 0 = -inf), identical for every row."""

    def __init__(self, num_items: int, smoothing: float = 0.0) -> None:
        super().__init__()
        self.register_buffer("counts", torch.zeros(num_items + 1))
        self.smoothing = smoothing
        self.log_temperature = nn.Parameter(torch.zeros(()))

    def _scores(self) -> torch.Tensor:
        scores = self.log_temperature.exp() * (self.counts + self.smoothing).log1p()
        return torch.cat([scores.new_full((1,), float("-inf")), scores[1:]])

    def loss(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        if self.training:
            with torch.no_grad():
                for part in _owned_items(batch):
                    self.counts.index_add_(0, part, torch.ones_like(part, dtype=self.counts.dtype))
                self.counts[0] = 0
        logits = self._scores()
        return nn.functional.cross_entropy(logits.expand(batch["target"].shape[0], -1), batch["target"])

    def predict(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self._scores().expand(batch["seq"].shape[0], -1).clone()


def _owned_items(batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """Item ids the batch trains, each (user, position) once: nonzero ``targets`` plus the
    user's first item in the one row that starts there and trains position 1. Batches
    without ``targets``/``tpos`` (no window layout) give ``seq`` and ``target``."""
    if not all(k in batch for k in ("targets", "tpos", "len")):
        return batch["seq"].flatten(), batch["target"].flatten()
    targets, seq = batch["targets"], batch["seq"]
    cols = (seq.shape[1] - batch["len"]).clamp(0, max(seq.shape[1] - 1, 0))[:, None]  # oldest item at W - len
    # the row that trains position 1 and starts at position 0 owns the user's first item
    owner = ((batch["tpos"] - batch["len"]) == 0) & (targets.gather(1, cols)[:, 0] != 0)
    first = seq.gather(1, cols)[:, 0][owner]
    return targets[targets != 0], first[first != 0]


def build_pop(config: Any, info: DatasetInfo) -> Pop:
    if not info.num_items:
        raise ValueError("pop needs a next-item dataset (info.num_items)")
    return Pop(info.num_items, getattr(config, "smoothing", 0.0))
