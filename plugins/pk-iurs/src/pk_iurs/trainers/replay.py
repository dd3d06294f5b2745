"""Sample replay: SPMF-style reservoir replay and ADER's exemplar replay with adaptive distillation."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
from pk_seqrec.models.encoder import last_real_index
from torch import nn

from pk.core.contracts import RunHandle
from pk.core.torch_helpers import to_device
from pk_iurs.data import concat_rows, num_rows
from pk_iurs.trainers.base import StreamTrainer
from pk_iurs.trainers.distill import ce_from_hidden, hidden_states
from pk_iurs.trainers.memory import Reservoir, ader_lambda, herding, kd_loss


@torch.no_grad()
def _target_scores(model: nn.Module, data: Any, rows: dict[str, torch.Tensor], device: str,
                   batch_size: int = 512) -> torch.Tensor:
    """[R] the model's score of each row's target."""
    was = model.training
    model.eval()
    out = []
    for start in range(0, num_rows(rows), batch_size):
        batch = to_device({k: v[start:start + batch_size] for k, v in rows.items()}, device)
        scores = model.predict(batch)
        out.append(scores.gather(1, batch["target"][:, None]).squeeze(1).float().cpu())
    model.train(was)
    return torch.cat(out) if out else torch.zeros(0)


class ReservoirReplayTrainer(StreamTrainer):
    """SPMF-style reservoir replay (see ``ReservoirReplayConfig``)."""

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.reservoir = Reservoir(int(config.reservoir_size))

    def update(self, model: nn.Module, data: Any, t: int, run: RunHandle) -> dict[str, int]:
        cfg = self.config
        new_rows = data.train_rows([t])
        n_new = len(data.interactions([t]))
        k = min(len(self.reservoir.items), round(cfg.replay_ratio * n_new)) if n_new else 0
        replay: list[tuple[int, int]] = []
        if k > 0:
            gen = run.generator("memory")
            pool = list(self.reservoir.items)
            if cfg.sampling == "spmf":
                scores = _target_scores(model, data, data.rows_for(pool), run.device)
                rank = torch.empty(len(pool))
                rank[torch.argsort(scores, descending=True, stable=True)] = torch.arange(len(pool), dtype=torch.float32)
                picked = torch.multinomial(torch.exp(rank / len(pool)), k, replacement=False, generator=gen)
            else:
                picked = torch.randperm(len(pool), generator=gen)[:k]
            replay = [pool[i] for i in picked.tolist()]
        rows = concat_rows([new_rows, data.rows_for(replay)]) if replay else new_rows
        return self.train_rows(model, data, rows, cfg.epochs, run)

    def after_update(self, model: nn.Module, data: Any, t: int, run: RunHandle) -> None:
        blocks = range(data.pretrain_blocks) if t == data.pretrain_blocks - 1 else [t]
        self.reservoir.extend(data.interactions(blocks), run.generator("memory"))

    def state_dict(self) -> dict[str, Any]:
        return {"reservoir": self.reservoir.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.reservoir.load_state_dict(state["reservoir"])


class ADERTrainer(StreamTrainer):
    """ADER (see ``ADERConfig``): CE on block t and the exemplars, plus lam_t * KD from
    M_{t-1} on the exemplars; exemplars re-selected from block t and the old exemplars."""

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.exemplars: list[tuple[int, int]] = []
        self.last_lambda = 0.0

    def update(self, model: nn.Module, data: Any, t: int, run: RunHandle) -> dict[str, int]:
        cfg = self.config
        new_rows = data.train_rows([t])
        n_new = len(data.interactions([t]))
        self.last_lambda = lam = ader_lambda(data.known[t - 1], data.known[t], len(self.exemplars), n_new, cfg.lam_base)
        if not self.exemplars or n_new == 0:
            return self.train_rows(model, data, new_rows, cfg.epochs, run)
        memory = data.rows_for(self.exemplars)
        new_rows = {**new_rows, "memory": torch.zeros(num_rows(new_rows), dtype=torch.bool)}
        memory["memory"] = torch.ones(num_rows(memory), dtype=torch.bool)
        rows = {k: torch.cat([new_rows[k], memory[k]]) for k in new_rows}
        teacher = copy.deepcopy(model).eval()
        old = data.known[t - 1]

        def loss_fn(batch: dict[str, torch.Tensor]) -> torch.Tensor:
            h = hidden_states(model, batch["seq"])
            loss = ce_from_hidden(model, h, batch["targets"])
            mem = batch["memory"]
            if bool(mem.any()):
                seq = batch["seq"][mem]
                last = last_real_index(seq)
                hs = h[mem][torch.arange(seq.shape[0]), last]
                with torch.no_grad():
                    ht = hidden_states(teacher, seq)[torch.arange(seq.shape[0]), last]
                s_logits = hs @ model.item_embedding.weight[1:old + 1].t()
                t_logits = ht @ teacher.item_embedding.weight[1:old + 1].t()
                loss = loss + lam * kd_loss(s_logits, t_logits, cfg.temperature)
            return loss

        return self.train_rows(model, data, rows, cfg.epochs, run, loss_fn)

    @torch.no_grad()
    def after_update(self, model: nn.Module, data: Any, t: int, run: RunHandle) -> None:
        cfg = self.config
        blocks = range(data.pretrain_blocks) if t == data.pretrain_blocks - 1 else [t]
        candidates = list(self.exemplars) + data.interactions(blocks)
        if not candidates or cfg.exemplars <= 0:
            self.exemplars = []
            return
        targets = torch.tensor([data.sequences[u][j] for u, j in candidates])
        items, counts = torch.unique(targets, return_counts=True)
        quota = torch.floor(counts.double() * cfg.exemplars / len(candidates) + 0.5).long()
        feats = None
        if cfg.selection == "herding":
            rows = data.rows_for(candidates)
            was = model.training
            model.eval()
            parts = []
            for start in range(0, len(candidates), 512):
                seq = rows["seq"][start:start + 512].to(run.device)
                parts.append(hidden_states(model, seq)[torch.arange(seq.shape[0]), last_real_index(seq)].float().cpu())
            model.train(was)
            feats = torch.cat(parts)
        gen = run.generator("memory")
        chosen: list[tuple[int, int]] = []
        for item, m in zip(items.tolist(), quota.tolist(), strict=True):
            if m <= 0:
                continue
            idx = torch.nonzero(targets == item).flatten()
            if feats is not None:
                pick = [int(idx[i]) for i in herding(feats[idx], m)]
            else:
                pick = idx[torch.randperm(len(idx), generator=gen)[:m]].tolist()
            chosen += [candidates[i] for i in pick]
        self.exemplars = chosen

    def state_dict(self) -> dict[str, Any]:
        return {"exemplars": [list(x) for x in self.exemplars], "lambda": self.last_lambda}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.exemplars = [(int(u), int(j)) for u, j in state["exemplars"]]
        self.last_lambda = float(state.get("lambda", 0.0))
