"""``MaskTokenSASRec``: pk-seqrec's SASRec with a [MASK] row in the item table and an entry
point that takes precomputed input embeddings (the shared base of ECL-SR and CL4SRec).

Item table: N + 2 rows (0 padding, 1..N items, N + 1 = [MASK]); recommendation logits use
rows 0..N only (column 0 is -inf in ``predict``), so [MASK] is never recommended.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from pk_seqrec.models.encoder import (
    causal_mask,
    init_weights,
    next_item_loss,
    padding_mask,
    position_ids,
    score_all,
)
from pk_seqrec.models.sasrec import SASRec
from torch import nn


class MaskTokenSASRec(SASRec):
    """SASRec (CE loss) + [MASK] token + ``encode_embeddings``; see the module docstring."""

    def __init__(self, num_items: int, max_len: int, *, hidden: int = 64, layers: int = 2, heads: int = 2,
                 inner: int = 256, dropout: float = 0.5, attn_dropout: float = 0.5, layer_norm_eps: float = 1e-12,
                 init_std: float = 0.02, ce_include_padding: bool = True, calibrator: Any = None) -> None:
        super().__init__(num_items, max_len, hidden=hidden, layers=layers, heads=heads, inner=inner, dropout=dropout,
                         attn_dropout=attn_dropout, layer_norm_eps=layer_norm_eps, init_std=init_std,
                         loss_type="ce", ce_include_padding=ce_include_padding, calibrator=calibrator)
        self.mask_token = num_items + 1
        self.init_std = init_std
        self.item_embedding = nn.Embedding(num_items + 2, hidden, padding_idx=0)
        init_weights(self.item_embedding, init_std)

    def item_weight(self) -> torch.Tensor:
        """[N + 1, H]: the item table without the [MASK] row."""
        return self.item_embedding.weight[: self.num_items + 1]

    def encode_embeddings(self, seq: torch.Tensor, item_emb: torch.Tensor, *,
                          bidirectional: bool = False) -> torch.Tensor:
        """The encoder on given input embeddings ``item_emb`` [B, L, H] laid out like ``seq``
        [B, L] (which sets positions and masks): + positions -> LayerNorm -> dropout ->
        Transformer (causal, or padding-only when ``bidirectional``) -> [B, L, H]."""
        x = item_emb
        if self.position_embedding is not None:
            x = x + self.position_embedding(position_ids(seq).clamp_max(self.max_len - 1))
        x = self.input_dropout(self.input_norm(x))
        return self.encoder(x, padding_mask(seq) if bidirectional else causal_mask(seq))

    def encode(self, seq: torch.Tensor) -> torch.Tensor:
        """[B, L] ids (0 pad, N + 1 mask allowed) -> [B, L, H], causal."""
        return self.encode_embeddings(seq, self.item_embedding(seq))

    def predict(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """[B, N + 1] scores of the newest position, column 0 = -inf, no [MASK] column."""
        return score_all(self.user_state(batch["seq"]), self.item_weight())

    @staticmethod
    def next_targets(batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """[B, L] next item per position: ``targets`` when present, else only the newest
        position carries ``target`` (evaluation batches)."""
        if "targets" in batch:
            return batch["targets"]
        targets = torch.zeros_like(batch["seq"])
        targets[:, -1] = batch["target"]
        return targets

    def rec_loss(self, h: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """CE next-item loss over positions with a target (pad targets ignored)."""
        return next_item_loss(h, targets, self.item_weight(), include_padding=self.ce_include_padding)
