"""CL4SRec-style contrastive SASRec (the baseline family of ECL-SR).

Step: ``h = encode(seq)``, L_rec = CE at every position with a target; two views of ``seq``
(``models.augment.random_augment``: crop / mask / reorder, one per row), each encoded to the
newest position's hidden state z1, z2 [B, H]; L = L_rec + cl_weight * NT-Xent(z1, z2).
Inference: the encoder only (``MaskTokenSASRec.predict``). ``batch_sequences`` > 0 asks
pk-seqrec's next-item trainer for that many rows per batch (the in-batch negatives).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from pk.core.contracts import DatasetInfo
from pk.core.errors import ConfigError
from pk_eclsr.models.augment import random_augment
from pk_eclsr.models.base import MaskTokenSASRec
from pk_eclsr.models.losses import nt_xent


class CL4SRec(MaskTokenSASRec):
    """See the module docstring; ``loss_terms`` returns {"rec", "cl"} unweighted."""

    def __init__(self, num_items: int, max_len: int, *, crop_ratio: float = 0.2, mask_ratio: float = 0.7,
                 reorder_ratio: float = 0.2, cl_weight: float = 0.1, temperature: float = 1.0,
                 batch_sequences: int = 0, **encoder_kwargs: Any) -> None:
        super().__init__(num_items, max_len, **encoder_kwargs)
        self.batch_sequences = int(batch_sequences)  # rows per batch asked of the trainer (in-batch negatives)
        self.ratios = {"crop_ratio": crop_ratio, "mask_ratio": mask_ratio, "reorder_ratio": reorder_ratio}
        self.cl_weight, self.temperature = cl_weight, temperature

    def views(self, seq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Two independent augmented views of ``seq`` (same layout, [MASK] = N + 1)."""
        return (random_augment(seq, mask_token=self.mask_token, **self.ratios),
                random_augment(seq, mask_token=self.mask_token, **self.ratios))

    def loss_terms(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        seq = batch["seq"]
        terms = {"rec": self.rec_loss(self.encode(seq), self.next_targets(batch))}
        if self.cl_weight > 0:
            view1, view2 = self.views(seq)
            terms["cl"] = nt_xent(self.user_state(view1), self.user_state(view2), self.temperature)
        return terms

    def loss(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        terms = self.loss_terms(batch)
        return terms["rec"] + self.cl_weight * terms["cl"] if "cl" in terms else terms["rec"]


def build_cl4srec(config: Any, info: DatasetInfo, *, calibrator: Any = None, device: str = "cpu") -> CL4SRec:
    if not info.num_items or not info.max_len:
        raise ConfigError("model cl4srec needs a next-item dataset (info.num_items and info.max_len); "
                          "pick dataset.name = synthetic-seq, amazon-beauty, amazon-sports or ml-100k")
    for key in ("crop_ratio", "mask_ratio", "reorder_ratio"):
        if not 0.0 <= getattr(config, key) <= 1.0:
            raise ConfigError(f"model.{key} must be in [0, 1], got {getattr(config, key)}")
    return CL4SRec(info.num_items, info.max_len, crop_ratio=config.crop_ratio, mask_ratio=config.mask_ratio,
                   reorder_ratio=config.reorder_ratio, cl_weight=config.cl_weight, temperature=config.temperature,
                   batch_sequences=config.batch_sequences,
                   hidden=config.hidden, layers=config.layers, heads=config.heads, inner=config.inner,
                   dropout=config.dropout, attn_dropout=config.attn_dropout, layer_norm_eps=config.layer_norm_eps,
                   init_std=config.init_std, ce_include_padding=config.ce_include_padding, calibrator=calibrator)
