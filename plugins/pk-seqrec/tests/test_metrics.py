"""Full-ranking metrics against a brute-force reference; history masking."""

from __future__ import annotations

import math

import torch
from hypothesis import given
from hypothesis import strategies as st
from pk_seqrec.evaluators import full_ranking_metrics, mask_history


def _brute(scores: list[float], target: int, k: int) -> tuple[float, float, float]:
    """Sort items by score, descending; ties put the target last; padding (0) excluded."""
    others = [i for i in range(1, len(scores)) if i != target]
    ahead = sum(1 for i in others if scores[i] >= scores[target]) if scores[target] != -math.inf else len(others)
    ranked = sorted(others, key=lambda i: -scores[i])
    assert ahead <= len(ranked)
    if ahead >= k:
        return 0.0, 0.0, 0.0
    return 1.0, 1.0 / math.log2(ahead + 2), 1.0 / (ahead + 1)


@given(b=st.integers(1, 5), n=st.integers(2, 25), seed=st.integers(0, 10_000), k=st.sampled_from([1, 5, 10, 20]),
       ties=st.booleans())
def test_metrics_match_brute_force(b: int, n: int, seed: int, k: int, ties: bool) -> None:
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(b, n + 1, generator=g, dtype=torch.float64)
    if ties:
        scores = scores.round()
    target = torch.randint(1, n + 1, (b,), generator=g)
    got = full_ranking_metrics(scores, target, [k])
    for row in range(b):
        hr, ndcg, mrr = _brute(scores[row].tolist(), int(target[row]), k)
        assert got[f"hr@{k}"][row].item() == hr
        assert math.isclose(got[f"ndcg@{k}"][row].item(), ndcg, rel_tol=1e-12)
        assert math.isclose(got[f"mrr@{k}"][row].item(), mrr, rel_tol=1e-12)


def test_constant_scores_earn_nothing() -> None:
    scores = torch.zeros(3, 50)
    got = full_ranking_metrics(scores, torch.tensor([1, 2, 3]), [10])
    assert got["hr@10"].sum() == 0


@given(n=st.integers(3, 30), seed=st.integers(0, 1000))
def test_history_masking_changes_exactly_the_history_items(n: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(2, n + 1, generator=g)
    scores[:, 0] = float("-inf")
    history = torch.randint(0, n + 1, (2, 5), generator=g, dtype=torch.int32)
    out = mask_history(scores, history)
    for row in range(2):
        hist = set(history[row].tolist()) - {0}
        changed = {i for i in range(1, n + 1) if out[row, i] != scores[row, i]}
        assert changed == hist
        assert torch.isneginf(out[row, 0])
