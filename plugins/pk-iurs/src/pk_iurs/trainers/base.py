"""The streaming protocol (``StreamTrainer.fit``) shared by every update strategy.

``fit``: resize the model's item table to the pretraining vocabulary, then for
t = P-1 .. T-2: grow the table to ``known[t]`` (old rows bit-identical), update on block t
(t = P-1: the shared pretraining on blocks 0..P-1), let the strategy maintain its memory,
then test on block t+1. Update time (seconds, wall clock) covers growth, update and memory
maintenance; ``examples`` counts the next-item targets that entered a training loss. A
``last`` checkpoint (a ``TrainState``: its ``epoch`` is the last block trained on) after every
block holds the model, the item count, the strategy memory, the generator and global RNG
states and the per-block records, so a resumed stream is bit-identical.
At the end the table is grown to all ``info.num_items`` items so ``model.pt`` matches the
dataset (rows of items first seen in the last block are untrained initial rows).

Budget report: ``fit`` returns ``epochs_run`` = training passes made by the whole stream
(pretraining epochs + every pass of every update, meta-learning passes included; the
schedule is fixed, nothing stops early, so there is no ``best_epoch``). Per-example scores:
the headline metric of every test example of every tested block goes to
``artifacts/stream-examples.npz`` (key ``block<b>``, test-row order), which the ``streaming``
evaluator turns into ``examples-eval.npz``; ``evaluate(..., "test")`` saves
``examples-test.npz`` itself.
"""

from __future__ import annotations

import io
import json
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

import torch
from pk_seqrec.evaluators import full_ranking_metrics
from torch import nn

from pk.core.contracts import RunHandle
from pk.core.errors import ConfigError
from pk.core.io import atomic_write_bytes
from pk.core.torch_helpers import make_optimizer, to_device
from pk.core.train_state import TrainState
from pk_iurs.data import batches, num_rows
from pk_iurs.models.growth import item_count, set_item_count


def clone_state(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in state.items()}


@torch.no_grad()
def block_scores(model: nn.Module, data: Any, block: int, ks: list[int], batch_size: int = 512,
                 device: str = "cpu") -> dict[str, torch.Tensor]:
    """Per-example full-ranking HR/NDCG/MRR@K [n] (float64, test-row order) of ``model`` on
    block ``block``, ranking over the ``known[block-1]`` items known before it (score columns
    beyond are cut); a target unknown to the model ("miss" rule) counts as a miss (0)."""
    rows = data.test_rows(block)
    known = data.known[block - 1]
    was = model.training
    model.eval()
    parts: dict[str, list[torch.Tensor]] = {f"{m}@{k}": [] for k in ks for m in ("hr", "ndcg", "mrr")}
    n = int(rows["target"].shape[0])
    for start in range(0, n, batch_size):
        batch = to_device({k: v[start:start + batch_size] for k, v in rows.items()}, device)
        batch["seq"] = batch["seq"][:, -max(int(batch["len"].max()), 1):]
        scores = model.predict(batch)[:, : known + 1].float()
        target = batch["target"]
        unknown = target > known
        per = full_ranking_metrics(scores, target.clamp_max(known), ks)
        for name, values in per.items():
            parts.setdefault(name, []).append(values.masked_fill(unknown, 0.0).double().cpu())
    model.train(was)
    return {name: torch.cat(v) if v else torch.zeros(0, dtype=torch.float64) for name, v in parts.items()}


def test_block(model: nn.Module, data: Any, block: int, ks: list[int], batch_size: int = 512,
               device: str = "cpu") -> dict[str, float]:
    """Means of :func:`block_scores` plus ``test_examples`` (the number of test examples)."""
    per = block_scores(model, data, block, ks, batch_size, device)
    n = next(iter(per.values())).shape[0] if per else 0
    out = {name: float(v.sum()) / max(n, 1) for name, v in per.items()}
    out["test_examples"] = float(n)
    return out


def write_npz(path: Any, arrays: Mapping[str, torch.Tensor]) -> None:
    """Atomically write float64 arrays as a compressed .npz (no pickles)."""
    import numpy as np

    buf = io.BytesIO()
    np.savez_compressed(buf, **{k: np.asarray(v.double().cpu().numpy(), dtype=np.float64) for k, v in arrays.items()})
    atomic_write_bytes(path, buf.getvalue())


