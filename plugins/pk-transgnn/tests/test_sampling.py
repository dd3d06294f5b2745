"""Sampling, sample updates and positional encodings: properties from the TransGNN note."""

from __future__ import annotations

from collections import deque

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pk_transgnn.models.encodings import dense_hops, node_degree, pagerank, sample_hops
from pk_transgnn.models.sampling import (
    PAD,
    message_passing_update,
    random_walk_update,
    select_rows,
    smoothed_queries,
    topk_samples,
)


def random_batch(sizes: list[int], seed: int, density: float = 0.3) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Disjoint random graphs: ``(x [N, 6], edge_index [2, E] symmetric, graph [N])``."""
    g = torch.Generator().manual_seed(seed)
    edges, graph, offset = [], [], 0
    for gi, n in enumerate(sizes):
        a = torch.rand(n, n, generator=g) < density
        a = torch.triu(a, 1)
        idx = a.nonzero().t() + offset
        edges.append(torch.cat([idx, idx.flip(0)], dim=1))
        graph.append(torch.full((n,), gi))
        offset += n
    x = torch.randn(offset, 6, generator=g)
    return x, torch.cat(edges, dim=1), torch.cat(graph)


graph_sizes = st.lists(st.integers(1, 12), min_size=1, max_size=4)


@settings(max_examples=25)
@given(sizes=graph_sizes, seed=st.integers(0, 10_000), k=st.integers(1, 8), mode=st.sampled_from(["similarity", "ppr"]))
def test_initial_samples_are_valid(sizes, seed, k, mode):
    x, ei, graph = random_batch(sizes, seed)
    z, hn = smoothed_queries(x, ei, 0.5, mode)
    smp = topk_samples(z, hn, k, graph, chunk=5)
    k_eff = max(1, min(k, max(sizes) - 1))
    assert smp.shape == (x.shape[0], k_eff)
    for i in range(x.shape[0]):
        row = smp[i][smp[i] != PAD].tolist()
        assert i not in row, "a node never samples itself"
        assert len(set(row)) == len(row), "samples are distinct"
        assert all(int(graph[j]) == int(graph[i]) for j in row), "samples stay inside the node's graph"
        assert len(row) == min(k_eff, sizes[int(graph[i])] - 1), "all non-self nodes of small graphs are sampled"
        # padding only at the end of a row
        assert (smp[i][len(row):] == PAD).all()


@settings(max_examples=15)
@given(sizes=graph_sizes, seed=st.integers(0, 10_000), k=st.integers(1, 6))
def test_chunked_topk_equals_dense(sizes, seed, k):
    x, ei, graph = random_batch(sizes, seed)
    z, hn = smoothed_queries(x, ei, 0.5)
    assert torch.equal(topk_samples(z, hn, k, graph, chunk=3), topk_samples(z, hn, k, graph, chunk=10_000))


@settings(max_examples=20)
@given(sizes=graph_sizes, seed=st.integers(0, 10_000), k=st.integers(1, 6))
def test_message_passing_update_never_lowers_similarity(sizes, seed, k):
    x, ei, graph = random_batch(sizes, seed, density=0.4)
    z, hn = smoothed_queries(x, ei, 0.5)
    old = topk_samples(z, hn, k, graph)
    h = torch.randn(x.shape[0], 5, generator=torch.Generator().manual_seed(seed + 7))
    new = message_passing_update(old, h, ei, tol=0.0)  # exact ties only: the monotonicity holds without left-out groups
    hn2 = torch.nn.functional.normalize(h, dim=-1)

    def total(i: int, row: torch.Tensor) -> float:
        sim = hn2[row.clamp_min(0)] @ hn2[i]
        return float(torch.where(row >= 0, sim, torch.zeros_like(sim)).sum())

    # compare the top-m of each row for m = the old row's valid count (new rows may hold more)
    for i in range(x.shape[0]):
        m = int((old[i] >= 0).sum())
        new_valid = new[i][new[i] >= 0]
        assert new_valid.numel() >= m
        assert int(graph[new_valid].ne(graph[i]).sum()) == 0 and i not in new_valid.tolist()
        assert total(i, new[i, :m]) >= total(i, old[i]) - 1e-5


@settings(max_examples=15)
@given(sizes=graph_sizes, seed=st.integers(0, 10_000), k=st.integers(1, 6))
def test_random_walk_update_is_seeded_and_stays_in_graph(sizes, seed, k):
    x, ei, graph = random_batch(sizes, seed, density=0.4)
    z, hn = smoothed_queries(x, ei, 0.5)
    old = topk_samples(z, hn, k, graph)
    a = random_walk_update(old, x, ei, 4, generator=torch.Generator().manual_seed(1))
    b = random_walk_update(old, x, ei, 4, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b), "same generator seed, same samples"
    for i in range(x.shape[0]):
        row = a[i][a[i] >= 0]
        assert i not in row.tolist() and len(set(row.tolist())) == row.numel()
        assert int(graph[row].ne(graph[i]).sum()) == 0
        assert row.numel() >= int((old[i] >= 0).sum()), "old samples remain candidates"


def bfs(n: int, ei: torch.Tensor, src: int) -> dict[int, int]:
    adj: dict[int, list[int]] = {i: [] for i in range(n)}
    for a, b in ei.t().tolist():
        adj[a].append(b)
    dist, queue = {src: 0}, deque([src])
    while queue:
        u = queue.popleft()
        for v in adj[u]:
            if v not in dist:
                dist[v] = dist[u] + 1
                queue.append(v)
    return dist


@settings(max_examples=20)
@given(sizes=graph_sizes, seed=st.integers(0, 10_000), k=st.integers(1, 6), max_hops=st.integers(1, 4))
def test_hops_match_bfs_and_are_capped(sizes, seed, k, max_hops):
    x, ei, graph = random_batch(sizes, seed, density=0.2)
    n = x.shape[0]
    z, hn = smoothed_queries(x, ei, 0.5)
    smp = topk_samples(z, hn, k, graph)
    hops = sample_hops(ei, n, smp, max_hops, chunk=4)
    assert hops.shape == smp.shape
    for i in range(n):
        dist = bfs(n, ei, i)
        for j, s in enumerate(smp[i].tolist()):
            expected = max_hops + 2 if s < 0 else min(dist.get(s, max_hops + 1), max_hops + 1)
            assert int(hops[i, j]) == expected


@settings(max_examples=20)
@given(sizes=graph_sizes, seed=st.integers(0, 10_000))
def test_pagerank_sums_to_one_per_graph(sizes, seed):
    x, ei, graph = random_batch(sizes, seed, density=0.2)
    pr = pagerank(ei, x.shape[0], graph)
    assert bool(torch.isfinite(pr).all()) and bool((pr > 0).all())
    sums = torch.zeros(len(sizes)).index_add_(0, graph, pr)
    assert torch.allclose(sums, torch.ones(len(sizes)), atol=1e-5)


def test_pagerank_uniform_on_regular_graph_and_degree():
    n = 7
    src = torch.arange(n)
    ei = torch.cat([torch.stack([src, (src + 1) % n]), torch.stack([(src + 1) % n, src])], dim=1)
    assert torch.allclose(pagerank(ei, n), torch.full((n,), 1 / n), atol=1e-6)
    assert node_degree(ei, n).tolist() == [2] * n


def test_select_rows_leaves_out_a_tie_group_straddling_the_kth_place():
    """Old code cut ties by index (``topk``): a row of equal scores kept columns 0..k-1."""
    scores = torch.tensor([[0.9, 0.5, 0.5, 0.5, 0.1], [0.9, 0.5, 0.5, 0.2, 0.1]], dtype=torch.float64)
    out = select_rows(scores, 2)
    assert out[0].tolist() == [0, PAD], "the three-way tie for 2nd place is left out"
    assert out[1].tolist() == [0, PAD], "a two-way tie for 2nd place (3 = k + 1 candidates) is left out too"
    assert sorted(select_rows(scores, 3)[1].tolist()) == [0, 1, 2], "a tie group inside the top-k is kept whole"
    tb = torch.tensor([[0, 3, 1, 2, 0], [0, 0, 0, 0, 0]])
    assert select_rows(scores, 2, tb)[0].tolist() == [0, 2], "fewer hops win a score tie"
    near = torch.tensor([[1.0, 0.5 + 1e-6, 0.5, 0.0]], dtype=torch.float64)
    assert select_rows(near, 2)[0].tolist() == [0, PAD], "scores within the tolerance count as tied"
    assert select_rows(near, 2, tol=0.0)[0].tolist() == [0, 1]


def _onehot_batch(sizes: list[int], seed: int, classes: int = 2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    x, ei, graph = random_batch(sizes, seed)
    labels = torch.randint(0, classes, (x.shape[0],), generator=torch.Generator().manual_seed(seed + 3))
    return torch.nn.functional.one_hot(labels, 4).float(), ei, graph


@settings(max_examples=25)
@given(n=st.integers(2, 14), seed=st.integers(0, 10_000), k=st.integers(1, 6), hops=st.booleans())
def test_initial_samples_are_permutation_equivariant_with_tied_onehot_features(n, seed, k, hops):
    """One-hot features tie massively; the old index-order top-k picked different *sets* after
    relabelling (fails this test with ``scores.topk`` in place of :func:`select_rows`)."""
    x, ei, _ = _onehot_batch([n], seed)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 1))
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(n)
    x_p, ei_p = x[perm], inv[ei]

    def sample(xx: torch.Tensor, ee: torch.Tensor) -> torch.Tensor:
        z, hn = smoothed_queries(xx @ torch.linspace(-1, 1, 24).view(4, 6), ee, 0.5)
        return topk_samples(z, hn, k, hop_table=dense_hops(ee, n, 3) if hops else None)

    a, b = sample(x, ei), sample(x_p, ei_p)
    for j in range(n):
        expected = {int(inv[s]) for s in a[int(perm[j])].tolist() if s >= 0}
        assert {s for s in b[j].tolist() if s >= 0} == expected


@settings(max_examples=15)
@given(sizes=graph_sizes, seed=st.integers(0, 10_000), max_hops=st.integers(1, 4))
def test_dense_hops_match_bfs(sizes, seed, max_hops):
    x, ei, _ = random_batch(sizes, seed, density=0.2)
    n = x.shape[0]
    table = dense_hops(ei, n, max_hops)
    for i in range(n):
        dist = bfs(n, ei, i)
        for j in range(n):
            assert int(table[i, j]) == min(dist.get(j, max_hops + 1), max_hops + 1)


@settings(max_examples=25)
@given(seed=st.integers(0, 10_000), k=st.integers(1, 8), c=st.integers(1, 60), levels=st.integers(1, 6),
       tb=st.booleans())
def test_select_rows_prefilter_equals_full_sort(seed, k, c, levels, tb):
    """The top-(2k+8) prefilter must give exactly the full-sort answer, also when a tie group at the
    k-th place runs past the prefiltered candidates (few distinct score levels => huge tie groups)."""
    from pk_transgnn.models.sampling import _select_sorted

    g = torch.Generator().manual_seed(seed)
    scores = torch.randint(0, levels, (7, c), generator=g).double() / levels
    scores[torch.rand(7, c, generator=g) < 0.2] = float("-inf")
    tiebreak = torch.randint(0, 4, (7, c), generator=g) if tb else None
    full = torch.sort(scores, dim=1, descending=True)
    ties = None if tiebreak is None else tiebreak.gather(1, full.indices)
    expected = _select_sorted(full.indices, full.values, ties, min(k, c), 1e-4)
    got = select_rows(scores, k, tiebreak)
    assert [sorted(r) for r in got.tolist()] == [sorted(r) for r in expected.tolist()]


@settings(max_examples=20)
@given(sizes=graph_sizes, seed=st.integers(0, 10_000), k=st.integers(1, 6))
def test_batched_message_passing_update_equals_edge_list_version(sizes, seed, k):
    """The padded-block update used for graph batches picks the same sets as the pairwise version."""
    from pk_transgnn.models.sampling import message_passing_update_batched

    x, ei, graph = random_batch(sizes, seed, density=0.4)
    z, hn = smoothed_queries(x, ei, 0.5)
    old = topk_samples(z, hn, k, graph)
    h = torch.randn(x.shape[0], 5, generator=torch.Generator().manual_seed(seed + 7))
    ptr = torch.tensor([0, *torch.tensor(sizes).cumsum(0).tolist()])
    a = message_passing_update(old, h, ei, tol=1e-4)
    b = message_passing_update_batched(old, h, ei, ptr, tol=1e-4)
    assert [sorted(r) for r in a.tolist()] == [sorted(r) for r in b.tolist()]
