"""Attention sampling for TransGNN: initial top-k of a structure-smoothed similarity and the
two sample-update strategies (message passing, similarity-weighted random walks).

A sample table is a ``LongTensor [N, k]`` of node ids; ``-1`` marks padding (a graph with
fewer than ``k + 1`` nodes). A node never samples itself nor a node of another graph.
All functions run under ``torch.no_grad()``: sampling is not differentiable.
"""

from __future__ import annotations

import torch
from torch import Tensor

PAD = -1


def normalized_adjacency(edge_index: Tensor, num_nodes: int) -> Tensor:
    """Sparse ``D^-1/2 A D^-1/2`` (no self-loops; isolated nodes get zero rows)."""
    src, dst = edge_index
    deg = torch.zeros(num_nodes, device=edge_index.device).index_add_(0, dst, torch.ones_like(dst, dtype=torch.float))
    inv = deg.clamp_min(1).rsqrt() * (deg > 0)
    values = inv[dst] * inv[src]
    return torch.sparse_coo_tensor(torch.stack([dst, src]), values, (num_nodes, num_nodes)).coalesce()


@torch.no_grad()
def smoothed_queries(h: Tensor, edge_index: Tensor, alpha: float, mode: str = "similarity", ppr_steps: int = 3) -> tuple[Tensor, Tensor]:
    """``(Z, Hn)`` with ``Hn`` the L2-normalised rows of ``h [N, d]`` and ``Z Hn^T`` the smoothed
    similarity: ``S + alpha A S`` ("similarity") or the truncated personalised-PageRank series
    ``sum_t alpha^t A^t S`` for ``t <= ppr_steps`` ("ppr"); ``S = Hn Hn^T`` is never formed."""
    hn = torch.nn.functional.normalize(h.float(), dim=-1)
    adj = normalized_adjacency(edge_index, h.shape[0])
    if mode == "similarity":
        return hn + alpha * torch.sparse.mm(adj, hn), hn
    if mode == "ppr":
        z, term = hn.clone(), hn
        for _ in range(ppr_steps):
            term = alpha * torch.sparse.mm(adj, term)
            z = z + term
        return z, hn
    raise ValueError(f"sampling must be 'similarity' or 'ppr', got {mode!r}")


@torch.no_grad()
def topk_samples(z: Tensor, hn: Tensor, k: int, graph: Tensor | None = None, chunk: int = 2048) -> Tensor:
    """Row-wise top-``k`` of ``z @ hn.T`` excluding the diagonal and other graphs, in row chunks
    (memory ``O(chunk * N)``). Returns ``[N, k_eff]`` with ``k_eff = min(k, largest graph - 1)``
    (at least 1), padded with -1 where a graph is too small."""
    n = z.shape[0]
    if graph is None:
        largest = n
    else:
        largest = int(torch.bincount(graph).max()) if n else 0
    k_eff = max(1, min(k, largest - 1))
    out = torch.full((n, k_eff), PAD, dtype=torch.long, device=z.device)
    cols = torch.arange(n, device=z.device)
    for start in range(0, n, chunk):
        rows = torch.arange(start, min(start + chunk, n), device=z.device)
        scores = z[rows] @ hn.T
        invalid = cols.unsqueeze(0) == rows.unsqueeze(1)
        if graph is not None:
            invalid = invalid | (graph[rows].unsqueeze(1) != graph.unsqueeze(0))
        scores = scores.masked_fill(invalid, float("-inf"))
        top = scores.topk(min(k_eff, n), dim=1)
        idx = torch.where(torch.isfinite(top.values), top.indices, torch.full_like(top.indices, PAD))
        out[rows, : idx.shape[1]] = idx
    return out


