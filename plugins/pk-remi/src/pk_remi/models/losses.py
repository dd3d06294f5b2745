"""REMI's two add-ons and the shared pieces of multi-interest training (pure functions).

- ``hard_readout``: the interest with the largest inner product with the target item.
- ``ihn_log_weights`` / ``sampled_softmax_loss``: sampled softmax over negatives shared by
  the batch, with REMI's Interest-aware Hard Negative re-weighting
  ``w_j = exp(beta s_j) / mean_k exp(beta s_k)`` (self-normalised importance weights of
  q(j) ∝ exp(beta s_j) against the uniform proposal); ``beta = 0`` gives w_j = 1, i.e.
  plain sampled softmax (the logQ correction is a constant under uniform sampling and is
  omitted). loss = -log(e^{s_0} / (e^{s_0} + sum_j w_j e^{s_j})).
- ``routing_regulariser``: REMI's RR, ``sum_b ||diag((A - Ā)(A - Ā)^T / H)||^2``.
"""

from __future__ import annotations

import math

import torch


def hard_readout(interests: torch.Tensor, target_emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """interests [B, K, H], target_emb [B, H] -> (readout [B, H], chosen interest [B] long).
    The choice is argmax_k <v_k, e_target> (no gradient through the choice)."""
    logits = torch.einsum("bkh,bh->bk", interests, target_emb)
    chosen = logits.argmax(dim=-1)
    readout = interests.gather(1, chosen[:, None, None].expand(-1, 1, interests.shape[-1])).squeeze(1)
    return readout, chosen


def ihn_log_weights(neg_scores: torch.Tensor, beta: float) -> torch.Tensor:
    """log w_j for negatives' scores [B, M]: log(M) + log_softmax(beta * s)_j.
    Mean of w over the M negatives is 1; adding a constant to every score changes nothing;
    beta = 0 gives w = 1 exactly."""
    m = neg_scores.shape[-1]
    if beta == 0:
        return torch.zeros_like(neg_scores)
    return math.log(m) + torch.log_softmax(beta * neg_scores, dim=-1)


def ihn_weights(neg_scores: torch.Tensor, beta: float) -> torch.Tensor:
    """Importance weights w [B, M] (see ``ihn_log_weights``)."""
    return ihn_log_weights(neg_scores, beta).exp()


def sampled_softmax_loss(pos_scores: torch.Tensor, neg_scores: torch.Tensor, beta: float = 0.0,
                         detach_weights: bool = False) -> torch.Tensor:
    """Mean over the batch of -log(e^{s0} / (e^{s0} + sum_j w_j e^{s_j})).

    pos_scores [B]; neg_scores [B, M] (the same M shared negatives for every row; an
    accidental hit of the positive stays in). With ``detach_weights`` the IHN weights are
    constants for the gradient (the reference lets gradients flow through them)."""
    log_w = ihn_log_weights(neg_scores, beta)
    if detach_weights:
        log_w = log_w.detach()
    log_neg = torch.logsumexp(neg_scores + log_w, dim=-1)
    return (torch.logaddexp(pos_scores, log_neg) - pos_scores).mean()


def routing_regulariser(routing: torch.Tensor, hidden: int) -> torch.Tensor:
    """RR for routing matrices [B, K, L]: centre each row over all L positions (padding
    included), C = (A - Ā)(A - Ā)^T / hidden, return sum over batch and k of C_kk^2
    (summed, not averaged, over the batch). 0 for rows constant over L; > 0 otherwise."""
    centred = routing - routing.mean(dim=-1, keepdim=True)
    diag = (centred * centred).sum(dim=-1) / hidden  # C_kk, [B, K]
    return (diag * diag).sum()


def routing_stats(routing: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row diagnostics for routing [B, K, L] and mask [B, L] (True = real item):
    (max weight [B, K], entropy over real positions normalised by log(#real) [B, K];
    rows with a single real item get entropy 0). Rows are renormalised over real items."""
    w = routing * mask[:, None, :]
    w = w / w.sum(-1, keepdim=True).clamp_min(1e-12)
    ent = -(w * w.clamp_min(1e-12).log()).sum(-1)
    n = mask.sum(-1).double().clamp_min(1)[:, None]
    norm = torch.where(n > 1, ent.double() / n.log().clamp_min(1e-12), torch.zeros_like(ent.double()))
    return w.max(-1).values, norm.float()
