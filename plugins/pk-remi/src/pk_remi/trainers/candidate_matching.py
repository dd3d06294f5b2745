"""The ``candidate-matching`` trainer (ComiRec / REMI training loop).

Each step: ``batch_size`` distinct training users from run.generator("batches"), one random
cut each (``UserSplitBundle.sample_train_batch``), ``num_negatives`` uniform item ids from
run.generator("negatives") shared by the whole batch (``batch["negatives"]``), one Adam step
on ``model.loss``. Every ``eval_every`` steps (and at the last one): validation on the held-out
valid users with REMI's protocol, early stopping on ``metric`` after ``patience``
validations without improvement, and a ``last`` checkpoint (a ``TrainState``: model,
optimizer, generators, global RNG, step, best state), so ``pk train --resume`` ends
bit-identical on CPU. The best weights are restored at the end. Wall time per step goes to
metrics.jsonl only.

Budget report: ``fit`` returns ``steps`` and ``best_step`` and, in the units ``pk batch``
tables show, ``epochs_run`` = steps x batch_size / training users (passes over the training
users, the trainer draws users per step) and ``best_epoch`` = the same at the restored best
step. ``evaluate(..., "test")`` saves per-user scores to ``examples-test.npz``. The run's
``[aggregator]`` (a ranked-list merge) is used for every validation and test ranking.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch
from torch import nn

from pk.core.contracts import RunHandle
from pk.core.errors import ConfigError
from pk.core.torch_helpers import make_optimizer, to_device
from pk.core.train_state import TrainState
from pk_remi.evaluators.remi_protocol import configured_merge, protocol_scores


def _clone_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


class CandidateMatchingTrainer:
    """See the module docstring. ``fit`` returns best_valid_<metric>, best_step, steps;
    ``evaluate`` returns recall/hr/ndcg@K and routing diagnostics on a split."""

    resumable = True

    def __init__(self, config: Any) -> None:
        self.config = config
        kind, _, k = str(config.metric).partition("@")
        if kind not in ("recall", "hr", "ndcg") or not k.isdigit() or int(k) not in list(config.ks):
            raise ConfigError(f"trainer.metric must be recall@K, hr@K or ndcg@K with K in "
                              f"trainer.ks={list(config.ks)}, got {config.metric!r}")
        if config.max_steps < 1 or config.eval_every < 1 or config.batch_size < 1:
            raise ConfigError("trainer.max_steps, trainer.eval_every and trainer.batch_size must be >= 1")

    def fit(self, model: nn.Module, data: Any, run: RunHandle) -> dict[str, float]:
        cfg = self.config
        if not hasattr(data, "sample_train_batch"):
            raise ConfigError("trainer candidate-matching needs a pk-remi dataset (remi-synthetic, remi-ml-100k, ...)")
        configured_merge(run)  # a non-ranked-list [aggregator] fails here, before any training
        opt = make_optimizer(cfg.optimizer, model.parameters(), cfg.lr, cfg.weight_decay)
        batches, negatives = run.generator("batches"), run.generator("negatives")
        num_items = int(data.info.num_items)
        num_negatives = int(getattr(model, "num_negatives", 1280))
        state = TrainState(model, {"main": opt}, bad=0)
        state.best = {"value": -math.inf, "step": -1, "state": None}
        ckpt = run.latest_checkpoint()
        if ckpt is not None:
            state.load_state_dict(ckpt, run)
            run.echo(f"resumed at step {state.step}")
        step, bad, best = state.step, int(state.extra["bad"]), state.best
        loss_sum, rr_sum, count, seconds = 0.0, 0.0, 0, 0.0
        model.train()
        bar = run.progress(range(step, cfg.max_steps), total=cfg.max_steps - step, description="steps")
        for _ in bar:
            if 0 < cfg.patience <= bad:
                break
            started = time.perf_counter()
            batch = data.sample_train_batch(cfg.batch_size, batches)
            batch["negatives"] = torch.randint(1, num_items + 1, (num_negatives,), generator=negatives)
            batch = to_device(batch, run.device)
            opt.zero_grad(set_to_none=True)
            loss = model.loss(batch)
            loss.backward()
            opt.step()
            seconds += time.perf_counter() - started
            step += 1
            loss_sum += float(loss.detach())
            rr_sum += float(getattr(model, "last_loss_parts", {}).get("rr", 0.0))
            count += 1
            if step % cfg.eval_every == 0 or step == cfg.max_steps:
                run.log(step, "train", loss=loss_sum / count, rr=rr_sum / count, ms_per_step=1000 * seconds / count)
                valid = self.evaluate(model, data, "valid", run)
                run.log(step, "valid", **valid)
                if valid[cfg.metric] > best["value"]:
                    best, bad = {"value": valid[cfg.metric], "step": step, "state": _clone_state(model)}, 0
                else:
                    bad += 1
                loss_sum, rr_sum, count, seconds = 0.0, 0.0, 0, 0.0
                state.step, state.best, state.extra["bad"] = step, best, bad
                state.save(run)
                model.train()
        if best["state"] is not None:
            model.load_state_dict(best["state"])
        per_epoch = cfg.batch_size / max(len(data.users["train"]), 1)  # steps -> passes over the training users
        out = {f"best_valid_{cfg.metric}": float(best["value"]) if best["state"] is not None else 0.0,
               "best_step": float(best["step"]), "steps": float(step), "epochs_run": round(step * per_epoch, 2)}
        if best["state"] is not None:
            out["best_epoch"] = round(int(best["step"]) * per_epoch, 2)
        return out

    def evaluate(self, model: nn.Module, data: Any, split: str, run: RunHandle) -> dict[str, float]:
        """Mean protocol metrics on ``split``; for ``test`` also ``examples-test.npz`` (per user)."""
        cfg = self.config
        per = protocol_scores(model, data, split, ks=list(cfg.ks), batch_size=cfg.eval_batch_size,
                              device=run.device, merge=configured_merge(run), exclude_history=cfg.exclude_history)
        if split == "test" and hasattr(run, "save_example_scores") and per and next(iter(per.values())).numel():
            run.save_example_scores("test", per)
        return {name: float(v.mean()) if v.numel() else 0.0 for name, v in per.items()}
