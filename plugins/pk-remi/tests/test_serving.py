"""The interest merge (ranked lists) and exact top-N retrieval."""

import copy
import random
from types import SimpleNamespace

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from pk_remi.aggregators import InterestMerge, interest_scores, retrieve


def _lists(seed: int, k: int, n: int, b: int = 3, num_items: int = 30):
    """k per-interest top-n lists drawn from random interests (distinct, sorted per list)."""
    g = torch.Generator().manual_seed(seed)
    interests, items = torch.randn(b, k, 6, generator=g), torch.randn(num_items + 1, 6, generator=g)
    scores = interest_scores(interests, items)
    top_s, top_i = scores.topk(n, -1)
    return interests, items, [({"items": top_i[:, j], "scores": top_s[:, j]}, 1.0, {"interest": j}) for j in range(k)]


@given(st.integers(0, 2**31 - 1), st.integers(1, 5), st.integers(1, 12))
def test_merge_returns_n_distinct_items_sorted_by_score(seed, k, n):
    _, _, updates = _lists(seed, k, n)
    out, _ = InterestMerge(SimpleNamespace(top_n=n)).aggregate({}, updates)
    assert out["items"].shape == (3, n)
    for row_items, row_scores in zip(out["items"], out["scores"], strict=True):
        assert len(set(row_items.tolist())) == n and 0 not in row_items.tolist()
        assert bool((row_scores.diff() <= 0).all())


@given(st.integers(0, 2**31 - 1), st.integers(1, 5), st.integers(1, 12))
def test_merge_equals_top_n_of_best_interest_score(seed, k, n):
    interests, items, _ = _lists(seed, k, n)
    merged, merged_scores = retrieve(interests, items, n)
    best = interest_scores(interests, items).max(1).values
    top_s, _ = best.topk(n, -1)
    assert torch.allclose(merged_scores, top_s)
    assert torch.allclose(best.gather(1, merged), top_s)


@given(st.integers(0, 2**31 - 1), st.integers(2, 5), st.randoms(use_true_random=False))
def test_merge_is_invariant_to_interest_order_and_does_not_mutate(seed, k, rnd):
    _, _, updates = _lists(seed, k, 8)
    before = copy.deepcopy(updates)
    shuffled = list(updates)
    rnd.shuffle(shuffled)
    merge = InterestMerge(SimpleNamespace(top_n=8))
    a, _ = merge.aggregate({}, updates)
    b, _ = merge.aggregate({}, shuffled)
    assert torch.equal(a["items"], b["items"]) and torch.equal(a["scores"], b["scores"])
    for (x, _, _), (y, _, _) in zip(updates, before, strict=True):
        assert torch.equal(x["items"], y["items"]) and torch.equal(x["scores"], y["scores"])


@given(st.integers(0, 2**31 - 1), st.integers(1, 5))
def test_merge_fixed_point_and_k1_is_plain_top_n(seed, copies):
    _, _, updates = _lists(seed, 1, 8)
    lists = updates[0][0]
    out, _ = InterestMerge(SimpleNamespace(top_n=8)).aggregate({}, [copy.deepcopy(updates[0]) for _ in range(copies)])
    assert torch.equal(out["items"], lists["items"]) and torch.equal(out["scores"], lists["scores"])


def test_merge_keeps_best_score_of_a_repeated_item_and_breaks_ties_by_id():
    updates = [({"items": torch.tensor([[5, 3, 9]]), "scores": torch.tensor([[2.0, 1.0, 1.0]])}, 1.0, {}),
               ({"items": torch.tensor([[3, 7, 5]]), "scores": torch.tensor([[3.0, 1.0, 0.5]])}, 1.0, {})]
    out, _ = InterestMerge(SimpleNamespace(top_n=4)).aggregate({}, updates)
    assert out["items"].tolist() == [[3, 5, 7, 9]]
    assert out["scores"].tolist() == [[3.0, 2.0, 1.0, 1.0]]


def test_merge_pads_when_too_few_distinct_items_and_rejects_bad_input():
    updates = [({"items": torch.tensor([[4, 2]]), "scores": torch.tensor([[1.0, 0.0]])}, 1.0, {})] * 2
    out, _ = InterestMerge(SimpleNamespace(top_n=3)).aggregate({}, updates)
    assert out["items"].tolist() == [[4, 2, 0]] and out["scores"][0, 2] == float("-inf")
    with pytest.raises(ValueError):
        InterestMerge(None).aggregate({}, [])
    with pytest.raises(ValueError):
        InterestMerge(None).aggregate({}, [({"w": torch.zeros(2)}, 1.0, {})])


def test_retrieval_never_returns_padding_or_excluded_items():
    g = torch.Generator().manual_seed(random.Random(0).randint(0, 100))
    interests, items = torch.randn(2, 3, 4, generator=g), torch.randn(11, 4, generator=g)
    items[0] = 100.0  # the padding row would win every inner product
    exclude = torch.tensor([[1, 2, 0], [3, 0, 0]])
    ranked, _ = retrieve(interests, items, 5, exclude=exclude)
    assert 0 not in ranked.tolist()[0] + ranked.tolist()[1]
    assert not {1, 2} & set(ranked[0].tolist()) and 3 not in ranked[1].tolist()
