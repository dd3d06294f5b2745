"""Attention sampling for TransGNN: initial top-k of a structure-smoothed similarity and the
two sample-update strategies (message passing, similarity-weighted random walks).

A sample table is a ``LongTensor [N, k]`` of node ids; ``-1`` marks padding (a graph with
fewer than ``k + 1`` nodes, or a tie group left out). A node never samples itself nor a node of
another graph. Selection is tie-aware (:func:`select_rows`): when candidates tie for the k-th
place (one-hot features tie massively), the tied group is left out rather than cut by node
index, so sampled sets are permutation-equivariant.
All functions run under ``torch.no_grad()``: sampling is not differentiable.
"""

from __future__ import annotations

import torch
from torch import Tensor

PAD = -1
#: scores closer than this count as tied (float32 round-off under relabelling is ~1e-7)
TIE_TOL = 1e-4


def normalized_adjacency(edge_index: Tensor, num_nodes: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """Sparse ``D^-1/2 A D^-1/2`` (no self-loops; isolated nodes get zero rows)."""
    src, dst = edge_index
    deg = torch.zeros(num_nodes, device=edge_index.device, dtype=dtype).index_add_(
        0, dst, torch.ones_like(dst, dtype=dtype))
    inv = deg.clamp_min(1).rsqrt() * (deg > 0)
    values = inv[dst] * inv[src]
    return torch.sparse_coo_tensor(torch.stack([dst, src]), values, (num_nodes, num_nodes),
                                   check_invariants=False).coalesce()


@torch.no_grad()
def smoothed_queries(h: Tensor, edge_index: Tensor, alpha: float, mode: str = "similarity",
                     ppr_steps: int = 3) -> tuple[Tensor, Tensor]:
    """``(Z, Hn)`` with ``Hn`` the L2-normalised rows of ``h [N, d]`` and ``Z Hn^T`` the smoothed
    similarity: ``S + alpha A S`` ("similarity") or the truncated personalised-PageRank series
    ``sum_t alpha^t A^t S`` for ``t <= ppr_steps`` ("ppr"); ``S = Hn Hn^T`` is never formed.
    Computed in float64, so that relabelling the nodes moves the scores far less than ``TIE_TOL``."""
    hn = torch.nn.functional.normalize(h.double(), dim=-1)
    adj = normalized_adjacency(edge_index, h.shape[0], torch.float64)
    if mode == "similarity":
        return hn + alpha * torch.sparse.mm(adj, hn), hn
    if mode == "ppr":
        z, term = hn.clone(), hn
        for _ in range(ppr_steps):
            term = alpha * torch.sparse.mm(adj, term)
            z = z + term
        return z, hn
    raise ValueError(f"sampling must be 'similarity' or 'ppr', got {mode!r}")


def _tie_groups(sorted_scores: Tensor, tol: float, new_segment: Tensor | None = None) -> Tensor:
    """Group ids along the last dim of descending ``sorted_scores``: a new group starts where the
    gap to the previous score exceeds ``tol`` (or where ``new_segment`` is True)."""
    gap = sorted_scores[..., :-1] - sorted_scores[..., 1:]
    fresh = ~(gap <= tol)  # NaN (-inf minus -inf) also starts a group: those entries are invalid anyway
    if new_segment is not None:
        fresh = fresh | new_segment[..., 1:]
    zero = torch.zeros_like(sorted_scores[..., :1], dtype=torch.long)
    return torch.cat([zero, torch.cumsum(fresh.long(), dim=-1)], dim=-1)


def _select_sorted(order: Tensor, s: Tensor, tiebreak: Tensor | None, kk: int, tol: float) -> Tensor:
    """:func:`select_rows` on candidates already sorted by descending score (``order`` = column
    ids, ``s`` = scores, ``tiebreak`` = the candidates' tie-break values in that order)."""
    key = _tie_groups(s, tol)
    if tiebreak is not None:
        key = key * (int(tiebreak.max()) + 1) + tiebreak.long()
        resort = torch.sort(key, dim=1, stable=True).indices
        order, s, key = order.gather(1, resort), s.gather(1, resort), key.gather(1, resort)
    valid = torch.isfinite(s[:, :kk])
    if s.shape[1] > kk:
        straddles = torch.isfinite(s[:, kk]) & (key[:, kk] == key[:, kk - 1])
        valid = valid & ~(straddles.unsqueeze(1) & (key[:, :kk] == key[:, kk - 1 : kk]))
    return torch.where(valid, order[:, :kk], torch.full_like(order[:, :kk], PAD))


@torch.no_grad()
def select_rows(scores: Tensor, k: int, tiebreak: Tensor | None = None, tol: float = TIE_TOL) -> Tensor:
    """Tie-aware top-``k`` column indices per row of ``scores [r, c]`` (``-inf`` = not a candidate).

    Order: score (descending; scores within ``tol`` of their neighbour in sorted order form one
    tie group), then ``tiebreak [r, c]`` (ascending integers, e.g. hop distance). If the k-th and
    the (k+1)-th candidates are still tied, the whole tied group is left out (padding), so the
    chosen *set* never depends on node numbering: permutation-equivariant and deterministic.
    Returns ``[r, min(k, c)]`` column ids, padding (-1) at the end of each row.

    Cost: a ``topk`` of ``2k + 8`` candidates per row; only rows whose tie group at the k-th
    place reaches past those candidates are fully sorted (same result, exactly)."""
    r, c = scores.shape
    kk = min(k, c)
    if r == 0 or kk == 0:
        return torch.full((r, kk), PAD, dtype=torch.long, device=scores.device)
    m = min(c, 2 * kk + 8)
    top = scores.topk(m, dim=1)
    s, order = top.values, top.indices
    out = _select_sorted(order, s, None if tiebreak is None else tiebreak.gather(1, order), kk, tol)
    if m < c:
        key = _tie_groups(s, tol)
        unsafe = (key[:, min(kk, m - 1)] == key[:, m - 1]) & torch.isfinite(s[:, m - 1])
        rows = unsafe.nonzero().flatten()
        if rows.numel():
            full = torch.sort(scores[rows], dim=1, descending=True)
            tb = None if tiebreak is None else tiebreak[rows].gather(1, full.indices)
            out[rows] = _select_sorted(full.indices, full.values, tb, kk, tol)
    return out


@torch.no_grad()
def select_rows_grouped(scores: Tensor, k: int, tiebreak: Tensor | None = None, tol: float = TIE_TOL,
                        group: int = 32) -> Tensor:
    """:func:`select_rows`, same result, for wide rows: one pass over ``scores [r, c]``.

    The top-``m`` candidates (``m = 2k + 8``) that :func:`select_rows` takes with ``topk`` over the
    whole row are found from group maxima instead: the row is cut into groups of ``group`` columns,
    and the ``m + 1`` groups with the largest maxima hold the row's top ``m + 1`` scores (any score
    outside them is <= the smallest of those ``m + 1`` maxima). Where these ``m + 1`` scores are
    strictly decreasing, ``topk`` over the full row has exactly one answer, which this is; rows with
    an exact tie (or NaN) among them, or whose tie group reaches past the candidates, are handed to
    :func:`select_rows` on their full row. ``tiebreak`` may be any integer dtype (e.g. uint8 hops)."""
    r, c = scores.shape
    kk = min(k, c)
    m = min(c, 2 * kk + 8)
    full_groups, tail = divmod(c, group)
    if r == 0 or kk == 0 or m >= c or full_groups + (tail > 0) <= m + 1:
        return select_rows(scores, k, None if tiebreak is None else tiebreak.long(), tol)
    maxima = scores[:, : full_groups * group].unflatten(1, (full_groups, group)).amax(-1)
    if tail:
        maxima = torch.cat([maxima, scores[:, full_groups * group :].amax(-1, keepdim=True)], dim=1)
    best = maxima.topk(m + 1, dim=1).indices
    cols = (best.unsqueeze(-1) * group + torch.arange(group, device=scores.device)).flatten(1)
    outside = cols >= c
    cols = cols.clamp_max(c - 1)
    top = scores.gather(1, cols).masked_fill_(outside, float("-inf")).topk(m + 1, dim=1)
    s, order = top.values, cols.gather(1, top.indices)
    settled = (s[:, :-1] > s[:, 1:]).all(1)  # strictly decreasing: no exact tie, no NaN
    s, order = s[:, :m], order[:, :m]
    key = _tie_groups(s, tol)
    settled &= ~((key[:, kk] == key[:, m - 1]) & torch.isfinite(s[:, m - 1]))  # select_rows' full-sort rows
    tb = None if tiebreak is None else tiebreak.gather(1, order).long()
    out = _select_sorted(order, s, tb, kk, tol)
    redo = (~settled).nonzero().flatten()
    if redo.numel():
        out[redo] = select_rows(scores[redo], k, None if tiebreak is None else tiebreak[redo].long(), tol)
    return out


@torch.no_grad()
def topk_samples(
    z: Tensor, hn: Tensor, k: int, graph: Tensor | None = None, chunk: int = 2048, hop_table: Tensor | None = None,
    tol: float = TIE_TOL, group: int = 32,
) -> Tensor:
    """Row-wise tie-aware top-``k`` (:func:`select_rows`) of ``z @ hn.T`` excluding the diagonal and
    other graphs, in row chunks (memory ``O(chunk * N)``); ties are broken by ``hop_table [N, N]``
    (fewer hops first) when given. Returns ``[N, k_eff]`` with ``k_eff = min(k, largest graph - 1)``
    (at least 1), padded with -1 where a graph is too small or a tie group straddles the k-th place.

    Exact: each chunk's scores are one ``[chunk, N]`` matrix product (the same product, so the same
    float64 values, for every chunk layout), written into one reused buffer; the diagonal and other
    graphs are masked in place; the selection (:func:`select_rows_grouped`) reads each row once."""
    n = z.shape[0]
    if graph is None:
        largest = n
    else:
        largest = int(torch.bincount(graph).max()) if n else 0
    k_eff = max(1, min(k, largest - 1))
    out = torch.full((n, k_eff), PAD, dtype=torch.long, device=z.device)
    if n == 0:
        return out
    buffer = torch.empty(min(chunk, n), n, dtype=torch.float64, device=z.device)
    hn_t = hn.T
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        rows = torch.arange(start, stop, device=z.device)
        scores = buffer[: stop - start]
        if z.dtype == torch.float64 and hn.dtype == torch.float64:
            torch.mm(z[start:stop].clone(), hn_t, out=scores)
        else:
            scores.copy_(z[start:stop] @ hn_t)
        scores[rows - start, rows] = float("-inf")
        if graph is not None:
            scores.masked_fill_(graph[start:stop].unsqueeze(1) != graph.unsqueeze(0), float("-inf"))
        tb = hop_table[start:stop] if hop_table is not None else None
        idx = select_rows_grouped(scores, k_eff, tb, tol, group)
        out[start:stop, : idx.shape[1]] = idx
    return out


@torch.no_grad()
def select_topk(owner: Tensor, candidate: Tensor, hn: Tensor, k: int, tol: float = TIE_TOL) -> Tensor:
    """For each owner node, the ``k`` distinct candidates (not itself, not padding) of highest
    cosine similarity ``hn[owner] . hn[candidate]``, with the tie rule of :func:`select_rows`
    (a tie group straddling the k-th place is left out); ``[N, k]`` padded with -1."""
    n = hn.shape[0]
    keep = (candidate >= 0) & (candidate != owner)
    key = torch.unique(owner[keep] * n + candidate[keep])
    owner, candidate = key // n, key % n
    score = torch.empty(owner.numel(), dtype=torch.float64, device=hn.device)
    hf = hn.float()  # rows normalised in float64; the float32 dot is ~1e-7 off, far below the tie tolerance
    for start in range(0, owner.numel(), 1 << 20):  # bounded memory: 1M pairs at a time
        part = slice(start, start + (1 << 20))
        score[part] = (hf[owner[part]] * hf[candidate[part]]).sum(-1).double()
    # sort by owner, then by descending score (two stable sorts)
    order = torch.sort(score, descending=True, stable=True).indices
    order = order[torch.sort(owner[order], stable=True).indices]
    owner, candidate, score = owner[order], candidate[order], score[order]
    first = torch.ones_like(owner, dtype=torch.bool)
    first[1:] = owner[1:] != owner[:-1]
    group = _tie_groups(score, tol, first) if owner.numel() else owner
    counts = torch.bincount(owner, minlength=n)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(owner.numel(), device=hn.device) - starts[owner]
    # the group of each owner's first left-out candidate (rank k); selected members of it are dropped
    cut = torch.full((n,), -1, dtype=torch.long, device=hn.device)
    at_k = rank == k
    cut[owner[at_k]] = group[at_k]
    sel = (rank < k) & (group != cut[owner])
    out = torch.full((n, k), PAD, dtype=torch.long, device=hn.device)
    out[owner[sel], rank[sel]] = candidate[sel]
    return out


@torch.no_grad()
def message_passing_update(samples: Tensor, h: Tensor, edge_index: Tensor, tol: float = TIE_TOL) -> Tensor:
    """New ``Smp(i)`` = top-k by similarity of ``Smp(i) ∪ ⋃_{j ∈ N(i)} Smp(j)`` (cost ``O(|E| k d)``).

    The old samples are candidates, so (without ties, e.g. ``tol=0``) the summed similarity never
    decreases; the new samples always lie in that candidate set."""
    n, k = samples.shape
    hn = torch.nn.functional.normalize(h.double(), dim=-1)
    src, dst = edge_index
    owner = torch.cat([torch.arange(n, device=h.device).repeat_interleave(k), dst.repeat_interleave(k)])
    candidate = torch.cat([samples.flatten(), samples[src].flatten()])
    return select_topk(owner, candidate, hn, k, tol)


def size_groups(sizes: list[int], budget: int = 4_000_000, small: int = 1 << 16) -> list[list[int]]:
    """Graph indices sorted by size and grouped for padded ``[B, n_max, n_max]`` blocks: a group
    grows while ``B * n_max^2 <= budget`` and the padding at most doubles the work (``B * n_max^2
    <= 2 * sum n^2``, or the block is under ``small`` entries); a larger graph stands alone."""
    groups: list[list[int]] = []
    work = 0
    for i in sorted(range(len(sizes)), key=lambda j: sizes[j]):
        padded = (len(groups[-1]) + 1) * sizes[i] ** 2 if groups else 0
        if groups and padded <= budget and (padded <= small or padded <= 2 * (work + sizes[i] ** 2)):
            groups[-1].append(i)
            work += sizes[i] ** 2
        else:
            groups.append([i])
            work = sizes[i] ** 2
    return groups


@torch.no_grad()
def message_passing_update_batched(samples: Tensor, h: Tensor, edge_index: Tensor, ptr: Tensor,
                                   tol: float = TIE_TOL) -> Tensor:
    """:func:`message_passing_update` for a batch of small graphs (``ptr [G + 1]`` node offsets):
    the candidate sets ``Smp(i) ∪ ⋃_{j ∈ N(i)} Smp(j)`` become masks over padded per-graph blocks
    (graphs grouped by size, :func:`size_groups`), scored by one ``bmm`` and selected by
    :func:`select_rows`. Same candidates, same tie rule; no sort over all (owner, candidate) pairs.
    All groups' masks share one flat buffer, filled by a single scatter of the (owner, candidate)
    pairs; per-pair offsets come from per-node ones, so the pairs are gathered once."""
    n, k = samples.shape
    device = h.device
    # float32 scores: relabelling leaves each dot product's summation order unchanged, and the
    # round-off (~1e-7) is far below the tie tolerance
    hn = torch.nn.functional.normalize(h.double(), dim=-1).float()
    ptr = ptr.to(device)
    counts = ptr[1:] - ptr[:-1]
    sizes = counts.tolist()
    groups = size_groups(sizes)
    widths = [max(sizes[i] for i in group) for group in groups]
    block_start = torch.tensor([0, *(len(g) * w * w for g, w in zip(groups, widths, strict=True))],
                               device=device).cumsum(0)
    spare = int(block_start[-1])  # one extra mask entry that absorbs the pairs left out
    # per graph: offset of its [n_max, n_max] block in the flat mask, and its group's n_max
    graphs = torch.tensor([i for group in groups for i in group], dtype=torch.long, device=device)
    offset = torch.zeros(len(sizes), dtype=torch.long, device=device)
    width = torch.zeros(len(sizes), dtype=torch.long, device=device)
    if sizes:
        offset[graphs] = torch.cat([block_start[g] + torch.arange(len(group), device=device) * w * w
                                    for g, (group, w) in enumerate(zip(groups, widths, strict=True))])
        width[graphs] = torch.tensor([w for group, w in zip(groups, widths, strict=True) for _ in group],
                                     dtype=torch.long, device=device)
    # candidate c of owner v (both in the graph starting at s) sets mask[offset + (v - s) * n_max + (c - s)]
    graph = torch.repeat_interleave(torch.arange(len(sizes), device=device), counts)
    node = torch.arange(n, device=device)
    start = ptr[graph]
    row_base = offset[graph] + (node - start) * width[graph] - start  # [n]
    src, dst = edge_index
    base = torch.cat([row_base.repeat_interleave(k), row_base[dst].repeat_interleave(k)])
    owner = torch.cat([node.repeat_interleave(k), dst.repeat_interleave(k)])
    candidate = torch.cat([samples.flatten(), samples[src].flatten()])
    keep = (candidate >= 0) & (candidate != owner)
    mask = torch.zeros(spare + 1, dtype=torch.bool, device=device)
    mask[torch.where(keep, base + candidate, spare)] = True
    out = torch.full((n, k), PAD, dtype=torch.long, device=device)
    for g, (group, n_max) in enumerate(zip(groups, widths, strict=True)):
        b = len(group)
        members = torch.tensor(group, device=device)
        local = torch.arange(n_max, device=device)
        real = local.unsqueeze(0) < counts[members].unsqueeze(1)
        idx = (ptr[members].unsqueeze(1) + local).where(real, torch.zeros(1, dtype=torch.long, device=device))
        rows = hn[idx]
        block = mask[int(block_start[g]) : int(block_start[g + 1])].view(b, n_max, n_max)
        scores = torch.bmm(rows, rows.transpose(1, 2)).masked_fill(~block, float("-inf"))
        chosen = select_rows(scores.reshape(b * n_max, n_max), k, None, tol).view(b, n_max, -1)
        glob = torch.where(chosen >= 0, chosen + ptr[members].view(b, 1, 1), chosen)
        out[idx[real], : glob.shape[2]] = glob[real]
    return out


@torch.no_grad()
def random_walk_update(
    samples: Tensor, h: Tensor, edge_index: Tensor, walk_length: int = 5, temperature: float = 0.5,
    generator: torch.Generator | None = None, tol: float = TIE_TOL,
) -> Tensor:
    """New ``Smp(i)`` = top-k by similarity of ``Smp(i)`` ∪ the nodes visited by walks of
    ``walk_length`` steps started at each sample of ``i``; a walker at ``u`` moves to neighbour
    ``v`` with probability ``softmax_v(cos(h_u, h_v) / temperature)`` (isolated nodes stay put).
    Randomness draws only from ``generator`` (global RNG if None). Cost ``O(N k L)`` + ``O(|E| d)``."""
    n, k = samples.shape
    hn = torch.nn.functional.normalize(h.float(), dim=-1)
    src, dst = edge_index
    order = torch.argsort(src, stable=True)
    src, dst = src[order], dst[order]
    weight = torch.exp(((hn[src] * hn[dst]).sum(-1) / temperature).double())
    cum = torch.cumsum(weight, 0)
    deg = torch.bincount(src, minlength=n)
    row_end = torch.cumsum(deg, 0)
    row_start = row_end - deg
    total = torch.zeros(n, dtype=torch.float64, device=h.device).index_add_(0, src, weight)
    before = torch.cat([torch.zeros(1, dtype=torch.float64, device=h.device), cum])[row_start]
    start = samples.flatten()
    valid = start >= 0
    cur = start.clamp_min(0)
    visited = []
    for _ in range(walk_length):
        moves = valid & (deg[cur] > 0)
        r = torch.rand(cur.numel(), generator=generator, dtype=torch.float64, device=h.device) * total[cur]
        e = torch.searchsorted(cum, before[cur] + r, right=True)
        e = torch.minimum(torch.maximum(e, row_start[cur]), (row_end[cur] - 1).clamp_min(0))
        cur = torch.where(moves, dst[e.clamp(max=max(dst.numel() - 1, 0))] if dst.numel() else cur, cur)
        visited.append(torch.where(valid, cur, torch.full_like(cur, PAD)))
    owner = torch.arange(n, device=h.device).repeat_interleave(k)
    owners = torch.cat([owner] * (walk_length + 1))
    candidates = torch.cat([samples.flatten(), *visited])
    return select_topk(owners, candidates, hn, k, tol)
