"""The fast exact precompute (issue 26): grouped top-k and meet-in-the-middle hops equal the old code.

The old implementations are kept here as references: ``reference_topk_samples`` is the previous
``topk_samples`` (a fresh ``[chunk, N]`` product per chunk, ``masked_fill``, :func:`select_rows` on the
whole row); ``reference_hops`` is a plain BFS per node. Each comparison is also run against a broken
variant, to show that it fails when the tie rule or the hop count is wrong."""

from __future__ import annotations

from collections import deque

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pk_transgnn.models import sampling
from pk_transgnn.models.encodings import dense_hops, sample_hops
from pk_transgnn.models.sampling import PAD, select_rows, select_rows_grouped, smoothed_queries, topk_samples


def reference_topk_samples(z, hn, k, graph=None, chunk=2048, hop_table=None, tol=sampling.TIE_TOL):
    """``topk_samples`` before issue 26, verbatim."""
    n = z.shape[0]
    largest = n if graph is None else (int(torch.bincount(graph).max()) if n else 0)
    k_eff = max(1, min(k, largest - 1))
    out = torch.full((n, k_eff), PAD, dtype=torch.long)
    cols = torch.arange(n)
    for start in range(0, n, chunk):
        rows = torch.arange(start, min(start + chunk, n))
        scores = (z[rows] @ hn.T).double()
        invalid = cols.unsqueeze(0) == rows.unsqueeze(1)
        if graph is not None:
            invalid = invalid | (graph[rows].unsqueeze(1) != graph.unsqueeze(0))
        scores = scores.masked_fill(invalid, float("-inf"))
        tb = hop_table[rows].long() if hop_table is not None else None
        idx = select_rows(scores, k_eff, tb, tol)
        out[rows, : idx.shape[1]] = idx
    return out


def index_order_topk(scores, k, tiebreak=None, tol=sampling.TIE_TOL, group=32):
    """A broken selection: plain ``topk`` (ties cut by position, no tie groups left out)."""
    return scores.topk(min(k, scores.shape[1]), dim=1).indices


def graph_and_features(n: int, seed: int, onehot: bool, density: float = 0.25):
    g = torch.Generator().manual_seed(seed)
    a = torch.triu(torch.rand(n, n, generator=g) < density, 1).nonzero().t()
    ei = torch.cat([a, a.flip(0)], dim=1)
    if onehot:  # few distinct rows: massive exact ties
        x = torch.nn.functional.one_hot(torch.randint(0, 3, (n,), generator=g), 3).float()
    else:
        x = torch.randn(n, 6, generator=g)
        x[torch.rand(n, generator=g) < 0.3] = x[0].clone()  # duplicated rows: exact ties among continuous scores
    return x, ei


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 70), seed=st.integers(0, 10_000), k=st.integers(1, 6), onehot=st.booleans(),
       hops=st.booleans(), chunk=st.integers(1, 80), group=st.integers(1, 5),
       mode=st.sampled_from(["similarity", "ppr"]))
def test_topk_samples_equals_the_old_implementation(n, seed, k, onehot, hops, chunk, group, mode):
    x, ei = graph_and_features(n, seed, onehot)
    z, hn = smoothed_queries(x, ei, 0.5, mode)
    table = dense_hops(ei, n, 3) if hops else None
    expected = reference_topk_samples(z, hn, k, None, chunk, table)
    assert torch.equal(topk_samples(z, hn, k, None, chunk, table, group=group), expected)


def test_topk_comparison_fails_without_the_tie_rule(monkeypatch):
    """The comparison above catches a top-k that cuts ties by index instead of leaving the group out."""
    x, ei = graph_and_features(40, 3, onehot=True)
    z, hn = smoothed_queries(x, ei, 0.5)
    expected = reference_topk_samples(z, hn, 4)
    assert torch.equal(topk_samples(z, hn, 4, group=2), expected)
    monkeypatch.setattr(sampling, "select_rows_grouped", index_order_topk)
    assert not torch.equal(topk_samples(z, hn, 4, group=2), expected)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), k=st.integers(1, 8), c=st.integers(1, 400), levels=st.integers(1, 400),
       tb=st.booleans(), group=st.integers(1, 9), special=st.booleans())
