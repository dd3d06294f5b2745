"""The ``causal-lm`` trainer (pre- and continued pretraining; metrics in :mod:`pk_solar.evaluators`).

Compute is counted as FLOPs = 6 · P · tokens (P = all parameters, tokens = B · T per step),
on top of the compute the starting weights already cost (``model.compute_offset``). With
``total_flops > 0`` the trainer runs until offset + own compute reaches it, so arms of
different size get equal *total* compute and arms sharing a base equal *added* compute.

Schedule: linear warm-up, then cosine from ``lr`` to ``min_lr_ratio · lr`` over the run
(a fresh AdamW each run, i.e. a re-warm for continued pretraining), or constant.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pk.core.contracts import RunHandle
from pk.core.errors import ConfigError
from pk.core.torch_helpers import to_device
from pk.core.train_state import TrainState
from pk_solar.evaluators import lm_metrics
from pk_solar.models.causal_lm import SIDECAR, CausalLM, fill_path


def lr_at(step: int, total: int, cfg: Any) -> float:
    """Learning rate of optimizer step ``step`` (0-based) out of ``total``."""
    if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return cfg.lr
    span = max(total - cfg.warmup_steps, 1)
    progress = min(max(step - cfg.warmup_steps, 0) / span, 1.0)
    floor = cfg.lr * cfg.min_lr_ratio
    return floor + (cfg.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def export_hf(model: CausalLM, folder: Path, sidecar: dict[str, Any]) -> Path:
    """Save the wrapped model with ``save_pretrained`` plus the pk sidecar, atomically
    (written beside ``folder`` and renamed; an existing export is replaced)."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # pk's own console owns progress output
        model.lm.save_pretrained(str(tmp))
        (tmp / SIDECAR).write_text(json.dumps(sidecar, indent=2) + "\n", encoding="utf-8")
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


