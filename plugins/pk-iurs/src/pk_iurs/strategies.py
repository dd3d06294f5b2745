"""The streaming protocol (``StreamTrainer.fit``) and one trainer per update strategy.

``fit``: resize the model's item table to the pretraining vocabulary, then for
t = P-1 .. T-2: grow the table to ``known[t]`` (old rows bit-identical), update on block t
(t = P-1: the shared pretraining on blocks 0..P-1), let the strategy maintain its memory,
then test on block t+1. Update time (seconds, wall clock) covers growth, update and memory
maintenance; ``examples`` counts the next-item targets that entered a training loss. A
``last`` checkpoint after every block holds the model, the strategy memory, the generator
and global RNG states and the per-block records, so a resumed stream is bit-identical.
At the end the table is grown to all ``info.num_items`` items so ``model.pt`` matches the
dataset (rows of items first seen in the last block are untrained initial rows).
"""

from __future__ import annotations

import copy
import json
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

import torch
from pk_seqrec.evaluation import full_ranking_metrics
from pk_seqrec.models.encoder import last_real_index, next_item_loss
from torch import nn

from pk.core.contracts import RunHandle
from pk.core.errors import ConfigError
from pk.core.seed import capture_rng_state, restore_rng_state
from pk.core.utils import make_optimizer, to_device
from pk_iurs.data import batches, concat_rows, num_rows
from pk_iurs.growth import item_count, set_item_count
from pk_iurs.memory import Reservoir, ader_lambda, ewc_penalty, herding, kd_loss


def _clone(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in state.items()}


@torch.no_grad()
def test_block(model: nn.Module, data: Any, block: int, ks: list[int], batch_size: int = 512, device: str = "cpu") -> dict[str, float]:
    """Mean full-ranking HR/NDCG/MRR@K of ``model`` on block ``block``'s test examples,
    ranking over the ``known[block-1]`` items known before it (score columns beyond are
    cut); a target unknown to the model ("miss" rule) counts as a miss."""
    rows = data.test_rows(block)
    known = data.known[block - 1]
    was = model.training
    model.eval()
    sums: dict[str, float] = {}
    n = int(rows["target"].shape[0])
    for start in range(0, n, batch_size):
        batch = to_device({k: v[start:start + batch_size] for k, v in rows.items()}, device)
        batch["seq"] = batch["seq"][:, -max(int(batch["len"].max()), 1):]
        scores = model.predict(batch)[:, : known + 1].float()
        target = batch["target"]
        unknown = target > known
        per = full_ranking_metrics(scores, target.clamp_max(known), ks)
        for name, values in per.items():
            sums[name] = sums.get(name, 0.0) + float(values.masked_fill(unknown, 0.0).sum())
    model.train(was)
    out = {name: total / max(n, 1) for name, total in sums.items()}
    out["test_examples"] = float(n)
    return out


