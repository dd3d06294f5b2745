"""What both evaluators share: the test/train tensors of a bundle, the data range, the model
as a flat-input logits function, the oracle zoo's clean-accuracy check and the PGD block."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from pk.core.contracts import RunHandle
from pk.core.errors import ConfigError
from pk_oracle.evaluators.search import pgd_linf, predict_labels
from pk_oracle.models.oracles import OracleZoo

UNIT = (0.0, 1.0)


def gather(data: Any, split: str, batch_size: int = 1024, limit: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """All ``x`` (as stored, e.g. [N, C, H, W]) and ``y [N]`` of a split, in loader order."""
    xs, ys = [], []
    for batch in data.loader(split, batch_size):
        xs.append(batch["x"].float().cpu())
        ys.append(batch["y"].long().cpu())
    if not xs:
        raise ConfigError(f"split {split!r} is empty; the fmr evaluator needs train and test examples")
    x, y = torch.cat(xs), torch.cat(ys)
    return (x[:limit], y[:limit]) if limit > 0 else (x, y)


def data_bounds(x_train: torch.Tensor) -> tuple[float | None, float | None]:
    """[0, 1] for image-like data already in [0, 1]; unbounded otherwise."""
    if float(x_train.min()) >= 0.0 and float(x_train.max()) <= 1.0:
        return UNIT
    return None, None


def make_logits_fn(model: nn.Module, input_shape: Sequence[int]) -> Any:
    """Flat ``[n, D]`` -> the model's logits ``[n, C]`` (reshaped to ``input_shape``)."""
    device = next((p.device for p in model.parameters()), torch.device("cpu"))

    def logits_fn(x_flat: torch.Tensor) -> torch.Tensor:
        x = x_flat.reshape(x_flat.shape[0], *input_shape).to(device)
        return model.predict({"x": x}).float().cpu()

    return logits_fn


def check_oracles(zoo: OracleZoo, x_test: torch.Tensor, y_test: torch.Tensor, min_accuracy: float, allow_weak: bool,
                  run: RunHandle) -> dict[str, float]:
    """Each oracle's clean test accuracy; a zoo member below ``min_accuracy`` is refused
    (ConfigError) unless ``allow_weak``, in which case it is reported loudly and counted."""
    flat = x_test.reshape(len(x_test), -1)
    proba = zoo.probabilities(flat)
    out: dict[str, float] = {}
    weak = []
    for name, p in zip(zoo.names, proba):
        acc = float((p.argmax(-1) == y_test).float().mean())
        out[f"oracle_acc.{name}"] = acc
        if acc < min_accuracy:
            weak.append(f"{name} ({acc:.1%})")
    out["weak_oracles"] = float(len(weak))
    if weak:
        msg = (f"oracle zoo disagrees with the clean test labels: {', '.join(weak)} below "
               f"evaluator.min_oracle_accuracy = {min_accuracy}")
        if not allow_weak:
            raise ConfigError(msg + "; check the labels or the oracles, or set evaluator.allow_weak_oracles = true")
        run.echo("WARNING: " + msg + " (used anyway: allow_weak_oracles = true)")
    return out


PGD_METRICS = {
    "pgd_accuracy": (0.0, 1.0, True),
    "pgd_oracle_agree": (0.0, 1.0, True),
    "pgd_oracle_rejected": (0.0, 1.0, False),
    "pgd_accuracy_accepted": (0.0, 1.0, True),
}


def pgd_block(logits_fn: Any, zoo: OracleZoo | None, x: torch.Tensor, y: torch.Tensor, *, eps: float, steps: int,
               step_size: float, bounds: tuple[Any, Any], batch_size: int) -> dict[str, float]:
    adv = pgd_linf(logits_fn, x, y, eps=eps, steps=steps, step_size=step_size, lo=bounds[0], hi=bounds[1],
                   batch_size=batch_size)
    correct = predict_labels(logits_fn, adv) == y
    out: dict[str, Any] = {"pgd_accuracy": float(correct.float().mean()), "_correct": correct.double()}
    if zoo is not None:
        accepted = torch.cat([zoo.accept(a, b) for a, b in zip(adv.split(batch_size), y.split(batch_size))])
        out["pgd_oracle_agree"] = float(accepted.float().mean())
        out["pgd_oracle_rejected"] = 1.0 - out["pgd_oracle_agree"]
        out["pgd_accuracy_accepted"] = float(correct[accepted].float().mean()) if int(accepted.sum()) else 0.0
    return out
