"""Seeded synthetic drifting-community stream, and a builder that turns any node-classification
graph into T snapshots by node or edge arrival order."""

from __future__ import annotations

import math

import torch
from torch_geometric.utils import coalesce, remove_self_loops, to_undirected

from pk_pignn.data.stream import SnapshotStream, random_split


def drifting_stream(
    num_nodes: int, num_tasks: int, num_classes: int, num_features: int, avg_degree: float, homophily: float,
    feature_signal: float, drift: float, rewire_fraction: float, generator: torch.Generator,
) -> SnapshotStream:
    """Communities (= classes) whose feature centroid rotates while nodes arrive.

    Nodes arrive in ``num_tasks`` equal groups; a node arriving at task t has
    ``x = feature_signal * mu_c(t) + N(0, I)`` with ``mu_c(t) = cos(phi_t) a_c + sin(phi_t) b_c``,
    ``phi_t = pi * drift * t / (T - 1)`` (``a_c``, ``b_c`` random unit vectors), so late nodes of a
    class sit away from its early nodes (drift 1.0: opposite). Edges arriving at t: each new node
    draws about ``avg_degree / 2`` partners among the nodes present so far (same class with
    probability ``homophily``), plus ``rewire_fraction`` as many edges between already present
    nodes (old nodes get new neighbours, so they are "affected"). Split: random 60/20/20.
    """
    g = generator
    n, c, f, big_t = num_nodes, num_classes, num_features, num_tasks
    if n < 4 * big_t * c:
        raise ValueError(f"synthetic stream: {n} nodes are too few for {big_t} tasks x {c} classes")
    y = (torch.arange(n) % c)[torch.randperm(n, generator=g)]
    arrival = torch.arange(n) * big_t // n  # node i arrives at task arrival[i] (ids grouped by time)
    a = torch.nn.functional.normalize(torch.randn(c, f, generator=g), dim=1)
    b = torch.nn.functional.normalize(torch.randn(c, f, generator=g), dim=1)
    phi = math.pi * drift * arrival.float() / max(big_t - 1, 1)
    mu = torch.cos(phi)[:, None] * a[y] + torch.sin(phi)[:, None] * b[y]
    x = feature_signal * mu + torch.randn(n, f, generator=g)
    arrivals = []
    per_node = max(1, int(round(avg_degree / 2)))
    for t in range(big_t):
        new = (arrival == t).nonzero().flatten()
        present = (arrival <= t).nonzero().flatten()
        src = new.repeat_interleave(per_node)
        n_rewire = int(rewire_fraction * src.numel()) if t > 0 else 0
        old = (arrival < t).nonzero().flatten()
        if n_rewire and old.numel():
            src = torch.cat([src, old[torch.randint(0, old.numel(), (n_rewire,), generator=g)]])
        same = torch.rand(src.numel(), generator=g) < homophily
        dst = torch.empty_like(src)
        for i, (s, want_same) in enumerate(zip(src.tolist(), same.tolist())):
            pool_mask = (y[present] == y[s]) if want_same else (y[present] != y[s])
            pool = present[pool_mask & (present != s)]
            if pool.numel() == 0:
                pool = present[present != s]
            dst[i] = pool[int(torch.randint(0, pool.numel(), (1,), generator=g))]
        arrivals.append(torch.stack([src, dst]))
    train, valid, test = random_split(n, (0.6, 0.2), g)
    return SnapshotStream(x, y, train, valid, test, arrivals, name="pignn-synthetic")


def stream_from_graph(
    x: torch.Tensor, y: torch.Tensor, edge_index: torch.Tensor, num_tasks: int, order: str, shuffle: bool,
    generator: torch.Generator, masks: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    name: str = "graph-stream",
) -> SnapshotStream:
    """Split a static graph into ``num_tasks`` arrival steps.

    ``order = "edge"``: the undirected edges, in index order (or a seeded permutation when
    ``shuffle``), are cut into ``num_tasks`` equal chunks. ``order = "node"``: nodes arrive in
    ``num_tasks`` equal groups (index order or seeded permutation); an edge arrives with its later
    endpoint. Isolated nodes never appear. ``masks``: the split (default: random 60/20/20).
    """
    if order not in ("edge", "node"):
        raise ValueError(f"order must be 'edge' or 'node', got {order!r}")
    n = int(x.shape[0])
    e, _ = remove_self_loops(edge_index)
    e = coalesce(to_undirected(e, num_nodes=n), num_nodes=n)
    e = e[:, e[0] < e[1]]  # one direction per pair
    if order == "edge":
        perm = torch.randperm(e.shape[1], generator=generator) if shuffle else torch.arange(e.shape[1])
        e = e[:, perm]
        step = torch.arange(e.shape[1]) * num_tasks // max(e.shape[1], 1)
    else:
        rank = torch.empty(n, dtype=torch.long)
        perm = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        rank[perm] = torch.arange(n)
        node_step = rank * num_tasks // n
        step = torch.maximum(node_step[e[0]], node_step[e[1]])
    arrivals = [e[:, step == t] for t in range(num_tasks)]
    if any(a.shape[1] == 0 for a in arrivals):
        raise ValueError(f"{num_tasks} tasks leave an arrival step without edges; use fewer tasks")
    train, valid, test = masks if masks is not None else random_split(n, (0.6, 0.2), generator)
    return SnapshotStream(x, y, train, valid, test, arrivals, name=name)
