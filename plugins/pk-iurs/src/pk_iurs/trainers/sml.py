"""SML (Zhang et al., SIGIR'20): a meta-learned transfer of old and fine-tuned weights, trained on the next block."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from pk.core.contracts import RunHandle
from pk_iurs.data import num_rows
from pk_iurs.trainers.base import LossOf, StreamTrainer


class Transfer(nn.Module):
    """f_Θ(W, Ŵ): item-embedding rows through [W, Ŵ, W⊙Ŵ/‖W‖] -> conv1x1(3->n1) -> GELU ->
    conv1x1(n1->n2) -> GELU -> flatten -> Linear(n2·H, hidden) -> GELU -> Linear(hidden, H),
    added to Ŵ (last layer zero-initialised, so f starts as "take Ŵ"); every other tensor:
    sigmoid(g)·W + (1 - sigmoid(g))·Ŵ with one gate g per tensor (initially ≈ Ŵ)."""

    EMB = "item_embedding.weight"

    def __init__(self, names: list[str], hidden: int, n1: int, n2: int, mlp_hidden: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.Conv1d(3, n1, 1), nn.GELU(), nn.Conv1d(n1, n2, 1), nn.GELU())
        self.mlp = nn.Sequential(nn.Linear(n2 * hidden, mlp_hidden), nn.GELU(), nn.Linear(mlp_hidden, hidden))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)
        self.names = [n for n in names if n != self.EMB]
        self.gates = nn.Parameter(torch.full((len(self.names),), -4.0))

    def forward(self, old: Mapping[str, torch.Tensor], new: Mapping[str, torch.Tensor],
                current: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Combine ``old`` (W) and ``new`` (Ŵ) parameters; item rows missing from ``old`` use
        Ŵ's, rows missing from both use ``current``'s (the model's freshly grown rows)."""
        out: dict[str, torch.Tensor] = {}
        for i, name in enumerate(self.names):
            a = torch.sigmoid(self.gates[i])
            out[name] = a * old[name] + (1 - a) * new[name]
        cur = current[self.EMB]
        w_new = new[self.EMB]
        if old[self.EMB].shape[0] < w_new.shape[0]:
            w_old = torch.cat([old[self.EMB], w_new[old[self.EMB].shape[0]:]])
        else:
            w_old = old[self.EMB][: w_new.shape[0]]
        norm = w_old.norm(dim=1, keepdim=True).clamp_min(1e-8)
        stack = torch.stack([w_old, w_new, w_old * w_new / norm], dim=1)  # [N, 3, H]
        rows = w_new + self.mlp(self.conv(stack).flatten(1))
        rows = torch.cat([w_new[:1], rows[1:]])  # the padding row is not transferred
        out[self.EMB] = torch.cat([rows, cur[rows.shape[0]:]]) if rows.shape[0] < cur.shape[0] else rows
        return out


class SMLTrainer(StreamTrainer):
    """SML (see ``SMLConfig``). Memory: W_{t-2} (``older``), Ŵ_{t-1} (``tuned``), Θ."""

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.older: dict[str, torch.Tensor] = {}
        self.tuned: dict[str, torch.Tensor] = {}
        self.transfer: Transfer | None = None
        self.transfer_state: dict[str, torch.Tensor] = {}

    def _transfer(self, model: nn.Module) -> Transfer:
        if self.transfer is None:
            cfg = self.config
            names = [n for n, _ in model.named_parameters()]
            hidden = int(model.item_embedding.weight.shape[1])
            with torch.random.fork_rng(devices=[]):  # fixed init, independent of the run's RNG stream
                torch.manual_seed(0)
                self.transfer = Transfer(names, hidden, cfg.n1, cfg.n2, cfg.mlp_hidden)
            if self.transfer_state:
                self.transfer.load_state_dict(self.transfer_state)
        return self.transfer

    def update(self, model: nn.Module, data: Any, t: int, run: RunHandle) -> dict[str, int]:
        cfg = self.config
        transfer = self._transfer(model)
        rows = data.train_rows([t])
        cost = {"examples": 0, "steps": 0, "epochs": 0}
        if num_rows(rows) == 0:
            return cost
        # (1) meta step: f(W_{t-2}, Ŵ_{t-1}) should do well on block t, the block after Ŵ_{t-1}'s data
        if self.tuned:
            view = LossOf(model)
            current = {n: p.detach() for n, p in model.named_parameters()}

            def meta_loss(batch: dict[str, torch.Tensor]) -> torch.Tensor:
                params = transfer(self.older, self.tuned, current)
                return torch.func.functional_call(view, {f"inner.{k}": v for k, v in params.items()}, (batch,))

            c = self.train_rows(model, data, rows, cfg.meta_epochs, run, meta_loss, params=transfer.parameters(),
                                lr=cfg.meta_lr)
            cost = {k: cost[k] + c[k] for k in cost}
        # (2) fine-tune Ŵ_t from W_{t-1}
        previous = {n: p.detach().clone() for n, p in model.named_parameters()}
        c = self.train_rows(model, data, rows, cfg.epochs, run)
        cost = {k: cost[k] + c[k] for k in cost}
        tuned = {n: p.detach().clone() for n, p in model.named_parameters()}
        # (3) W_t = f(W_{t-1}, Ŵ_t)
        with torch.no_grad():
            combined = transfer(previous, tuned, tuned)
            for n, p in model.named_parameters():
                p.copy_(combined[n])
        self.older, self.tuned = previous, tuned
        return cost

    def after_update(self, model: nn.Module, data: Any, t: int, run: RunHandle) -> None:
        if t == data.pretrain_blocks - 1:  # after pretraining: W_{P-2} := Ŵ_{P-1} := the pretrained model
            state = {n: p.detach().clone() for n, p in model.named_parameters()}
            self.older, self.tuned = state, dict(state)

    def state_dict(self) -> dict[str, Any]:
        transfer = self.transfer.state_dict() if self.transfer is not None else self.transfer_state
        return {"older": self.older, "tuned": self.tuned, "transfer": dict(transfer)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.older, self.tuned = dict(state["older"]), dict(state["tuned"])
        self.transfer_state = dict(state["transfer"])
        self.transfer = None