class StreamTrainer(ABC):
    """Base of every strategy (see the module docstring). Subclasses override ``update``
    (block t >= P) and optionally ``after_update`` (memory upkeep, also run after the
    pretraining) and ``state_dict`` / ``load_state_dict`` (their memory)."""

    resumable = True

    def __init__(self, config: Any) -> None:
        self.config = config
        kind, _, k = str(config.metric).partition("@")
        if kind not in ("hr", "ndcg", "mrr") or not k.isdigit() or int(k) not in list(config.ks):
            raise ConfigError(f"trainer.metric must look like hr@20 with K in trainer.ks={list(config.ks)}, got {config.metric!r}")
        self.ks = [int(x) for x in config.ks]

    # -- shared training loop -------------------------------------------------------
    def train_rows(self, model: nn.Module, data: Any, rows: dict[str, torch.Tensor], epochs: int, run: RunHandle,
                   loss_fn: Any = None, params: Any = None) -> dict[str, int]:
        """``epochs`` shuffled passes over ``rows`` with a fresh optimizer; ``loss_fn(batch)``
        defaults to ``model.loss``. An empty ``rows`` changes nothing."""
        cfg = self.config
        cost = {"examples": 0, "steps": 0}
        if num_rows(rows) == 0 or epochs <= 0:
            return cost
        opt = make_optimizer("adam", params if params is not None else model.parameters(), cfg.lr, cfg.weight_decay)
        shuffle = run.generator("shuffle")
        model.train()
        for _ in range(epochs):
            for batch in batches(data.info, rows, cfg.batch_size, shuffle=True, generator=shuffle):
                batch = to_device(batch, run.device)
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(batch) if loss_fn is not None else model.loss(batch)
                loss.backward()
                opt.step()
                cost["examples"] += int((batch["targets"] != 0).sum())
                cost["steps"] += 1
        return cost

    def pretrain(self, model: nn.Module, data: Any, run: RunHandle) -> dict[str, int]:
        return self.train_rows(model, data, data.train_rows(range(data.pretrain_blocks)), self.config.pretrain_epochs, run)

    @abstractmethod
    def update(self, model: nn.Module, data: Any, t: int, run: RunHandle) -> dict[str, int]:
        ...

    def after_update(self, model: nn.Module, data: Any, t: int, run: RunHandle) -> None:
        """Memory upkeep after the model learned block t (t = P-1: after pretraining)."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Nothing to restore by default (stateless strategies)."""

    # -- the protocol ----------------------------------------------------------------
    def fit(self, model: nn.Module, data: Any, run: RunHandle) -> dict[str, float]:
        if not hasattr(data, "test_rows") or not hasattr(data, "known"):
            raise ConfigError("streaming trainers need a streaming dataset (stream-synthetic, stream-diginetica, stream-ml-100k)")
        cfg = self.config
        P, T = data.pretrain_blocks, data.num_blocks
        grow = run.generator("grow")
        records: list[dict[str, float]] = []
        first = P - 1
        ckpt = run.latest_checkpoint()
        if ckpt is not None:
            set_item_count(model, int(ckpt["items"]))
            model.load_state_dict(ckpt["model"])
            self.load_state_dict(ckpt["strategy"])
            grow.set_state(ckpt["grow"])
            run.generator("shuffle").set_state(ckpt["shuffle"])
            run.generator("memory").set_state(ckpt["memory"])
            restore_rng_state(ckpt["rng"])
            records, first = list(ckpt["records"]), int(ckpt["block"]) + 1
            run.echo(f"resumed after block {first - 1}")
        else:
            set_item_count(model, data.known[P - 1], cfg.init, cfg.init_std, grow)
            self.on_start(model, data, run)
        for t in run.progress(range(first, T - 1), total=T - 1 - first, description="blocks"):
            started = time.perf_counter()
            added = set_item_count(model, data.known[t], cfg.init, cfg.init_std, grow) if t > P - 1 else 0
            cost = self.pretrain(model, data, run) if t == P - 1 else self.update(model, data, t, run)
            self.after_update(model, data, t, run)
            seconds = time.perf_counter() - started
            metrics = test_block(model, data, t + 1, self.ks, cfg.eval_batch_size, run.device)
            record = {"block": float(t + 1), "trained_on": float(t), "pretrain": float(t == P - 1), "seconds": seconds,
                      "examples": float(cost["examples"]), "steps": float(cost["steps"]), "new_items": float(added),
                      "known_items": float(data.known[t]), **metrics}
            records.append(record)
            run.log(t + 1, "stream", **record)
            run.save_checkpoint({
                "model": model.state_dict(), "items": item_count(model), "strategy": self.state_dict(),
                "grow": grow.get_state(), "shuffle": run.generator("shuffle").get_state(),
                "memory": run.generator("memory").get_state(), "rng": capture_rng_state(), "block": t,
                "step": t + 1, "records": records,
            })
        set_item_count(model, int(data.info.num_items), cfg.init, cfg.init_std, grow)
        run.artifact_path("stream.json").write_text(json.dumps({
            "strategy": type(self).__name__, "metric": cfg.metric, "ks": self.ks, "pretrain_blocks": P,
            "blocks": data.block_stats(), "records": records}, indent=1))
        return summarise(records, cfg.metric, self.ks)

    def on_start(self, model: nn.Module, data: Any, run: RunHandle) -> None:
        """Called once before pretraining (not on resume)."""

    def evaluate(self, model: nn.Module, data: Any, split: str, run: RunHandle) -> dict[str, float]:
        if split != "test" or not hasattr(data, "test_rows"):
            raise ConfigError(f"streaming trainers evaluate only the 'test' split of a streaming dataset, got {split!r}")
        return test_block(model, data, data.num_blocks - 1, self.ks, self.config.eval_batch_size, run.device)


def summarise(records: list[Mapping[str, float]], metric: str, ks: list[int]) -> dict[str, float]:
    """Deterministic fit metrics: mean of each ranking metric over evaluated blocks, the
    headline metric per block, and update cost in examples (wall times stay in
    metrics.jsonl and artifacts/stream.json so results are reproducible)."""
    names = [f"{m}@{k}" for k in ks for m in ("hr", "ndcg", "mrr")]
    out: dict[str, float] = {}
    for name in names:
        out[f"mean_{name}"] = sum(r[name] for r in records) / max(len(records), 1)
    mrr = f"mrr@{max(ks)}"
    for r in records:
        out[f"block{int(r['block'])}_{metric}"] = r[metric]
        out[f"block{int(r['block'])}_{mrr}"] = r[mrr]
    updates = [r for r in records if not r["pretrain"]]
    out["update_examples"] = float(sum(r["examples"] for r in updates))
    out["update_steps"] = float(sum(r["steps"] for r in updates))
    out["pretrain_examples"] = float(sum(r["examples"] for r in records if r["pretrain"]))
    out["blocks_evaluated"] = float(len(records))
    return out


