"""Positional-encoding inputs for TransGNN, computed once before the module stack.

- :func:`sample_hops`: shortest-path hops from each node to each of its samples, ``[N, k]``,
  capped (``max_hops + 1`` = farther or unreachable; ``max_hops + 2`` = padding sample).
- :func:`dense_hops`: all-pairs hops of one graph, ``[n, n]`` uint8, capped at ``max_hops + 1``
  (cached per graph; used for SPE lookups and as the tie-break of the initial sampling).
- :func:`node_degree`: degree ``[N]`` (in-degree of the symmetric edge list).
- :func:`pagerank`: PageRank per graph ``[N]`` (damping 0.85, dangling mass spread uniformly
  inside the node's graph); sums to 1 over every graph, uniform on regular graphs.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor


def node_degree(edge_index: Tensor, num_nodes: int) -> Tensor:
    return torch.bincount(edge_index[1], minlength=num_nodes)


@torch.no_grad()
def pagerank(edge_index: Tensor, num_nodes: int, graph: Tensor | None = None, damping: float = 0.85,
             iters: int = 50) -> Tensor:
    """Power iteration ``p <- (1 - d) / n_g + d (A^T D^-1 p + dangling_g / n_g)`` per graph ``g``."""
    device = edge_index.device
    graph = torch.zeros(num_nodes, dtype=torch.long, device=device) if graph is None else graph
    num_graphs = int(graph.max()) + 1 if num_nodes else 0
    size = torch.bincount(graph, minlength=num_graphs).double()
    src, dst = edge_index
    out_deg = torch.bincount(src, minlength=num_nodes).double()
    p = 1.0 / size[graph]
    for _ in range(iters):
        share = torch.where(out_deg > 0, p / out_deg.clamp_min(1), torch.zeros_like(p))
        spread = torch.zeros(num_nodes, dtype=torch.float64, device=device).index_add_(0, dst, share[src])
        dangling = torch.zeros(num_graphs, dtype=torch.float64, device=device).index_add_(
            0, graph, torch.where(out_deg > 0, torch.zeros_like(p), p))
        p = (1 - damping) / size[graph] + damping * (spread + dangling[graph] / size[graph])
    return p.float()


def _ball_distances(adj: sp.csr_matrix, radius: int) -> tuple[Tensor, Tensor, Tensor]:
    """CSR ``(ptr, node, hops)`` of the nodes within ``radius`` hops of every node along ``adj``'s rows
    (``adj[u, v]``: an edge u -> v), with their hop counts. Sparse products only."""
    n = adj.shape[0]
    reach = sp.identity(n, dtype=np.int32, format="csr")
    inside = reach.copy()  # sum over t <= radius of [d <= t] = radius + 1 - d for the nodes of the ball
    for _ in range(radius):
        reach = reach + reach @ adj
        reach.data[:] = 1
        inside = inside + reach
    inside = inside.tocsr()
    inside.sort_indices()
    hops = torch.from_numpy((radius + 1 - inside.data).astype(np.int64))
    return torch.from_numpy(inside.indptr.astype(np.int64)), torch.from_numpy(inside.indices.astype(np.int64)), hops


def _expand(ptr: Tensor, rows: Tensor) -> tuple[Tensor, Tensor]:
    """For CSR offsets ``ptr`` and a list of ``rows``: (which list entry, position in the CSR arrays) of
    every stored entry of those rows."""
    counts = ptr[rows + 1] - ptr[rows]
    which = torch.repeat_interleave(torch.arange(rows.numel()), counts)
    pos = ptr[rows][which] + torch.arange(which.numel()) - (torch.cumsum(counts, 0) - counts)[which]
    return which, pos


@torch.no_grad()
def sample_hops(edge_index: Tensor, num_nodes: int, samples: Tensor, max_hops: int, chunk: int = 2048) -> Tensor:
    """Hop distance from node ``i`` to ``samples[i, j]`` (along the edges ``src -> dst``), exact up to
    ``max_hops``; values in ``0..max_hops + 2`` (see module doc).

    Meet in the middle, with sparse products and no loop over nodes: with ``b = floor(H / 2)``
    (``H = max_hops``), ``d(i, s) = min_w d(i, w) + d(w, s)`` over the nodes ``w`` within ``b`` hops of
    ``s`` (some ``w`` on a shortest path has ``d(w, s) <= b`` and ``d(i, w) <= H - b`` whenever
    ``d(i, s) <= H``); nothing within reach means farther than ``H``. The balls of radius ``b`` (forward
    and reverse edges) are computed once; ``d(i, w) <= H - b`` for a few centres ``i`` at a time (the
    radius-``b`` balls of ``i``'s ``<= H - 2b``-hop neighbourhood) goes into one reused, cache-sized
    ``[rows, n]`` uint8 buffer that is reset entry by entry. ``chunk`` is unused (kept for callers)."""
    n, k = samples.shape
    out = torch.full((n, k), max_hops + 1, dtype=torch.long)
    s = samples.cpu()
    out[s < 0] = max_hops + 2
    if n == 0 or k == 0:
        return out.to(samples.device)
    ei = edge_index.cpu().numpy()
    adj = sp.csr_matrix((np.ones(ei.shape[1], dtype=np.int32), (ei[0], ei[1])), shape=(n, n))
    adj.data[:] = 1
    b = max_hops // 2
    a = max_hops - b  # b or b + 1
    into_ptr, into_w, into_d = _ball_distances(adj.T.tocsr(), b)  # row s: the w with d(w, s) <= b
    symmetric = (adj != adj.T).nnz == 0
    out_ptr, out_w, out_d = (into_ptr, into_w, into_d) if symmetric else _ball_distances(adj, b)
    if a > b:  # radius a = b + 1: the radius-b balls of i and of its out-neighbours
        adj_ptr = torch.from_numpy(adj.indptr.astype(np.int64))
        adj_col = torch.from_numpy(adj.indices.astype(np.int64))
    far = 255
    rows_per = max(1, min(n, (1 << 21) // n))  # buffer ~2 MiB: stays in cache
    buffer = torch.full((rows_per * n,), far, dtype=torch.uint8)
    for start in range(0, n, rows_per):
        stop = min(start + rows_per, n)
        centre = torch.arange(start, stop)
        local = torch.arange(stop - start)
        via, step = centre, torch.zeros(stop - start, dtype=torch.long)
        if a > b:
            which, pos = _expand(adj_ptr, centre)
            local = torch.cat([local, which])
            via = torch.cat([via, adj_col[pos]])
            step = torch.cat([step, torch.ones_like(which)])
        which, pos = _expand(out_ptr, via)
        flat = local[which] * n + out_w[pos]
        buffer.scatter_reduce_(0, flat, (step[which] + out_d[pos]).to(torch.uint8), "amin")
        owner, slot = (s[start:stop] >= 0).nonzero(as_tuple=True)
        pair, pos = _expand(into_ptr, s[start:stop][owner, slot])
        first = buffer[owner[pair] * n + into_w[pos]].long()
        total = torch.where(first == far, max_hops + 1, first + into_d[pos])
        best = torch.full((owner.numel(),), max_hops + 1, dtype=torch.long).scatter_reduce_(0, pair, total, "amin")
        out[start + owner, slot] = best
        buffer[flat] = far
    return out.to(samples.device)


@torch.no_grad()
def dense_hops(edge_index: Tensor, num_nodes: int, max_hops: int) -> Tensor:
    """All-pairs hop distances ``[n, n]`` (uint8) of one graph by BFS limited to ``max_hops``
    (scipy); farther or unreachable pairs get ``max_hops + 1``. Memory ``O(n^2)`` bytes."""
    from scipy.sparse.csgraph import dijkstra

    n = num_nodes
    if n == 0:
        return torch.zeros(0, 0, dtype=torch.uint8, device=edge_index.device)
    ei = edge_index.cpu().numpy()
    adj = sp.csr_matrix((np.ones(ei.shape[1], dtype=np.float32), (ei[0], ei[1])), shape=(n, n))
    dist = dijkstra(adj, directed=True, unweighted=True, limit=max_hops + 0.5)
    dist[~np.isfinite(dist)] = max_hops + 1
    return torch.from_numpy(dist.astype(np.uint8)).to(edge_index.device)
