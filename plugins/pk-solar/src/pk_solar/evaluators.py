"""The ``perplexity`` evaluator and the language-model metrics the ``causal-lm`` trainer logs.

Loss is the mean next-token cross-entropy (nats/token) over a split's windows; perplexity is
its exponential and bits/token its value over ln 2.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from pk.core.contracts import RunHandle
from pk.core.torch_helpers import to_device
from pk_solar.models.causal_lm import CausalLM


@torch.no_grad()
def window_losses(model: CausalLM, data: Any, split: str, batch_size: int, device: str,
                  max_batches: int = 0) -> torch.Tensor:
    """Mean next-token cross-entropy (nats/token) of each window of a split, in loader order
    (its first ``max_batches`` batches when > 0, else all of it), float64 ``[N]``."""
    was_training = model.training
    model.eval()
    out = []
    for i, batch in enumerate(data.loader(split, batch_size)):
        if max_batches and i >= max_batches:
            break
        batch = to_device(batch, device)
        logits = model.predict(batch)
        ce = nn.functional.cross_entropy(logits.flatten(0, 1).float(), batch["labels"].flatten(), reduction="none")
        out.append(ce.view(batch["labels"].shape).double().mean(1).cpu())
    model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


def lm_metrics(model: CausalLM, data: Any, split: str, batch_size: int, device: str, max_batches: int = 0,
               run: RunHandle | None = None, scores_as: str = "") -> dict[str, float]:
    """Mean next-token cross-entropy (nats/token), perplexity and bits/token on a split.

    Windows all have ``context`` tokens, so the loss is the mean of the per-window losses;
    with ``run`` and ``scores_as`` those (and bits/token) are saved as the per-example scores
    of ``scores_as`` ("test" or "eval") for the batch summary's paired bootstrap."""
    per_window = window_losses(model, data, split, batch_size, device, max_batches)
    loss = float(per_window.mean()) if len(per_window) else 0.0
    if run is not None and scores_as and hasattr(run, "save_example_scores"):
        run.save_example_scores(scores_as, {"loss": per_window, "bits_per_token": per_window / math.log(2)})
    return {"loss": loss, "ppl": math.exp(min(loss, 50.0)), "bits_per_token": loss / math.log(2),
            "tokens": float(per_window.numel() * int(data.info.extra.get("context") or data.info.max_len or 0))}


class PerplexityEvaluator:
    """Perplexity, cross-entropy (nats/token) and bits/token on the whole test split."""

    metrics = {"ppl": (1.0, float("inf"), False), "loss": (0.0, float("inf"), False),
               "bits_per_token": (0.0, float("inf"), False)}

    def __init__(self, config: Any = None) -> None:
        self.batch_size = getattr(config, "batch_size", 64)

    def evaluate(self, model: CausalLM, data: Any, run: RunHandle) -> dict[str, float]:
        m = lm_metrics(model, data, "test", self.batch_size, run.device, run=run, scores_as="eval")
        return {"ppl": m["ppl"], "loss": m["loss"], "bits_per_token": m["bits_per_token"]}
