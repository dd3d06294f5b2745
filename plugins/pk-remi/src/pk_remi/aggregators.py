"""Aggregators: ``interest-merge`` and serving. Each interest retrieves its own top-N by exact
inner product; the K ranked lists are merged by the ``interest-merge`` aggregator.

The merge is registered as an aggregator but it is NOT a model-weight aggregator: its
``kind`` is ``"ranked-lists"`` and it is unweighted (``weighted = False``). An update is
``({"items": [B, n] long, "scores": [B, n] float}, weight, meta)``, one per interest; the
weight is ignored; ``global_state`` is ignored (pass ``{}``). The result is
``{"items": [B, N], "scores": [B, N]}`` sorted by score (descending), each item at most once
per row with its best score, ties broken by the smaller item id; rows with fewer than N
distinct items are filled with item 0 and score -inf. Consequence (tested): the merge of
per-interest top-N lists equals the top-N of max_k <v_k, e_i>.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import SimpleNamespace
from typing import Any

import torch


def merge_ranked_lists(items: torch.Tensor, scores: torch.Tensor, top_n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """items/scores [B, M] (any order, repeats allowed, 0 = no item) -> the first ``top_n``
    distinct items by (score desc, item id asc) and their scores, [B, top_n] each."""
    if items.shape != scores.shape or items.dim() != 2:
        raise ValueError(f"items and scores must both be [B, M]; got {tuple(items.shape)} and {tuple(scores.shape)}")
    scores = scores.float().masked_fill(items == 0, float("-inf"))
    by_item = torch.argsort(items, dim=1, stable=True)
    items, scores = items.gather(1, by_item), scores.gather(1, by_item)
    by_score = torch.argsort(-scores, dim=1, stable=True)  # ties keep the smaller item id first
    items, scores = items.gather(1, by_score), scores.gather(1, by_score)
    # first occurrence of each item in this order (= its best score)
    order = torch.argsort(items, dim=1, stable=True)
    sorted_items = items.gather(1, order)
    first_sorted = torch.ones_like(sorted_items, dtype=torch.bool)
    first_sorted[:, 1:] = sorted_items[:, 1:] != sorted_items[:, :-1]
    keep = torch.zeros_like(first_sorted).scatter(1, order, first_sorted) & (items != 0)
    position = torch.arange(items.shape[1], device=items.device).expand_as(items)
    rank = torch.where(keep, position, position + items.shape[1])
    pick = torch.argsort(rank, dim=1)[:, :top_n]
    out_items = items.gather(1, pick).masked_fill(~keep.gather(1, pick), 0)
    out_scores = scores.gather(1, pick).masked_fill(out_items == 0, float("-inf"))
    if out_items.shape[1] < top_n:
        pad = top_n - out_items.shape[1]
        out_items = torch.nn.functional.pad(out_items, (0, pad))
        out_scores = torch.nn.functional.pad(out_scores, (0, pad), value=float("-inf"))
    return out_items, out_scores


class InterestMerge:
    """The ``interest-merge`` aggregator (see the module docstring)."""

    kind = "ranked-lists"
    weighted = False

    def __init__(self, config: Any = None, context: Any = None) -> None:
        self.top_n = int(getattr(config, "top_n", 50))
        if self.top_n < 1:
            raise ValueError("interest-merge: top_n must be >= 1")

    def aggregate(self, global_state: Mapping[str, torch.Tensor], updates: Sequence[Any],
                  state: Any = None) -> tuple[dict[str, torch.Tensor], Any]:
        if not updates:
            raise ValueError("interest-merge: no ranked lists to merge")
        parts_items, parts_scores = [], []
        for i, (lists, _weight, _meta) in enumerate(updates):
            if "items" not in lists or "scores" not in lists:
                raise ValueError(f"interest-merge: update {i} is not a ranked list (needs 'items' and 'scores' [B, n])")
            parts_items.append(lists["items"])
            parts_scores.append(lists["scores"])
        rows = {int(t.shape[0]) for t in parts_items}
        if len(rows) != 1:
            raise ValueError(f"interest-merge: updates disagree on the batch size ({sorted(rows)})")
        items, scores = merge_ranked_lists(torch.cat(parts_items, 1), torch.cat(parts_scores, 1), self.top_n)
        return {"items": items, "scores": scores}, state


def interest_scores(interests: torch.Tensor, item_emb: torch.Tensor,
                    exclude: torch.Tensor | None = None) -> torch.Tensor:
    """Exact inner products [B, K, N + 1] of interests [B, K, H] with items [N + 1, H];
    column 0 (padding) and the ids in ``exclude`` [B, X] (0-padded) get -inf."""
    scores = interests @ item_emb.T
    if exclude is not None:
        scores = scores.scatter(2, exclude.long()[:, None, :].expand(-1, scores.shape[1], -1), float("-inf"))
    scores[..., 0] = float("-inf")
    return scores


def retrieve(interests: torch.Tensor, item_emb: torch.Tensor, top_n: int, merge: InterestMerge | None = None,
             exclude: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-interest top-``top_n`` by exact inner product, merged -> (items, scores) [B, top_n]."""
    scores = interest_scores(interests, item_emb, exclude)
    n = min(top_n, scores.shape[-1] - 1)
    top_scores, top_items = scores.topk(n, dim=-1)  # [B, K, n]
    updates = [({"items": top_items[:, k], "scores": top_scores[:, k]}, 1.0, {"interest": k})
               for k in range(scores.shape[1])]
    if merge is None:
        merge = InterestMerge(SimpleNamespace(top_n=top_n))
    elif merge.top_n != top_n:
        raise ValueError(f"retrieve: the merge keeps {merge.top_n} items but {top_n} were asked for")
    out, _ = merge.aggregate({}, updates)
    return out["items"], out["scores"]
