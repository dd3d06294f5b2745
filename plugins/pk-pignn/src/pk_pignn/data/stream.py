"""Snapshot streams: a node-classification graph whose edges arrive in T steps.

Snapshot t is the undirected union of the edges that arrived at steps 0..t, over the nodes
that are endpoints of those edges (a node appears with its first edge). Labels and the
train/valid/test node split are fixed for the whole stream (global node ids).

Every per-task graph is a **pure function** of ``(t, memory_size, seed)`` and cached, so
building a task twice gives identical graphs, masks and memory (the official code mutates
its memory when indexed; pk does not). For task t >= 1 (PI-GNN, ``data/dataset.py``):

- ``affected`` = endpoints of the edges arriving at t; ``last_affected`` = affected nodes
  already in snapshot t-1;
- ``memory`` = ``memory_size`` training nodes drawn uniformly from snapshot t-1 (redrawn per
  task, never accumulated, not restricted to stable nodes);
- ``rec``: 2-hop subgraph of the OLD edges around memory + last_affected (rectification);
- ``ret``: 2-hop subgraph of the OLD+NEW edges around memory + affected (expansion);
- ``now``: snapshot t (evaluation: all test nodes present in snapshot t).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch_geometric.data import Data
from torch_geometric.utils import coalesce, k_hop_subgraph, remove_self_loops, to_undirected

from pk.core.base import tensor_fingerprint
from pk.core.contracts import DatasetInfo
from pk.core.seed import derive_seed

TASK = "continual-node-classification"
SPLITS = ("train", "valid", "test")
NUM_HOPS = 2
SPARSE_DENSITY = 0.1


def sparse_rows(x: torch.Tensor) -> torch.Tensor:
    """A sparse CSR copy of ``x`` (the model multiplies it without densifying)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "Sparse CSR tensor support is in beta state"
        return x.to_sparse_csr()


@dataclass(frozen=True)
class TaskGraphs:
    """The graphs one continual task trains and evaluates on (local ids inside each graph).

    ``rec`` carries ``memory_idx`` and ``last_affected_idx`` (training nodes, local to ``rec``);
    ``ret`` carries ``memory_idx``, ``affected_idx`` (train nodes among affected, no memory) and
    ``union_idx`` ((memory + affected) train nodes; the loss adds a separate memory term, so
    memory nodes count twice, as in the official code).
    Both are None at t = 0. ``now`` is snapshot t with ``train_idx``/``test_idx``.
    ``memory`` / ``affected`` / ``last_affected`` are global node ids (sorted).
    """

    t: int
    now: Data
    rec: Data | None
    ret: Data | None
    memory: torch.Tensor
    affected: torch.Tensor
    last_affected: torch.Tensor


def _isin(values: torch.Tensor, pool: torch.Tensor) -> torch.Tensor:
    return torch.isin(values, pool)


