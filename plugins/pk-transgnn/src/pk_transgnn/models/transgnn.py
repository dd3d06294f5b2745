"""TransGNN (arXiv 2308.14355, v1: node and graph classification), built from the mechanism:

1. attention sampling: every graph gets one sample table per layer, ``Smp_l [n, k]``, first
   filled with the tie-aware top-k (:func:`.sampling.select_rows`) of the structure-smoothed
   similarity of the *projected* input ``H0 = LayerNorm(X W_in)`` (ties broken by hop distance, then left
   out, so that the sets are permutation-equivariant even for one-hot features);
2. positional encodings, added once before the stack: shortest-path hops to the layer-0 samples
   (SPE, embedded per hop value, mean over samples), degree (embedding) and PageRank (MLP on
   ``log(n_g * PR)``), combined with ``H0`` by concat + 2-layer MLP (the LayerNorm keeps the
   feature part at the scale of the encodings, whatever the input scaling);
3. ``layers`` modules of  Transformer layer (query = node, keys/values = node + ``Smp_l``,
   post-LN, FFN 4d)  ->  GNN layer (PyG ``GCNConv`` over the original edges, ReLU; ``gnn=False``
   drops it, an ablation);
4. sample update, on a schedule: during a training epoch whose index ``e`` has
   ``(e + 1) % refresh_every == 0``, each forward pass computes ``Smp_l' = update(Smp_l, H_l)``
   (no grad) from ``H_l``, the representations that layer ``l`` attends over in that pass (the
   input of module ``l``, before dropout); :meth:`TransGNN.end_epoch` commits them. Tables then
   persist across epochs and evolve with the learned representations (message passing or
   similarity-weighted random walks; ``update="none"`` keeps the initial samples);
5. a linear node head, or mean/sum pooling + MLP for graphs.

Caching: per-graph structure (degree, PageRank, all-pairs hops) lives in a
:class:`.structure.StructureCache` keyed by graph content; sample tables of the graphs seen in
training are model state (``state_dict`` keys ``sample_*``; checkpoints and resume keep them).
Graphs never seen in training (validation/test graphs) get fresh tables at evaluation: the
initial sampling, then ``eval_refresh`` update rounds from the current representations; those are
not stored, so a prediction never depends on when a graph was first evaluated.

Shapes: ``x [N, F]``, samples ``[N, k]`` (-1 = padding), ``predict`` -> ``[N, C]`` (node task)
or ``[num_graphs, C]`` (graph task).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from pk_graph.models.gnn import graph_loss
from torch import Tensor, nn
from torch_geometric.nn import GCNConv, global_add_pool, global_mean_pool

from pk.core.contracts import DatasetInfo
from pk_transgnn.models.attention import SampledAttention
from pk_transgnn.models.sampling import PAD, TIE_TOL
from pk_transgnn.models.structure import StructureCache
from pk_transgnn.models.tables import Prepared, SampleTables

ENCODINGS = ("spd", "degree", "pagerank")
UPDATES = ("message-passing", "random-walk", "none")


class TransGNN(SampleTables, nn.Module):
    """TransGNN classifier (see module doc). ``encodings`` picks any of spd/degree/pagerank;
    ``update`` is "message-passing", "random-walk" or "none" (static samples), applied every
    ``refresh_every`` epochs (0: never)."""

    def __init__(
        self, in_features: int, num_classes: int, task: str, *, hidden: int = 64, heads: int = 4, layers: int = 2,
        samples: int = 20, alpha: float = 0.5, sampling: str = "similarity", ppr_steps: int = 3, max_hops: int = 5,
        max_degree: int = 64, encodings: tuple[str, ...] = ENCODINGS, update: str = "message-passing",
        walk_length: int = 5, walk_temperature: float = 0.5, dropout: float = 0.5, pool: str = "mean",
        chunk: int = 2048,
        refresh_every: int = 1, eval_refresh: int = 1, gnn: bool = True, dense_hops_max: int = 4096,
        tie_tolerance: float = TIE_TOL,
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
        if samples < 1 or layers < 1 or max_hops < 1 or max_hops > 250:
            raise ValueError("samples and layers must be >= 1 and max_hops in 1..250")
        self.task, self.k, self.alpha, self.sampling, self.ppr_steps = task, samples, alpha, sampling, ppr_steps
        self.max_hops, self.max_degree, self.encodings, self.update = max_hops, max_degree, tuple(encodings), update
        self.walk_length, self.walk_temperature = walk_length, walk_temperature
        self.dropout, self.pool, self.chunk = dropout, pool, chunk
        self.refresh_every, self.eval_refresh, self.tie_tolerance = refresh_every, eval_refresh, tie_tolerance
        self.num_layers = layers
        self.input = nn.Linear(in_features, hidden)
        # H0 = LayerNorm(X W_in): the feature part keeps its scale whatever the input scaling (row-normalised
        # bag-of-words rows are ~1/18 of binary ones and would otherwise vanish next to the encodings)
        self.input_norm = nn.LayerNorm(hidden)
        self.hop_embedding = (nn.Embedding(max_hops + 3, hidden, padding_idx=max_hops + 2) if "spd" in encodings
                              else None)
        self.degree_embedding = nn.Embedding(max_degree + 1, hidden) if "degree" in encodings else None
        self.pagerank_mlp = (nn.Sequential(nn.Linear(1, hidden), nn.ReLU(), nn.Linear(hidden, hidden))
                             if "pagerank" in encodings else None)
        width = hidden * (1 + len(self.encodings))
        self.combine = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, hidden))
        self.transformers = nn.ModuleList(SampledAttention(hidden, heads, dropout) for _ in range(layers))
        self.gnns = nn.ModuleList(GCNConv(hidden, hidden) for _ in range(layers)) if gnn else None
        if task == "node-classification":
            self.head: nn.Module = nn.Linear(hidden, num_classes)
        else:
            self.head = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(dropout),
                                      nn.Linear(hidden, num_classes))
        self.structures = StructureCache(max_hops, max_degree, dense_hops_max)
        self._tables: dict[tuple[int, ...], Tensor] = {}  # content key -> [n, L, w] local ids (graphs seen in training)
        self._hops: dict[tuple[int, ...], Tensor] = {}  # derived: hops to the layer-0 samples
        self._pending: dict[tuple[int, ...], Tensor] = {}
        self._refresh_due = False
        self._key_memo: OrderedDict[tuple[int, ...], tuple[Tensor, Tensor, list[tuple[int, ...]]]] = OrderedDict()
        self.refreshes = 0  # committed refreshes (diagnostics, tests)
        self.eval_walk_seed = 0

    # -- forward -----------------------------------------------------------------------------
    def encode(self, x: Tensor, prep: Prepared, dropout: bool = True) -> Tensor:
        """``h0 = COMB([x W_in, SPE, DE, PRE])`` (only the configured encodings)."""
        # graph tasks keep their few features
        input_dropout = self.dropout if self.task == "node-classification" and dropout else 0.0
        parts = [self.input_norm(self.input(nn.functional.dropout(x.float(), input_dropout, self.training)))]
        if self.hop_embedding is not None:
            assert prep.hops is not None
            valid = (prep.hops != self.max_hops + 2).sum(1, keepdim=True).clamp_min(1)
            parts.append(self.hop_embedding(prep.hops).sum(1) / valid)
        if self.degree_embedding is not None:
            parts.append(self.degree_embedding(prep.degree))
        if self.pagerank_mlp is not None:
            parts.append(self.pagerank_mlp(prep.pagerank))
        return self.combine(torch.cat(parts, dim=-1))

    def _stack(self, x: Tensor, edge_index: Tensor, prep: Prepared, collect: bool) -> tuple[Tensor, list[Tensor]]:
        """Final node states and (``collect``) each layer's input representations, detached and
        before dropout (layer 0: ``h0`` without input dropout)."""
        h = self.encode(x, prep)
        reps: list[Tensor] = []
        if collect:
            plain = not self.training or self.task != "node-classification"
            clean = h if plain else self.encode(x, prep, dropout=False)
            reps.append(clean.detach())
        for layer, transformer in enumerate(self.transformers):
            h = transformer(h, prep.samples[:, layer])
            if self.gnns is not None:
                h = nn.functional.relu(self.gnns[layer](h, edge_index))
            if collect and layer + 1 < self.num_layers:
                reps.append(h.detach())
            h = nn.functional.dropout(h, self.dropout, self.training)
        return h, reps

    def node_representations(self, batch: Any, return_samples: bool = False) -> Any:
        """Final node states ``[N, hidden]`` (and the ``[N, W]`` sample table each layer used)."""
        x, edge_index, graph = batch.x, batch.edge_index, getattr(batch, "batch", None)
        prep = self.prepare(x, edge_index, graph)
        if prep.temporary and self.update != "none":
            for _ in range(self.eval_refresh):  # unseen graphs: refresh their fresh tables from current representations
                _, reps = self._stack(x, edge_index, prep, collect=True)
                updated = self._updated(prep, reps, edge_index)
                tables = [updated[i] if i in prep.temporary else t for i, t in enumerate(prep.tables)]
                prep = self._assemble(x, edge_index, graph, prep.ptr, prep.keys, prep.structures, tables,
                                      prep.temporary)
        propose = self.training and self._refresh_due and torch.is_grad_enabled()
        h, reps = self._stack(x, edge_index, prep, collect=propose)
        if propose:
            for i, table in enumerate(self._updated(prep, reps, edge_index)):
                self._pending[prep.keys[i]] = table
        if return_samples:
            return h, [prep.samples[:, layer] for layer in range(self.num_layers)]
        return h

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
        pool=config.pool, chunk=config.chunk, refresh_every=config.refresh_every, eval_refresh=config.eval_refresh,
        gnn=config.gnn, dense_hops_max=config.dense_hops_max,
    )


__all__ = ["PAD", "Prepared", "SampledAttention", "TransGNN", "build_transgnn"]
