"""TransGNN (arXiv 2308.14355, v1: node and graph classification), built from the mechanism:

1. attention sampling: ``Smp = top-k`` of the structure-smoothed similarity of the raw features
   (:mod:`.sampling`), computed once per graph (cached for a fixed node-task graph);
2. positional encodings, added once before the stack: shortest-path hops to the samples (SPE,
   embedded per hop value, mean over samples), degree (embedding) and PageRank (MLP on
   ``log(n_g * PR)``), combined with the input projection by concat + 2-layer MLP;
3. ``layers`` modules of  Transformer layer (query = node, keys/values = node + its samples,
   post-LN, FFN 4d)  ->  GNN layer (PyG ``GCNConv`` over the original edges, ReLU)  ->  sample
   update under ``no_grad`` (message passing or similarity-weighted random walks), whose new
   table feeds the next module's Transformer;
4. a linear node head, or mean/sum pooling + MLP for graphs.

Shapes: ``x [N, F]``, samples ``[N, k]`` (-1 = padding), ``predict`` -> ``[N, C]`` (node task)
or ``[num_graphs, C]`` (graph task).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any

import torch
from pk_graph.models.gnn import graph_loss
from torch import Tensor, nn
from torch_geometric.nn import GCNConv, global_add_pool, global_mean_pool

from pk.core.contracts import DatasetInfo
from pk_transgnn.models.encodings import node_degree, pagerank, sample_hops
from pk_transgnn.models.sampling import (
    PAD,
    message_passing_update,
    random_walk_update,
    smoothed_queries,
    topk_samples,
)

ENCODINGS = ("spd", "degree", "pagerank")
UPDATES = ("message-passing", "random-walk", "none")


class SampledAttention(nn.Module):
    """Post-LN Transformer layer where node ``i`` attends to itself and its samples only.

    ``h [N, d]``, ``samples [N, k]`` -> ``[N, d]``; cost ``O(N k d)`` (projections are done on
    the N nodes, then gathered)."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"hidden ({dim}) must be divisible by heads ({heads})")
        self.heads, self.head_dim = heads, dim // heads
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, 4 * dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(4 * dim, dim))
        self.dropout = nn.Dropout(dropout)

    def forward(self, h: Tensor, samples: Tensor) -> Tensor:
        n = h.shape[0]
        keys_idx = torch.cat([torch.arange(n, device=h.device).unsqueeze(1), samples.clamp_min(0)], dim=1)
        pad = torch.cat([torch.zeros(n, 1, dtype=torch.bool, device=h.device), samples < 0], dim=1)
        q = self.q(h).view(n, self.heads, self.head_dim)
        k = self.k(h).view(n, self.heads, self.head_dim)[keys_idx]  # [N, k+1, heads, hd]
        v = self.v(h).view(n, self.heads, self.head_dim)[keys_idx]
        scores = torch.einsum("nhd,nkhd->nhk", q, k) / math.sqrt(self.head_dim)
        scores = scores.masked_fill(pad.unsqueeze(1), float("-inf"))
        attn = self.dropout(torch.softmax(scores, dim=-1))
        out = self.o(torch.einsum("nhk,nkhd->nhd", attn, v).reshape(n, -1))
        h = self.norm1(h + self.dropout(out))
        return self.norm2(h + self.dropout(self.ffn(h)))


