"""Per-graph structure, computed once per graph and cached (not per training step).

A graph is identified by a content key (:func:`graph_keys`: node count, edge count and two
64-bit-free modular hashes of its edges and feature bits), so a PyG ``Batch`` collated afresh
every step still finds its graphs' entries, a different dataset never does, and no id has to be
threaded through the data pipeline. :class:`StructureCache` holds, per key: the clipped degree,
the PageRank feature ``log(n * PR)`` and (graphs up to ``dense_limit`` nodes) the all-pairs hop
table. Entries depend only on the graph and on the cache's settings (``max_hops``,
``max_degree``), which are part of every key: changing them invalidates the entries.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from pk_transgnn.models.encodings import dense_hops, node_degree, pagerank

_P = 2_147_483_647  # 2^31 - 1: every product below stays under 2^62, no int64 overflow
_MIX = ((1_103_515_245, 12_345), (747_796_405, 2_891_336_453 % _P))


def _mix(v: Tensor, a: int, b: int) -> Tensor:
    """A nonlinear map of ``[0, P)`` integers onto ``[0, P)``."""
    v = (v * a + b) % _P
    return ((v * v) % _P * a + v) % _P


def graph_ptr(graph: Tensor | None, num_nodes: int) -> Tensor:
    """Start offsets ``[G + 1]`` of the (contiguous) graphs of a batch; one graph when ``graph`` is None."""
    if graph is None or num_nodes == 0:
        return torch.tensor([0, num_nodes], dtype=torch.long)
    counts = torch.bincount(graph.cpu(), minlength=int(graph.max()) + 1)
    return torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(counts, 0)])


@torch.no_grad()
def graph_keys(x: Tensor, edge_index: Tensor, graph: Tensor | None, ptr: Tensor) -> list[tuple[int, ...]]:
    """One content key per graph: ``(nodes, edges, h1, h2, x_width)``. The hashes sum a mix of
    every (local src, local dst) pair and of every (local node, feature, float bits) triple, so
    they ignore edge order but not node numbering. Integer arithmetic: device-independent."""
    num_graphs = ptr.numel() - 1
    device = x.device
    g = graph if graph is not None else torch.zeros(x.shape[0], dtype=torch.long, device=device)
    start = ptr.to(device)[:-1]
    src, dst = edge_index
    local_src, local_dst = src - start[g[src]], dst - start[g[dst]]
    edge_val = (local_src % _P * 1_000_003 + local_dst) % _P
    feats = x.reshape(x.shape[0], -1).float().contiguous()
    width = feats.shape[1]
    bits = feats.view(torch.int32).long() & 0xFFFFFFFF
    local = torch.arange(x.shape[0], device=device) - start[g]
    pos = (local.unsqueeze(1) * width + torch.arange(width, device=device)) % _P
    keys = []
    for a, b in _MIX:
        e = torch.zeros(num_graphs, dtype=torch.long, device=device).index_add_(0, g[src], _mix(edge_val, a, b))
        f = _mix((_mix(bits % _P, a, b) + pos * 31) % _P, b % 1_000_003 + 7, a)
        n = torch.zeros(num_graphs, dtype=torch.long, device=device).index_add_(0, g, f.sum(1) % _P)
        keys.append((e % _P) * _P + n % _P)
    edges = torch.bincount(g[src], minlength=num_graphs) if src.numel() else torch.zeros(num_graphs, dtype=torch.long)
    sizes = ptr[1:] - ptr[:-1]
    return [
        (int(sizes[i]), int(edges[i]), int(keys[0][i]), int(keys[1][i]), width)
        for i in range(num_graphs)
    ] if num_graphs else []


@dataclass
class GraphStructure:
    """Structure of one graph (local node ids): ``degree [n]`` (clipped), ``pagerank [n, 1]``
    (``log(n * PR)``), ``hops [n, n]`` uint8 (capped; None above the dense limit)."""

    degree: Tensor
    pagerank: Tensor
    hops: Tensor | None


class StructureCache:
    """Per-graph :class:`GraphStructure` keyed by content key + settings; see module doc."""

    def __init__(self, max_hops: int, max_degree: int, dense_limit: int) -> None:
        self.settings = (max_hops, max_degree, dense_limit)
        self.max_hops, self.max_degree, self.dense_limit = max_hops, max_degree, dense_limit
        self.entries: dict[tuple[int, ...], GraphStructure] = {}
        self.computed = 0  # graphs computed so far (tests: a second epoch computes none)

    def get(self, key: tuple[int, ...]) -> GraphStructure | None:
        return self.entries.get(key + self.settings)

    @torch.no_grad()
    def fill(self, keys: list[tuple[int, ...]], edge_index: Tensor, graph: Tensor | None,
             ptr: Tensor) -> list[GraphStructure]:
        """The entries of a batch's graphs, computing the missing ones (degree and PageRank for the
        whole batch at once, hop tables per missing graph)."""
        out: list[GraphStructure | None] = [self.get(k) for k in keys]
        missing = [i for i, s in enumerate(out) if s is None]
        if missing:
            n = int(ptr[-1])
            device = edge_index.device
            g = graph if graph is not None else torch.zeros(n, dtype=torch.long, device=device)
            degree = node_degree(edge_index, n).clamp(max=self.max_degree)
            pr = pagerank(edge_index, n, g)
            size = torch.bincount(g, minlength=len(keys)).float()[g] if n else pr
            feature = torch.log(pr * size).unsqueeze(-1)
            edge_index = edge_index[:, torch.argsort(g[edge_index[0]], stable=True)]  # PyG batches are already sorted
            src = edge_index[0]
            edge_ptr = torch.cat([torch.zeros(1, dtype=torch.long),
                                  torch.cumsum(torch.bincount(g[src].cpu(), minlength=len(keys)), 0)])
            for i in missing:
                a, b = int(ptr[i]), int(ptr[i + 1])
                hops = None
                if b - a <= self.dense_limit:
                    local = edge_index[:, int(edge_ptr[i]) : int(edge_ptr[i + 1])] - a
                    hops = dense_hops(local, b - a, self.max_hops)
                entry = GraphStructure(degree[a:b].clone(), feature[a:b].clone(), hops)
                self.entries[keys[i] + self.settings] = entry
                self.computed += 1
                out[i] = entry
        return out  # type: ignore[return-value]
