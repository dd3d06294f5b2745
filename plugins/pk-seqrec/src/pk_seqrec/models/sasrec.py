"""SASRec (RecBole flavour): item + position embeddings -> LayerNorm -> dropout -> causal
post-LN Transformer -> hidden state at the last real position -> tied-embedding scores.

``predict(batch) -> [B, N + 1]`` (column 0 = -inf). ``loss(batch)`` trains every position
that has a target when the batch has ``targets`` [B, L] (one causal pass per window equals
RecBole's prefix augmentation), else only the last position against ``target``.

Left-padded rows whose only target is the last position (evaluation, and training with
``train_windows = "prefixes"``) take a shortcut when no calibrator is attached: the last
layer computes that one position only (same values; tested).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from pk.core.contracts import DatasetInfo
from pk_seqrec.models.encoder import (
    TransformerEncoder,
    causal_mask,
    init_weights,
    last_real_index,
    next_item_loss,
    position_ids,
    score_all,
)


class SASRec(nn.Module):
    """Causal self-attention next-item model; see the module docstring for the contract."""

    def __init__(self, num_items: int, max_len: int, *, hidden: int = 64, layers: int = 2, heads: int = 2,
                 inner: int = 256, dropout: float = 0.5, attn_dropout: float = 0.5, layer_norm_eps: float = 1e-12,
                 init_std: float = 0.02, position_embedding: bool = True, loss_type: str = "ce",
                 num_negatives: int = 1, ce_include_padding: bool = True, calibrator: Any = None) -> None:
        super().__init__()
        self.num_items, self.max_len = num_items, max_len
        self.loss_type, self.num_negatives, self.ce_include_padding = loss_type, num_negatives, ce_include_padding
        self.item_embedding = nn.Embedding(num_items + 1, hidden, padding_idx=0)
        self.position_embedding = nn.Embedding(max_len, hidden) if position_embedding else None
        self.input_norm = nn.LayerNorm(hidden, eps=layer_norm_eps)
        self.input_dropout = nn.Dropout(dropout)
        self.encoder = TransformerEncoder(hidden, layers, heads, inner, dropout, attn_dropout, layer_norm_eps)
        init_weights(self, init_std)
        self.encoder.calibrator = calibrator  # after init: a calibrator keeps its own initialisation

    def encode(self, seq: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """[B, L] item ids (0 = padding, either side) -> hidden states [B, L, H]
        (``last_only``: [B, 1, H], position L-1 only; no calibrator)."""
        x = self.item_embedding(seq)
        if self.position_embedding is not None:
            x = x + self.position_embedding(position_ids(seq).clamp_max(self.max_len - 1))
        x = self.input_dropout(self.input_norm(x))
        return self.encoder(x, causal_mask(seq), last_only=last_only)

    def _last_column_suffices(self, seq: torch.Tensor) -> bool:
        """True when every row's newest item sits in column L-1, no calibrator needs all queries
        and ``encode`` is this class's own (subclasses that override it keep the full pass)."""
        if self.encoder.calibrator is not None or type(self).encode is not SASRec.encode:
            return False
        return seq.shape[1] > 0 and bool((seq[:, -1] != 0).all())

    def user_state(self, seq: torch.Tensor) -> torch.Tensor:
        """[B, H]: the hidden state at the most recent real item."""
        if self._last_column_suffices(seq):
            return self.encode(seq, last_only=True)[:, 0]
        h = self.encode(seq)
        return h[torch.arange(seq.shape[0], device=seq.device), last_real_index(seq)]

    def predict(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return score_all(self.user_state(batch["seq"]), self.item_embedding.weight)

    def loss(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        seq = batch["seq"]
        if "targets" in batch and self._last_column_suffices(seq) and not bool(batch["targets"][:, :-1].any()):
            h, targets = self.encode(seq, last_only=True)[:, 0], batch["targets"][:, -1]
        elif "targets" in batch:
            h, targets = self.encode(seq), batch["targets"]
        else:
            h, targets = self.user_state(seq), batch["target"]
        return next_item_loss(h, targets, self.item_embedding.weight, loss_type=self.loss_type,
                              include_padding=self.ce_include_padding, num_negatives=self.num_negatives)


def build_sasrec(config: Any, info: DatasetInfo, *, calibrator: Any = None, device: str = "cpu") -> SASRec:
    if not info.num_items or not info.max_len:
        raise ValueError("sasrec needs a next-item dataset (info.num_items and info.max_len)")
    return SASRec(info.num_items, info.max_len, hidden=config.hidden, layers=config.layers, heads=config.heads,
                  inner=config.inner, dropout=config.dropout, attn_dropout=config.attn_dropout,
                  layer_norm_eps=config.layer_norm_eps, init_std=config.init_std,
                  position_embedding=config.position_embedding, loss_type=config.loss_type,
                  num_negatives=config.num_negatives, ce_include_padding=config.ce_include_padding,
                  calibrator=calibrator)
