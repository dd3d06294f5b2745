"""Preprocessing with explicit conventions (pure Python, no torch).

- ``interactions_to_sequences``: group (user, item, time) records per user, ordered by a
  STABLE sort on (timestamp, file position): ties keep file order (ml-100k has many).
- ``kcore_filter``: RecBole's iterative k-core (repeat until no user or item has fewer than
  k interactions), or REMI's single pass (items then users, once).
- ``remap_items``: raw item tokens -> ``1..N`` in order of first appearance (users in
  sequence order); 0 stays free for padding.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable, Mapping, Sequence


def interactions_to_sequences(
    records: Iterable[tuple[Hashable, Hashable, float]],
) -> dict[Hashable, list[Hashable]]:
    """Group ``(user, item, timestamp)`` records (in file order) into per-user item lists,
    oldest first; equal timestamps keep file order. Users keep first-appearance order."""
    per_user: dict[Hashable, list[tuple[float, int, Hashable]]] = {}
    for position, (user, item, timestamp) in enumerate(records):
        per_user.setdefault(user, []).append((float(timestamp), position, item))
    return {user: [item for _t, _p, item in sorted(rows)] for user, rows in per_user.items()}


def kcore_filter(
    sequences: Mapping[Hashable, Sequence[Hashable]], k: int, *, iterative: bool = True
) -> dict[Hashable, list[Hashable]]:
    """Keep users and items with >= k interactions. ``iterative`` repeats until a fixed
    point (RecBole); otherwise items are filtered once, then users once (REMI).
    Order inside each sequence is preserved; users left empty are dropped."""
    current = {u: list(items) for u, items in sequences.items()}
    if k <= 0:
        return current
    while True:
        item_counts = Counter(item for items in current.values() for item in items)
        filtered = {u: [i for i in items if item_counts[i] >= k] for u, items in current.items()}
        filtered = {u: items for u, items in filtered.items() if len(items) >= k}
        changed = sum(map(len, filtered.values())) != sum(map(len, current.values())) or len(filtered) != len(current)
        current = filtered
        if not iterative or not changed:
            return current


def remap_items(sequences: Sequence[Sequence[Hashable]]) -> tuple[list[list[int]], list[Hashable]]:
    """Map raw item ids to ``1..N`` by first appearance. Returns the remapped sequences and
    ``raw_ids`` with ``raw_ids[new_id] == raw`` (``raw_ids[0]`` is None, the padding)."""
    mapping: dict[Hashable, int] = {}
    raw_ids: list[Hashable] = [None]
    out: list[list[int]] = []
    for items in sequences:
        row = []
        for item in items:
            new = mapping.get(item)
            if new is None:
                new = len(raw_ids)
                mapping[item] = new
                raw_ids.append(item)
            row.append(new)
        out.append(row)
    return out, raw_ids


def leave_one_out_positions(length: int) -> tuple[int, int] | None:
    """(valid target index, test target index) of a sequence of ``length`` items, or None
    when it is too short (< 3 items: one to train on, one to validate, one to test)."""
    if length < 3:
        return None
    return length - 2, length - 1


TRAIN_WINDOW_MODES = ("all", "last", "prefixes")


def window_targets(length: int, max_len: int, mode: str = "all", stride: int = 1) -> list[tuple[int, int, int]]:
    """Training rows over the first ``length`` items of a sequence (its training part), as
    ``(s, e, t0)``: inputs ``items[s:e-1]`` (at most ``max_len``), targets ``items[s+1:e]``
    of which only ``items[t0:e]`` are trained (the others are context). Newest row first.

    - ``"all"``: windows ending at ``length``, ``length - stride``, ... down to the window
      that starts at item 0. Each trains the ``stride`` targets no newer window trained
      (the oldest window trains all its targets), so every item but the first is a target
      exactly once and each target sees at least ``max_len - stride + 1`` items of context,
      or all of its history when that is shorter. ``stride = 1`` gives every target
      ``min(max_len, its history)`` items, exactly RecBole's prefix examples (one causal pass
      for the first ``max_len`` targets, then one row per later target); ``stride = max_len``
      tiles the history with disjoint windows (cheap; later windows start with a truncated
      context).
    - ``"last"``: only the newest window, every target in it (the original SASRec).
    - ``"prefixes"``: one row per target, ending at it: RecBole's augmentation itself.
    """
    if mode not in TRAIN_WINDOW_MODES:
        raise ValueError(f"train_windows must be one of {TRAIN_WINDOW_MODES}, got {mode!r}")
    if not 1 <= stride <= max(max_len, 1):
        raise ValueError(f"window stride must be in 1..max_len ({max_len}), got {stride}")
    if mode == "prefixes":
        return [(max(0, end - 1 - max_len), end, end - 1) for end in range(length, 1, -1)]
    rows: list[tuple[int, int, int]] = []
    end = length
    while end >= 2:
        start = max(0, end - 1 - max_len)
        if mode == "last" or start == 0:
            rows.append((start, end, start + 1))
            break
        rows.append((start, end, max(start + 1, end - stride)))
        end -= stride
    return rows


def training_windows(length: int, max_len: int, mode: str = "all", stride: int | None = None) -> list[tuple[int, int]]:
    """The ``(s, e)`` windows of :func:`window_targets` (``stride`` None = ``max_len``:
    disjoint windows tiling the history from its end, each target in exactly one)."""
    return [(s, e) for s, e, _ in window_targets(length, max_len, mode, max(max_len, 1) if stride is None else stride)]