class SnapshotStream:
    """Global graph data plus the edges arriving at each step.

    Shapes: ``x [N, F]`` float, ``y [N]`` long, ``train_mask``/``val_mask``/``test_mask`` ``[N]``
    bool (disjoint), ``arrivals[t]`` ``[2, E_t]`` long global ids (direction and repeats as given).
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, train_mask: torch.Tensor, val_mask: torch.Tensor,
                 test_mask: torch.Tensor, arrivals: Sequence[torch.Tensor], name: str) -> None:
        n = int(x.shape[0])
        if not arrivals:
            raise ValueError("a snapshot stream needs at least one arrival step")
        for t, e in enumerate(arrivals):
            if e.dim() != 2 or e.shape[0] != 2 or (e.numel() and (int(e.min()) < 0 or int(e.max()) >= n)):
                raise ValueError(f"arrivals[{t}] must be [2, E] node ids in [0, {n})")
        self.x, self.y = x.float(), y.long()
        self.train_mask, self.val_mask, self.test_mask = train_mask.bool(), val_mask.bool(), test_mask.bool()
        self.arrivals = [e.long() for e in arrivals]
        self.name = name
        self.num_nodes = n
        #: bag-of-words style features (< 10% non-zero) get a CSR copy ``x_sparse`` per graph
        self.sparse_features = bool(n and float((self.x != 0).float().mean()) < SPARSE_DENSITY)
        self._edges: dict[int, torch.Tensor] = {}
        self._tasks: dict[tuple[int, int, int], TaskGraphs] = {}
        self._snapshots: dict[int, Data] = {}

    @property
    def num_tasks(self) -> int:
        return len(self.arrivals)

    # -- snapshots -------------------------------------------------------------------------------
    def edges_until(self, t: int) -> torch.Tensor:
        """Undirected, coalesced edge_index (global ids, no self-loops) of snapshot ``t``."""
        self._check_t(t)
        if t not in self._edges:
            e = torch.cat(self.arrivals[: t + 1], dim=1)
            e, _ = remove_self_loops(e)
            self._edges[t] = coalesce(to_undirected(e, num_nodes=self.num_nodes), num_nodes=self.num_nodes)
        return self._edges[t]

    def nodes_until(self, t: int) -> torch.Tensor:
        """Sorted global ids of the nodes present in snapshot ``t`` (endpoints of its edges)."""
        return torch.unique(self.edges_until(t))

    def affected(self, t: int) -> torch.Tensor:
        """Sorted endpoints of the edges arriving at ``t`` (PI-GNN's "affected" nodes)."""
        self._check_t(t)
        e, _ = remove_self_loops(self.arrivals[t])
        return torch.unique(e)

    def memory(self, t: int, size: int, seed: int) -> torch.Tensor:
        """``size`` training nodes of snapshot ``t`` drawn uniformly without replacement from
        ``derive_seed(seed, "memory", t)`` (all of them when fewer); sorted global ids."""
        nodes = self.nodes_until(t)
        pool = nodes[self.train_mask[nodes]]
        g = torch.Generator().manual_seed(derive_seed(seed, "memory", self.name, t))
        pick = torch.randperm(pool.numel(), generator=g)[: max(0, int(size))]
        return torch.sort(pool[pick]).values

    def _subgraph(self, centers: torch.Tensor, edge_index: torch.Tensor, hops: int | None) -> tuple[Data, torch.Tensor]:
        """Relabelled graph on the ``hops``-hop neighbourhood of ``centers`` (all of
        ``centers`` when ``hops`` is None, i.e. the whole snapshot); returns it and the
        global -> local map (-1 outside)."""
        if hops is None:
            subset = centers
            keep = _isin(edge_index[0], subset) & _isin(edge_index[1], subset)
            sub_edges = edge_index[:, keep]
        else:
            subset, sub_edges, _, _ = k_hop_subgraph(centers, hops, edge_index, relabel_nodes=False,
                                                     num_nodes=self.num_nodes)
        local = torch.full((self.num_nodes,), -1, dtype=torch.long)
        local[subset] = torch.arange(subset.numel())
        data = Data(x=self.x[subset], y=self.y[subset], edge_index=local[sub_edges], num_nodes=int(subset.numel()))
        data.node_ids = subset
        if self.sparse_features:
            data.x_sparse = sparse_rows(data.x)
        return data, local

    def snapshot(self, t: int) -> Data:
        """Snapshot ``t``: ``x``, ``y``, ``edge_index`` (local ids), ``node_ids`` (global),
        ``train_mask``/``val_mask``/``test_mask`` and ``train_idx``/``test_idx`` (local)."""
        if t not in self._snapshots:
            data, _ = self._subgraph(self.nodes_until(t), self.edges_until(t), None)
            ids = data.node_ids
            data.train_mask, data.val_mask = self.train_mask[ids], self.val_mask[ids]
            data.test_mask = self.test_mask[ids]
            data.train_idx = data.train_mask.nonzero().flatten()
            data.test_idx = data.test_mask.nonzero().flatten()
            self._snapshots[t] = data
        return self._snapshots[t]

    def task(self, t: int, memory_size: int = 64, seed: int = 0) -> TaskGraphs:
        """The graphs of task ``t`` (see module doc); cached per ``(t, memory_size, seed)``."""
        self._check_t(t)
        key = (t, int(memory_size), int(seed))
        if key in self._tasks:
            return self._tasks[key]
        now = self.snapshot(t)
        affected = self.affected(t)
        if t == 0:
            empty = torch.empty(0, dtype=torch.long)
            graphs = TaskGraphs(t, now, None, None, empty, affected, empty)
        else:
            old_nodes = self.nodes_until(t - 1)
            memory = self.memory(t - 1, memory_size, seed)
            last_affected = affected[_isin(affected, old_nodes)]
            train = self.train_mask
            rec, rec_local = self._subgraph(torch.unique(torch.cat([memory, last_affected])), self.edges_until(t - 1),
                                            NUM_HOPS)
            rec.memory_idx = rec_local[memory]
            rec.last_affected_idx = rec_local[last_affected[train[last_affected]]]
            ret, ret_local = self._subgraph(torch.unique(torch.cat([memory, affected])), self.edges_until(t), NUM_HOPS)
            ret.memory_idx = ret_local[memory]
            ret.affected_idx = ret_local[affected[train[affected]]]
            ret.union_idx = torch.unique(torch.cat([ret.memory_idx, ret.affected_idx]))
            graphs = TaskGraphs(t, now, rec, ret, memory, affected, last_affected)
        self._tasks[key] = graphs
        return graphs

    def _check_t(self, t: int) -> None:
        if not 0 <= t < self.num_tasks:
            raise IndexError(f"task {t} outside the stream's 0..{self.num_tasks - 1}")

    def fingerprint_parts(self) -> list[Any]:
        return [self.x, self.y, self.train_mask, self.val_mask, self.test_mask, *self.arrivals]


class StreamBundle:
    """DataBundle over a :class:`SnapshotStream` (task ``continual-node-classification``).

    ``loader(split)`` yields ONE PyG ``Data``: the last (cumulative, full) snapshot with
    ``mask`` = the split's nodes present in it, so generic node-classification tools score the
    final model on the final graph. Continual trainers use ``stream`` directly.
    ``split_keys(split)`` are global node ids (disjoint by construction).
    """

    splits: Sequence[str] = SPLITS

    def __init__(self, info: DatasetInfo, stream: SnapshotStream, params: dict[str, Any]) -> None:
        self.info = info
        self.stream = stream
        self.params = dict(params)
        self._fingerprint = tensor_fingerprint(sorted(self.params.items(), key=str), *stream.fingerprint_parts())

    def _mask_name(self, split: str) -> str:
        names = {"train": "train_mask", "valid": "val_mask", "test": "test_mask"}
        if split not in names:
            raise KeyError(f"unknown split {split!r}; have {', '.join(SPLITS)}")
        return names[split]

    def batch(self, split: str, t: int | None = None) -> Data:
        """Snapshot ``t`` (default: the last) with ``mask`` set to ``split``'s nodes."""
        snap = self.stream.snapshot(self.stream.num_tasks - 1 if t is None else t)
        out = Data(x=snap.x, edge_index=snap.edge_index, y=snap.y, mask=getattr(snap, self._mask_name(split)),
                   node_ids=snap.node_ids, num_nodes=snap.num_nodes)
        if getattr(snap, "x_sparse", None) is not None:
            out.x_sparse = snap.x_sparse
        return out

    def loader(self, split: str, batch_size: int = 0, *, shuffle: bool = False,
               generator: Any = None) -> Iterator[Data]:
        yield self.batch(split)

    def split_keys(self, split: str) -> list[int]:
        return getattr(self.stream, self._mask_name(split)).nonzero().flatten().tolist()

    def fingerprint(self) -> str:
        return self._fingerprint


def stream_info(stream: SnapshotStream, source: str, extra: dict[str, Any] | None = None) -> DatasetInfo:
    """DatasetInfo of a stream: features, classes, number of snapshots and the source used."""
    return DatasetInfo(
        task=TASK, num_features=int(stream.x.shape[1]), num_classes=int(stream.y.max()) + 1,
        extra={"source": source, "name": stream.name, "num_tasks": stream.num_tasks, "num_nodes": stream.num_nodes,
               **(extra or {})},
    )


def random_split(num_nodes: int, fractions: tuple[float, float],
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Disjoint train/valid/test masks: ``fractions`` = (train, valid), the rest test."""
    order = torch.randperm(num_nodes, generator=generator)
    n_train, n_valid = int(fractions[0] * num_nodes), int(fractions[1] * num_nodes)
    masks = [torch.zeros(num_nodes, dtype=torch.bool) for _ in range(3)]
    masks[0][order[:n_train]] = True
    masks[1][order[n_train : n_train + n_valid]] = True
    masks[2][order[n_train + n_valid :]] = True
    return masks[0], masks[1], masks[2]
