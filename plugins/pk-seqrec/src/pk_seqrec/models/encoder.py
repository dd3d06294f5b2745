"""The Transformer encoder shared by SASRec and BERT4Rec (and every later plugin: do not
copy it; pass a calibrator or subclass the model instead).

Attention seam, per layer ``i`` (``scores`` [B, h, L, L], ``mask`` bool [B, 1, L, L],
True = the query may attend to the key)::

    scores = Q Kᵀ / sqrt(d)
    scores = calibrator.adjust_scores(scores, mask, layer=i)
    attn   = masked_softmax(scores, mask)          # exactly 0 on masked keys
    attn   = calibrator.calibrate(attn, mask, layer=i)
    attn   = dropout(attn)
    out    = attn @ V

A calibrator that is an ``nn.Module`` becomes the submodule ``encoder.calibrator`` (saved
and optimised with the model); ``calibrator=None`` skips both calls.

Fused path: with ``calibrator=None`` and ``fused=True`` (the default; a constructor flag of
:class:`TransformerEncoder`, and an attribute of each :class:`MultiHeadAttention`) the seam
above is computed by ``F.scaled_dot_product_attention`` with the same boolean mask and
dropout ``attn_dropout.p`` in training mode (0 in eval). A query row with no allowed key
(a left-padding position under the causal mask, an all-padding row) gets a zero context, as
``masked_softmax`` gives it: SDPA sees that row unmasked and the row is zeroed afterwards.
Eval outputs equal the explicit path's to float rounding; training draws a different dropout
pattern (same distribution). ``fused=False`` always runs the explicit seam (tests, and any
code that must see ``attn``); a calibrator always does.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax over the last dim restricted to ``mask`` (bool, broadcastable to ``scores``).
    Masked keys get exactly 0; a row with no allowed key is all 0 (never NaN)."""
    filled = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    return torch.softmax(filled, dim=-1) * mask


def causal_mask(seq: torch.Tensor) -> torch.Tensor:
    """[B, 1, L, L] bool: query j may attend key k iff k <= j and key k is not padding."""
    L = seq.shape[1]
    tril = torch.ones(L, L, dtype=torch.bool, device=seq.device).tril()
    return tril[None, None] & (seq != 0)[:, None, None, :]


def padding_mask(seq: torch.Tensor) -> torch.Tensor:
    """[B, 1, 1, L] bool: any query may attend every non-padding key (bidirectional)."""
    return (seq != 0)[:, None, None, :]


def position_ids(seq: torch.Tensor) -> torch.Tensor:
    """[B, L] long: 0 at the oldest real item, counting up; padding gets 0. Counting from
    the first real item makes scores independent of left vs right padding and makes the
    output at position t equal to that of the length-(t+1) prefix."""
    real = (seq != 0).long()
    return (real.cumsum(1) - 1).clamp_min(0) * real


