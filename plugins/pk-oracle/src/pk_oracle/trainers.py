"""Robust-training variants to rank: Gaussian input noise and PGD adversarial training.

Both follow the built-in supervised trainer's protocol (shuffled mini-batches, validation
each epoch, best-validation weights restored, a resumable ``last`` checkpoint every epoch)
and change only the training inputs. Randomness: shuffling from ``run.generator("shuffle")``,
noise / random starts from ``run.generator("perturb")``; both states are checkpointed.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch
from torch import nn

from pk.core.builtins.components import SupervisedTrainer
from pk.core.contracts import RunHandle


def input_bounds(data: Any, batch_size: int = 1024) -> tuple[float | None, float | None]:
    """[0, 1] when every training input lies in it (images), else unbounded."""
    lo, hi = float("inf"), float("-inf")
    for batch in data.loader("train", batch_size):
        lo, hi = min(lo, float(batch["x"].min())), max(hi, float(batch["x"].max()))
    return (0.0, 1.0) if lo >= 0.0 and hi <= 1.0 else (None, None)


def _clamp(x: torch.Tensor, bounds: tuple[float | None, float | None]) -> torch.Tensor:
    return x if bounds == (None, None) else x.clamp(bounds[0], bounds[1])


class PerturbedTrainer(SupervisedTrainer, ABC):
    """pk-core's supervised trainer whose training inputs are rewritten by
    ``perturb_loss``; randomness comes from ``run.generator("perturb")`` (checkpointed)."""

    def prepare(self, model: nn.Module, data: Any, run: RunHandle) -> None:
        self.bounds = input_bounds(data)
        self.perturb = run.generator("perturb")

    def transform_batch(self, model: nn.Module, batch: dict[str, Any], run: RunHandle) -> dict[str, Any]:
        return {**batch, "x": self.perturbed_inputs(model, batch, self.perturb, self.bounds)}

    @abstractmethod
    def perturbed_inputs(self, model: nn.Module, batch: dict[str, Any], gen: torch.Generator,
                         bounds: Any) -> torch.Tensor:
        ...


class NoiseAugmentedTrainer(PerturbedTrainer):
    """loss = CE(f(clamp(x + sigma * eps)), y), eps ~ N(0, I) drawn from the run's generator."""

    def perturbed_inputs(self, model: nn.Module, batch: dict[str, Any], gen: torch.Generator,
                         bounds: Any) -> torch.Tensor:
        x = batch["x"].float()
        noise = torch.randn(x.shape, generator=gen).to(x.device)
        return _clamp(x + self.config.sigma * noise, bounds)


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

    supports_distributed = False  # two forward passes per step

    def perturbed_inputs(self, model: nn.Module, batch: dict[str, Any], gen: torch.Generator,
                         bounds: Any) -> torch.Tensor:
        cfg = self.config
        return pgd_attack(model, batch["x"].float(), batch["y"], eps=cfg.eps, steps=cfg.attack_steps,
                          step_size=cfg.attack_step_size, bounds=bounds, gen=gen)

    def transform_batch(self, model: nn.Module, batch: dict[str, Any], run: RunHandle) -> dict[str, Any]:
        """Keeps the clean inputs beside the PGD ones (``x_adv``) for the mixed loss."""
        return {**batch, "x_adv": self.perturbed_inputs(model, batch, self.perturb, self.bounds)}

    def compute_loss(self, loss_fn: Any, batch: dict[str, Any]) -> torch.Tensor:
        w = self.config.adv_weight
        clean = {k: v for k, v in batch.items() if k != "x_adv"}
        loss = w * loss_fn({**clean, "x": batch["x_adv"]})
        if w < 1.0:
            loss = loss + (1.0 - w) * loss_fn(clean)
        return loss
