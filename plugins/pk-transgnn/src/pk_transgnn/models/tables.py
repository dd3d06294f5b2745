"""TransGNN's sample tables: initial sampling, per-graph storage (model state), assembly into
batch ids, and the sample update (see :mod:`.transgnn` for the mechanism).

:class:`SampleTables` is a mixin of :class:`.transgnn.TransGNN`; it reads the model's settings
(``k``, ``num_layers``, ``alpha``, ``sampling``, ``update``, ...) and its input projection.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from pk_transgnn.models.encodings import sample_hops
from pk_transgnn.models.sampling import (
    PAD,
    message_passing_update,
    message_passing_update_batched,
    random_walk_update,
    select_rows,
    size_groups,
    smoothed_queries,
    topk_samples,
)
from pk_transgnn.models.structure import GraphStructure, graph_keys, graph_ptr

_STATE = ("sample_keys", "sample_offsets", "sample_tables")


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



class SampleTables:
    """Sample-table state and logic of TransGNN (a mixin placed before ``nn.Module``)."""

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
                error_msgs.append(f"sample_tables has shape {tuple(tables.shape)}, "
                                  f"expected [nodes, {self.num_layers}, {self.k}]")
            else:
                for i, key in enumerate(keys.tolist()):
                    n = int(key[0])
                    a = int(offsets[i])
                    self._tables[tuple(int(v) for v in key)] = tables[a : a + n, :, : self._width(n)].long()
        elif strict and any(p is not None for p in parts):
            error_msgs.append(f"incomplete sample tables: need all of {_STATE}")
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

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
        z, hn = smoothed_queries(self.input_norm(self.input(x.float())), edge_index, self.alpha, self.sampling,
                                 self.ppr_steps)
        if graph is None:
            hops = structures[0].hops
            first = topk_samples(z, hn, self.k, None, self.chunk, hops, self.tie_tolerance)
            first = first[:, : self._width(x.shape[0])]
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
            chosen = select_rows(scores.reshape(b * n_max, n_max), self.k, tiebreak, self.tie_tolerance)
            chosen = chosen.view(b, n_max, -1)
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
            degree=(torch.cat([s.degree for s in structures]).to(device) if structures
                    else torch.zeros(0, dtype=torch.long, device=device)),
            pagerank=(torch.cat([s.pagerank for s in structures]).to(device) if structures
                      else torch.zeros(0, 1, device=device)),
        )

    def structure(self, x: Tensor, edge_index: Tensor, graph: Tensor | None) -> dict[str, Tensor]:
        """Fresh initial layer-0 samples ``[N, k]``, hops ``[N, k]``, degree ``[N]`` and scaled
        PageRank ``[N, 1]`` of a batch (nothing stored)."""
        prep = self.prepare(x, edge_index, graph, fresh=True)
        out = {"samples": prep.samples[:, 0], "degree": prep.degree, "pagerank": prep.pagerank}
        if prep.hops is not None:
            out["hops"] = prep.hops
        return out

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
                new.append(random_walk_update(old, h, edge_index, self.walk_length, self.walk_temperature, gen,
                                              self.tie_tolerance))
        stacked = torch.stack(new, dim=1)  # [N, L, W]
        out = []
        for i, table in enumerate(prep.tables):
            a, b = int(prep.ptr[i]), int(prep.ptr[i + 1])
            rows = stacked[a:b, :, : table.shape[2]]
            out.append(torch.where(rows >= 0, rows - a, rows))
        return out



__all__ = ["PAD", "Prepared", "SampleTables"]
