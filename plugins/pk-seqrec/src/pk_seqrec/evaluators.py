"""Full-ranking metrics (a plain function other plugins call) and the evaluator.

Conventions:
- rank of the target = number of OTHER items scoring >= the target (ties count against it,
  so a constant scorer earns nothing); ``HR@K = [rank < K]``, ``NDCG@K = 1/log2(rank + 2)``
  if ``rank < K``, ``MRR@K = 1/(rank + 1)`` if ``rank < K``; means over examples.
- column 0 (padding) is always excluded.
- ``exclude_history=False`` is RecBole's convention (AC-TSR, ECL-SR): history stays in the
  ranking. ``True`` is ICLRec's: every item in the user's history before the target gets
  -inf, including the target itself when it repeats a history item (it then counts as a
  miss, as in ICLRec's code).
- sampled metrics (``sampled_negatives`` > 0) rank the target among uniform negatives;
  they are BIASED (Krichene & Rendle, KDD 2020) and reported under ``sampled_`` names only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch

from pk.core.torch_helpers import to_device


def mask_history(scores: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
    """Copy of ``scores`` [B, N + 1] with the ids in ``history`` [B, H] (0-padded) set to -inf."""
    out = scores.clone()
    out.scatter_(1, history.long(), float("-inf"))
    out[:, 0] = float("-inf")
    return out


def target_ranks(scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """[B] long: how many items other than the target (padding excluded) score >= it."""
    scores = scores.clone()
    scores[:, 0] = float("-inf")
    t = scores.gather(1, target[:, None].long())
    ahead = (scores >= t).sum(1) - 1
    # a -inf target ties with padding and every masked item: it is behind all of them
    return torch.where(torch.isneginf(t[:, 0]), torch.full_like(ahead, scores.shape[1] - 1), ahead)


def rank_metrics(ranks: torch.Tensor, ks: Iterable[int]) -> dict[str, torch.Tensor]:
    """Per-example HR/NDCG/MRR@K tensors (float) from 0-based ranks."""
    ranks = ranks.double()
    out: dict[str, torch.Tensor] = {}
    for k in ks:
        hit = ranks < k
        out[f"hr@{k}"] = hit.double()
        out[f"ndcg@{k}"] = torch.where(hit, 1.0 / torch.log2(ranks + 2.0), torch.zeros_like(ranks))
        out[f"mrr@{k}"] = torch.where(hit, 1.0 / (ranks + 1.0), torch.zeros_like(ranks))
    return out


def full_ranking_metrics(
    scores: torch.Tensor, target: torch.Tensor, ks: Sequence[int] = (5, 10, 20), *, history: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Per-example full-ranking metrics for one batch: ``scores`` [B, N + 1], ``target`` [B];
    ``history`` [B, H] (0-padded ids) removes those items first. Returns name -> [B] float64."""
    if history is not None:
        scores = mask_history(scores, history)
    return rank_metrics(target_ranks(scores, target), ks)


@torch.no_grad()
def ranking_scores(
    model: Any, data: Any, split: str, *, ks: Sequence[int] = (5, 10, 20), exclude_history: bool = False,
    batch_size: int = 512, device: str = "cpu", sampled_negatives: int = 0, generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """Per-example full-ranking metrics of ``model.predict`` over ``split``: name -> [n]
    float64, in the split's example order (users in dataset order, stable across runs).
    The model is put in eval mode, then restored. ``sampled_negatives`` > 0 adds the biased
    ``sampled_*`` metrics."""
    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    parts: dict[str, list[torch.Tensor]] = {}
    for batch in data.loader(split, batch_size):
        batch = to_device(batch, device)
        scores = model.predict(batch).float()
        history = batch.get("history") if exclude_history else None
        if exclude_history and history is None:
            raise ValueError(f"split {split!r} batches carry no 'history'; cannot exclude history items")
        per = full_ranking_metrics(scores, batch["target"], ks, history=history)
        if sampled_negatives > 0:
            sampled = _sampled(scores, batch["target"], ks, sampled_negatives, generator)
            per.update({f"sampled_{k}": v for k, v in sampled.items()})
        for name, values in per.items():
            parts.setdefault(name, []).append(values.detach().double().cpu())
    if hasattr(model, "train"):
        model.train(was_training)
    return {name: torch.cat(chunks) for name, chunks in parts.items()}


def evaluate_ranking(
    model: Any, data: Any, split: str, *, ks: Sequence[int] = (5, 10, 20), exclude_history: bool = False,
    batch_size: int = 512, device: str = "cpu", sampled_negatives: int = 0, generator: torch.Generator | None = None,
) -> dict[str, float]:
    """Mean full-ranking metrics of ``model.predict`` over ``split`` (the means of
    :func:`ranking_scores`). With ``sampled_negatives`` > 0 also the biased ``sampled_*`` metrics."""
    per = ranking_scores(model, data, split, ks=ks, exclude_history=exclude_history, batch_size=batch_size,
                         device=device, sampled_negatives=sampled_negatives, generator=generator)
    return means(per)


def means(per_example: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """name -> mean of the per-example values (0.0 for an empty split)."""
    return {name: float(v.sum()) / max(int(v.numel()), 1) for name, v in per_example.items()}


def save_scores(run: Any, split: str, per_example: Mapping[str, torch.Tensor]) -> None:
    """``run.save_example_scores(split, ...)`` when the run handle has it (test doubles may not)."""
    if hasattr(run, "save_example_scores") and per_example:
        run.save_example_scores(split, {name: v.numpy() for name, v in per_example.items()})


def _sampled(scores: torch.Tensor, target: torch.Tensor, ks: Sequence[int], n: int,
             generator: Any) -> dict[str, torch.Tensor]:
    """Target ranked among ``n`` uniform negatives (may hit the target; counted as a tie)."""
    num_items = scores.shape[1] - 1
    neg = torch.randint(1, num_items + 1, (scores.shape[0], n), generator=generator).to(scores.device)
    t = scores.gather(1, target[:, None].long())
    ranks = (scores.gather(1, neg) >= t).sum(1) - (neg == target[:, None]).sum(1)
    return rank_metrics(ranks, ks)


class FullRankingEvaluator:
    """The ``full-ranking`` evaluator: HR/NDCG/MRR@K on ``config.split`` (default test)."""

    def __init__(self, config: Any = None) -> None:
        self.split = getattr(config, "split", "test")
        self.ks = list(getattr(config, "ks", [5, 10, 20]))
        self.exclude_history = bool(getattr(config, "exclude_history", False))
        self.sampled_negatives = int(getattr(config, "sampled_negatives", 0))
        self.batch_size = int(getattr(config, "batch_size", 512))
        names = [f"{m}@{k}" for k in self.ks for m in ("hr", "ndcg", "mrr")]
        if self.sampled_negatives:
            names += [f"sampled_{n}" for n in names]
        self.metrics: Mapping[str, tuple[float, float, bool]] = {n: (0.0, 1.0, True) for n in names}

    def evaluate(self, model: Any, data: Any, run: Any) -> dict[str, float]:
        """Mean metrics; the per-user values go to ``run.save_example_scores("eval", ...)``."""
        gen = run.generator("sampled-negatives") if self.sampled_negatives else None
        per = ranking_scores(model, data, self.split, ks=self.ks, exclude_history=self.exclude_history,
                             batch_size=self.batch_size, device=getattr(run, "device", "cpu"),
                             sampled_negatives=self.sampled_negatives, generator=gen)
        save_scores(run, "eval", per)
        return means(per)
