"""``ac-adversarial``: a learned perturbation mask, the calibrated attention and its gate."""

from __future__ import annotations

import math
from typing import Any

import torch
from pk_seqrec.models.encoder import masked_softmax
from torch import nn

from pk.core.errors import ConfigError
from pk_actsr.calibrators.base import _heads, _init_linear, _key_positions, _Stage


def perturbed_attention(attn: torch.Tensor, perturbation: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """A_adv = softmax(A * M + eps * (1 - M)) over unmasked keys, eps ~ N(0, 1) fresh (global
    torch RNG). Used only by L_adv; inference never draws eps."""
    noise = torch.randn_like(perturbation)
    return masked_softmax(attn * perturbation + noise * (1 - perturbation), mask)


def mask_penalty(masks: list[torch.Tensor], reference: tuple[int, int] | None = None) -> torch.Tensor:
    """mean over layers of ||1 - M_l||_F over the whole [B, h, w, w] tensor.

    ``reference = (B_ref, L_ref)`` measures each M_l as the reference does, on its fixed
    [B_ref, h, L_ref, L_ref] batch (256 x 50 x 50 in AC-TSR's release): the entries a
    trimmed pk batch lacks (padding columns, missing rows) are masked entries there, with
    M = 0, so each adds (1 - 0)^2 = 1 under the root. The norm, and the gradient on every
    real entry, then no longer depend on the batch's width or row count (a raw norm over a
    batch of ~44 rows x ~10 columns made w_mask ~10x stronger). A batch larger than the
    reference is measured as it is."""
    norms = []
    for m in masks:
        squares = (1 - m).square().sum()
        if reference is not None:
            B, h, w, w2 = m.shape
            missing = max(reference[0] * h * reference[1] * reference[1] - B * h * w * w2, 0)
            squares = squares + missing
        norms.append(squares.sqrt())
    return torch.stack(norms).mean()


class AdversarialCalibrator(_Stage):
    """``ac-adversarial``: from the attention A it receives (softmax of the seam's scores),
    M = Dropout(softmax(Q^ K^ᵀ / sqrt(d))), A_cal = softmax(A exp(1 - M)),
    A_comb = softmax(g A + (1 - g) A_cal) with g = sigmoid(W_g q~_i) read at each key's
    position (gate width = the host's attention length). Applies the attention dropout to A
    and M itself (as the reference does); hosts then skip their own dropout."""

    applies_attention_dropout = True

    def __init__(self, config: Any) -> None:
        self.combine = str(getattr(config, "combine", "gate"))
        if self.combine not in ("gate", "fixed"):
            raise ConfigError(f"calibrator.combine must be 'gate' or 'fixed', got {self.combine!r}")
        self.gate_width = int(getattr(config, "gate_width", 0))
        self.mask_loss_weight = float(getattr(config, "mask_loss_weight", 0.03))  # a constant, never trained
        self.penalty_batch = int(getattr(config, "penalty_batch", 256))
        self.penalty_len = int(getattr(config, "penalty_len", 0))
        p = float(getattr(config, "attn_dropout", -1.0))
        super().__init__(config)
        self.dropout = nn.Dropout(max(p, 0.0))
        self._dropout_from_host = p < 0

    @property
    def max_len(self) -> int | None:
        return self.gate_width or None

    @property
    def penalty_reference(self) -> tuple[int, int] | None:
        """(B_ref, L_ref) for :func:`mask_penalty`; None (raw norm) when ``penalty_batch`` is 0."""
        if self.penalty_batch <= 0:
            return None
        return self.penalty_batch, self.penalty_len or self.gate_width

    def mask_penalty(self, masks: list[torch.Tensor]) -> torch.Tensor:
        """mean_l ||1 - M_l||_F measured on the reference's batch shape (see :func:`mask_penalty`)."""
        return mask_penalty(masks, self.penalty_reference)

    def _build(self) -> None:
        H, n = self.hidden, self.num_layers
        self.attack_query = nn.ModuleList(nn.Linear(H, H) for _ in range(n))
        self.attack_key = nn.ModuleList(nn.Linear(H, H) for _ in range(n))
        if self.combine == "gate":
            if self.gate_width <= 0:
                raise ConfigError("calibrator.gate_width must be > 0 when the calibrator is used without a model")
            self.gate = nn.ModuleList(nn.Linear(H, self.gate_width) for _ in range(n))
        _init_linear(self, self.init_std)

    def attach(self, *, hidden: int, heads: int, layers: int, seq_len: int, attn_dropout: float) -> None:
        if self.gate_width and self.gate_width != seq_len:
            raise ConfigError(
                f"calibrator.gate_width = {self.gate_width} but the model's attention length is {seq_len} "
                "(dataset.max_len for ac-sasrec, max_len + 1 for ac-bert4rec); the gate needs one column per "
                f"key position: set calibrator.gate_width = {seq_len} (or 0 to take it from the model)"
            )
        self.gate_width = seq_len
        self.penalty_len = self.penalty_len or seq_len
        if self._dropout_from_host:
            self.dropout.p = float(attn_dropout)
        super().attach(hidden=hidden, heads=heads, layers=layers, seq_len=seq_len, attn_dropout=attn_dropout)

    def adversarial_parameters(self) -> list[nn.Parameter]:
        if not self._built:
            return []
        return [*self.attack_query.parameters(), *self.attack_key.parameters()]

    def perturbation_mask(self, query: torch.Tensor, key: torch.Tensor, mask: torch.Tensor, layer: int) -> torch.Tensor:
        """M [B, h, L, L] from the projected query/key [B, L, H]: rows sum to 1 over unmasked
        keys, 0 on masked ones, in [0, 1] (before dropout)."""
        q = _heads(self.attack_query[layer](query), self.heads)
        k = _heads(self.attack_key[layer](key), self.heads)
        return masked_softmax(q @ k.transpose(-1, -2) / math.sqrt(self.head_dim), mask)

    def gate_weights(self, query: torch.Tensor, positions: torch.Tensor, layer: int) -> torch.Tensor:
        """g [B, 1, L, L]: sigmoid(W_g q~_i) [B, L, gate_width], column = the key's position."""
        B, L, _ = query.shape
        if int(positions.max()) >= self.gate_width:
            raise ConfigError(f"a sequence position reaches {int(positions.max())} but calibrator.gate_width is "
                              f"{self.gate_width}; set calibrator.gate_width to the model's attention length")
        g = torch.sigmoid(self.gate[layer](query))
        return g.gather(2, positions[:, None, :].expand(B, L, L))[:, None]

    def adjust_scores(self, scores: torch.Tensor, mask: torch.Tensor, *, layer: int = 0) -> torch.Tensor:
        return scores

    def calibrate(self, attn: torch.Tensor, mask: torch.Tensor, *, layer: int = 0) -> torch.Tensor:
        if not self.enabled:
            return attn
        self._require_built()
        B, h, L, _ = attn.shape
        inp = self._input(layer)
        if inp is None:
            query = key = attn.new_zeros(B, L, self.hidden)
        else:
            query, key = inp.query(), inp.key()
        mask = mask.expand(B, 1, L, L)
        dropped = self.dropout(attn)
        perturbation = self.dropout(self.perturbation_mask(query, key, mask, layer))
        calibrated = masked_softmax(dropped * torch.exp(1 - perturbation), mask)
        if self.combine == "gate":
            gate = self.gate_weights(query, _key_positions(self._session, B, L, attn.device), layer)
            combined = gate * dropped + (1 - gate) * calibrated
        else:
            combined = masked_softmax(dropped + 0.5 * calibrated, mask)
        if self._session is not None and self._session.keep_trace:
            self._session.attention[layer] = dropped
            self._session.masks[layer] = perturbation
            self._session.attention_masks[layer] = mask
        return masked_softmax(combined, mask)