# -- baselines -----------------------------------------------------------------------
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
        self.initial = _clone(model.state_dict())

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


# -- replay ----------------------------------------------------------------------------
@torch.no_grad()
def _target_scores(model: nn.Module, data: Any, rows: dict[str, torch.Tensor], device: str, batch_size: int = 512) -> torch.Tensor:
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


# -- distillation ----------------------------------------------------------------------
def _hidden(model: nn.Module, seq: torch.Tensor) -> torch.Tensor:
    """[B, L, H] hidden states of a pk-seqrec model (``encode``)."""
    return model.encode(seq)


def _ce(model: nn.Module, h: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
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
            h = _hidden(model, batch["seq"])
            keep = batch["targets"] != 0
            with torch.no_grad():
                ht = _hidden(teacher, batch["seq"])[keep]
            s_logits = h[keep] @ model.item_embedding.weight[1:old + 1].t()
            t_logits = ht @ teacher.item_embedding.weight[1:old + 1].t()
            return (1 - cfg.lam) * _ce(model, h, batch["targets"]) + cfg.lam * kd_loss(s_logits, t_logits, cfg.temperature)

        return self.train_rows(model, data, data.train_rows([t]), cfg.epochs, run, loss_fn)


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
            h = _hidden(model, batch["seq"])
            loss = _ce(model, h, batch["targets"])
            mem = batch["memory"]
            if bool(mem.any()):
                seq = batch["seq"][mem]
                last = last_real_index(seq)
                hs = h[mem][torch.arange(seq.shape[0]), last]
                with torch.no_grad():
                    ht = _hidden(teacher, seq)[torch.arange(seq.shape[0]), last]
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
                parts.append(_hidden(model, seq)[torch.arange(seq.shape[0]), last_real_index(seq)].float().cpu())
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


# -- regularisation --------------------------------------------------------------------
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

        return self.train_rows(model, data, data.train_rows([t]), self.config.epochs, run, loss_fn if self.anchor else None)

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


# -- meta-learning (SML) ---------------------------------------------------------------
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

    def forward(self, old: Mapping[str, torch.Tensor], new: Mapping[str, torch.Tensor], current: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Combine ``old`` (W) and ``new`` (Ŵ) parameters; item rows missing from ``old`` use
        Ŵ's, rows missing from both use ``current``'s (the model's freshly grown rows)."""
        out: dict[str, torch.Tensor] = {}
        for i, name in enumerate(self.names):
            a = torch.sigmoid(self.gates[i])
            out[name] = a * old[name] + (1 - a) * new[name]
        cur = current[self.EMB]
        w_new = new[self.EMB]
        w_old = torch.cat([old[self.EMB], w_new[old[self.EMB].shape[0]:]]) if old[self.EMB].shape[0] < w_new.shape[0] else old[self.EMB][: w_new.shape[0]]
        norm = w_old.norm(dim=1, keepdim=True).clamp_min(1e-8)
        stack = torch.stack([w_old, w_new, w_old * w_new / norm], dim=1)  # [N, 3, H]
        rows = w_new + self.mlp(self.conv(stack).flatten(1))
        rows = torch.cat([w_new[:1], rows[1:]])  # the padding row is not transferred
        out[self.EMB] = torch.cat([rows, cur[rows.shape[0]:]]) if rows.shape[0] < cur.shape[0] else rows
        return out


class _LossOf(nn.Module):
    """``forward(batch) = inner.loss(batch)``, so ``torch.func.functional_call`` can swap in weights."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.inner.loss(batch)


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
        cost = {"examples": 0, "steps": 0}
        if num_rows(rows) == 0:
            return cost
        # (1) meta step: f(W_{t-2}, Ŵ_{t-1}) should do well on block t, the block after Ŵ_{t-1}'s data
        if self.tuned:
            view = _LossOf(model)
            current = {n: p.detach() for n, p in model.named_parameters()}

            def meta_loss(batch: dict[str, torch.Tensor]) -> torch.Tensor:
                params = transfer(self.older, self.tuned, current)
                return torch.func.functional_call(view, {f"inner.{k}": v for k, v in params.items()}, (batch,))

            meta_cfg = copy.copy(cfg)
            meta_cfg.lr = cfg.meta_lr
            saved, self.config = self.config, meta_cfg
            try:
                c = self.train_rows(model, data, rows, cfg.meta_epochs, run, meta_loss, params=transfer.parameters())
            finally:
                self.config = saved
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
