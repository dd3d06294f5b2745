"""Parameter regularisation: EWC (diagonal Fisher) and plain L2 to the previous model."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from pk.core.contracts import RunHandle
from pk.core.torch_helpers import to_device
from pk_iurs.data import batches, num_rows
from pk_iurs.trainers.base import StreamTrainer
from pk_iurs.trainers.memory import ewc_penalty


class EWCTrainer(StreamTrainer):
    """EWC / L2-to-previous (see ``EWCConfig``)."""

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.anchor: dict[str, torch.Tensor] = {}
        self.fisher: dict[str, torch.Tensor] = {}

    def update(self, model: nn.Module, data: Any, t: int, run: RunHandle) -> dict[str, int]:
        lam = float(self.config.lam)

        def loss_fn(batch: dict[str, torch.Tensor]) -> torch.Tensor:
            return model.loss(batch) + lam * ewc_penalty(model, self.anchor, self.fisher)

        return self.train_rows(model, data, data.train_rows([t]), self.config.epochs, run,
                               loss_fn if self.anchor else None)

    def after_update(self, model: nn.Module, data: Any, t: int, run: RunHandle) -> None:
        cfg = self.config
        self.anchor = {n: p.detach().clone() for n, p in model.named_parameters()}
        if cfg.mode == "l2":
            self.fisher = {n: torch.ones_like(p) for n, p in self.anchor.items()}
            return
        blocks = range(data.pretrain_blocks) if t == data.pretrain_blocks - 1 else [t]
        pairs = data.interactions(blocks)
        fisher = {n: torch.zeros_like(p) for n, p in self.anchor.items()}
        if pairs:
            pick = torch.randperm(len(pairs), generator=run.generator("memory"))[: cfg.fisher_samples].tolist()
            rows = data.rows_for([pairs[i] for i in pick])
            was = model.training
            model.eval()
            n = num_rows(rows)
            for batch in batches(data.info, rows, max(1, cfg.fisher_batch_size)):
                batch = to_device(batch, run.device)
                model.zero_grad(set_to_none=True)
                model.loss(batch).backward()
                size = int(batch["seq"].shape[0])
                for name, p in model.named_parameters():
                    if p.grad is not None:
                        fisher[name] += p.grad.detach() ** 2 * size / n
            model.zero_grad(set_to_none=True)
            model.train(was)
        self.fisher = fisher

    def state_dict(self) -> dict[str, Any]:
        return {"anchor": self.anchor, "fisher": self.fisher}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.anchor, self.fisher = dict(state["anchor"]), dict(state["fisher"])
