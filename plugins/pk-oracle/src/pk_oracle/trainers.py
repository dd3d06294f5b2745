"""Robust-training variants to rank: Gaussian input noise and PGD adversarial training.

Both follow the built-in supervised trainer's protocol (shuffled mini-batches, validation
each epoch, best-validation weights restored, a resumable ``last`` checkpoint every epoch)
and change only the training inputs. Randomness: shuffling from ``run.generator("shuffle")``,
noise / random starts from ``run.generator("perturb")``; both states are checkpointed.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from pk.core.contracts import RunHandle
from pk.core.seed import capture_rng_state, restore_rng_state
from pk.core.utils import classification_metrics, make_optimizer, to_device


def input_bounds(data: Any, batch_size: int = 1024) -> tuple[float | None, float | None]:
    """[0, 1] when every training input lies in it (images), else unbounded."""
    lo, hi = float("inf"), float("-inf")
    for batch in data.loader("train", batch_size):
        lo, hi = min(lo, float(batch["x"].min())), max(hi, float(batch["x"].max()))
    return (0.0, 1.0) if lo >= 0.0 and hi <= 1.0 else (None, None)


def _clamp(x: torch.Tensor, bounds: tuple[float | None, float | None]) -> torch.Tensor:
    return x if bounds == (None, None) else x.clamp(bounds[0], bounds[1])


class PerturbedTrainer:
    """Supervised training where ``perturb(model, batch, gen, bounds)`` rewrites each batch."""

    resumable = True

    def __init__(self, config: Any) -> None:
        self.config = config

    def training_loss(self, model: nn.Module, batch: dict[str, Any], gen: torch.Generator, bounds: Any) -> torch.Tensor:
        raise NotImplementedError

    def fit(self, model: nn.Module, data: Any, run: RunHandle) -> dict[str, float]:
        cfg = self.config
        opt = make_optimizer(cfg.optimizer, model.parameters(), cfg.lr, cfg.weight_decay)
        shuffle, perturb = run.generator("shuffle"), run.generator("perturb")
        bounds = input_bounds(data)
        start_epoch, step = 0, 0
        best: dict[str, Any] = {"accuracy": -1.0, "state": None, "epoch": -1}
        ckpt = run.latest_checkpoint()
        if ckpt is not None:
            model.load_state_dict(ckpt["model"])
            opt.load_state_dict(ckpt["optimizer"])
            shuffle.set_state(ckpt["shuffle"])
            perturb.set_state(ckpt["perturb"])
            restore_rng_state(ckpt["rng"])
            start_epoch, step, best = ckpt["epoch"] + 1, ckpt["step"], ckpt["best"]
            run.echo(f"resumed at epoch {start_epoch}")
        for epoch in run.progress(range(start_epoch, cfg.max_epochs), total=cfg.max_epochs - start_epoch, description="epochs"):
            model.train()
            total, count = 0.0, 0
            for batch in data.loader("train", cfg.batch_size, shuffle=True, generator=shuffle):
                if 0 <= cfg.max_steps <= step:
                    break
                batch = to_device(batch, run.device)
                loss = self.training_loss(model, batch, perturb, bounds)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
                total += float(loss.detach())
                count += 1
            valid = classification_metrics(model, data, "valid", cfg.eval_batch_size, run.device)
            run.log(step, "train", loss=total / max(count, 1), epoch=epoch)
            run.log(step, "valid", **valid)
            if valid["accuracy"] > best["accuracy"]:
                best = {"accuracy": valid["accuracy"], "epoch": epoch,
                        "state": {k: v.detach().clone() for k, v in model.state_dict().items()}}
            run.save_checkpoint({"model": model.state_dict(), "optimizer": opt.state_dict(), "shuffle": shuffle.get_state(),
                                 "perturb": perturb.get_state(), "rng": capture_rng_state(), "epoch": epoch, "step": step,
                                 "best": best})
            if 0 <= cfg.max_steps <= step:
                break
        if best["state"] is not None:
            model.load_state_dict(best["state"])
        return {"best_valid_accuracy": float(best["accuracy"]), "best_epoch": float(best["epoch"]), "steps": float(step)}

    def evaluate(self, model: nn.Module, data: Any, split: str, run: RunHandle) -> dict[str, float]:
        return classification_metrics(model, data, split, self.config.eval_batch_size, run.device)


class NoiseAugmentedTrainer(PerturbedTrainer):
    """loss = CE(f(clamp(x + sigma * eps)), y), eps ~ N(0, I) drawn from the run's generator."""

    def training_loss(self, model: nn.Module, batch: dict[str, Any], gen: torch.Generator, bounds: Any) -> torch.Tensor:
        x = batch["x"].float()
        noise = torch.randn(x.shape, generator=gen).to(x.device)
        return model.loss({**batch, "x": _clamp(x + self.config.sigma * noise, bounds)})


def pgd_attack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, steps: int, step_size: float,
               bounds: Any, gen: torch.Generator | None) -> torch.Tensor:
    """PGD-Linf on ``model.predict``, from a uniform random start when ``gen`` is given;
    the model is put in eval mode for the attack and restored; returns a detached tensor."""
    was_training = model.training
    model.eval()
    adv = x.detach().clone()
    if gen is not None:
        adv = _clamp(adv + (torch.rand(x.shape, generator=gen).to(x.device) * 2 - 1) * eps, bounds)
    for _ in range(steps):
        adv.requires_grad_(True)
        loss = nn.functional.cross_entropy(model.predict({"x": adv}), y)
        (grad,) = torch.autograd.grad(loss, adv)
        with torch.no_grad():
            adv = torch.maximum(torch.minimum(adv + step_size * grad.sign(), x + eps), x - eps)
            adv = _clamp(adv, bounds).detach()
    model.train(was_training)
    return adv


class AdversarialTrainer(PerturbedTrainer):
    """loss = (1 - w) CE(f(x), y) + w CE(f(PGD(x)), y) with w = ``adv_weight`` (Madry: w = 1)."""

    def training_loss(self, model: nn.Module, batch: dict[str, Any], gen: torch.Generator, bounds: Any) -> torch.Tensor:
        cfg = self.config
        x = batch["x"].float()
        adv = pgd_attack(model, x, batch["y"], eps=cfg.eps, steps=cfg.attack_steps, step_size=cfg.attack_step_size,
                         bounds=bounds, gen=gen)
        loss = cfg.adv_weight * model.loss({**batch, "x": adv})
        if cfg.adv_weight < 1.0:
            loss = loss + (1.0 - cfg.adv_weight) * model.loss({**batch, "x": x})
        return loss
