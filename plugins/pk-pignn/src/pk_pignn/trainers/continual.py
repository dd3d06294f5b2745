"""Continual trainers over a snapshot stream: PI-GNN and the baselines, one family.

Every trainer walks tasks t = 0..T-1 of ``data.stream`` and, after learning task t, scores the
model on the test nodes of every snapshot j <= t (the task-accuracy matrix). Task 0 is the same
for all but retrain: ``init_epochs`` of CE on snapshot 0's training nodes. Later tasks:

- ``pignn``: open ALL blocks, rectify on the OLD topology (CE(memory) - beta1 CE(old versions of
  affected train nodes)), then expand every layer by ``expand_size`` units, freeze the old blocks
  and W_cls_old, and train the new ones on the NEW topology (CE(memory + affected) + beta2 CE(memory));
- ``cl-finetune``: CE on the affected training nodes (new topology), all parameters;
- ``cl-replay``: the PI-GNN expansion-stage loss on all parameters (same memory, no isolation);
- ``cl-ewc``: fine-tune plus ``lambda/2 sum_i F_i (theta_i - theta*_i)^2`` (online EWC, Fisher =
  squared gradients of the task loss, summed over tasks);
- ``cl-retrain``: a fresh model (the run's initial weights) trained on ALL training nodes of
  snapshot t (upper reference; not continual).

Optimisation: each stage builds a fresh Adam over the trainable parameters only; an epoch is
``chunks`` steps, each step a full-batch forward with the loss restricted to one random chunk of
every index set (sets smaller than ``chunks`` leave some chunks empty; an empty term adds 0).
``reset_optimizer_each_epoch`` reproduces the official code's per-epoch Adam rebuild.
Checkpoint ``last`` after every task through ``pk.core.train_state.TrainState`` (grown model,
matrices, RNG states, the method's state; ``epoch`` = the last task learned, ``step`` = its index):
resumable, exact on CPU.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from pk.core.contracts import RunHandle
from pk.core.errors import ConfigError
from pk.core.train_state import TrainState
from pk_pignn.data.stream import TaskGraphs
from pk_pignn.evaluators import (
    FM_SIGN_NOTE,
    MATRIX_FILE,
    forgetting_measure,
    performance_mean,
    save_matrices,
    snapshot_scores,
)

#: one loss term: (graph, local node indices, weight)
Term = tuple[Any, torch.Tensor, float]


def trainable(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def train_stage(
    model: nn.Module, terms: Sequence[Term], epochs: int, lr: float, weight_decay: float, chunks: int,
    reset_each_epoch: bool, generator: torch.Generator, extra_loss: Callable[[], torch.Tensor] | None = None,
) -> dict[str, float]:
    """Optimise ``sum_k w_k * CE(model(graph_k)[idx_k], y[idx_k])`` (+ ``extra_loss()``).

    Returns ``{"loss": last epoch's mean loss, "steps": optimiser steps}``. Terms with empty
    index sets contribute nothing; a stage whose terms are all empty does no step.
    """
    params = trainable(model)
    terms = [(g, idx, w) for g, idx, w in terms if idx.numel() > 0]
    if epochs <= 0 or not params or not terms:
        return {"loss": float("nan"), "steps": 0.0}
    model.train()
    chunks = max(1, int(chunks))
    opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    steps, last = 0, float("nan")
    for _epoch in range(epochs):
        if reset_each_epoch:
            opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
        split = [torch.tensor_split(idx[torch.randperm(idx.numel(), generator=generator)], chunks)
                 for _, idx, _ in terms]
        total, count = 0.0, 0
        for c in range(chunks):
            cache: dict[int, torch.Tensor] = {}
            loss = None
            for (graph, _, weight), parts in zip(terms, split):
                part = parts[c]
                if part.numel() == 0:
                    continue
                if id(graph) not in cache:
                    cache[id(graph)] = model.predict(graph)
                term = weight * nn.functional.cross_entropy(cache[id(graph)][part], graph.y[part])
                loss = term if loss is None else loss + term
            if loss is None:
                continue
            if extra_loss is not None:
                loss = loss + extra_loss()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            steps += 1
            total += float(loss.detach())
            count += 1
        last = total / max(count, 1)
    return {"loss": last, "steps": float(steps)}


class ContinualTrainer(ABC):
    """Base of the family: the task loop, evaluation matrix, checkpoints and metrics.

    Subclasses implement :meth:`learn_task`; ``method_state``/``load_method_state`` carry
    any extra state (e.g. EWC's Fisher) through checkpoints.
    """

    resumable = True
    method = "base"

    def __init__(self, config: Any) -> None:
        self.config = config

    # -- hooks ------------------------------------------------------------------------------------
    @abstractmethod
    def learn_task(self, model: nn.Module, graphs: TaskGraphs, run: RunHandle) -> dict[str, float]:
        ...

    def method_state(self) -> dict[str, Any]:
        return {}

    def load_method_state(self, state: dict[str, Any]) -> None:
        """Nothing to restore by default (stateless strategies)."""

    def start(self, model: nn.Module, run: RunHandle) -> None:
        """Called once before the task loop (and before a checkpoint is restored)."""

    # -- shared helpers -----------------------------------------------------------------------------
    @property
    def memory_size(self) -> int:
        return int(getattr(self.config, "memory_size", 64))

    def stage(self, model: nn.Module, terms: Sequence[Term], epochs: int, lr: float, run: RunHandle,
              extra_loss: Callable[[], torch.Tensor] | None = None) -> dict[str, float]:
        cfg = self.config
        return train_stage(model, terms, epochs, lr, cfg.weight_decay, cfg.chunks, cfg.reset_optimizer_each_epoch,
                           run.generator("chunks"), extra_loss)

    def init_task(self, model: nn.Module, graphs: TaskGraphs, run: RunHandle) -> dict[str, float]:
        """Task 0 (and retrain): CE on all training nodes of the snapshot, every parameter."""
        for p in model.parameters():
            p.requires_grad_(True)
        now = graphs.now
        return self.stage(model, [(now, now.train_idx, 1.0)], self.config.init_epochs, self.config.lr, run)

    # -- the loop -----------------------------------------------------------------------------------
    def num_tasks(self, data: Any) -> int:
        limit = int(getattr(self.config, "max_tasks", 0))
        total = data.stream.num_tasks
        return total if limit <= 0 else min(limit, total)

    def fit(self, model: nn.Module, data: Any, run: RunHandle) -> dict[str, float]:
        if not hasattr(data, "stream"):
            raise ConfigError(f"trainer {self.method!r} needs a snapshot-stream dataset "
                              "(pignn-synthetic, pignn-cora, graph-stream)")
        stream = data.stream
        big_t = self.num_tasks(data)
        num_classes = data.info.num_classes
        acc = torch.full((big_t, big_t), float("nan"), dtype=torch.float64)
        f1 = acc.clone()
        self.start(model, run)
        state = TrainState(model, accuracy=acc, macro_f1=f1, method_state={})
        ckpt = run.latest_checkpoint()
        if ckpt is not None:
            state.load_state_dict(ckpt, run)
            acc, f1 = state.extra["accuracy"].clone(), state.extra["macro_f1"].clone()
            self.load_method_state(state.extra["method_state"])
            run.echo(f"resumed after task {state.epoch}")
        start = state.start_epoch
        for t in run.progress(range(start, big_t), total=big_t - start, description=f"{self.method} tasks"):
            graphs = stream.task(t, self.memory_size, run.seed)
            stats = self.learn_task(model, graphs, run)
            for j in range(t + 1):
                acc[t, j], f1[t, j] = snapshot_scores(model, stream.snapshot(j), num_classes)
            params = sum(p.numel() for p in model.parameters())
            run.log(t, "task", accuracy=float(acc[t, t]), seen_mean_accuracy=float(acc[t, : t + 1].nanmean()),
                    first_task_accuracy=float(acc[t, 0]), params=params, **stats)
            every = int(getattr(self.config, "checkpoint_every", 1))
            if t == big_t - 1 or (every > 0 and (t + 1) % every == 0):
                self.checkpoint(state, run, t, acc, f1)
        for p in model.parameters():
            p.requires_grad_(True)
        save_matrices(run.artifact_path(MATRIX_FILE), acc, f1,
                      {"method": self.method, "num_tasks": big_t, "stream": stream.name, "fm_sign": FM_SIGN_NOTE})
        return {
            "pm": performance_mean(acc), "fm": forgetting_measure(acc),
            "pm_macro_f1": performance_mean(f1), "fm_macro_f1": forgetting_measure(f1),
            "final_accuracy": float(acc[-1, -1]), "final_mean_accuracy": float(acc[-1].nanmean()),
            "num_tasks": float(big_t), "params": float(sum(p.numel() for p in model.parameters())),
        }

    def checkpoint(self, state: TrainState, run: RunHandle, t: int, acc: torch.Tensor, f1: torch.Tensor) -> None:
        """Save ``last`` after task ``t``: the (grown) model, matrices, RNG states and the method's state."""
        state.epoch = state.step = t
        state.extra.update(accuracy=acc, macro_f1=f1, method_state=self.method_state())
        state.save(run)

    def evaluate(self, model: nn.Module, data: Any, split: str, run: RunHandle) -> dict[str, float]:
        """Accuracy / macro-F1 on ``split``'s nodes of the LAST snapshot (the whole graph)."""
        from pk.core.torch_helpers import macro_f1

        was_training = model.training
        model.eval()
        with torch.no_grad():
            batch = data.batch(split)
            logits = model.predict(batch)
        model.train(was_training)
        pred, y = logits[batch.mask].argmax(-1), batch.y[batch.mask]
        correct = (pred == y).double()
        if split == "test" and hasattr(run, "save_example_scores"):
            run.save_example_scores("test", {"accuracy": correct})  # per test node, node order
        return {"accuracy": float(correct.mean()), "macro_f1": macro_f1(pred, y, data.info.num_classes)}


def _require_progressive(model: nn.Module, method: str) -> None:
    if not (hasattr(model, "expand") and hasattr(model, "isolate") and hasattr(model, "open_parameters")):
        raise ConfigError(f"trainer {method!r} needs an expandable model; set model.name = \"pignn-sage\"")


class PIGNNTrainer(ContinualTrainer):
    """PI-GNN: rectification (all blocks reopened) then isolation + expansion, per snapshot."""

    method = "pignn"

    def learn_task(self, model: nn.Module, graphs: TaskGraphs, run: RunHandle) -> dict[str, float]:
        cfg = self.config
        _require_progressive(model, self.method)
        if graphs.t == 0:
            return {f"init_{k}": v for k, v in self.init_task(model, graphs, run).items()}
        stats: dict[str, float] = {}
        rec, ret = graphs.rec, graphs.ret
        model.open_parameters()
        if cfg.rectify:
            out = self.stage(model, [(rec, rec.memory_idx, 1.0), (rec, rec.last_affected_idx, -cfg.beta1)],
                             cfg.rectify_epochs, cfg.rectify_lr, run)
            stats.update({f"rectify_{k}": v for k, v in out.items()})
        if cfg.expand:
            model.expand(list(cfg.expand_size))
            model.isolate()
        out = self.stage(model, [(ret, ret.union_idx, 1.0), (ret, ret.memory_idx, cfg.beta2)], cfg.retrain_epochs,
                         cfg.lr, run)
        stats.update({f"retrain_{k}": v for k, v in out.items()})
        model.open_parameters()
        return stats


class FinetuneTrainer(ContinualTrainer):
    """Fine-tune every parameter on the affected training nodes of each new snapshot."""

    method = "cl-finetune"

    def learn_task(self, model: nn.Module, graphs: TaskGraphs, run: RunHandle) -> dict[str, float]:
        if graphs.t == 0:
            return self.init_task(model, graphs, run)
        ret = graphs.ret
        return self.stage(model, [(ret, ret.affected_idx, 1.0)], self.config.epochs, self.config.lr, run)


class ReplayTrainer(ContinualTrainer):
    """Experience replay: PI-GNN's expansion loss (memory + affected, plus weighted memory) on
    all parameters, with the same uniform per-task memory; no isolation, no rectification."""

    method = "cl-replay"

    def learn_task(self, model: nn.Module, graphs: TaskGraphs, run: RunHandle) -> dict[str, float]:
        if graphs.t == 0:
            return self.init_task(model, graphs, run)
        ret = graphs.ret
        terms = [(ret, ret.union_idx, 1.0), (ret, ret.memory_idx, self.config.replay_weight)]
        return self.stage(model, terms, self.config.epochs, self.config.lr, run)


class EWCTrainer(ContinualTrainer):
    """Fine-tune with an (online) EWC penalty anchored at the parameters after each task."""

    method = "cl-ewc"

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.fisher: dict[str, torch.Tensor] = {}
        self.anchor: dict[str, torch.Tensor] = {}

    def method_state(self) -> dict[str, Any]:
        return {"fisher": self.fisher, "anchor": self.anchor}

    def load_method_state(self, state: dict[str, Any]) -> None:
        self.fisher, self.anchor = dict(state.get("fisher", {})), dict(state.get("anchor", {}))

    def penalty(self, model: nn.Module) -> torch.Tensor:
        total = torch.zeros(())
        for name, p in model.named_parameters():
            if name in self.fisher:
                total = total + (self.fisher[name] * (p - self.anchor[name]) ** 2).sum()
        return 0.5 * self.config.ewc_lambda * total

    def update_fisher(self, model: nn.Module, graph: Any, idx: torch.Tensor) -> None:
        """Add squared gradients of the task's CE (eval mode) to the Fisher; re-anchor."""
        if idx.numel() == 0:
            return
        was_training = model.training
        model.eval()
        model.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model.predict(graph)[idx], graph.y[idx]).backward()
        for name, p in model.named_parameters():
            g2 = torch.zeros_like(p) if p.grad is None else p.grad.detach() ** 2
            self.fisher[name] = self.fisher.get(name, torch.zeros_like(p)) + g2
            self.anchor[name] = p.detach().clone()
        model.zero_grad(set_to_none=True)
        model.train(was_training)

    def learn_task(self, model: nn.Module, graphs: TaskGraphs, run: RunHandle) -> dict[str, float]:
        if graphs.t == 0:
            out = self.init_task(model, graphs, run)
            self.update_fisher(model, graphs.now, graphs.now.train_idx)
            return out
        ret = graphs.ret
        extra = (lambda: self.penalty(model)) if self.fisher else None
        out = self.stage(model, [(ret, ret.affected_idx, 1.0)], self.config.epochs, self.config.lr, run, extra)
        self.update_fisher(model, ret, ret.affected_idx)
        if self.fisher:
            out["ewc_penalty"] = float(self.penalty(model).detach())
        return out


class RetrainTrainer(ContinualTrainer):
    """Retrain from the run's initial weights on all training nodes of every snapshot."""

    method = "cl-retrain"

    def start(self, model: nn.Module, run: RunHandle) -> None:
        self.initial = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def learn_task(self, model: nn.Module, graphs: TaskGraphs, run: RunHandle) -> dict[str, float]:
        model.load_state_dict(self.initial)
        return self.init_task(model, graphs, run)