class LossOf(nn.Module):
    """``forward(batch) = inner.loss(batch)``, so ``torch.func.functional_call`` can swap in weights
    (the meta-learning strategies, SML and ASMG)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.inner.loss(batch)


class StreamTrainer(ABC):
    """Base of every strategy (see the module docstring). Subclasses override ``update``
    (block t >= P) and optionally ``after_update`` (memory upkeep, also run after the
    pretraining) and ``state_dict`` / ``load_state_dict`` (their memory)."""

    resumable = True

    def __init__(self, config: Any) -> None:
        self.config = config
        kind, _, k = str(config.metric).partition("@")
        if kind not in ("hr", "ndcg", "mrr") or not k.isdigit() or int(k) not in list(config.ks):
            raise ConfigError(f"trainer.metric must look like hr@20 with K in trainer.ks={list(config.ks)}, "
                              f"got {config.metric!r}")
        self.ks = [int(x) for x in config.ks]

    # -- shared training loop -------------------------------------------------------
    def train_rows(self, model: nn.Module, data: Any, rows: dict[str, torch.Tensor], epochs: int, run: RunHandle,
                   loss_fn: Any = None, params: Any = None, lr: float | None = None) -> dict[str, int]:
        """``epochs`` shuffled passes over ``rows`` with a fresh optimizer over ``params`` (default:
        the model's) at ``lr`` (default ``config.lr``); ``loss_fn(batch)`` defaults to
        ``model.loss``. An empty ``rows`` changes nothing. Returns examples, steps, epochs."""
        cfg = self.config
        cost = {"examples": 0, "steps": 0, "epochs": 0}
        if num_rows(rows) == 0 or epochs <= 0:
            return cost
        opt = make_optimizer(cfg.optimizer, params if params is not None else model.parameters(),
                             cfg.lr if lr is None else lr, cfg.weight_decay)
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
            cost["epochs"] += 1
        return cost

    def pretrain(self, model: nn.Module, data: Any, run: RunHandle) -> dict[str, int]:
        rows = data.train_rows(range(data.pretrain_blocks))
        return self.train_rows(model, data, rows, self.config.pretrain_epochs, run)

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
            raise ConfigError("streaming trainers need a streaming dataset "
                              "(stream-synthetic, stream-diginetica, stream-ml-100k)")
        cfg = self.config
        P, T = data.pretrain_blocks, data.num_blocks
        grow = run.generator("grow")
        state = TrainState(model)  # epoch = the last block trained on; a fresh optimizer per block
        state.epoch = P - 2
        records: list[dict[str, float]] = []
        examples: dict[str, torch.Tensor] = {}
        ckpt = run.latest_checkpoint()
        if ckpt is not None:
            set_item_count(model, int(ckpt["extra"]["items"]))  # the saved table's size, before loading it
            state.load_state_dict(ckpt, run)
            self.load_state_dict(state.extra["strategy"])
            records, examples = list(state.extra["records"]), dict(state.extra["examples"])
            run.echo(f"resumed after block {state.epoch}")
        else:
            set_item_count(model, data.known[P - 1], cfg.init, cfg.init_std, grow)
            self.on_start(model, data, run)
        first = state.start_epoch
        for t in run.progress(range(first, T - 1), total=T - 1 - first, description="blocks"):
            started = time.perf_counter()
            added = set_item_count(model, data.known[t], cfg.init, cfg.init_std, grow) if t > P - 1 else 0
            cost = self.pretrain(model, data, run) if t == P - 1 else self.update(model, data, t, run)
            self.after_update(model, data, t, run)
            seconds = time.perf_counter() - started
            per = block_scores(model, data, t + 1, self.ks, cfg.eval_batch_size, run.device)
            n = int(per[cfg.metric].shape[0])
            metrics = {name: float(v.sum()) / max(n, 1) for name, v in per.items()}
            examples[f"block{t + 1}"] = per[cfg.metric]
            record = {"block": float(t + 1), "trained_on": float(t), "pretrain": float(t == P - 1), "seconds": seconds,
                      "examples": float(cost["examples"]), "steps": float(cost["steps"]),
                      "epochs": float(cost.get("epochs", 0)), "new_items": float(added),
                      "known_items": float(data.known[t]), **metrics, "test_examples": float(n)}
            records.append(record)
            run.log(t + 1, "stream", **record)
            state.epoch, state.step = t, t + 1
            state.extra = {"items": item_count(model), "strategy": self.state_dict(), "records": records,
                           "examples": examples}
            state.save(run)
        set_item_count(model, int(data.info.num_items), cfg.init, cfg.init_std, grow)
        run.artifact_path("stream.json").write_text(json.dumps({
            "strategy": type(self).__name__, "metric": cfg.metric, "ks": self.ks, "pretrain_blocks": P,
            "blocks": data.block_stats(), "records": records}, indent=1))
        write_npz(run.artifact_path("stream-examples.npz"), examples)
        return summarise(records, cfg.metric, self.ks)

    def on_start(self, model: nn.Module, data: Any, run: RunHandle) -> None:
        """Called once before pretraining (not on resume)."""

    def evaluate(self, model: nn.Module, data: Any, split: str, run: RunHandle) -> dict[str, float]:
        """The final model on the last block (``test`` split only); saves ``examples-test.npz``."""
        if split != "test" or not hasattr(data, "test_rows"):
            raise ConfigError(f"streaming trainers evaluate only the 'test' split of a streaming dataset, "
                              f"got {split!r}")
        per = block_scores(model, data, data.num_blocks - 1, self.ks, self.config.eval_batch_size, run.device)
        n = next(iter(per.values())).shape[0]
        if hasattr(run, "save_example_scores") and n:
            run.save_example_scores("test", per)
        out = {name: float(v.sum()) / max(n, 1) for name, v in per.items()}
        out["test_examples"] = float(n)
        return out


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
    out["epochs_run"] = float(sum(r.get("epochs", 0.0) for r in records))
    return out