class MultiHeadAttention(nn.Module):
    """RecBole-style self-attention block: Q/K/V Linear(H, H), the seam above (fused by SDPA
    when ``fused`` and no calibrator), output Linear(H, H), dropout, post-LayerNorm residual."""

    def __init__(self, hidden: int, heads: int, dropout: float, attn_dropout: float, eps: float,
                 fused: bool = True) -> None:
        super().__init__()
        self.fused = fused
        if hidden % heads:
            raise ValueError(f"hidden ({hidden}) must be divisible by heads ({heads})")
        self.heads, self.head_dim = heads, hidden // heads
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)
        self.attn_dropout = nn.Dropout(attn_dropout)
        self.out = nn.Linear(hidden, hidden)
        self.out_dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(hidden, eps=eps)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        B, L, _ = x.shape
        return x.view(B, L, self.heads, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, calibrator: Any = None, layer: int = 0,
                queries: int | None = None) -> torch.Tensor:
        """``x`` [B, L, H] -> [B, L, H]; with ``queries`` = n only the last n positions query
        (keys and values still come from all L) and the output is [B, n, H]."""
        xq = x if queries is None else x[:, -queries:]
        if queries is not None:
            if calibrator is not None:
                raise ValueError("a calibrator needs every query position (queries=None)")
            if mask.shape[-2] > 1:
                mask = mask[..., -queries:, :]
        q, k, v = self._split(self.query(xq)), self._split(self.key(x)), self._split(self.value(x))
        if calibrator is None and self.fused:
            ctx = self._fused(q, k, v, mask).transpose(1, 2).reshape(xq.shape)
            return self.norm(xq + self.out_dropout(self.out(ctx)))
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim)
        if calibrator is not None:
            scores = calibrator.adjust_scores(scores, mask, layer=layer)
        attn = masked_softmax(scores, mask)
        if calibrator is not None:
            attn = calibrator.calibrate(attn, mask, layer=layer)
        ctx = (self.attn_dropout(attn) @ v).transpose(1, 2).reshape(xq.shape)
        return self.norm(xq + self.out_dropout(self.out(ctx)))

    def _fused(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``attn_dropout(masked_softmax(q kᵀ / sqrt(d), mask)) @ v`` by SDPA; rows of ``mask``
        with no allowed key give 0 (SDPA would give NaN or a uniform average there)."""
        p = getattr(self.attn_dropout, "p", 0.0) if self.training else 0.0
        has_key = mask.any(-1, keepdim=True)  # [B, 1, n, 1]
        ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=mask | ~has_key, dropout_p=p)
        return ctx * has_key


class FeedForward(nn.Module):
    """Linear(H, inner) -> GELU -> Linear(inner, H) -> dropout, post-LayerNorm residual."""

    def __init__(self, hidden: int, inner: int, dropout: float, eps: float) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(hidden, inner), nn.GELU(), nn.Linear(inner, hidden), nn.Dropout(dropout))
        self.norm = nn.LayerNorm(hidden, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x + self.net(x))


class TransformerEncoder(nn.Module):
    """``forward(x [B, L, H], mask [B, 1|h, L, L] bool) -> [B, L, H]`` through ``layers``
    post-LN blocks, with the calibrator seam in every attention (layer index 0..layers-1).
    ``fused``: SDPA where no calibrator is attached (module docstring); settable, it sets every layer."""

    def __init__(self, hidden: int = 64, layers: int = 2, heads: int = 2, inner: int = 256, dropout: float = 0.5,
                 attn_dropout: float = 0.5, eps: float = 1e-12, calibrator: Any = None, fused: bool = True) -> None:
        super().__init__()
        self.attention = nn.ModuleList(MultiHeadAttention(hidden, heads, dropout, attn_dropout, eps, fused)
                                       for _ in range(layers))
        self.feed_forward = nn.ModuleList(FeedForward(hidden, inner, dropout, eps) for _ in range(layers))
        self.num_heads = heads
        self.calibrator = calibrator  # an nn.Module calibrator is registered as a submodule here

    @property
    def fused(self) -> bool:
        return all(a.fused for a in self.attention)

    @fused.setter
    def fused(self, value: bool) -> None:
        for a in self.attention:
            a.fused = bool(value)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """``last_only``: the last layer computes only position L-1 (output [B, 1, H]); the
        same values as ``forward(x, mask)[:, -1:]`` at a fraction of the last layer's cost.
        Not with a calibrator (its terms are defined on every query)."""
        if last_only and self.calibrator is not None:
            raise ValueError("a calibrator needs every query position; call with last_only=False")
        last = len(self.attention) - 1
        for i, (attn, ff) in enumerate(zip(self.attention, self.feed_forward, strict=True)):
            x = ff(attn(x, mask, self.calibrator, i, queries=1 if last_only and i == last else None))
        return x


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """RecBole init: Linear and Embedding ~ N(0, std), Linear bias 0, LayerNorm 1 / 0."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, mean=0.0, std=std)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def last_real_index(seq: torch.Tensor) -> torch.Tensor:
    """[B] index of the most recent real item in each row (works for either padding side)."""
    L = seq.shape[1]
    ramp = torch.arange(1, L + 1, device=seq.device)
    return ((seq != 0) * ramp).argmax(1)


def score_all(h: torch.Tensor, item_weight: torch.Tensor) -> torch.Tensor:
    """[B, H] x [N + 1, H] -> [B, N + 1] scores with column 0 (padding) = -inf."""
    scores = h @ item_weight.t()
    scores[:, 0] = float("-inf")
    return scores


def next_item_loss(
    h: torch.Tensor, targets: torch.Tensor, item_weight: torch.Tensor, *, loss_type: str = "ce",
    include_padding: bool = True, num_negatives: int = 1,
) -> torch.Tensor:
    """Mean next-item loss over positions with a target (``targets != 0``).

    ``h`` [..., H] hidden states, ``targets`` [...] item ids aligned with them, ``item_weight``
    [N + 1, H] (row 0 padding). "ce": softmax over all items (row 0 included when
    ``include_padding``, RecBole's quirk). "bpr": -log sigmoid(s_pos - s_neg) over
    ``num_negatives`` uniform negatives from 1..N per position (global torch RNG).
    """
    keep = targets != 0
    hs, tg = h[keep], targets[keep]
    if tg.numel() == 0:
        return h.sum() * 0.0
    if loss_type == "ce":
        logits = hs @ item_weight.t()
        if not include_padding:
            logits = logits.clone()
            logits[:, 0] = float("-inf")
        return nn.functional.cross_entropy(logits, tg)
    if loss_type == "bpr":
        n_items = item_weight.shape[0] - 1
        neg = torch.randint(1, n_items + 1, (tg.shape[0], num_negatives), device=tg.device)
        pos_score = (hs * item_weight[tg]).sum(-1, keepdim=True)
        neg_score = (hs[:, None, :] * item_weight[neg]).sum(-1)
        return -nn.functional.logsigmoid(pos_score - neg_score).mean()
    raise ValueError(f"loss_type must be 'ce' or 'bpr', got {loss_type!r}")