@torch.no_grad()
def select_topk(owner: Tensor, candidate: Tensor, hn: Tensor, k: int) -> Tensor:
    """For each owner node, the ``k`` distinct candidates (not itself, not padding) of highest
    cosine similarity ``hn[owner] . hn[candidate]``; ``[N, k]`` padded with -1."""
    n = hn.shape[0]
    keep = (candidate >= 0) & (candidate != owner)
    key = torch.unique(owner[keep] * n + candidate[keep])
    owner, candidate = key // n, key % n
    score = torch.empty(owner.numel(), dtype=torch.float64, device=hn.device)
    for start in range(0, owner.numel(), 1 << 20):  # bounded memory: 1M pairs at a time
        part = slice(start, start + (1 << 20))
        score[part] = (hn[owner[part]] * hn[candidate[part]]).sum(-1).double()
    score = score.clamp(-1, 1)
    # one sort: by owner, then by descending score (scores lie in [-1, 1], so 4 * owner separates owners);
    # the stable sort keeps ascending candidate id among equal scores
    order = torch.sort(owner.double() * 4.0 + (1.0 - score), stable=True).indices
    owner, candidate = owner[order], candidate[order]
    counts = torch.bincount(owner, minlength=n)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(owner.numel(), device=hn.device) - starts[owner]
    sel = rank < k
    out = torch.full((n, k), PAD, dtype=torch.long, device=hn.device)
    out[owner[sel], rank[sel]] = candidate[sel]
    return out


@torch.no_grad()
def message_passing_update(samples: Tensor, h: Tensor, edge_index: Tensor) -> Tensor:
    """New ``Smp(i)`` = top-k by similarity of ``Smp(i) ∪ ⋃_{j ∈ N(i)} Smp(j)`` (cost ``O(|E| k d)``).

    The old samples are candidates, so the summed similarity never decreases."""
    n, k = samples.shape
    hn = torch.nn.functional.normalize(h.float(), dim=-1)
    src, dst = edge_index
    owner = torch.cat([torch.arange(n, device=h.device).repeat_interleave(k), dst.repeat_interleave(k)])
    candidate = torch.cat([samples.flatten(), samples[src].flatten()])
    return select_topk(owner, candidate, hn, k)


@torch.no_grad()
def random_walk_update(
    samples: Tensor, h: Tensor, edge_index: Tensor, walk_length: int = 5, temperature: float = 0.5,
    generator: torch.Generator | None = None,
) -> Tensor:
    """New ``Smp(i)`` = top-k by similarity of ``Smp(i)`` ∪ the nodes visited by walks of
    ``walk_length`` steps started at each sample of ``i``; a walker at ``u`` moves to neighbour
    ``v`` with probability ``softmax_v(cos(h_u, h_v) / temperature)`` (isolated nodes stay put).
    Randomness draws only from ``generator`` (global RNG if None). Cost ``O(N k L)`` + ``O(|E| d)``."""
    n, k = samples.shape
    hn = torch.nn.functional.normalize(h.float(), dim=-1)
    src, dst = edge_index
    order = torch.argsort(src, stable=True)
    src, dst = src[order], dst[order]
    weight = torch.exp(((hn[src] * hn[dst]).sum(-1) / temperature).double())
    cum = torch.cumsum(weight, 0)
    deg = torch.bincount(src, minlength=n)
    row_end = torch.cumsum(deg, 0)
    row_start = row_end - deg
    total = torch.zeros(n, dtype=torch.float64, device=h.device).index_add_(0, src, weight)
    before = torch.cat([torch.zeros(1, dtype=torch.float64, device=h.device), cum])[row_start]
    start = samples.flatten()
    valid = start >= 0
    cur = start.clamp_min(0)
    visited = []
    for _ in range(walk_length):
        moves = valid & (deg[cur] > 0)
        r = torch.rand(cur.numel(), generator=generator, dtype=torch.float64, device=h.device) * total[cur]
        e = torch.searchsorted(cum, before[cur] + r, right=True)
        e = torch.minimum(torch.maximum(e, row_start[cur]), (row_end[cur] - 1).clamp_min(0))
        cur = torch.where(moves, dst[e.clamp(max=max(dst.numel() - 1, 0))] if dst.numel() else cur, cur)
        visited.append(torch.where(valid, cur, torch.full_like(cur, PAD)))
    owner = torch.arange(n, device=h.device).repeat_interleave(k)
    owners = torch.cat([owner] * (walk_length + 1))
    candidates = torch.cat([samples.flatten(), *visited])
    return select_topk(owners, candidates, hn, k)