class TransGNN(nn.Module):
    """TransGNN classifier (see module doc). ``encodings`` picks any of spd/degree/pagerank;
    ``update`` is "message-passing", "random-walk" or "none" (static samples)."""

    def __init__(
        self, in_features: int, num_classes: int, task: str, *, hidden: int = 64, heads: int = 4, layers: int = 2,
        samples: int = 20, alpha: float = 0.5, sampling: str = "similarity", ppr_steps: int = 3, max_hops: int = 5,
        max_degree: int = 64, encodings: tuple[str, ...] = ENCODINGS, update: str = "message-passing",
        walk_length: int = 5, walk_temperature: float = 0.5, dropout: float = 0.5, pool: str = "mean", chunk: int = 2048,
    ) -> None:
        super().__init__()
        if task not in ("node-classification", "graph-classification"):
            raise ValueError(f"transgnn does node-classification or graph-classification, not {task!r}")
        bad = [e for e in encodings if e not in ENCODINGS]
        if bad:
            raise ValueError(f"unknown encodings {bad}; choose from {ENCODINGS}")
        if update not in UPDATES:
            raise ValueError(f"update must be one of {UPDATES}, got {update!r}")
        if sampling not in ("similarity", "ppr"):
            raise ValueError(f"sampling must be 'similarity' or 'ppr', got {sampling!r}")
        if pool not in ("mean", "sum"):
            raise ValueError(f"pool must be mean or sum, got {pool!r}")
        self.task, self.k, self.alpha, self.sampling, self.ppr_steps = task, samples, alpha, sampling, ppr_steps
        self.max_hops, self.max_degree, self.encodings, self.update = max_hops, max_degree, tuple(encodings), update
        self.walk_length, self.walk_temperature, self.dropout, self.pool, self.chunk = walk_length, walk_temperature, dropout, pool, chunk
        self.input = nn.Linear(in_features, hidden)
        self.hop_embedding = nn.Embedding(max_hops + 3, hidden, padding_idx=max_hops + 2) if "spd" in encodings else None
        self.degree_embedding = nn.Embedding(max_degree + 1, hidden) if "degree" in encodings else None
        self.pagerank_mlp = nn.Sequential(nn.Linear(1, hidden), nn.ReLU(), nn.Linear(hidden, hidden)) if "pagerank" in encodings else None
        width = hidden * (1 + len(self.encodings))
        self.combine = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, hidden))
        self.transformers = nn.ModuleList(SampledAttention(hidden, heads, dropout) for _ in range(layers))
        self.gnns = nn.ModuleList(GCNConv(hidden, hidden) for _ in range(layers))
        if task == "node-classification":
            self.head: nn.Module = nn.Linear(hidden, num_classes)
        else:
            self.head = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, num_classes))
        self._cache: OrderedDict[tuple[int, ...], tuple[Any, ...]] = OrderedDict()
        self.eval_walk_seed = 0

    # -- precomputation (no grad) ------------------------------------------------------------
    @torch.no_grad()
    def structure(self, x: Tensor, edge_index: Tensor, graph: Tensor | None) -> dict[str, Tensor]:
        """Initial samples ``[N, k]``, hops ``[N, k]``, degree ``[N]`` and scaled PageRank ``[N]``."""
        n = x.shape[0]
        z, hn = smoothed_queries(x, edge_index, self.alpha, self.sampling, self.ppr_steps)
        samples = topk_samples(z, hn, self.k, graph, self.chunk)
        out = {"samples": samples}
        if "spd" in self.encodings:
            out["hops"] = sample_hops(edge_index, n, samples, self.max_hops, self.chunk)
        if "degree" in self.encodings:
            out["degree"] = node_degree(edge_index, n).clamp(max=self.max_degree)
        if "pagerank" in self.encodings:
            pr = pagerank(edge_index, n, graph)
            g = torch.zeros(n, dtype=torch.long, device=x.device) if graph is None else graph
            size = torch.bincount(g).float()[g]
            out["pagerank"] = torch.log(pr * size).unsqueeze(-1)
        return out

    def _structure_cached(self, batch: Any) -> dict[str, Tensor]:
        graph = getattr(batch, "batch", None)
        if graph is not None:  # graph batches change every step: no cache
            return self.structure(batch.x, batch.edge_index, graph)
        key = (id(batch.x), batch.x._version, id(batch.edge_index), batch.edge_index._version)
        hit = self._cache.get(key)
        if hit is not None and hit[0] is batch.x and hit[1] is batch.edge_index:
            self._cache.move_to_end(key)
            return hit[2]
        value = self.structure(batch.x, batch.edge_index, None)
        self._cache[key] = (batch.x, batch.edge_index, value)  # holding the tensors keeps their ids unique
        while len(self._cache) > 4:
            self._cache.popitem(last=False)
        return value

    # -- forward -----------------------------------------------------------------------------
    def encode(self, x: Tensor, structure: dict[str, Tensor]) -> Tensor:
        """``h0 = COMB([x W_in, SPE, DE, PRE])`` (only the configured encodings)."""
        input_dropout = self.dropout if self.task == "node-classification" else 0.0  # graph tasks keep their few features
        parts = [self.input(nn.functional.dropout(x.float(), input_dropout, self.training))]
        if self.hop_embedding is not None:
            hops = structure["hops"]
            valid = (hops != self.max_hops + 2).sum(1, keepdim=True).clamp_min(1)
            parts.append(self.hop_embedding(hops).sum(1) / valid)
        if self.degree_embedding is not None:
            parts.append(self.degree_embedding(structure["degree"]))
        if self.pagerank_mlp is not None:
            parts.append(self.pagerank_mlp(structure["pagerank"]))
        return self.combine(torch.cat(parts, dim=-1))

    def _update(self, samples: Tensor, h: Tensor, edge_index: Tensor) -> Tensor:
        if self.update == "message-passing":
            return message_passing_update(samples, h.detach(), edge_index)
        if self.update == "random-walk":
            gen = None
            if not self.training:  # deterministic predictions at evaluation
                gen = torch.Generator(device=h.device).manual_seed(self.eval_walk_seed)
            return random_walk_update(samples, h.detach(), edge_index, self.walk_length, self.walk_temperature, gen)
        return samples

    def node_representations(self, batch: Any, return_samples: bool = False) -> Any:
        """Final node states ``[N, hidden]`` (and the sample table used by each module)."""
        structure = self._structure_cached(batch)
        samples = structure["samples"]
        h = self.encode(batch.x, structure)
        used = []
        for layer, (transformer, gnn) in enumerate(zip(self.transformers, self.gnns, strict=True)):
            used.append(samples)
            h = transformer(h, samples)
            h = nn.functional.relu(gnn(h, batch.edge_index))
            h = nn.functional.dropout(h, self.dropout, self.training)
            if layer < len(self.gnns) - 1:
                samples = self._update(samples, h, batch.edge_index)
        return (h, used) if return_samples else h

    def forward(self, batch: Any) -> Tensor:
        h = self.node_representations(batch)
        if self.task == "node-classification":
            return self.head(h)
        graph = getattr(batch, "batch", None)
        if graph is None:
            graph = torch.zeros(h.shape[0], dtype=torch.long, device=h.device)
        pooled = global_mean_pool(h, graph) if self.pool == "mean" else global_add_pool(h, graph)
        return self.head(pooled)

    def predict(self, batch: Any) -> Tensor:
        return self(batch)

    def loss(self, batch: Any) -> Tensor:
        return graph_loss(self(batch), batch)


def build_transgnn(config: Any, info: DatasetInfo) -> TransGNN:
    if not info.num_features or not info.num_classes:
        raise ValueError("transgnn needs a dataset with num_features and num_classes")
    return TransGNN(
        info.num_features, info.num_classes, info.task, hidden=config.hidden, heads=config.heads, layers=config.layers,
        samples=config.samples, alpha=config.alpha, sampling=config.sampling, ppr_steps=config.ppr_steps,
        max_hops=config.max_hops, max_degree=config.max_degree, encodings=tuple(config.encodings), update=config.update,
        walk_length=config.walk_length, walk_temperature=config.walk_temperature, dropout=config.dropout,
        pool=config.pool, chunk=config.chunk,
    )


__all__ = ["PAD", "SampledAttention", "TransGNN", "build_transgnn"]
