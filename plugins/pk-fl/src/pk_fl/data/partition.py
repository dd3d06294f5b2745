"""Client partitioners: each maps labels ``[N]`` to ``num_clients`` index arrays that cover
``0..N-1`` exactly once, deterministically for a given integer seed.

- ``iid``: a seeded shuffle cut into near-equal parts.
- ``dirichlet``: per-client class mix ~ Dirichlet(alpha * 1_C), near-equal client sizes,
  each client filled from per-class pools (classes that run out are renormalised away).
- ``dynafed-dirichlet``: Dynafed's split: per-class Dirichlet(alpha * 1_K) over clients,
  Sinkhorn-balanced (up to 1000 rounds of column then row normalisation), each class's
  indices cut in dataset order by cumulative fractions.
- ``shards``: sort by label, cut into ``num_clients * shards_per_client`` shards, deal them out.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _check(labels: np.ndarray, num_clients: int) -> None:
    if num_clients < 1:
        raise ValueError(f"num_clients must be >= 1, got {num_clients}")
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {labels.shape}")


def _dirichlet_setup(labels: Sequence[int] | np.ndarray, num_clients: int, alpha: float,
                     seed: int) -> tuple[np.ndarray, np.random.Generator]:
    """Checked labels and the seeded generator of a Dirichlet partitioner."""
    labels = np.asarray(labels)
    _check(labels, num_clients)
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    return labels, np.random.default_rng(seed)


def iid_partition(labels: Sequence[int] | np.ndarray, num_clients: int, seed: int) -> list[np.ndarray]:
    labels = np.asarray(labels)
    _check(labels, num_clients)
    order = np.random.default_rng(seed).permutation(len(labels))
    return [np.sort(part) for part in np.array_split(order, num_clients)]


def dirichlet_partition(labels: Sequence[int] | np.ndarray, num_clients: int, alpha: float,
                        seed: int) -> list[np.ndarray]:
    """Per-client Dirichlet(alpha) class mixes; client sizes differ by at most one."""
    labels, rng = _dirichlet_setup(labels, num_clients, alpha, seed)
    classes = np.unique(labels)
    pools = [list(rng.permutation(np.flatnonzero(labels == c))) for c in classes]
    sizes = [len(p) for p in np.array_split(np.arange(len(labels)), num_clients)]
    mixes = rng.dirichlet([alpha] * len(classes), size=num_clients)
    out = []
    for client, need in enumerate(sizes):
        taken: list[int] = []
        mix = mixes[client]
        while need > 0:
            remaining = np.array([len(p) for p in pools], dtype=float)
            p = mix * (remaining > 0)
            p = p / p.sum() if p.sum() > 0 else remaining / remaining.sum()
            counts = np.minimum(rng.multinomial(need, p), remaining.astype(int))
            for c, k in enumerate(counts):
                taken += pools[c][:k]
                del pools[c][:k]
            need -= int(counts.sum())
        out.append(np.sort(np.asarray(taken, dtype=np.int64)))
    return out


def sinkhorn_balance(matrix: np.ndarray, max_iter: int = 1000) -> np.ndarray:
    """Dynafed's ``make_double_stochstic``: alternate column then row normalisation until
    both sums are exactly 1 or ``max_iter`` rounds; rows (classes) sum to 1 on return."""
    x = np.array(matrix, dtype=np.float64)
    for _ in range(max_iter):
        x = x / x.sum(0)
        x = x / x.sum(1)[:, None]
        if np.all(x.sum(1) == 1) and np.all(x.sum(0) == 1):
            break
    return x


def dynafed_dirichlet_partition(labels: Sequence[int] | np.ndarray, num_clients: int, alpha: float,
                                seed: int) -> list[np.ndarray]:
    """Dynafed's rebalanced per-class Dirichlet split (indices kept in dataset order)."""
    labels, rng = _dirichlet_setup(labels, num_clients, alpha, seed)
    num_classes = int(labels.max()) + 1
    fractions = rng.dirichlet([alpha] * num_clients, size=num_classes)
    # a class column of exact zeros would divide by zero; Dirichlet samples are positive but may underflow
    fractions = sinkhorn_balance(np.maximum(fractions, 1e-300))
    parts: list[list[np.ndarray]] = [[] for _ in range(num_clients)]
    for c in range(num_classes):
        idx = np.flatnonzero(labels == c)
        cuts = (np.cumsum(fractions[c])[:-1] * len(idx)).astype(int)
        for client, chunk in enumerate(np.split(idx, cuts)):
            parts[client].append(chunk)
    return [np.sort(np.concatenate(p)).astype(np.int64) for p in parts]


def shard_partition(
    labels: Sequence[int] | np.ndarray, num_clients: int, shards_per_client: int, seed: int
) -> list[np.ndarray]:
    """McMahan et al.'s pathological split: label-sorted shards dealt at random."""
    labels = np.asarray(labels)
    _check(labels, num_clients)
    rng = np.random.default_rng(seed)
    order = np.argsort(labels, kind="stable")
    shards = np.array_split(order, num_clients * shards_per_client)
    deal = rng.permutation(len(shards))
    parts = [np.concatenate([shards[s] for s in deal[k * shards_per_client : (k + 1) * shards_per_client]])
             for k in range(num_clients)]
    return [np.sort(p).astype(np.int64) for p in parts]


def partition(
    labels: Sequence[int] | np.ndarray,
    num_clients: int,
    method: str,
    seed: int,
    *,
    alpha: float = 0.5,
    shards_per_client: int = 2,
) -> list[np.ndarray]:
    """Dispatch on ``method`` ("iid" | "dirichlet" | "dynafed-dirichlet" | "shards")."""
    if method == "iid":
        return iid_partition(labels, num_clients, seed)
    if method == "dirichlet":
        return dirichlet_partition(labels, num_clients, alpha, seed)
    if method == "dynafed-dirichlet":
        return dynafed_dirichlet_partition(labels, num_clients, alpha, seed)
    if method == "shards":
        return shard_partition(labels, num_clients, shards_per_client, seed)
    raise ValueError(f"unknown partition {method!r}; use iid, dirichlet, dynafed-dirichlet or shards")
