"""Seeded synthetic defaults: a contextual stochastic block model (nodes) and small random
graphs with a planted motif (graphs). Everything draws from one ``torch.Generator``."""

from __future__ import annotations

import torch
from torch_geometric.data import Data
from torch_geometric.utils import coalesce, to_undirected


def csbm(
    num_nodes: int,
    num_classes: int,
    num_features: int,
    avg_degree: float,
    homophily: float,
    feature_signal: float,
    train_per_class: int,
    num_valid: int,
    generator: torch.Generator,
) -> Data:
    """Contextual SBM: balanced classes; a fraction ``homophily`` of the ``N * avg_degree / 2``
    undirected edges join same-class nodes; ``x = feature_signal * mu[y] + N(0, I)`` with unit
    class means ``mu``. Masks: ``train_per_class`` nodes per class, ``num_valid``, rest test."""
    g = generator
    n, c = num_nodes, num_classes
    if n < c * (train_per_class + 1) + num_valid:
        raise ValueError(f"csbm: {n} nodes are too few for {c} x {train_per_class} train + {num_valid} valid nodes")
    y = (torch.arange(n) % c)[torch.randperm(n, generator=g)]
    by_class = [(y == k).nonzero().flatten() for k in range(c)]
    m = int(n * avg_degree / 2)
    src = torch.randint(0, n, (m,), generator=g)
    same = torch.rand(m, generator=g) < homophily
    # target class: the source's class for intra edges, a uniformly chosen other class otherwise
    shift = torch.randint(1, max(c, 2), (m,), generator=g) if c > 1 else torch.zeros(m, dtype=torch.long)
    tgt_class = torch.where(same, y[src], (y[src] + shift) % c)
    dst = torch.empty(m, dtype=torch.long)
    for k in range(c):
        sel = tgt_class == k
        pool = by_class[k]
        dst[sel] = pool[torch.randint(0, pool.numel(), (int(sel.sum()),), generator=g)]
    keep = src != dst
    edge_index = to_undirected(coalesce(torch.stack([src[keep], dst[keep]])), num_nodes=n)
    mu = torch.randn(c, num_features, generator=g)
    mu = mu / mu.norm(dim=1, keepdim=True).clamp_min(1e-8)
    x = feature_signal * mu[y] + torch.randn(n, num_features, generator=g)
    order = torch.randperm(n, generator=g)
    train = torch.zeros(n, dtype=torch.bool)
    for k in range(c):
        cls = order[y[order] == k][:train_per_class]
        train[cls] = True
    rest = order[~train[order]]
    valid = torch.zeros(n, dtype=torch.bool)
    valid[rest[:num_valid]] = True
    test = ~(train | valid)
    return Data(x=x, edge_index=edge_index, y=y, train_mask=train, val_mask=valid, test_mask=test, num_nodes=n)


# motif edges on 5 local nodes; both have 6 edges, so edge counts do not give the class away
HOUSE = [(0, 1), (1, 2), (2, 3), (3, 0), (0, 4), (1, 4)]
STAR_PLUS = [(0, 1), (0, 2), (0, 3), (0, 4), (1, 2), (3, 4)]


def motif_graphs(
    num_graphs: int, min_nodes: int, max_nodes: int, num_features: int, extra_edge_ratio: float,
    generator: torch.Generator,
) -> list[Data]:
    """Graphs of a random tree plus ``extra_edge_ratio * n`` random chords, with a 5-node motif
    attached by one edge: a house (class 1) or a star with two chords (class 0), both 6 edges.
    Node features are random one-hot "types", independent of the class (only structure tells)."""
    g = generator
    graphs = []
    labels = (torch.arange(num_graphs) % 2)[torch.randperm(num_graphs, generator=g)]
    for label in labels.tolist():
        n = int(torch.randint(min_nodes, max_nodes + 1, (1,), generator=g))
        parents = [int(torch.randint(0, i, (1,), generator=g)) for i in range(1, n)]
        edges = [(i, p) for i, p in zip(range(1, n), parents, strict=True)]
        for _ in range(int(extra_edge_ratio * n)):
            a, b = torch.randint(0, n, (2,), generator=g).tolist()
            if a != b:
                edges.append((a, b))
        motif = HOUSE if label == 1 else STAR_PLUS
        edges += [(n + a, n + b) for a, b in motif]
        anchor = int(torch.randint(0, n, (1,), generator=g))
        edges.append((anchor, n + int(torch.randint(0, 5, (1,), generator=g))))
        total = n + 5
        ei = to_undirected(coalesce(torch.tensor(edges, dtype=torch.long).t()), num_nodes=total)
        types = torch.randint(0, num_features, (total,), generator=g)
        x = torch.nn.functional.one_hot(types, num_features).float()
        graphs.append(Data(x=x, edge_index=ei, y=torch.tensor([label]), num_nodes=total))
    return graphs
