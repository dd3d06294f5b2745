"""Accuracy / macro-F1 on a split, and the evaluators (node or graph batches alike)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from pk.core.torch_helpers import macro_f1, to_device
from pk_graph.models.gnn import graph_targets


@torch.no_grad()
def split_predictions(model: Any, data: Any, split: str, batch_size: int,
                      device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logits [n, C], labels [n])`` over a split's nodes (masked) or graphs (all batches)."""
    was_training = model.training
    model.eval()
    logits, labels = [], []
    for batch in data.loader(split, batch_size):
        batch = to_device(batch, device)
        out = model.predict(batch)
        if getattr(batch, "batch", None) is None and getattr(batch, "mask", None) is not None:
            out = out[batch.mask]
        logits.append(out.float().cpu())
        labels.append(graph_targets(batch).cpu())
    model.train(was_training)
    return torch.cat(logits), torch.cat(labels)


def split_metrics(model: Any, data: Any, split: str, batch_size: int = 256, device: str = "cpu",
                  per_example: bool = False) -> Any:
    """``accuracy``, ``macro_f1`` (pk.core.torch_helpers) and mean cross-entropy ``loss`` on ``split``.

    ``per_example=True`` returns ``(metrics, {"accuracy": 0/1 array, "loss": CE array})`` with one
    value per node/graph of the split in dataset order; each metric is the mean of its array."""
    logits, y = split_predictions(model, data, split, batch_size, device)
    pred = logits.argmax(-1)
    num_classes = getattr(data.info, "num_classes", None)
    correct = (pred == y).double()
    ce = nn.functional.cross_entropy(logits.double(), y, reduction="none")
    metrics = {"accuracy": float(correct.mean()), "macro_f1": macro_f1(pred, y, num_classes), "loss": float(ce.mean())}
    if per_example:
        return metrics, {"accuracy": correct.numpy(), "loss": ce.numpy()}
    return metrics


class AccuracyEvaluator:
    """Test-split accuracy of a node or graph classifier."""

    metrics = {"accuracy": (0.0, 1.0, True)}

    def __init__(self, config: Any = None) -> None:
        self.batch_size = getattr(config, "batch_size", 256)

    def evaluate(self, model: Any, data: Any, run: Any) -> dict[str, float]:
        """Also saves the per-example 0/1 ``accuracy`` array (``examples-eval.npz``, dataset order)."""
        metrics, examples = split_metrics(model, data, "test", self.batch_size, run.device, per_example=True)
        if hasattr(run, "save_example_scores"):
            run.save_example_scores("eval", {"accuracy": examples["accuracy"]})
        return {"accuracy": metrics["accuracy"]}


class MacroF1Evaluator:
    """Test-split macro-F1 (unweighted mean of per-class F1) of a node or graph classifier.
    Saves no per-example scores: macro-F1 is not a mean over examples."""

    metrics = {"macro_f1": (0.0, 1.0, True)}

    def __init__(self, config: Any = None) -> None:
        self.batch_size = getattr(config, "batch_size", 256)

    def evaluate(self, model: Any, data: Any, run: Any) -> dict[str, float]:
        return {"macro_f1": split_metrics(model, data, "test", self.batch_size, run.device)["macro_f1"]}
