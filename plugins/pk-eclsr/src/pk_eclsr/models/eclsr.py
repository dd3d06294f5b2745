"""ECL-SR (RecSys'23): equivariant contrastive learning for sequential recommendation.

One training step on a pk-seqrec batch (``seq`` [B, L] left-padded, ``targets`` [B, L]):

1. ``h = encode(seq)`` [B, L, H]; L_rec = CE at every position with a target.
2. Substitution positions (``models.augment.substitution_positions``, "sample" or "prob").
3. Generator (pk-seqrec BERT4Rec sharing the item table, trained jointly): L_gen = CE at
   the masked positions; each masked slot gets the generator's argmax item (padding
   excluded), chosen without gradient -> ``substituted``.
4. Labels r = [substituted != seq] on real positions (a correct reconstruction is "original").
5. Conditional discriminator = the encoder itself (same parameters): input embedding
   E[substituted] + h, causal mask, p = sigmoid(w . z) (Linear(H, 1, no bias));
   L_disc = mean BCE over real positions.
6. Dropout view: ``h2 = encode(seq)`` again; z = mean of h and h2 over the user's last
   min(k, n) REAL positions (``pool_recent``; the release's fixed-width batches also average
   padding outputs there); L_con = one-directional cosine InfoNCE, temperature 0.05,
   in-batch negatives: the other rows of the batch (``batch_sequences`` rows per batch).
7. L = w_rec L_rec + w_con L_con + w_disc L_disc + w_gen L_gen. A term whose weight is 0 is
   not computed (so with w_con = w_disc = w_gen = 0 the step is exactly SASRec's).

Inference: encoder only, scores of the newest position (``MaskTokenSASRec.predict``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from pk_seqrec.models.bert4rec import BERT4Rec
from pk_seqrec.models.encoder import init_weights
from torch import nn
from torch.nn import functional as F

from pk.core.contracts import DatasetInfo
from pk.core.errors import ConfigError
from pk_eclsr.models.augment import replacement_labels, substitution_positions
from pk_eclsr.models.base import MaskTokenSASRec
from pk_eclsr.models.losses import cosine_info_nce, discriminator_loss


def pool_recent(h: torch.Tensor, seq: torch.Tensor, k: int) -> torch.Tensor:
    """[B, H]: mean of ``h`` [B, W, H] over each row's last min(k, n) real positions of the
    left-padded ``seq`` [B, W] (padding outputs never count; a row with no real item gives 0)."""
    real = seq != 0
    recent = real.long().flip(1).cumsum(1).flip(1) <= k  # 1 at the newest real item, 2 before it...
    take = (real & recent).to(h.dtype)
    return (h * take[..., None]).sum(1) / take.sum(1, keepdim=True).clamp_min(1)


class ECLSR(MaskTokenSASRec):
    """See the module docstring. ``loss_terms(batch)`` returns the unweighted terms (and
    the substitution tensors under ``"_seq"`` (the input), ``"_positions"``,
    ``"_substituted"``, ``"_labels"``, ``"_prob"`` when computed); ``loss(batch)`` their
    weighted sum. ``batch_sequences`` > 0 asks pk-seqrec's next-item trainer for that many
    rows per batch (the contrastive term's in-batch negatives)."""

    def __init__(self, num_items: int, max_len: int, *, mask_strategy: str = "sample", mask_ratio: float = 0.2,
                 contrast_k: int = 10, temperature: float = 0.05, weight_rec: float = 1.0, weight_con: float = 2.0,
                 weight_disc: float = 0.05, weight_gen: float = 0.5, discriminator_bidirectional: bool = False,
                 batch_sequences: int = 0, **encoder_kwargs: Any) -> None:
        super().__init__(num_items, max_len, **encoder_kwargs)
        self.batch_sequences = int(batch_sequences)
        self.mask_strategy, self.mask_ratio = mask_strategy, mask_ratio
        self.contrast_k, self.temperature = contrast_k, temperature
        self.weights = {"rec": weight_rec, "con": weight_con, "disc": weight_disc, "gen": weight_gen}
        self.discriminator_bidirectional = discriminator_bidirectional
        generator_kwargs = {k: v for k, v in encoder_kwargs.items() if k != "calibrator"}
        self.generator = BERT4Rec(num_items, max_len, mask_ratio=mask_ratio, **generator_kwargs)
        self.generator.item_embedding = self.item_embedding  # one shared table (N + 2 rows), not a copy
        self.discriminator_head = nn.Linear(self.item_embedding.embedding_dim, 1, bias=False)
        init_weights(self.discriminator_head, self.init_std)

    def _generate(self, seq: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(L_gen, substituted seq): generator cloze loss at ``positions`` and its argmax fill-in."""
        masked = seq.masked_fill(positions, self.mask_token)
        hidden = self.generator.encode(masked)[positions]  # [M, H]
        logits = hidden @ self.item_weight().t() + self.generator.output_bias
        if not self.ce_include_padding:
            logits = logits.masked_fill(torch.arange(logits.shape[1], device=logits.device) == 0, float("-inf"))
        gen_loss = F.cross_entropy(logits, seq[positions]) if logits.shape[0] else logits.sum() * 0.0
        with torch.no_grad():
            fill = logits.detach().clone()
            fill[:, 0] = float("-inf")
            substituted = seq.clone()
            substituted[positions] = fill.argmax(1)
        return gen_loss, substituted

    def loss_terms(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        seq, targets = batch["seq"], self.next_targets(batch)
        w = self.weights
        h = self.encode(seq)
        terms: dict[str, torch.Tensor] = {"rec": self.rec_loss(h, targets)}
        if w["disc"] > 0 or w["gen"] > 0:
            positions = substitution_positions(seq, self.mask_ratio, self.mask_strategy, self.max_len)
            terms["gen"], substituted = self._generate(seq, positions)
            labels = replacement_labels(seq, substituted)
            terms.update({"_seq": seq, "_positions": positions, "_substituted": substituted, "_labels": labels})
            if w["disc"] > 0:
                condition = self.item_embedding(substituted) + h
                z = self.encode_embeddings(substituted, condition, bidirectional=self.discriminator_bidirectional)
                prob = torch.sigmoid(self.discriminator_head(z).squeeze(-1))
                terms["disc"] = discriminator_loss(prob, labels, seq != 0)
                terms["_prob"] = prob
        if w["con"] > 0:
            k = self.contrast_k
            h_view = self.encode(seq)  # same sequence, fresh dropout
            terms["con"] = cosine_info_nce(pool_recent(h, seq, k), pool_recent(h_view, seq, k), self.temperature)
        return terms

    def loss(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        terms = self.loss_terms(batch)
        return sum((self.weights[name] * terms[name] for name in self.weights
                    if name in terms and self.weights[name] != 0), start=terms["rec"] * 0.0)


def build_eclsr(config: Any, info: DatasetInfo, *, calibrator: Any = None, device: str = "cpu") -> ECLSR:
    if not info.num_items or not info.max_len:
        raise ConfigError("model eclsr needs a next-item dataset (info.num_items and info.max_len); "
                          "pick dataset.name = synthetic-seq, amazon-beauty, amazon-sports or ml-100k")
    if not 0.0 <= config.mask_ratio <= 1.0:
        raise ConfigError(f"model.mask_ratio must be in [0, 1], got {config.mask_ratio}")
    if config.contrast_k < 1 or config.temperature <= 0:
        raise ConfigError("model.contrast_k must be >= 1 and model.temperature > 0")
    return ECLSR(info.num_items, info.max_len, mask_strategy=config.mask_strategy, mask_ratio=config.mask_ratio,
                 contrast_k=config.contrast_k, temperature=config.temperature, weight_rec=config.weight_rec,
                 weight_con=config.weight_con, weight_disc=config.weight_disc, weight_gen=config.weight_gen,
                 discriminator_bidirectional=config.discriminator_bidirectional,
                 batch_sequences=config.batch_sequences, hidden=config.hidden,
                 layers=config.layers, heads=config.heads, inner=config.inner, dropout=config.dropout,
                 attn_dropout=config.attn_dropout, layer_norm_eps=config.layer_norm_eps, init_std=config.init_std,
                 ce_include_padding=config.ce_include_padding, calibrator=calibrator)
