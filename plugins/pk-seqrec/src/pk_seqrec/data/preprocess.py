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


def training_windows(length: int, max_len: int, mode: str = "all") -> list[tuple[int, int]]:
    """Training windows over the first ``length`` items of a sequence (its training part).

    A window ``(s, e)`` feeds inputs ``items[s:e-1]`` and targets ``items[s+1:e]``
    (at most ``max_len`` each). Windows tile the training part from its end, so every item
    but the first is a target exactly once (``mode="all"``), or only the newest window is
    kept (``mode="last"``, the original SASRec). ``mode="prefixes"`` is RecBole's augmentation:
    one window per target, ending at it (inputs = the ``max_len`` items before it), so
    ``length - 1`` windows. Newest window first.
    """
    if mode not in TRAIN_WINDOW_MODES:
        raise ValueError(f"train_windows must be one of {TRAIN_WINDOW_MODES}, got {mode!r}")
    if mode == "prefixes":
        return [(max(0, end - 1 - max_len), end) for end in range(length, 1, -1)]
    windows: list[tuple[int, int]] = []
    end = length
    while end >= 2:
        start = max(0, end - 1 - max_len)
        windows.append((start, end))
        if start == 0 or mode == "last":
            break
        end = start + 1
    return windows
