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

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import torch
from pk_graph.models.gnn import graph_loss
from torch import Tensor, nn
from torch_geometric.nn import GCNConv, global_add_pool, global_mean_pool

from pk.core.contracts import DatasetInfo
from pk_transgnn.models.encodings import sample_hops
from pk_transgnn.models.sampling import (
    PAD,
    TIE_TOL,
    message_passing_update,
    message_passing_update_batched,
    random_walk_update,
    select_rows,
    size_groups,
    smoothed_queries,
    topk_samples,
)
from pk_transgnn.models.structure import GraphStructure, StructureCache, graph_keys, graph_ptr

ENCODINGS = ("spd", "degree", "pagerank")
UPDATES = ("message-passing", "random-walk", "none")
_STATE = ("sample_keys", "sample_offsets", "sample_tables")


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
        m, flat = keys_idx.shape[1], keys_idx.reshape(-1)
        q = self.q(h).view(n, 1, self.heads, self.head_dim)
        # gathers by index_select (backward: an index_add into [N, d], no sort, no full-size zero fill)
        k = self.k(h).index_select(0, flat).view(n, m, self.heads, self.head_dim)  # [N, k+1, heads, hd]
        v = self.v(h).index_select(0, flat).view(n, m, self.heads, self.head_dim)
        scores = (q * k).sum(-1) / math.sqrt(self.head_dim)  # [N, k+1, heads]
        scores = scores.masked_fill(pad.unsqueeze(-1), float("-inf"))
        attn = self.dropout(torch.softmax(scores, dim=1))
        out = self.o((attn.unsqueeze(-1) * v).sum(1).reshape(n, -1))
        h = self.norm1(h + self.dropout(out))
        return self.norm2(h + self.dropout(self.ffn(h)))


@dataclass
class Prepared:
    """A batch's structure and tables in batch (global) node ids."""

    ptr: Tensor  # [G + 1] cpu
    keys: list[tuple[int, ...]]
    structures: list[GraphStructure]
    tables: list[Tensor]  # per graph [n_g, L, w_g], local ids
    temporary: list[int]  # graphs whose tables are not stored (evaluation of unseen graphs)
    samples: Tensor  # [N, L, W] global ids
    hops: Tensor | None  # [N, W] hops to the layer-0 samples
    degree: Tensor  # [N]
    pagerank: Tensor  # [N, 1]


