"""The ``next-item`` trainer.

Per epoch: shuffled training batches (order from ``run.generator("shuffle")``), one
optimisation step each; full-ranking validation every ``eval_every`` epochs; early stop
after ``patience`` validations without a better ``metric``; the best weights are restored.
A ``last`` checkpoint after every epoch (a :class:`pk.core.train_state.TrainState`: model,
optimizers, the run's generators, global RNG states, counters and the best state) lets
``pk train --resume`` end bit-identical on CPU.

Multi-process: ``supports_distributed`` — each global batch is split across ranks
(pk.core.distributed.rank_chunk, weighted by non-padding targets) and the loss goes through
DistributedDataParallel; models that take over their optimisation step run on one process.

Extension point: a model that defines both
``configure_optimizers(trainer_config) -> list[torch.optim.Optimizer]`` and
``train_step(batch, optimizers) -> dict[str, float]`` (zero_grad/backward/step done by the
model; the dict must hold "loss") takes over its optimisation step. Otherwise the trainer
makes one optimizer over ``model.parameters()`` and minimises ``model.loss(batch)``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from pk.core.contracts import RunHandle
from pk.core.distributed import loss_module, rank_chunk, reduce_mean
from pk.core.errors import ConfigError
from pk.core.torch_helpers import make_optimizer, to_device
from pk.core.train_state import TrainState
from pk_seqrec.evaluators import means, ranking_scores, save_scores


def _clone_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


class NextItemTrainer:
    """See the module docstring. ``fit`` returns best_valid_<metric>, ``epochs_run`` (epochs
    actually run, after early stopping), ``best_epoch`` (1-based epoch of the restored
    weights; absent when no validation ran) and steps (wall times go to metrics.jsonl only,
    so results stay deterministic). ``evaluate`` returns HR/NDCG/MRR@K and
    ``history_excluded``; on "test" it also saves the per-user values
    (``run.save_example_scores``)."""

    resumable = True
    supports_distributed = True

    def __init__(self, config: Any) -> None:
        self.config = config
        metric = getattr(config, "metric", "ndcg@10")
        kind, _, k = metric.partition("@")
        if kind not in ("hr", "ndcg", "mrr") or not k.isdigit():
            raise ConfigError(f"trainer.metric must look like ndcg@10, hr@20 or mrr@5, got {metric!r}")
        if int(k) not in list(config.ks):
            raise ConfigError(f"trainer.metric {metric!r} uses K={k}, which is not in trainer.ks={list(config.ks)}")

    # -- optimisation ---------------------------------------------------------------
    def _optimizers(self, model: nn.Module) -> tuple[list[torch.optim.Optimizer], bool]:
        custom = hasattr(model, "configure_optimizers") and hasattr(model, "train_step")
        if custom:
            return list(model.configure_optimizers(self.config)), True
        cfg = self.config
        return [make_optimizer(cfg.optimizer, model.parameters(), cfg.lr, cfg.weight_decay)], False

    def _step(self, model: nn.Module, batch: dict[str, Any], optimizers: list[torch.optim.Optimizer], custom: bool,
              loss_fn: Any, run: RunHandle) -> float:
        if custom:
            return float(model.train_step(batch, optimizers)["loss"])
        opt = optimizers[0]
        opt.zero_grad(set_to_none=True)
        chunk, scale = rank_chunk(batch, run, _target_count)
        loss = loss_fn(chunk)
        if loss.requires_grad:
            (loss * scale).backward()
            if self.config.grad_clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), self.config.grad_clip)
            opt.step()
        return reduce_mean(float(loss.detach()), scale, run)

    def _batch_rows(self, data: Any, model: Any = None) -> int:
        """Rows per training batch: the model's ``batch_sequences`` when > 0 (contrastive
        models: their in-batch negatives are the other rows), else ``batch_size``, or with
        ``batch_targets`` > 0 as many rows as hold ~``batch_targets`` next-item targets
        (RecBole's batch of N prefixes)."""
        cfg = self.config
        sequences = int(getattr(model, "batch_sequences", 0) or 0)
        if sequences > 0:
            return sequences
        tensors = getattr(data, "tensors", {}).get("train", {})
        if cfg.batch_targets <= 0 or "targets" not in tensors:
            return cfg.batch_size
        targets = tensors["targets"]
        per_row = float((targets != 0).sum()) / max(int(targets.shape[0]), 1)
        return max(1, round(cfg.batch_targets / max(per_row, 1.0)))

    # -- main loop -----------------------------------------------------------------
    def fit(self, model: nn.Module, data: Any, run: RunHandle) -> dict[str, float]:
        cfg = self.config
        optimizers, custom = self._optimizers(model)
        if custom and getattr(run, "world_size", 1) > 1:
            raise ConfigError(f"{type(model).__name__} takes over its optimisation step; train it on one process")
        loss_fn = loss_module(model, run)
        shuffle = run.generator("shuffle")
        state = TrainState(model, {str(i): opt for i, opt in enumerate(optimizers)}, bad=0, seconds=0.0)
        state.best = {"value": -math.inf, "epoch": -1, "state": None}
        state.restore(run)
        start_epoch, step = state.start_epoch, state.step
        bad, seconds, best = int(state.extra["bad"]), float(state.extra["seconds"]), state.best
        batch_rows = self._batch_rows(data, model)
        stopped = start_epoch >= cfg.max_epochs or (0 <= cfg.max_steps <= step) or 0 < cfg.patience <= bad
        epoch = start_epoch - 1
        epochs = range(start_epoch, cfg.max_epochs) if not stopped else range(0)
        for epoch in run.progress(epochs, total=len(epochs), description="epochs"):
            model.train()
            total, count, examples = 0.0, 0, 0
            started = _now()
            extra = {"length_buckets": cfg.length_buckets} if cfg.length_buckets > 0 else {}
            for batch in data.loader("train", batch_rows, shuffle=True, generator=shuffle, **extra):
                if 0 <= cfg.max_steps <= step:
                    break
                batch = to_device(batch, run.device)
                total += self._step(model, batch, optimizers, custom, loss_fn, run)
                count += 1
                step += 1
                examples += int(batch["seq"].shape[0])
            elapsed = _now() - started
            seconds += elapsed
            run.log(step, "train", loss=total / max(count, 1), epoch=epoch, seconds=elapsed,
                    seq_per_s=examples / max(elapsed, 1e-9))
            if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.max_epochs:
                valid = self.evaluate(model, data, "valid", run)
                run.log(step, "valid", epoch=epoch, **valid)
                if valid[cfg.metric] > best["value"]:
                    best, bad = {"value": valid[cfg.metric], "epoch": epoch, "state": _clone_state(model)}, 0
                else:
                    bad += 1
            stopped = 0 < cfg.patience <= bad or (0 <= cfg.max_steps <= step)
            state.epoch, state.step, state.best = epoch, step, best
            state.extra.update(bad=bad, seconds=seconds)
            state.save(run)
            if stopped:
                break
        if best["state"] is not None:
            model.load_state_dict(best["state"])
        out = {f"best_valid_{cfg.metric}": float(best["value"]) if best["state"] is not None else 0.0,
               "epochs_run": float(epoch + 1), "steps": float(step)}
        if best["state"] is not None:
            out["best_epoch"] = float(best["epoch"] + 1)
        return out

    def evaluate(self, model: nn.Module, data: Any, split: str, run: RunHandle) -> dict[str, float]:
        cfg = self.config
        per = ranking_scores(model, data, split, ks=list(cfg.ks), exclude_history=cfg.exclude_history,
                             batch_size=cfg.eval_batch_size, device=run.device)
        if split == "test":
            save_scores(run, "test", per)
        out = means(per)
        out["history_excluded"] = float(cfg.exclude_history)
        return out


def _target_count(batch: dict[str, Any]) -> int:
    """Loss terms in a sequence batch: its non-padding targets (rows if it has none)."""
    for key in ("targets", "target"):
        if key in batch:
            return int((batch[key] != 0).sum())
    return int(batch["seq"].shape[0])


def _now() -> float:
    import time

    return time.perf_counter()
