"""Replay memories and the loss terms of the strategies (pure functions, unit-tested).

- ``Reservoir``: Algorithm R. After n offers, each offered element is held with probability
  ``capacity / n`` (for n >= capacity): the n-th offer enters w.p. capacity/n and replaces a
  uniformly chosen slot.
- ``ader_lambda``: ADER's adaptive distillation weight.
- ``kd_loss``: temperature-scaled KL(teacher || student) over a column range of item scores.
- ``ewc_penalty``: sum_i F_i (theta_i - theta*_i)^2 / 2 over named parameters; rows a
  parameter gained after the anchor was taken (grown item tables) are not penalised.
- ``herding``: greedy exemplar choice whose running mean tracks the class mean (iCaRL/ADER).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn


class Reservoir:
    """Uniform reservoir over a stream of hashable elements (see the module docstring)."""

    def __init__(self, capacity: int) -> None:
        if capacity < 0:
            raise ValueError("reservoir capacity must be >= 0")
        self.capacity = int(capacity)
        self.items: list[Any] = []
        self.seen = 0

    def extend(self, elements: Sequence[Any], generator: torch.Generator) -> None:
        """Offer ``elements`` in order; one uniform draw per offer comes from ``generator``."""
        if not elements:
            return
        u = torch.rand(len(elements), generator=generator, dtype=torch.float64).tolist()
        for x, r in zip(elements, u, strict=True):
            self.seen += 1
            if len(self.items) < self.capacity:
                self.items.append(x)
                continue
            slot = int(r * self.seen)  # uniform in 0..seen-1
            if slot < self.capacity:
                self.items[slot] = x

    def state_dict(self) -> dict[str, Any]:
        return {"capacity": self.capacity, "seen": self.seen, "items": [list(x) for x in self.items]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.capacity, self.seen = int(state["capacity"]), int(state["seen"])
        self.items = [tuple(int(v) for v in x) for x in state["items"]]


def ader_lambda(prev_items: int, cur_items: int, n_exemplars: int, n_new: int, base: float = 0.8) -> float:
    """lam_t = base * sqrt((|I_{t-1}| / |I_t|) * (|E| / |D_t|)); 0 without exemplars or new data."""
    if cur_items <= 0 or n_new <= 0 or n_exemplars <= 0:
        return 0.0
    return base * math.sqrt((prev_items / cur_items) * (n_exemplars / n_new))


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Mean over rows of T^2 * KL(softmax(teacher/T) || softmax(student/T)); [R, C] inputs."""
    if student_logits.shape[0] == 0:
        return student_logits.sum() * 0.0
    t = float(temperature)
    log_p_s = torch.log_softmax(student_logits / t, dim=-1)
    log_p_t = torch.log_softmax(teacher_logits.detach() / t, dim=-1)
    return (log_p_t.exp() * (log_p_t - log_p_s)).sum(-1).mean() * t * t


def ewc_penalty(model: nn.Module, anchor: Mapping[str, torch.Tensor],
                fisher: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """0.5 * sum F (theta - theta*)^2 over parameters present in ``anchor``; for a parameter
    that has grown along dim 0 only its first ``anchor`` rows are compared."""
    total = torch.zeros(())
    for name, p in model.named_parameters():
        if name not in anchor:
            continue
        a, f = anchor[name], fisher[name]
        cur = p[: a.shape[0]] if p.shape != a.shape else p
        total = total + (f * (cur - a) ** 2).sum()
    return 0.5 * total


def herding(features: torch.Tensor, m: int) -> list[int]:
    """Indices of ``m`` rows of ``features`` [n, H] chosen greedily so that the mean of the
    chosen (L2-normalised) rows stays closest to the mean of all rows; no repeats."""
    n = features.shape[0]
    m = min(m, n)
    if m <= 0:
        return []
    f = nn.functional.normalize(features.double(), dim=1)
    mu = f.mean(0)
    chosen: list[int] = []
    running = torch.zeros_like(mu)
    free = torch.ones(n, dtype=torch.bool)
    for k in range(1, m + 1):
        dist = ((mu[None] - (running[None] + f) / k) ** 2).sum(1)
        dist[~free] = math.inf
        i = int(dist.argmin())
        chosen.append(i)
        free[i] = False
        running += f[i]
    return chosen
