"""Knowledge distillation from the previous model (IncCTR in next-item form) and the shared
hidden-state / CE helpers of the distilling strategies."""

from __future__ import annotations

import copy
from typing import Any

import torch
from pk_seqrec.models.encoder import next_item_loss
from torch import nn

from pk.core.contracts import RunHandle
from pk_iurs.trainers.base import StreamTrainer
from pk_iurs.trainers.memory import kd_loss


def hidden_states(model: nn.Module, seq: torch.Tensor) -> torch.Tensor:
    """[B, L, H] hidden states of a pk-seqrec model (``encode``)."""
    return model.encode(seq)


def ce_from_hidden(model: nn.Module, h: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The model's own next-item loss from hidden states (same as ``model.loss`` on a window batch)."""
    return next_item_loss(h, targets, model.item_embedding.weight, loss_type=getattr(model, "loss_type", "ce"),
                          include_padding=getattr(model, "ce_include_padding", True),
                          num_negatives=getattr(model, "num_negatives", 1))


class DistillTrainer(StreamTrainer):
    """IncCTR-style: (1 - lam) CE + lam * KD(M_{t-1} -> M_t) at every trained position of
    block t, over the items M_{t-1} knew."""

    def update(self, model: nn.Module, data: Any, t: int, run: RunHandle) -> dict[str, int]:
        cfg = self.config
        teacher = copy.deepcopy(model).eval()
        old = data.known[t - 1]

        def loss_fn(batch: dict[str, torch.Tensor]) -> torch.Tensor:
            h = hidden_states(model, batch["seq"])
            keep = batch["targets"] != 0
            with torch.no_grad():
                ht = hidden_states(teacher, batch["seq"])[keep]
            s_logits = h[keep] @ model.item_embedding.weight[1:old + 1].t()
            t_logits = ht @ teacher.item_embedding.weight[1:old + 1].t()
            return ((1 - cfg.lam) * ce_from_hidden(model, h, batch["targets"])
                    + cfg.lam * kd_loss(s_logits, t_logits, cfg.temperature))

        return self.train_rows(model, data, data.train_rows([t]), cfg.epochs, run, loss_fn)
