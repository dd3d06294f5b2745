"""Contrastive and discriminator losses (shapes: B batch, H hidden, L length)."""

from __future__ import annotations

import torch
from torch.nn import functional as F


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Symmetric InfoNCE over 2B views (SimCLR / ICLRec's NCELoss): ``z1``, ``z2`` [B, D].

    For view i of one side, the positive is the same row of the other side; negatives are
    the other 2B - 2 views (both sides, self excluded). Similarity = dot product /
    ``temperature``. Returns the mean over the 2B anchors.
    """
    B = z1.shape[0]
    sim11 = z1 @ z1.t() / temperature
    sim22 = z2 @ z2.t() / temperature
    sim12 = z1 @ z2.t() / temperature
    eye = torch.eye(B, dtype=torch.bool, device=z1.device)
    sim11 = sim11.masked_fill(eye, float("-inf"))
    sim22 = sim22.masked_fill(eye, float("-inf"))
    # row i < B: [z1_i . z2_*, z1_i . z1_*]; row B + i: [z2_i . z2_*, z2_i . z1_*]; positive at column i / B + i
    logits = torch.cat([torch.cat([sim12, sim11], 1), torch.cat([sim22, sim12.t()], 1)], 0)
    labels = torch.arange(2 * B, device=z1.device)
    return F.cross_entropy(logits, labels)


def cosine_info_nce(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.05) -> torch.Tensor:
    """One-directional InfoNCE (SimCSE, ECL-SR's L_con): logits[b, c] = cos(z1_b, z2_c) /
    ``temperature``; cross-entropy with the diagonal as positives. ``z1``, ``z2`` [B, D]."""
    logits = F.cosine_similarity(z1[:, None, :], z2[None, :, :], dim=-1) / temperature
    return F.cross_entropy(logits, torch.arange(z1.shape[0], device=z1.device))


def discriminator_loss(prob: torch.Tensor, labels: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy over real positions; p and 1 - p are each clamped to
    [1e-8, 1 - 1e-8] before the log (as released; clamping p alone would give log(0) in
    float32, where 1 - 1e-8 == 1). ``prob``, ``labels`` float [B, L]; ``real`` bool [B, L]."""
    log_p = torch.log(prob.clamp(1e-8, 1 - 1e-8))
    log_not_p = torch.log((1 - prob).clamp(1e-8, 1 - 1e-8))
    per_position = -(labels * log_p + (1 - labels) * log_not_p)
    return (per_position * real).sum() / real.sum().clamp_min(1)
