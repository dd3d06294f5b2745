"""BERT4Rec (RecBole flavour): the shared encoder with bidirectional (padding-only) masks,
trained by cloze on masked positions; predicts by appending [MASK] after the last item.

Item table has N + 2 rows: 0 padding, 1..N items, N + 1 = [MASK]; the position table has
L + 1 rows (the inference [MASK] slot). Scores are over rows 0..N (column 0 = -inf).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from pk.core.contracts import DatasetInfo
from pk_seqrec.models.encoder import TransformerEncoder, init_weights, padding_mask, position_ids, score_all


def cloze_mask(seq: torch.Tensor, mask_ratio: float, generator: torch.Generator | None = None,
               max_len: int | None = None) -> torch.Tensor:
    """[B, W] bool: each real position masked with probability ``mask_ratio``; at most
    ``int(mask_ratio * max_len)`` kept per row (the LAST ones); never padding.

    ``max_len`` is the model's sequence length (not the batch width: pk-seqrec's loader trims
    all-padding columns, so a batch of short rows is narrow and a cap from its width would be
    0 or 1). Default: ``seq.shape[1]`` (an untrimmed batch)."""
    real = seq != 0
    draw = torch.rand(seq.shape, generator=generator, device=seq.device if generator is None else "cpu").to(seq.device)
    chosen = (draw < mask_ratio) & real
    cap = int(mask_ratio * (seq.shape[1] if max_len is None else max_len))
    from_end = chosen.flip(1).long().cumsum(1).flip(1)  # 1 at the last chosen position, 2 before...
    return chosen & (from_end <= cap)


class BERT4Rec(nn.Module):
    """``loss``: cloze CE over all items at the masked positions of ``seq`` + ``target``;
    ``predict``: [B, N + 1] scores of the [MASK] appended after ``seq``."""

    def __init__(self, num_items: int, max_len: int, *, hidden: int = 64, layers: int = 2, heads: int = 2,
                 inner: int = 256, dropout: float = 0.5, attn_dropout: float = 0.5, layer_norm_eps: float = 1e-12,
                 init_std: float = 0.02, position_embedding: bool = True, mask_ratio: float = 0.2,
                 ce_include_padding: bool = True, calibrator: Any = None) -> None:
        super().__init__()
        self.num_items, self.max_len, self.mask_token = num_items, max_len, num_items + 1
        self.mask_ratio, self.ce_include_padding = mask_ratio, ce_include_padding
        self.item_embedding = nn.Embedding(num_items + 2, hidden, padding_idx=0)
        self.position_embedding = nn.Embedding(max_len + 1, hidden) if position_embedding else None
        self.input_norm = nn.LayerNorm(hidden, eps=layer_norm_eps)
        self.input_dropout = nn.Dropout(dropout)
        self.encoder = TransformerEncoder(hidden, layers, heads, inner, dropout, attn_dropout, layer_norm_eps)
        self.output_bias = nn.Parameter(torch.zeros(num_items + 1))
        init_weights(self, init_std)
        self.encoder.calibrator = calibrator

    def encode(self, seq: torch.Tensor) -> torch.Tensor:
        """[B, L'] ids (0 pad, N + 1 mask) -> [B, L', H], bidirectional over real tokens."""
        x = self.item_embedding(seq)
        if self.position_embedding is not None:
            x = x + self.position_embedding(position_ids(seq).clamp_max(self.max_len))
        return self.encoder(self.input_dropout(self.input_norm(x)), padding_mask(seq))

    def _item_weight(self) -> torch.Tensor:
        return self.item_embedding.weight[: self.num_items + 1]

    def predict(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        seq = batch["seq"]
        mask_col = torch.full((seq.shape[0], 1), self.mask_token, dtype=seq.dtype, device=seq.device)
        h = self.encode(torch.cat([seq, mask_col], 1))[:, -1]
        scores = score_all(h, self._item_weight())
        return scores + self.output_bias

    def cloze_batch(self, batch: Mapping[str, torch.Tensor],
                    generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(full [B, W] = ``seq`` + ``target``, its last L + 1 columns; masked [B, W] bool).
        The cap on masks per row comes from the model's length L + 1 (RecBole:
        int(mask_ratio * L) = 10 at L = 50), never from the trimmed batch width."""
        full = torch.cat([batch["seq"], batch["target"][:, None]], 1)[:, -(self.max_len + 1) :]
        return full, cloze_mask(full, self.mask_ratio, generator, max_len=self.max_len + 1)

    def loss(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        full, masked = self.cloze_batch(batch)
        if not masked.any():
            return self.item_embedding.weight.sum() * 0.0
        h = self.encode(full.masked_fill(masked, self.mask_token))[masked]
        logits = h @ self._item_weight().t() + self.output_bias
        if not self.ce_include_padding:
            logits[:, 0] = float("-inf")
        return nn.functional.cross_entropy(logits, full[masked])


def build_bert4rec(config: Any, info: DatasetInfo, *, calibrator: Any = None, device: str = "cpu") -> BERT4Rec:
    if not info.num_items or not info.max_len:
        raise ValueError("bert4rec needs a next-item dataset (info.num_items and info.max_len)")
    return BERT4Rec(info.num_items, info.max_len, hidden=config.hidden, layers=config.layers, heads=config.heads,
                    inner=config.inner, dropout=config.dropout, attn_dropout=config.attn_dropout,
                    layer_norm_eps=config.layer_norm_eps, init_std=config.init_std,
                    position_embedding=config.position_embedding, mask_ratio=config.mask_ratio,
                    ce_include_padding=config.ce_include_padding, calibrator=calibrator)
