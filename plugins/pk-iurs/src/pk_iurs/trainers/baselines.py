"""The two baselines of the survey: naive fine-tuning (IU) and full / windowed retraining (BURS)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from pk.core.contracts import RunHandle
from pk_iurs.trainers.base import StreamTrainer, clone_state


class FineTuneTrainer(StreamTrainer):
    """IU: warm start, ``epochs`` on block t only."""

    def update(self, model: nn.Module, data: Any, t: int, run: RunHandle) -> dict[str, int]:
        return self.train_rows(model, data, data.train_rows([t]), self.config.epochs, run)


class FullRetrainTrainer(StreamTrainer):
    """BURS: retrain on blocks 0..t (or the last ``window``) from the initial weights
    (``from_scratch``; rows of items that arrived later get the init policy) or warm."""

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.initial: dict[str, torch.Tensor] = {}

    def on_start(self, model: nn.Module, data: Any, run: RunHandle) -> None:
        self.initial = clone_state(model.state_dict())

    def update(self, model: nn.Module, data: Any, t: int, run: RunHandle) -> dict[str, int]:
        cfg = self.config
        first = max(0, t + 1 - cfg.window) if cfg.window > 0 else 0
        if cfg.from_scratch and self.initial:
            emb = "item_embedding.weight"
            cur = model.state_dict()[emb]
            init_rows = self.initial[emb]
            if cur.shape[0] > init_rows.shape[0]:  # rows grown just now (untrained) join the initial weights
                self.initial[emb] = torch.cat([init_rows, cur[init_rows.shape[0]:].detach().clone()])
            model.load_state_dict({k: v.clone() for k, v in self.initial.items()})
        epochs = cfg.retrain_epochs if cfg.retrain_epochs >= 0 else cfg.pretrain_epochs
        return self.train_rows(model, data, data.train_rows(range(first, t + 1)), epochs, run)

    def state_dict(self) -> dict[str, Any]:
        return {"initial": self.initial}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.initial = dict(state.get("initial", {}))
