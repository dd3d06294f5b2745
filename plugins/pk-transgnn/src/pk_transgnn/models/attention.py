"""TransGNN's Transformer layer: each node attends to itself and its sampled nodes only."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class SampledAttention(nn.Module):
    """Post-LN Transformer layer where node ``i`` attends to itself and its samples only.

    ``h [N, d]``, ``samples [N, k]`` -> ``[N, d]``; cost ``O(N k d)`` (projections are done on
    the N nodes, then gathered)."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"hidden ({dim}) must be divisible by heads ({heads})")
        self.heads, self.head_dim = heads, dim // heads
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, 4 * dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(4 * dim, dim))
        self.dropout = nn.Dropout(dropout)

    def forward(self, h: Tensor, samples: Tensor) -> Tensor:
        n = h.shape[0]
        keys_idx = torch.cat([torch.arange(n, device=h.device).unsqueeze(1), samples.clamp_min(0)], dim=1)
        pad = torch.cat([torch.zeros(n, 1, dtype=torch.bool, device=h.device), samples < 0], dim=1)
        m, flat = keys_idx.shape[1], keys_idx.reshape(-1)
        q = self.q(h).view(n, 1, self.heads, self.head_dim)
        # gathers by index_select (backward: an index_add into [N, d], no sort, no full-size zero fill)
        k = self.k(h).index_select(0, flat).view(n, m, self.heads, self.head_dim)  # [N, k+1, heads, hd]
        v = self.v(h).index_select(0, flat).view(n, m, self.heads, self.head_dim)
        scores = (q * k).sum(-1) / math.sqrt(self.head_dim)  # [N, k+1, heads]
        scores = scores.masked_fill(pad.unsqueeze(-1), float("-inf"))
        attn = self.dropout(torch.softmax(scores, dim=1))
        out = self.o((attn.unsqueeze(-1) * v).sum(1).reshape(n, -1))
        h = self.norm1(h + self.dropout(out))
        return self.norm2(h + self.dropout(self.ffn(h)))


__all__ = ["SampledAttention"]
