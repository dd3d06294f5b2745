"""The sequence DataBundle and its batch format.

Batch format (a dict of tensors; ``B`` batch, ``L`` = ``info.max_len``):

- ``seq``      [B, L] long: input item ids, **padded on the left** (zeros first, the most
  recent item at ``seq[:, -1]``); 0 is padding, real ids are ``1..num_items``.
- ``len``      [B] long: number of real items in ``seq`` (>= 1).
- ``target``   [B] long: the next item after ``seq`` (the item to rank).
- ``user``     [B] long: user (or session) index ``0..num_users-1`` into ``bundle.sequences``.
- ``tpos``     [B] long: index of ``target`` inside the user's full sequence.
- train only: ``targets`` [B, L] long, aligned with ``seq``: ``targets[:, j]`` is the item
  following ``seq[:, j]`` (0 where ``seq`` is padding), so ``targets[:, -1] == target``.
  Rows may overlap (``train_windows`` "all" with a stride < L, or "prefixes"): a position
  another row already trains is 0 in ``targets`` (context only), so every target is
  trained once; losses skip 0 targets.
- valid/test only: ``history`` [B, Hmax] int32: every item the user had before ``target``
  (all of it, not only the last L), 0-padded on the right; used to exclude history items.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from pk.core.base import TensorBundle
from pk.core.contracts import DatasetInfo
from pk_seqrec.data.preprocess import leave_one_out_positions, window_targets


@dataclass
class SeqBundle(TensorBundle):
    """A TensorBundle of next-item examples plus the full user sequences they came from.

    ``sequences[u]`` is user ``u``'s remapped item list (oldest first); ``user_ids[u]`` its
    raw id; ``item_ids[i]`` the raw id of item ``i`` (``item_ids[0]`` is None).
    """

    sequences: list[list[int]] = field(default_factory=list)
    user_ids: list[Hashable] = field(default_factory=list)
    item_ids: list[Hashable] = field(default_factory=list)

    def loader(self, split: str, batch_size: int, *, shuffle: bool = False, generator: Any = None,
               length_buckets: int = 0) -> Iterator[dict[str, Any]]:
        """Batches of ``split`` with the all-padding leading columns of ``seq``/``targets``
        cut off (models are invariant to that). ``length_buckets`` > 0 (with ``shuffle``)
        sorts each run of ``length_buckets * batch_size`` shuffled examples by length before
        cutting it into batches, then shuffles the batch order: far less padding on skewed
        length distributions. All randomness comes from ``generator``."""
        if not (shuffle and length_buckets > 0):
            for batch in super().loader(split, batch_size, shuffle=shuffle, generator=generator):
                yield _trim(batch)
            return
        t = self.tensors[split]
        order = torch.randperm(self.size(split), generator=generator)
        chunk = batch_size * length_buckets
        batches = []
        for start in range(0, len(order), chunk):
            idx = order[start : start + chunk]
            idx = idx[torch.argsort(t["len"][idx], stable=True)]
            batches += list(idx.split(batch_size))
        for b in torch.randperm(len(batches), generator=generator).tolist():
            yield _trim({k: v[batches[b]] for k, v in t.items()})

    def split_keys(self, split: str) -> list[tuple[int, int]]:
        """``(user, target index)`` per example: disjoint across splits when no target
        position is both trained on and evaluated."""
        t = self.tensors[split]
        return list(zip(t["user"].tolist(), t["tpos"].tolist(), strict=True))

    def train_item_counts(self) -> torch.Tensor:
        """[N + 1] float counts of the items the training rows cover (inputs and targets),
        each (user, position) once even where rows overlap; index 0 (padding) is 0."""
        t = self.tensors["train"]
        counts = torch.zeros(int(self.info.num_items) + 1)
        span: dict[int, tuple[int, int]] = {}
        for u, e, n in zip(t["user"].tolist(), t["tpos"].tolist(), t["len"].tolist(), strict=True):
            lo, hi = span.get(u, (e - n, e))
            span[u] = (min(lo, e - n), max(hi, e))  # rows of one user are contiguous windows
        items = [i for u, (lo, hi) in span.items() for i in self.sequences[u][lo : hi + 1]]
        if items:
            counts.index_add_(0, torch.tensor(items, dtype=torch.long), torch.ones(len(items)))
        counts[0] = 0
        return counts


def _trim(batch: dict[str, Any]) -> dict[str, Any]:
    """Drop leading columns that are padding in every row of ``seq`` (left padding)."""
    seq = batch["seq"]
    width = max(int(batch["len"].max()), 1) if seq.shape[0] else seq.shape[1]
    if width < seq.shape[1]:
        batch = dict(batch)
        for key in ("seq", "targets"):
            if key in batch:
                batch[key] = batch[key][:, -width:]
    return batch


def _left_pad(rows: Sequence[Sequence[int]], width: int, dtype: torch.dtype = torch.long) -> torch.Tensor:
    out = torch.zeros(len(rows), width, dtype=dtype)
    for r, items in enumerate(rows):
        if items:
            out[r, width - len(items) :] = torch.tensor(items, dtype=dtype)
    return out


def _right_pad(rows: Sequence[Sequence[int]], dtype: torch.dtype = torch.int32) -> torch.Tensor:
    width = max((len(r) for r in rows), default=0) or 1
    out = torch.zeros(len(rows), width, dtype=dtype)
    for r, items in enumerate(rows):
        if items:
            out[r, : len(items)] = torch.tensor(items, dtype=dtype)
    return out


def train_tensors(
    sequences: Sequence[Sequence[int]], max_len: int, *, users: Sequence[int] | None = None,
    train_lengths: Sequence[int] | None = None, mode: str = "all", stride: int = 1,
) -> dict[str, torch.Tensor]:
    """Training rows (see ``preprocess.window_targets``: ``mode`` and ``stride``) over the
    first ``train_lengths[u]`` items of each sequence (default: all of it). ``targets`` is 0
    at the positions a row only uses as context, so every target is trained exactly once."""
    users = list(range(len(sequences))) if users is None else list(users)
    seq_rows, tgt_rows, user_col, tpos_col = [], [], [], []
    for u in users:
        items = sequences[u]
        n = len(items) if train_lengths is None else int(train_lengths[u])
        for s, e, first in window_targets(n, max_len, mode, stride):
            seq_rows.append(items[s : e - 1])
            tgt_rows.append([0] * (first - s - 1) + list(items[first:e]))
            user_col.append(u)
            tpos_col.append(e - 1)
    seq = _left_pad(seq_rows, max_len)
    return {
        "seq": seq,
        "targets": _left_pad(tgt_rows, max_len),
        "len": (seq != 0).sum(1),
        "target": torch.tensor([r[-1] for r in tgt_rows], dtype=torch.long).reshape(-1),
        "user": torch.tensor(user_col, dtype=torch.long).reshape(-1),
        "tpos": torch.tensor(tpos_col, dtype=torch.long).reshape(-1),
    }


def eval_tensors(
    sequences: Sequence[Sequence[int]], max_len: int, targets: Sequence[tuple[int, int]]
) -> dict[str, torch.Tensor]:
    """Evaluation examples for ``(user, target index)`` pairs: history = all items before
    the target, ``seq`` = its last ``max_len`` items."""
    hist_rows = [list(sequences[u][:t]) for u, t in targets]
    seq = _left_pad([h[-max_len:] for h in hist_rows], max_len)
    return {
        "seq": seq,
        "len": (seq != 0).sum(1),
        "target": torch.tensor([sequences[u][t] for u, t in targets], dtype=torch.long).reshape(-1),
        "user": torch.tensor([u for u, _ in targets], dtype=torch.long).reshape(-1),
        "tpos": torch.tensor([t for _, t in targets], dtype=torch.long).reshape(-1),
        "history": _right_pad(hist_rows),
    }


def bundle_from_sequences(
    sequences: Sequence[Sequence[int]],
    num_items: int,
    max_len: int,
    *,
    user_ids: Sequence[Hashable] | None = None,
    item_ids: Sequence[Hashable] | None = None,
    train_windows: str = "all",
    window_stride: int = 1,
    params: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> SeqBundle:
    """Leave-one-out bundle from already-remapped sequences (ids ``1..num_items``, oldest
    first): last item = test, second-to-last = valid, the rest = train (rows as
    ``preprocess.window_targets(n, max_len, train_windows, window_stride)``). Users with
    fewer than 3 items are dropped. This is the entry point for plugins that load or cut
    their own sequences (e.g. by time or by user)."""
    kept = [(i, list(s)) for i, s in enumerate(sequences) if leave_one_out_positions(len(s)) is not None]
    seqs = [s for _, s in kept]
    raw_users = [(user_ids[i] if user_ids is not None else i) for i, _ in kept]
    _check_ids(seqs, num_items)
    valid = [(u, len(s) - 2) for u, s in enumerate(seqs)]
    test = [(u, len(s) - 1) for u, s in enumerate(seqs)]
    tensors = {
        "train": train_tensors(seqs, max_len, train_lengths=[len(s) - 2 for s in seqs], mode=train_windows,
                              stride=window_stride),
        "valid": eval_tensors(seqs, max_len, valid),
        "test": eval_tensors(seqs, max_len, test),
    }
    info = DatasetInfo(
        task="next-item", num_items=int(num_items), num_users=len(seqs), max_len=int(max_len), padding_id=0,
        extra={"split": "leave-one-out", "padding": "left", "interactions": sum(map(len, seqs)), **dict(extra or {})},
    )
    return SeqBundle(
        info=info, tensors=tensors,
        params={"max_len": max_len, "train_windows": train_windows, "window_stride": window_stride,
                **dict(params or {})},
        sequences=seqs, user_ids=raw_users,
        item_ids=list(item_ids) if item_ids is not None else [None, *range(1, num_items + 1)],
    )


def bundle_from_splits(
    train_sequences: Sequence[Sequence[int]],
    valid_sequences: Sequence[Sequence[int]],
    test_sequences: Sequence[Sequence[int]],
    num_items: int,
    max_len: int,
    *,
    window_stride: int = 1,
    params: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> SeqBundle:
    """Bundle from sequences already split into train / valid / test groups (e.g. by time
    block or by user). Train sequences train on every position ("all" rows with
    ``window_stride``); each valid/test sequence (>= 2 items) predicts its last item from
    the items before it."""
    seqs = [list(s) for s in (*train_sequences, *valid_sequences, *test_sequences)]
    _check_ids(seqs, num_items)
    n_tr, n_va = len(train_sequences), len(valid_sequences)
    train_users = [u for u in range(n_tr) if len(seqs[u]) >= 2]
    valid = [(u, len(seqs[u]) - 1) for u in range(n_tr, n_tr + n_va) if len(seqs[u]) >= 2]
    test = [(u, len(seqs[u]) - 1) for u in range(n_tr + n_va, len(seqs)) if len(seqs[u]) >= 2]
    tensors = {
        "train": train_tensors(seqs, max_len, users=train_users, stride=window_stride),
        "valid": eval_tensors(seqs, max_len, valid),
        "test": eval_tensors(seqs, max_len, test),
    }
    info = DatasetInfo(
        task="next-item", num_items=int(num_items), num_users=len(seqs), max_len=int(max_len), padding_id=0,
        extra={"split": "given", "padding": "left", **dict(extra or {})},
    )
    return SeqBundle(info=info, tensors=tensors, params={"max_len": max_len, **dict(params or {})},
                     sequences=seqs, user_ids=list(range(len(seqs))), item_ids=[None, *range(1, num_items + 1)])


def _check_ids(seqs: Sequence[Sequence[int]], num_items: int) -> None:
    for u, s in enumerate(seqs):
        if s and (min(s) < 1 or max(s) > num_items):
            raise ValueError(f"sequence {u} has item ids outside 1..{num_items}; "
                             "remap ids first (pk_seqrec.data.preprocess.remap_items)")
