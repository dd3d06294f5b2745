"""REMI protocol metrics against a brute-force reference."""

import math

import torch
from hypothesis import given
from hypothesis import strategies as st
from pk_remi.evaluators import ranking_metrics


def brute(ranked: list[int], targets: list[int], k: int) -> dict[str, float]:
    t = set(targets)
    hits = [1.0 if item in t else 0.0 for item in ranked[:k]]
    dcg = sum(h / math.log2(r + 2) for r, h in enumerate(hits))
    idcg = sum(1 / math.log2(r + 2) for r in range(min(len(t), k)))
    return {"recall": sum(hits) / len(t), "hr": float(sum(hits) > 0), "ndcg": dcg / idcg}


@st.composite
def cases(draw):
    num_items = draw(st.integers(5, 40))
    n = draw(st.integers(1, num_items))
    b = draw(st.integers(1, 4))
    ranked, targets = [], []
    for _ in range(b):
        ranked.append(draw(st.permutations(list(range(1, num_items + 1))))[:n])
        targets.append(draw(st.lists(st.integers(1, num_items), min_size=1, max_size=8, unique=True)))
    return ranked, targets, n


@given(cases())
def test_metrics_match_brute_force(case):
    ranked, targets, n = case
    width = max(map(len, targets))
    t = torch.tensor([x + [0] * (width - len(x)) for x in targets])
    ks = sorted({1, n, max(1, n // 2)})
    got = ranking_metrics(torch.tensor(ranked), t, ks)
    for i in range(len(ranked)):
        for k in ks:
            want = brute(ranked[i], targets[i], k)
            for name in ("recall", "hr", "ndcg"):
                assert math.isclose(float(got[f"{name}@{k}"][i]), want[name], abs_tol=1e-12)
                assert 0.0 <= float(got[f"{name}@{k}"][i]) <= 1.0


def test_ndcg_is_rank_aware():
    targets = torch.tensor([[7, 0]])
    top = ranking_metrics(torch.tensor([[7, 3, 4]]), targets, [3])["ndcg@3"]
    lower = ranking_metrics(torch.tensor([[3, 4, 7]]), targets, [3])["ndcg@3"]
    assert float(top) == 1.0 and float(lower) < float(top)
