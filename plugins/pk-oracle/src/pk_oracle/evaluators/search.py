"""The oracle-bounded latent search (FMR's Algorithm 1, reconstructed), fixed-eps PGD, and
the SA / PA / FMR summary. All inputs are flat: ``x [N, D]``, labels ``y [N]`` (int64).

``logits_fn(x_flat [n, D]) -> [n, C]`` wraps the evaluated model (eval mode, reshaping to
its input shape). Gradients are taken only with respect to the latent offset or the
perturbation, never with respect to model or oracle parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from pk_oracle.models.generators import Generator
from pk_oracle.models.oracles import OracleZoo

LogitsFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class SearchResult:
    """Per-sample outcome of the latent search (all tensors have length N).

    ``x_star``: the last oracle-accepted image (the reconstruction when no step was kept);
    ``valid``: the zoo accepted the reconstruction (only these count towards PA);
    ``steps``: accepted steps; ``fooled``: the target misclassifies ``x_star``.
    """

    x_star: torch.Tensor
    reconstruction: torch.Tensor
    valid: torch.Tensor
    steps: torch.Tensor
    fooled: torch.Tensor


@torch.no_grad()
def predict_labels(logits_fn: LogitsFn, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    if x.shape[0] == 0:
        return torch.zeros(0, dtype=torch.long)
    return torch.cat([logits_fn(chunk).argmax(-1).cpu() for chunk in x.split(batch_size)])


def _search_chunk(
    logits_fn: LogitsFn, generator: Generator, zoo: OracleZoo, x: torch.Tensor, y: torch.Tensor, step_size: float,
    budget: int,
) -> SearchResult:
    with torch.no_grad():
        z0 = generator.encode(x)
        recon = generator.decode(z0)
        valid = zoo.accept(recon, y)
        correct = logits_fn(recon).argmax(-1).cpu() == y
    active = valid & correct
    delta = torch.zeros_like(z0)
    x_star = recon.clone()
    steps = torch.zeros(len(y), dtype=torch.long)
    for _ in range(budget):
        idx = active.nonzero().flatten()
        if idx.numel() == 0:
            break
        d = delta[idx].clone().requires_grad_(True)
        loss = nn.functional.cross_entropy(logits_fn(generator.decode(z0[idx] + d)), y[idx], reduction="sum")
        (grad,) = torch.autograd.grad(loss, d)
        norm = grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (grad.dim() - 1)))
        with torch.no_grad():
            d_new = delta[idx] + step_size * grad / norm
            x_new = generator.decode(z0[idx] + d_new)
            ok = zoo.accept(x_new, y[idx])
            kept = idx[ok]
            delta[kept] = d_new[ok]
            x_star[kept] = x_new[ok]
            steps[kept] += 1
            fooled_now = (logits_fn(x_new[ok]).argmax(-1).cpu() != y[kept] if kept.numel()
                          else torch.zeros(0, dtype=torch.bool))
            active[idx[~ok]] = False  # left the oracle's class region: keep the last valid x*
            active[kept[fooled_now]] = False  # a failure was found
    fooled = predict_labels(logits_fn, x_star) != y
    return SearchResult(x_star.detach(), recon.detach(), valid, steps, fooled)


def latent_search(
    logits_fn: LogitsFn,
    generator: Generator,
    zoo: OracleZoo,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    step_size: float,
    budget: int,
    batch_size: int = 512,
) -> SearchResult:
    """For each (x, y): z0 = E(x); x* = G(z0); if the zoo rejects x* the sample is invalid;
    otherwise take up to ``budget`` normalised ascent steps on CE(f(G(z0 + delta)), y),
    keeping a step only while the zoo accepts it, and stopping at the first fool or the
    first rejection. Samples the target already misclassifies after reconstruction keep x*.
    Deterministic given deterministic models (no randomness is drawn)."""
    if budget < 0 or step_size < 0:
        raise ValueError("budget and step_size must be >= 0")
    parts = [
        _search_chunk(logits_fn, generator, zoo, xc, yc, step_size, budget)
        for xc, yc in zip(x.split(batch_size), y.split(batch_size))
    ]
    return SearchResult(*(torch.cat([getattr(p, f) for p in parts]) for f in SearchResult.__dataclass_fields__))


def pgd_linf(
    logits_fn: LogitsFn,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    steps: int,
    step_size: float,
    lo: float | None,
    hi: float | None,
    batch_size: int = 512,
    random_start: torch.Generator | None = None,
) -> torch.Tensor:
    """PGD-Linf (Madry et al.): ``steps`` signed-gradient ascent steps on CE, projected to the
    eps ball around x and clamped to ``[lo, hi]``; optional uniform random start."""
    out = []
    for xc, yc in zip(x.split(batch_size), y.split(batch_size)):
        adv = xc.clone()
        if random_start is not None:
            adv = adv + (torch.rand(adv.shape, generator=random_start) * 2 - 1) * eps
        for _ in range(steps):
            adv = adv.detach().requires_grad_(True)
            loss = nn.functional.cross_entropy(logits_fn(adv), yc, reduction="sum")
            (grad,) = torch.autograd.grad(loss, adv)
            with torch.no_grad():
                adv = torch.maximum(torch.minimum(adv + step_size * grad.sign(), xc + eps), xc - eps)
                if lo is not None or hi is not None:
                    adv = adv.clamp(lo, hi)
        out.append(adv.detach())
    return torch.cat(out) if out else x.clone()


def _ratio(num: float, den: float) -> float:
    return num / den if den > 0 else 0.0


def fmr_metrics(
    y: torch.Tensor, clean_pred: torch.Tensor, x: torch.Tensor, result: SearchResult, num_classes: int,
    per_class: bool = True,
) -> dict[str, float]:
    """SA on all of D, SA on the oracle-valid subset, PA on the oracle-valid subset,
    FMR = PA / SA (and PA / SA_valid), the oracle-valid fraction, accepted steps and the
    L2 / Linf distance of x* from x; per class with keys ``class<k>.<metric>``."""

    def block(mask: torch.Tensor) -> dict[str, float]:
        n = int(mask.sum())
        valid = mask & result.valid
        nv = int(valid.sum())
        sa = _ratio(float((clean_pred[mask] == y[mask]).sum()), n)
        sa_valid = _ratio(float((clean_pred[valid] == y[valid]).sum()), nv)
        pa = _ratio(float((~result.fooled[valid]).sum()), nv)
        diff = (result.x_star[valid] - x[valid]).flatten(1)
        return {
            "sa": sa,
            "sa_valid": sa_valid,
            "pa": pa,
            "fmr": _ratio(pa, sa),
            "fmr_valid": _ratio(pa, sa_valid),
            "oracle_valid": _ratio(nv, n),
            "mean_steps": float(result.steps[valid].float().mean()) if nv else 0.0,
            "mean_l2": float(diff.norm(dim=1).mean()) if nv else 0.0,
            "mean_linf": float(diff.abs().amax(dim=1).mean()) if nv else 0.0,
        }

    out = block(torch.ones_like(y, dtype=torch.bool))
    if per_class:
        for c in range(num_classes):
            mask = y == c
            if int(mask.sum()):
                for k, v in block(mask).items():
                    if k in ("sa", "pa", "fmr", "oracle_valid"):
                        out[f"class{c}.{k}"] = v
    return out