class TransGNN(nn.Module):
    """TransGNN classifier (see module doc). ``encodings`` picks any of spd/degree/pagerank;
    ``update`` is "message-passing", "random-walk" or "none" (static samples), applied every
    ``refresh_every`` epochs (0: never)."""

    def __init__(
        self, in_features: int, num_classes: int, task: str, *, hidden: int = 64, heads: int = 4, layers: int = 2,
        samples: int = 20, alpha: float = 0.5, sampling: str = "similarity", ppr_steps: int = 3, max_hops: int = 5,
        max_degree: int = 64, encodings: tuple[str, ...] = ENCODINGS, update: str = "message-passing",
        walk_length: int = 5, walk_temperature: float = 0.5, dropout: float = 0.5, pool: str = "mean", chunk: int = 2048,
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
        self.walk_length, self.walk_temperature, self.dropout, self.pool, self.chunk = walk_length, walk_temperature, dropout, pool, chunk
        self.refresh_every, self.eval_refresh, self.tie_tolerance = refresh_every, eval_refresh, tie_tolerance
        self.num_layers = layers
        self.input = nn.Linear(in_features, hidden)
        # H0 = LayerNorm(X W_in): the feature part keeps its scale whatever the input scaling (row-normalised
        # bag-of-words rows are ~1/18 of binary ones and would otherwise vanish next to the encodings)
        self.input_norm = nn.LayerNorm(hidden)
        self.hop_embedding = nn.Embedding(max_hops + 3, hidden, padding_idx=max_hops + 2) if "spd" in encodings else None
        self.degree_embedding = nn.Embedding(max_degree + 1, hidden) if "degree" in encodings else None
        self.pagerank_mlp = nn.Sequential(nn.Linear(1, hidden), nn.ReLU(), nn.Linear(hidden, hidden)) if "pagerank" in encodings else None
        width = hidden * (1 + len(self.encodings))
        self.combine = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, hidden))
        self.transformers = nn.ModuleList(SampledAttention(hidden, heads, dropout) for _ in range(layers))
        self.gnns = nn.ModuleList(GCNConv(hidden, hidden) for _ in range(layers)) if gnn else None
        if task == "node-classification":
            self.head: nn.Module = nn.Linear(hidden, num_classes)
        else:
            self.head = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, num_classes))
        self.structures = StructureCache(max_hops, max_degree, dense_hops_max)
        self._tables: dict[tuple[int, ...], Tensor] = {}  # content key -> [n, L, w] local ids (graphs seen in training)
        self._hops: dict[tuple[int, ...], Tensor] = {}  # derived: hops to the layer-0 samples
        self._pending: dict[tuple[int, ...], Tensor] = {}
        self._refresh_due = False
        self._key_memo: OrderedDict[tuple[int, ...], tuple[Tensor, Tensor, list[tuple[int, ...]]]] = OrderedDict()
        self.refreshes = 0  # committed refreshes (diagnostics, tests)
        self.eval_walk_seed = 0

    # -- schedule (called by pk-graph's trainers) ----------------------------------------------
    def begin_epoch(self, epoch: int) -> None:
        """Start training epoch ``epoch`` (0-based): forward passes in it propose new samples when
        ``(epoch + 1) % refresh_every == 0`` (and ``update != "none"``)."""
        self._pending.clear()
        self._refresh_due = self.update != "none" and self.refresh_every > 0 and (epoch + 1) % self.refresh_every == 0

    def end_epoch(self, epoch: int) -> None:
        """Commit the samples proposed during the epoch (the refresh)."""
        if self._refresh_due and self._pending:
            for key, table in self._pending.items():
                self._tables[key] = table
                self._hops.pop(key, None)
            self.refreshes += 1
        self._pending.clear()
        self._refresh_due = False

    def sample_table(self, batch: Any, graph_index: int = 0) -> Tensor | None:
        """The stored ``[n, L, w]`` table (local ids) of one graph of ``batch``, or None if unseen."""
        x, edge_index, graph = batch.x, batch.edge_index, getattr(batch, "batch", None)
        ptr = graph_ptr(graph, x.shape[0])
        key = graph_keys(x, edge_index, graph, ptr)[graph_index]
        return self._tables.get(key)

    # -- state: the sample tables of the training graphs -----------------------------------------
    def _save_to_state_dict(self, destination: Any, prefix: str, keep_vars: bool) -> None:
        super()._save_to_state_dict(destination, prefix, keep_vars)
        keys = list(self._tables)
        device = next(iter(self._tables.values())).device if keys else torch.device("cpu")
        sizes = [key[0] for key in keys]
        tables = torch.full((sum(sizes), self.num_layers, self.k), PAD, dtype=torch.int32, device=device)
        start = 0
        for key, n in zip(keys, sizes, strict=True):
            t = self._tables[key]
            tables[start : start + n, :, : t.shape[2]] = t.to(device=device, dtype=torch.int32)
            start += n
        destination[prefix + "sample_keys"] = torch.tensor(keys, dtype=torch.long, device=device).reshape(len(keys), 5)
        destination[prefix + "sample_offsets"] = torch.tensor([0, *sizes], dtype=torch.long, device=device).cumsum(0)
        destination[prefix + "sample_tables"] = tables

    def _load_from_state_dict(self, state_dict: Any, prefix: str, local_metadata: Any, strict: bool,
                              missing_keys: list[str], unexpected_keys: list[str], error_msgs: list[str]) -> None:
        parts = [state_dict.pop(prefix + name, None) for name in _STATE]
        self._tables.clear()
        self._hops.clear()
        self._pending.clear()
        if all(p is not None for p in parts):
            keys, offsets, tables = parts
            if tables.dim() != 3 or tables.shape[1] != self.num_layers or tables.shape[2] != self.k:
                error_msgs.append(f"sample_tables has shape {tuple(tables.shape)}, expected [nodes, {self.num_layers}, {self.k}]")
            else:
                for i, key in enumerate(keys.tolist()):
                    n = int(key[0])
                    a = int(offsets[i])
                    self._tables[tuple(int(v) for v in key)] = tables[a : a + n, :, : self._width(n)].long()
        elif strict and any(p is not None for p in parts):
            error_msgs.append(f"incomplete sample tables: need all of {_STATE}")
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs)

    # -- structure and samples (no grad) --------------------------------------------------------
    def _width(self, n: int) -> int:
        return max(1, min(self.k, n - 1))

    def _keys(self, x: Tensor, edge_index: Tensor, graph: Tensor | None, ptr: Tensor) -> list[tuple[int, ...]]:
        if graph is not None:  # graph batches are collated afresh every step: hash them (cheap)
            return graph_keys(x, edge_index, graph, ptr)
        memo = (id(x), x._version, id(edge_index), edge_index._version)
        hit = self._key_memo.get(memo)
        if hit is not None and hit[0] is x and hit[1] is edge_index:
            return hit[2]
        keys = graph_keys(x, edge_index, graph, ptr)
        self._key_memo[memo] = (x, edge_index, keys)  # holding the tensors keeps their ids unique
        while len(self._key_memo) > 4:
            self._key_memo.popitem(last=False)
        return keys

    @torch.no_grad()
    def _initial_tables(self, x: Tensor, edge_index: Tensor, graph: Tensor | None, ptr: Tensor,
                        structures: list[GraphStructure], which: list[int]) -> dict[int, Tensor]:
        """Initial ``[n, L, w]`` tables (local ids) of graphs ``which``: tie-aware top-k of the
        smoothed similarity of ``H0 = LayerNorm(X W_in)``, ties broken by hops. One graph: row chunks. Graph
        batches: graphs sorted by size, padded blocks ``[B, n_max, n_max]`` of <= ~4M scores."""
        z, hn = smoothed_queries(self.input_norm(self.input(x.float())), edge_index, self.alpha, self.sampling, self.ppr_steps)
        if graph is None:
            hops = structures[0].hops
            first = topk_samples(z, hn, self.k, None, self.chunk, hops, self.tie_tolerance)[:, : self._width(x.shape[0])]
            return {0: first.unsqueeze(1).repeat(1, self.num_layers, 1)}
        sizes = {i: int(ptr[i + 1] - ptr[i]) for i in which}
        groups = [[which[j] for j in group] for group in size_groups([sizes[i] for i in which])]
        out: dict[int, Tensor] = {}
        cap = self.max_hops + 1
        for group in groups:
            n_max = max(sizes[i] for i in group)
            b = len(group)
            local = torch.arange(n_max, device=x.device)
            starts = torch.tensor([int(ptr[i]) for i in group], device=x.device)
            counts = torch.tensor([sizes[i] for i in group], device=x.device)
            real = local.unsqueeze(0) < counts.unsqueeze(1)  # [B, n_max]
            idx = (starts.unsqueeze(1) + local).where(real, torch.zeros_like(starts.unsqueeze(1)))
            scores = torch.bmm(z[idx], hn[idx].transpose(1, 2))  # [B, n_max, n_max]
            invalid = ~real.unsqueeze(1) | torch.eye(n_max, dtype=torch.bool, device=x.device).unsqueeze(0)
            scores = scores.masked_fill(invalid, float("-inf"))
            tiebreak = None
            if all(structures[i].hops is not None for i in group):
                tiebreak = torch.full((b, n_max, n_max), cap, dtype=torch.long, device=x.device)
                for row, i in enumerate(group):
                    h = structures[i].hops
                    assert h is not None
                    tiebreak[row, : sizes[i], : sizes[i]] = h.long()
                tiebreak = tiebreak.reshape(b * n_max, n_max)
            chosen = select_rows(scores.reshape(b * n_max, n_max), self.k, tiebreak, self.tie_tolerance).view(b, n_max, -1)
            for row, i in enumerate(group):
                table = chosen[row, : sizes[i], : self._width(sizes[i])]
                out[i] = table.unsqueeze(1).repeat(1, self.num_layers, 1)
        return out

    def _layer0_hops(self, table: Tensor, structure: GraphStructure, local_edges: Tensor | None) -> Tensor:
        first = table[:, 0]
        if structure.hops is not None:
            rows = torch.arange(first.shape[0], device=first.device).unsqueeze(1)
            hops = structure.hops[rows, first.clamp_min(0)].long()
            return torch.where(first >= 0, hops, torch.full_like(hops, self.max_hops + 2))
        assert local_edges is not None
        return sample_hops(local_edges, first.shape[0], first, self.max_hops, self.chunk)

    @torch.no_grad()
    def prepare(self, x: Tensor, edge_index: Tensor, graph: Tensor | None, fresh: bool = False) -> Prepared:
        """Structure + sample tables of a batch. Training mode stores the tables of new graphs;
        evaluation (or ``fresh``) computes unstored ones for graphs without a stored table."""
        ptr = graph_ptr(graph, x.shape[0])
        keys = self._keys(x, edge_index, graph, ptr)
        structures = self.structures.fill(keys, edge_index, graph, ptr)
        tables: list[Tensor | None] = [None if fresh else self._tables.get(key) for key in keys]
        missing = [i for i, t in enumerate(tables) if t is None]
        temporary = [] if (self.training and not fresh) else missing
        if missing:
            new = self._initial_tables(x, edge_index, graph, ptr, structures, missing)
            for i in missing:
                tables[i] = new[i]
                if not temporary:
                    self._tables[keys[i]] = new[i]
        final = [t.to(x.device) for t in tables if t is not None]
        return self._assemble(x, edge_index, graph, ptr, keys, structures, final, temporary)

    def _local_edges(self, edge_index: Tensor, graph: Tensor | None, ptr: Tensor, i: int) -> Tensor:
        if graph is None:
            return edge_index
        a, b = int(ptr[i]), int(ptr[i + 1])
        keep = (edge_index[0] >= a) & (edge_index[0] < b)
        return edge_index[:, keep] - a

    def _assemble(self, x: Tensor, edge_index: Tensor, graph: Tensor | None, ptr: Tensor, keys: list[tuple[int, ...]],
                  structures: list[GraphStructure], tables: list[Tensor], temporary: list[int]) -> Prepared:
        device = x.device
        width = max([t.shape[2] for t in tables], default=1)
        samples, hops = [], []
        need_hops = "spd" in self.encodings
        temp = set(temporary)
        for i, (key, table) in enumerate(zip(keys, tables, strict=True)):
            a = int(ptr[i])
            pad = width - table.shape[2]
            glob = torch.where(table >= 0, table + a, table)
            samples.append(nn.functional.pad(glob, (0, pad), value=PAD))
            if need_hops:
                h = None if i in temp else self._hops.get(key)
                if h is None:
                    edges = None if structures[i].hops is not None else self._local_edges(edge_index, graph, ptr, i)
                    h = self._layer0_hops(table, structures[i], edges)
                    if i not in temp:
                        self._hops[key] = h
                hops.append(nn.functional.pad(h.to(device), (0, pad), value=self.max_hops + 2))
        empty = torch.zeros(0, self.num_layers, width, dtype=torch.long, device=device)
        return Prepared(
            ptr=ptr, keys=keys, structures=structures, tables=tables, temporary=temporary,
            samples=torch.cat(samples) if samples else empty,
            hops=(torch.cat(hops) if hops else empty[:, 0]) if need_hops else None,
            degree=torch.cat([s.degree for s in structures]).to(device) if structures else torch.zeros(0, dtype=torch.long, device=device),
            pagerank=torch.cat([s.pagerank for s in structures]).to(device) if structures else torch.zeros(0, 1, device=device),
        )

    def structure(self, x: Tensor, edge_index: Tensor, graph: Tensor | None) -> dict[str, Tensor]:
        """Fresh initial layer-0 samples ``[N, k]``, hops ``[N, k]``, degree ``[N]`` and scaled
        PageRank ``[N, 1]`` of a batch (nothing stored)."""
        prep = self.prepare(x, edge_index, graph, fresh=True)
        out = {"samples": prep.samples[:, 0], "degree": prep.degree, "pagerank": prep.pagerank}
        if prep.hops is not None:
            out["hops"] = prep.hops
        return out

    # -- forward -----------------------------------------------------------------------------
    def encode(self, x: Tensor, prep: Prepared, dropout: bool = True) -> Tensor:
        """``h0 = COMB([x W_in, SPE, DE, PRE])`` (only the configured encodings)."""
        input_dropout = self.dropout if self.task == "node-classification" and dropout else 0.0  # graph tasks keep their few features
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
            clean = h if (not self.training or self.task != "node-classification") else self.encode(x, prep, dropout=False)
            reps.append(clean.detach())
        for layer, transformer in enumerate(self.transformers):
            h = transformer(h, prep.samples[:, layer])
            if self.gnns is not None:
                h = nn.functional.relu(self.gnns[layer](h, edge_index))
            if collect and layer + 1 < self.num_layers:
                reps.append(h.detach())
            h = nn.functional.dropout(h, self.dropout, self.training)
        return h, reps

    @torch.no_grad()
    def _updated(self, prep: Prepared, reps: list[Tensor], edge_index: Tensor) -> list[Tensor]:
        """``update(Smp_l, H_l)`` for every layer, as per-graph ``[n, L, w]`` local tables."""
        new = []
        for layer, h in enumerate(reps):
            old = prep.samples[:, layer]
            blocks = prep.ptr.numel() > 2 or int(prep.ptr[-1]) <= self.structures.dense_limit
            if self.update == "message-passing" and blocks:  # graph batches and small graphs: padded dense blocks
                new.append(message_passing_update_batched(old, h, edge_index, prep.ptr, self.tie_tolerance))
            elif self.update == "message-passing":
                new.append(message_passing_update(old, h, edge_index, self.tie_tolerance))
            else:
                gen = None
                if not self.training:  # deterministic predictions at evaluation
                    gen = torch.Generator(device=h.device).manual_seed(self.eval_walk_seed)
                new.append(random_walk_update(old, h, edge_index, self.walk_length, self.walk_temperature, gen, self.tie_tolerance))
        stacked = torch.stack(new, dim=1)  # [N, L, W]
        out = []
        for i, table in enumerate(prep.tables):
            a, b = int(prep.ptr[i]), int(prep.ptr[i + 1])
            rows = stacked[a:b, :, : table.shape[2]]
            out.append(torch.where(rows >= 0, rows - a, rows))
        return out

    def node_representations(self, batch: Any, return_samples: bool = False) -> Any:
        """Final node states ``[N, hidden]`` (and the ``[N, W]`` sample table each layer used)."""
        x, edge_index, graph = batch.x, batch.edge_index, getattr(batch, "batch", None)
        prep = self.prepare(x, edge_index, graph)
        if prep.temporary and self.update != "none":
            for _ in range(self.eval_refresh):  # unseen graphs: refresh their fresh tables from current representations
                _, reps = self._stack(x, edge_index, prep, collect=True)
                updated = self._updated(prep, reps, edge_index)
                tables = [updated[i] if i in prep.temporary else t for i, t in enumerate(prep.tables)]
                prep = self._assemble(x, edge_index, graph, prep.ptr, prep.keys, prep.structures, tables, prep.temporary)
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
