"""REMI's protocol metrics and evaluator (held-out users, multi-target).

Per user, with R the merged top-N list (distinct items, in score order) and T the user's
distinct target items:
- Recall@N = |R[:N] ∩ T| / |T|;  HitRate@N = 1 if R[:N] ∩ T is non-empty;
- NDCG@N = sum_{r < N, R[r] in T} 1/log2(r + 2)  /  sum_{r < min(|T|, N)} 1/log2(r + 2).
This NDCG is the standard, rank-aware one. The reference code iterates over a Python set of
retrieved ids (positions follow set order) and normalises by the ideal DCG of #hits, so
paper NDCG values are NOT comparable with these. Means are over users.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from pk.core.errors import ConfigError, UsageError
from pk.core.torch_helpers import to_device
from pk_remi.aggregators import InterestMerge, retrieve
from pk_remi.models.losses import routing_stats


def ranking_metrics(ranked: torch.Tensor, targets: torch.Tensor, ks: Sequence[int]) -> dict[str, torch.Tensor]:
    """Per-user recall/hr/ndcg@k [B] (float64) from ``ranked`` [B, N] (distinct ids in rank
    order, 0 = empty slot) and ``targets`` [B, T] (distinct ids, 0-padded; >= 1 per row)."""
    hit = (ranked[:, :, None] == targets[:, None, :]).any(-1) & (ranked != 0)  # [B, N]
    n_targets = (targets != 0).sum(1).double()
    discounts = 1.0 / torch.log2(torch.arange(ranked.shape[1], dtype=torch.float64) + 2.0)
    out: dict[str, torch.Tensor] = {}
    for k in ks:
        if k > ranked.shape[1]:
            raise ValueError(f"K={k} exceeds the {ranked.shape[1]} retrieved items")
        h = hit[:, :k].double()
        dcg = (h * discounts[:k]).sum(1)
        ideal_len = torch.minimum(n_targets, torch.tensor(float(k))).long()
        idcg = torch.cumsum(discounts[:k], 0)[(ideal_len - 1).clamp_min(0)]
        out[f"recall@{k}"] = h.sum(1) / n_targets.clamp_min(1)
        out[f"hr@{k}"] = (h.sum(1) > 0).double()
        out[f"ndcg@{k}"] = torch.where(ideal_len > 0, dcg / idcg, torch.zeros_like(dcg))
    return out


@torch.no_grad()
def protocol_scores(model: Any, data: Any, split: str, *, ks: Sequence[int] = (20, 50), batch_size: int = 256,
                    device: str = "cpu", merge: InterestMerge | None = None, exclude_history: bool = False,
                    diagnostics: bool = True) -> dict[str, torch.Tensor]:
    """Per-user metrics [U] (float64, in ``data.users[split]`` order, the same for every run
    on a split) over the held-out users of ``split`` (model in eval mode, then restored).
    The merged list is ``merge.top_n`` long (default: max(ks)); metrics use its first K.
    With ``diagnostics`` also ``routing_max`` (mean max routing weight per interest) and
    ``routing_entropy`` (mean routing entropy over real items / log(#real items))."""
    was_training = model.training
    model.eval()
    top_n = merge.top_n if merge is not None else max(ks)
    if top_n < max(ks):
        raise ConfigError(f"aggregator.top_n = {top_n} is below the largest K evaluated ({max(ks)}); raise top_n")
    parts: dict[str, list[torch.Tensor]] = {}
    try:
        items = model.item_embeddings()
        for batch in data.loader(split, batch_size):
            batch = to_device(batch, device)
            interests, routing = model.extract(batch["seq"])
            exclude = batch["history"] if exclude_history else None
            ranked, _ = retrieve(interests, items, top_n, merge, exclude)
            per = ranking_metrics(ranked, batch["targets"], ks)
            if diagnostics:
                mask = torch.nn.functional.pad(batch["seq"], (0, routing.shape[-1] - batch["seq"].shape[1])) != 0
                peak, entropy = routing_stats(routing, mask)
                per["routing_max"] = peak.double().mean(1)
                per["routing_entropy"] = entropy.double().mean(1)
            for name, values in per.items():
                parts.setdefault(name, []).append(values.double().cpu())
    finally:
        model.train(was_training)
    return {name: torch.cat(v) for name, v in parts.items()}


def evaluate_protocol(model: Any, data: Any, split: str, **kwargs: Any) -> dict[str, float]:
    """Means of :func:`protocol_scores` over the users of ``split``."""
    per = protocol_scores(model, data, split, **kwargs)
    return {name: float(v.mean()) if v.numel() else 0.0 for name, v in per.items()}


class REMIProtocolEvaluator:
    """The ``remi-protocol`` evaluator (see the module docstring). Merges with the run's
    configured aggregator (a ranked-list merge; anything else is a ConfigError), else the
    default ``interest-merge``. Saves per-user scores to ``examples-eval.npz``."""

    def __init__(self, config: Any = None) -> None:
        self.split = getattr(config, "split", "test")
        self.ks = [int(k) for k in getattr(config, "ks", [20, 50])]
        self.batch_size = int(getattr(config, "batch_size", 256))
        self.exclude_history = bool(getattr(config, "exclude_history", False))
        names = [f"{m}@{k}" for k in self.ks for m in ("recall", "hr", "ndcg")] + ["routing_max", "routing_entropy"]
        self.metrics: Mapping[str, tuple[float, float, bool]] = {
            n: (0.0, 1.0, not n.startswith("routing")) for n in names}

    def evaluate(self, model: Any, data: Any, run: Any) -> dict[str, float]:
        per = protocol_scores(model, data, self.split, ks=self.ks, batch_size=self.batch_size,
                              device=getattr(run, "device", "cpu"), merge=configured_merge(run),
                              exclude_history=self.exclude_history)
        if hasattr(run, "save_example_scores") and per and next(iter(per.values())).numel():
            run.save_example_scores("eval", per)
        return {name: float(v.mean()) if v.numel() else 0.0 for name, v in per.items()}


def configured_merge(run: Any) -> InterestMerge | None:
    """The run's configured aggregator (None when none is configured, or for a run handle
    that cannot build components). It must merge ranked lists (``kind = "ranked-lists"``):
    a model-weight aggregator here would otherwise be silently ignored, so it is a ConfigError."""
    try:
        agg = run.build("aggregator")
    except UsageError:
        return None
    if agg is None:
        return None
    if getattr(agg, "kind", None) != "ranked-lists":
        raise ConfigError(f"aggregator {type(agg).__name__} does not merge ranked lists; candidate matching needs "
                          "interest-merge (or remove [aggregator])")
    return agg
