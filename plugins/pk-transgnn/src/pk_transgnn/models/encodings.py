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


@torch.no_grad()
def sample_hops(edge_index: Tensor, num_nodes: int, samples: Tensor, max_hops: int, chunk: int = 2048) -> Tensor:
    """Hop distance from node ``i`` to ``samples[i, j]``, by truncated BFS (sparse ball growth on
    ``chunk`` centre rows at a time, scipy CSR). Values in ``0..max_hops + 2`` (see module doc)."""
    n, k = samples.shape
    s = samples.cpu().numpy()
    out = np.full((n, k), max_hops + 1, dtype=np.int64)
    out[s < 0] = max_hops + 2
    if n == 0 or k == 0:
        return torch.from_numpy(out).to(samples.device)
    ei = edge_index.cpu().numpy()
    adj = sp.csr_matrix((np.ones(ei.shape[1], dtype=np.float32), (ei[0], ei[1])), shape=(n, n))
    adj.data[:] = 1.0
    for start in range(0, n, chunk):
        rows = np.arange(start, min(start + chunk, n))
        c = rows.size
        reach = sp.csr_matrix((np.ones(c, dtype=np.float32), (np.arange(c), rows)), shape=(c, n))
        found = s[rows] < 0
        local_r = np.repeat(np.arange(c), k)
        cols = np.clip(s[rows].reshape(-1), 0, None)
        for t in range(1, max_hops + 1):
            if found.all():
                break
            reach = reach + reach @ adj
            reach.data[:] = 1.0
            hit = (np.asarray(reach[local_r, cols]).reshape(c, k) > 0) & ~found
            block = out[rows]
            block[hit] = t
            out[rows] = block
            found |= hit
    return torch.from_numpy(out).to(samples.device)


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