def test_select_rows_grouped_equals_select_rows(seed, k, c, levels, tb, group, special):
    """Same ids in the same order, also with exact ties, ties within the tolerance, -inf and NaN."""
    g = torch.Generator().manual_seed(seed)
    scores = torch.randint(0, levels, (9, c), generator=g).double() / levels
    if special:
        scores[torch.rand(9, c, generator=g) < 0.1] = float("-inf")
        scores[torch.rand(9, c, generator=g) < 0.02] = float("nan")
        scores[0] += torch.rand(c, generator=g, dtype=torch.float64) * 1e-5  # near-ties inside the tolerance
    tiebreak = torch.randint(0, 4, (9, c), generator=g, dtype=torch.uint8) if tb else None
    expected = select_rows(scores, k, None if tiebreak is None else tiebreak.long())
    assert torch.equal(select_rows_grouped(scores, k, tiebreak, group=group), expected)


def test_select_rows_grouped_comparison_fails_on_a_broken_selection():
    scores = torch.tensor([[0.9, 0.5, 0.5, 0.5, 0.1] * 8], dtype=torch.float64)
    assert select_rows(scores, 2)[0, 1] == PAD, "the tied group for 2nd place is left out"
    assert torch.equal(select_rows_grouped(scores, 2, group=1), select_rows(scores, 2))
    assert not torch.equal(index_order_topk(scores, 2), select_rows(scores, 2))


def reference_hops(n: int, ei: torch.Tensor, samples: torch.Tensor, max_hops: int) -> torch.Tensor:
    adj: list[list[int]] = [[] for _ in range(n)]
    for a, b in ei.t().tolist():
        adj[a].append(b)
    out = torch.empty_like(samples)
    for i in range(n):
        dist, queue = {i: 0}, deque([i])
        while queue:
            u = queue.popleft()
            for v in adj[u]:
                if v not in dist:
                    dist[v] = dist[u] + 1
                    queue.append(v)
        for j, s in enumerate(samples[i].tolist()):
            out[i, j] = max_hops + 2 if s < 0 else min(dist.get(s, max_hops + 1), max_hops + 1)
    return out


def random_samples(n: int, k: int, g: torch.Generator) -> torch.Tensor:
    smp = torch.randint(-1, max(n, 1), (n, k), generator=g)
    smp[smp == torch.arange(n).unsqueeze(1)] = PAD  # samples are never the node itself
    return smp


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 60), seed=st.integers(0, 10_000), k=st.integers(1, 6), max_hops=st.integers(1, 7),
       directed=st.booleans(), density=st.floats(0.0, 0.3))
def test_sample_hops_equal_bfs(n, seed, k, max_hops, directed, density):
    g = torch.Generator().manual_seed(seed)
    ei = (torch.rand(n, n, generator=g) < density).nonzero().t()
    if not directed:
        ei = torch.cat([ei, ei.flip(0)], dim=1)
    smp = random_samples(n, k, g)
    assert torch.equal(sample_hops(ei, n, smp, max_hops), reference_hops(n, ei, smp, max_hops))


def test_sample_hops_comparison_fails_when_the_meeting_radius_is_short(monkeypatch):
    """A path: hops up to max_hops need both half-balls; shrinking the samples' side by one hop breaks it."""
    from pk_transgnn.models import encodings

    n, max_hops = 12, 5
    src = torch.arange(n - 1)
    ei = torch.cat([torch.stack([src, src + 1]), torch.stack([src + 1, src])], dim=1)
    smp = torch.stack([(torch.arange(n) + d) % n for d in (1, 3, 5, 6)], dim=1)
    expected = reference_hops(n, ei, smp, max_hops)
    assert torch.equal(sample_hops(ei, n, smp, max_hops), expected)
    real = encodings._ball_distances
    monkeypatch.setattr(encodings, "_ball_distances", lambda adj, radius: real(adj, max(radius - 1, 0)))
    assert not torch.equal(sample_hops(ei, n, smp, max_hops), expected)


@pytest.mark.parametrize("n", [3000])
def test_topk_and_hops_equal_the_old_code_on_a_larger_graph(n):
    """A graph above the default group threshold, chunks of 2048 rows as in the model."""
    g = torch.Generator().manual_seed(0)
    ei = torch.randint(0, n, (2, 4 * n), generator=g)
    ei = torch.cat([ei, ei.flip(0)], dim=1)
    x = torch.randn(n, 16, generator=g)
    x[:50] = x[50].clone()  # some duplicates
    z, hn = smoothed_queries(x, ei, 0.5)
    new = topk_samples(z, hn, 10)
    assert torch.equal(new, reference_topk_samples(z, hn, 10))
    smp = new[:300]
    sub = ei[:, (ei < 300).all(0)]
    assert torch.equal(sample_hops(sub, 300, smp.clamp_max(299), 5), reference_hops(300, sub, smp.clamp_max(299), 5))