class CausalLMTrainer:
    """AdamW (β 0.9/0.95) with warm-up + cosine, grad clipping, periodic validation.

    Logs ``train`` (loss, lr, flops) and ``valid`` (loss, ppl, flops) lines; the first
    ``valid`` line (step 0) is the loss of the starting weights (for DUS: the seam drop).
    Checkpoints at every evaluation and resumes bit-identically (model, optimizer, data
    order, RNG). Exports the final model to ``artifacts/hf-model`` (and ``export_dir``).
    """

    resumable = True

    def __init__(self, config: Any) -> None:
        self.config = config

    def planned_steps(self, model: CausalLM, tokens_per_step: int) -> int:
        cfg = self.config
        if cfg.total_flops > 0:
            remaining = cfg.total_flops - model.compute_offset
            if remaining <= 0:
                raise ConfigError(
                    f"trainer.total_flops = {cfg.total_flops:.3g} is below the {model.compute_offset:.3g} FLOPs the "
                    "starting weights already cost; raise total_flops"
                )
            return max(1, math.ceil(remaining / (6.0 * model.num_parameters() * tokens_per_step)))
        if cfg.steps < 1:
            raise ConfigError(f"trainer.steps must be >= 1 (or set trainer.total_flops), got {cfg.steps}")
        return int(cfg.steps)

    def fit(self, model: CausalLM, data: Any, run: RunHandle) -> dict[str, float]:
        cfg = self.config
        device = run.device
        context = int(data.info.extra.get("context") or data.info.max_len)
        tokens_per_step = cfg.batch_size * context
        params = model.num_parameters()
        flops_per_step = 6.0 * params * tokens_per_step
        total_steps = self.planned_steps(model, tokens_per_step)
        decay, no_decay = [], []
        for p in model.parameters():
            (decay if p.dim() >= 2 else no_decay).append(p)
        opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=cfg.lr, betas=(0.9, 0.95),
        )
        shuffle = run.generator("shuffle")
        # TrainState.epoch is the last completed epoch; a checkpoint may fall mid-epoch, so
        # extra holds the position in the current one and the shuffle state it started from
        state = TrainState(model, {"main": opt}, batch_in_epoch=0, epoch_state=shuffle.get_state(),
                           initial_valid_loss=0.0)
        ckpt = run.latest_checkpoint()
        if ckpt is not None:
            state.load_state_dict(ckpt, run)
            run.echo(f"resumed at step {state.step}")
        else:
            first = lm_metrics(model, data, "valid", cfg.eval_batch_size, device, cfg.eval_batches)
            state.extra["initial_valid_loss"] = first["loss"]
            run.log(0, "valid", loss=first["loss"], ppl=first["ppl"], flops=model.compute_offset, tokens=0.0)
        step, epoch = state.step, state.start_epoch
        batch_in_epoch, epoch_state = int(state.extra["batch_in_epoch"]), state.extra["epoch_state"]
        initial = float(state.extra["initial_valid_loss"])
        run.echo(f"{model.num_layers} layers, {params:,} parameters, {total_steps} steps, "
                 f"{flops_per_step * total_steps:.3g} FLOPs added")
        model.train()
        running, running_n = 0.0, 0
        bar = iter(run.progress(range(step, total_steps), total=total_steps - step, description="steps"))
        while step < total_steps:
            shuffle.set_state(epoch_state)
            batches = data.loader("train", cfg.batch_size, shuffle=True, generator=shuffle)
            for i, batch in enumerate(batches):
                if i < batch_in_epoch:
                    continue
                if step >= total_steps:
                    break
                for group in opt.param_groups:
                    group["lr"] = lr_at(step, total_steps, cfg)
                batch = to_device(batch, device)
                opt.zero_grad(set_to_none=True)
                loss = model.loss(batch)
                loss.backward()
                if cfg.grad_clip > 0:
                    nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                opt.step()
                step += 1
                batch_in_epoch = i + 1
                next(bar, None)
                running += float(loss.detach())
                running_n += 1
                if step % cfg.eval_every == 0 or step == total_steps:
                    flops = model.compute_offset + flops_per_step * step
                    run.log(step, "train", loss=running / running_n, lr=lr_at(step - 1, total_steps, cfg), flops=flops)
                    running, running_n = 0.0, 0
                    m = lm_metrics(model, data, "valid", cfg.eval_batch_size, device, cfg.eval_batches)
                    run.log(step, "valid", loss=m["loss"], ppl=m["ppl"], flops=flops,
                            tokens=float(step * tokens_per_step))
                    state.epoch, state.step = epoch - 1, step
                    state.extra.update(batch_in_epoch=batch_in_epoch, epoch_state=epoch_state)
                    state.save(run)
            else:
                epoch += 1
                batch_in_epoch = 0
                epoch_state = shuffle.get_state()
        next(bar, None)  # let the progress bar close
        final = lm_metrics(model, data, "valid", cfg.eval_batch_size, device)
        flops_total = model.compute_offset + flops_per_step * total_steps
        sidecar = {
            "flops": flops_total, "steps": total_steps, "tokens": total_steps * tokens_per_step, "params": params,
            "layers": model.num_layers, "chars": data.info.extra.get("chars", ""),
            "tokenizer": data.info.extra.get("tokenizer", ""), "valid_loss": final["loss"],
            "provenance": model.provenance,
        }
        export_hf(model, run.artifact_path("hf-model"), sidecar)
        if cfg.export_dir:
            export_hf(model, fill_path(cfg.export_dir, run.seed), sidecar)
        return {
            "valid_loss": final["loss"], "valid_ppl": final["ppl"], "initial_valid_loss": float(initial),
            "steps": float(total_steps), "flops_total": flops_total, "flops_added": flops_per_step * total_steps,
            "params": float(params), "layers": float(model.num_layers),
            # passes over the training windows (fractional: the budget is in steps, not epochs)
            "epochs_run": total_steps * cfg.batch_size / max(len(data.split_keys("train") or []), 1),
        }

    def evaluate(self, model: CausalLM, data: Any, split: str, run: RunHandle) -> dict[str, float]:
        m = lm_metrics(model, data, split, self.config.eval_batch_size, run.device, run=run,
                       scores_as="test" if split == "test" else "")
        return {"loss": m["loss"], "ppl": m["ppl"], "bits_per_token": m["bits_per_token"]}
