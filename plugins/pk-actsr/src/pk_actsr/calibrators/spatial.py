"""``ac-spatial``: learned order and distance terms added to the raw attention scores."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from pk_actsr.calibrators.base import _heads, _init_linear, _key_positions, _Stage

LOG_EPS = 1e-24  # the reference's epsilon inside log p and log(1 - p)


def pair_linear_separable(q: torch.Tensor, k: torch.Tensor, linear: nn.Linear) -> torch.Tensor:
    """Linear(2d -> 1) applied to every [q_i; k_j], as w_qᵀ q_i + w_kᵀ k_j + b.
    ``q``, ``k``: [B, h, L, d] -> [B, h, L, L]; memory O(B h L²), never [B, h, L, L, 2d]."""
    d = q.shape[-1]
    w = linear.weight[0]
    return (q @ w[:d])[..., :, None] + (k @ w[d:])[..., None, :] + linear.bias[0]


def pair_linear_direct(q: torch.Tensor, k: torch.Tensor, linear: nn.Linear) -> torch.Tensor:
    """The reference's form: materialise [B, h, L, L, 2d] = [q_i; k_j] and apply the Linear."""
    B, h, L, d = q.shape
    pairs = torch.cat([q[:, :, :, None, :].expand(B, h, L, L, d), k[:, :, None, :, :].expand(B, h, L, L, d)], dim=-1)
    return linear(pairs).squeeze(-1)


class SpatialCalibrator(_Stage):
    """``ac-spatial``: S' = S + E_order + E_dist before the 1/sqrt(d) scaling (so the seam's
    scaled scores get ``+ (E_order + E_dist) / sqrt(d)``). One order and one distance
    Linear(2d -> 1) per layer, shared by the heads; one scalar lambda per layer (randn init,
    not the N(0, 0.02) init). No loss of its own: trained through the recommendation loss."""

    def __init__(self, config: Any) -> None:
        self.use_order = bool(getattr(config, "use_order", True))
        self.use_distance = bool(getattr(config, "use_distance", True))
        self.separable = bool(getattr(config, "separable", True))
        super().__init__(config)

    def _build(self) -> None:
        d, n = self.head_dim, self.num_layers
        self.order = nn.ModuleList(nn.Linear(2 * d, 1) for _ in range(n)) if self.use_order else None
        self.distance = nn.ModuleList(nn.Linear(2 * d, 1) for _ in range(n)) if self.use_distance else None
        _init_linear(self, self.init_std)
        self.distance_scale = nn.Parameter(torch.randn(n)) if self.use_distance else None

    def spatial_terms(self, q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor, layer: int,
                      separable: bool | None = None) -> torch.Tensor:
        """E_order + E_dist [B, h, L, L] from per-head ``q``, ``k`` [B, h, L, d] and key
        positions [B, L] (query i's position = key i's)."""
        pair = pair_linear_separable if (self.separable if separable is None else separable) else pair_linear_direct
        rel = (positions[:, None, :] - positions[:, :, None])[:, None].to(q.dtype)  # [B, 1, L, L]: pos_j - pos_i
        terms = torch.zeros((), dtype=q.dtype, device=q.device)
        if self.order is not None:
            later = (rel > 0).to(q.dtype)
            p = torch.sigmoid(pair(q, k, self.order[layer]))
            terms = terms + later * torch.log(p + LOG_EPS) + (1 - later) * torch.log(1 - p + LOG_EPS)
        if self.distance is not None and self.distance_scale is not None:
            target = torch.log(rel.abs() + 1)
            miss = (target - pair(q, k, self.distance[layer])).square()
            terms = terms - miss * self.distance_scale[layer].square() / 2
        return terms

    def adjust_scores(self, scores: torch.Tensor, mask: torch.Tensor, *, layer: int = 0) -> torch.Tensor:
        if not self.enabled or not (self.use_order or self.use_distance):
            return scores
        self._require_built()
        B, h, L, _ = scores.shape
        inp = self._input(layer)
        if inp is None:
            q = k = scores.new_zeros(B, h, L, self.head_dim)
        else:
            q, k = _heads(inp.query(), self.heads), _heads(inp.key(), self.heads)
        positions = _key_positions(self._session, B, L, scores.device)
        return scores + self.spatial_terms(q, k, positions, layer) / math.sqrt(self.head_dim)

    def calibrate(self, attn: torch.Tensor, mask: torch.Tensor, *, layer: int = 0) -> torch.Tensor:
        return attn
