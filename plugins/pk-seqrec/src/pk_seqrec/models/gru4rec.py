"""GRU4Rec (pk defaults): item embedding (H) -> dropout -> GRU (H, ``layers``) -> hidden
state per position -> scores against the tied item embeddings. Sequences are packed to
the front before the GRU so padding (either side) never enters the recurrence."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from pk.core.contracts import DatasetInfo
from pk_seqrec.models.encoder import init_weights, last_real_index, next_item_loss, score_all


class GRU4Rec(nn.Module):
    """``predict`` [B, N + 1] from the state after the last real item; ``loss`` at every
    position with a target (``targets``) or at the last one (``target``)."""

    def __init__(self, num_items: int, *, hidden: int = 64, layers: int = 1, dropout: float = 0.3,
                 init_std: float = 0.02, loss_type: str = "ce", num_negatives: int = 1,
                 ce_include_padding: bool = True) -> None:
        super().__init__()
        self.loss_type, self.num_negatives, self.ce_include_padding = loss_type, num_negatives, ce_include_padding
        self.item_embedding = nn.Embedding(num_items + 1, hidden, padding_idx=0)
        self.dropout = nn.Dropout(dropout)
        self.gru = nn.GRU(hidden, hidden, num_layers=layers, batch_first=True)
        init_weights(self, init_std)

    def encode(self, seq: torch.Tensor) -> torch.Tensor:
        """[B, L] -> [B, L, H]; position j holds the state after reading the items up to j."""
        front = torch.argsort((seq == 0).to(torch.int8), dim=1, stable=True)  # real items first, order kept
        out, _ = self.gru(self.dropout(self.item_embedding(seq.gather(1, front))))
        back = torch.argsort(front, dim=1)
        return out.gather(1, back[..., None].expand(-1, -1, out.shape[-1]))

    def predict(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        seq = batch["seq"]
        h = self.encode(seq)[torch.arange(seq.shape[0], device=seq.device), last_real_index(seq)]
        return score_all(h, self.item_embedding.weight)

    def loss(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        seq = batch["seq"]
        h = self.encode(seq)
        if "targets" in batch:
            targets = batch["targets"]
        else:
            h, targets = h[torch.arange(seq.shape[0], device=seq.device), last_real_index(seq)], batch["target"]
        return next_item_loss(h, targets, self.item_embedding.weight, loss_type=self.loss_type,
                              include_padding=self.ce_include_padding, num_negatives=self.num_negatives)


def build_gru4rec(config: Any, info: DatasetInfo) -> GRU4Rec:
    if not info.num_items:
        raise ValueError("gru4rec needs a next-item dataset (info.num_items)")
    return GRU4Rec(info.num_items, hidden=config.hidden, layers=config.layers, dropout=config.dropout,
                   init_std=config.init_std, loss_type=config.loss_type, num_negatives=config.num_negatives,
                   ce_include_padding=config.ce_include_padding)
