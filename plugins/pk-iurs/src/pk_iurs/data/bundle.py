"""Block streams: ``StreamBundle`` (a stream, its training and test rows) and batching.

A stream holds full per-user (or per-session) item sequences, oldest first, and the block
index of every interaction (non-decreasing along a sequence). Item ids are re-mapped to
``1..N`` by first appearance in stream order, so the items known after block t are exactly
``1..known[t]``. Batches use pk-seqrec's format (left-padded ``seq``, ``targets``, ``target``,
``len``, ``user``, ``tpos``; see ``pk_seqrec.data.bundle``).

Leakage guard: the bundle logs every block whose interactions are handed out for training
(``("train", b)``) or testing (``("test", b)``) in ``access_log``; the protocol never asks
for training rows of a block before that block has been tested.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from pk_seqrec.data.bundle import SeqBundle

from pk.core.base import tensor_fingerprint
from pk.core.contracts import DatasetInfo
from pk.core.errors import ConfigError, DataError
from pk.core.seed import derive_seed

TASK = "streaming-next-item"
ROW_KEYS = ("seq", "targets", "len", "target", "user", "tpos")


def _left_pad(rows: Sequence[Sequence[int]], width: int) -> torch.Tensor:
    out = torch.zeros(len(rows), width, dtype=torch.long)
    for r, items in enumerate(rows):
        if items:
            out[r, width - len(items):] = torch.tensor(items, dtype=torch.long)
    return out


def _rows(seq_rows: list[list[int]], tgt_rows: list[list[int]], users: list[int], tpos: list[int],
          width: int) -> dict[str, torch.Tensor]:
    seq = _left_pad(seq_rows, width)
    targets = _left_pad(tgt_rows, width)
    return {
        "seq": seq,
        "targets": targets,
        "len": (seq != 0).sum(1),
        "target": targets[:, -1].clone() if len(tgt_rows) else torch.zeros(0, dtype=torch.long),
        "user": torch.tensor(users, dtype=torch.long).reshape(-1),
        "tpos": torch.tensor(tpos, dtype=torch.long).reshape(-1),
    }


def concat_rows(parts: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Concatenate row dicts of the same width (empty parts allowed)."""
    parts = [p for p in parts if p and int(p["seq"].shape[0]) > 0] or list(parts[:1])
    return {k: torch.cat([p[k] for p in parts]) for k in ROW_KEYS}


def num_rows(rows: dict[str, torch.Tensor]) -> int:
    return int(rows["seq"].shape[0])


def batches(info: DatasetInfo, rows: dict[str, torch.Tensor], batch_size: int, *, shuffle: bool = False,
            generator: torch.Generator | None = None) -> Iterator[dict[str, torch.Tensor]]:
    """pk-seqrec batches (leading all-padding columns trimmed) over a row dict."""
    if num_rows(rows) == 0:
        return iter(())
    return SeqBundle(info=info, tensors={"rows": rows}).loader("rows", batch_size, shuffle=shuffle, generator=generator)


@dataclass
class StreamBundle:
    """A time-ordered block stream (see the module docstring).

    ``known[t]`` = number of items known after block t; ``pretrain_blocks`` = P; evaluated
    blocks are ``P .. num_blocks - 1``; ``unseen`` ("drop" | "miss") is the rule for test
    items unknown before their block; ``test_sample`` > 0 keeps a fixed random subset of that
    many test examples per block (independent of the run seed; a CPU budget knob). Static
    splits for the DataBundle contract: ``train`` = every interaction of blocks 0..T-2,
    ``test`` = block T-1 (what the last update is tested on).
    """

    info: DatasetInfo
    sequences: list[list[int]]
    block_of: list[list[int]]
    num_blocks: int
    pretrain_blocks: int
    unseen: str = "drop"
    params: dict[str, Any] = field(default_factory=dict)
    test_sample: int = 0
    access_log: list[tuple[str, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not 1 <= self.pretrain_blocks < self.num_blocks:
            raise ConfigError(f"dataset: need 1 <= pretrain_blocks < blocks, got {self.pretrain_blocks} "
                              f"and {self.num_blocks}")
        if self.unseen not in ("drop", "miss"):
            raise ConfigError(f"dataset.unseen must be 'drop' or 'miss', got {self.unseen!r}")
        self.ranges: list[list[tuple[int, int, int]]] = [[] for _ in range(self.num_blocks)]
        top = [0] * self.num_blocks
        for u, (items, blocks) in enumerate(zip(self.sequences, self.block_of, strict=True)):
            start = 0
            for j in range(1, len(items) + 1):
                if j == len(items) or blocks[j] != blocks[start]:
                    if (blocks[start] < 0 or blocks[start] >= self.num_blocks
                            or (j < len(items) and blocks[j] < blocks[start])):
                        raise DataError(f"sequence {u}: block indices must be non-decreasing in "
                                        f"0..{self.num_blocks - 1}")
                    self.ranges[blocks[start]].append((u, start, j))
                    top[blocks[start]] = max(top[blocks[start]], max(items[start:j]))
                    start = j
        self.known = []
        running = 0
        for b in range(self.num_blocks):
            running = max(running, top[b])
            self.known.append(running)
        self._test_cache: dict[int, dict[str, torch.Tensor]] = {}
        self._static: dict[str, dict[str, torch.Tensor]] = {}

    # -- stream access --------------------------------------------------------------
    @property
    def max_len(self) -> int:
        return int(self.info.max_len or 50)

    @property
    def evaluated_blocks(self) -> list[int]:
        return list(range(self.pretrain_blocks, self.num_blocks))

    def interactions(self, blocks: Sequence[int]) -> list[tuple[int, int]]:
        """``(user, position)`` of every trainable interaction (position >= 1) in ``blocks``."""
        out = []
        for b in blocks:
            self.access_log.append(("train", b))
            for u, s, e in self.ranges[b]:
                out += [(u, j) for j in range(max(s, 1), e)]
        return out

    def train_rows(self, blocks: Sequence[int]) -> dict[str, torch.Tensor]:
        """Training windows whose targets are the interactions of ``blocks`` (earlier items
        of the same sequence may be inputs). Windows tile each range from its end."""
        L = self.max_len
        seq_rows, tgt_rows, users, tpos = [], [], [], []
        for b in blocks:
            self.access_log.append(("train", b))
            for u, s, e in self.ranges[b]:
                items, end, first = self.sequences[u], e, max(s, 1)
                while end > first:
                    start = max(first, end - L)
                    seq_rows.append(items[start - 1:end - 1])
                    tgt_rows.append(items[start:end])
                    users.append(u)
                    tpos.append(end - 1)
                    end = start
        return _rows(seq_rows, tgt_rows, users, tpos, L)

    def rows_for(self, pairs: Sequence[tuple[int, int]]) -> dict[str, torch.Tensor]:
        """Single-target rows (replay, exemplars): the last L items before position j of
        user u predict item j; ``targets`` is 0 except in its last column."""
        L = self.max_len
        seq_rows = [self.sequences[u][max(0, j - L):j] for u, j in pairs]
        tgt_rows = [[0] * (len(s) - 1) + [self.sequences[u][j]] for s, (u, j) in zip(seq_rows, pairs, strict=True)]
        return _rows(seq_rows, tgt_rows, [u for u, _ in pairs], [j for _, j in pairs], L)

    def block_of_pair(self, u: int, j: int) -> int:
        return self.block_of[u][j]

    def test_rows(self, b: int) -> dict[str, torch.Tensor]:
        """Test examples of block b for a model that knows items ``1..known[b-1]``: every
        interaction of block b predicted from the user's earlier items with unknown items
        removed from the context; unknown targets are dropped ("drop") or kept ("miss":
        ranked last). Adds ``known`` [B] (= known[b-1]) for slicing the scores."""
        if b < 1 or b >= self.num_blocks:
            raise ValueError(f"test block must be in 1..{self.num_blocks - 1}, got {b}")
        self.access_log.append(("test", b))
        if b not in self._test_cache:
            known, L = self.known[b - 1], self.max_len
            seqs, targets, users, tpos = [], [], [], []
            for u, s, e in self.ranges[b]:
                items = self.sequences[u]
                context = [i for i in items[:s] if i <= known]
                for j in range(s, e):
                    item = items[j]
                    if context and (item <= known or self.unseen == "miss"):
                        seqs.append(context[-L:])
                        targets.append(item)
                        users.append(u)
                        tpos.append(j)
                    if item <= known:
                        context.append(item)
            if 0 < self.test_sample < len(targets):  # a fixed subset per block, the same for every run and strategy
                g = torch.Generator().manual_seed(derive_seed(0, "test-sample", b))
                keep = sorted(torch.randperm(len(targets), generator=g)[: self.test_sample].tolist())
                seqs, targets = [seqs[i] for i in keep], [targets[i] for i in keep]
                users, tpos = [users[i] for i in keep], [tpos[i] for i in keep]
            seq = _left_pad(seqs, L)
            self._test_cache[b] = {
                "seq": seq, "len": (seq != 0).sum(1), "target": torch.tensor(targets, dtype=torch.long).reshape(-1),
                "user": torch.tensor(users, dtype=torch.long).reshape(-1),
                "tpos": torch.tensor(tpos, dtype=torch.long).reshape(-1),
                "known": torch.full((len(targets),), known, dtype=torch.long),
            }
        return self._test_cache[b]

    def block_stats(self) -> list[dict[str, int]]:
        """Per block: interactions, sequences, items known after it, new items."""
        out, prev = [], 0
        for b in range(self.num_blocks):
            out.append({"block": b, "interactions": sum(e - s for _, s, e in self.ranges[b]),
                        "sequences": len(self.ranges[b]), "known_items": self.known[b],
                        "new_items": self.known[b] - prev})
            prev = self.known[b]
        return out

    # -- DataBundle contract (static view) -----------------------------------------
    @property
    def splits(self) -> tuple[str, ...]:
        return ("train", "test")

    def _split(self, split: str) -> dict[str, torch.Tensor]:
        if split not in self.splits:
            raise KeyError(f"unknown split {split!r}; have train, test")
        if split not in self._static:
            log = list(self.access_log)
            self._static[split] = (self.train_rows(range(self.num_blocks - 1)) if split == "train"
                                   else self.test_rows(self.num_blocks - 1))
            self.access_log[:] = log  # the static view is not part of the stream protocol
        return self._static[split]

    def loader(self, split: str, batch_size: int, *, shuffle: bool = False,
               generator: Any = None) -> Iterator[dict[str, Any]]:
        rows = self._split(split)
        if split == "train":
            yield from batches(self.info, rows, batch_size, shuffle=shuffle, generator=generator)
            return
        n = int(rows["target"].shape[0])
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            yield {k: v[idx] for k, v in rows.items()}

    def split_keys(self, split: str) -> list[tuple[int, int]]:
        rows = self._split(split)
        if split == "train":  # every target position of every window
            keys = []
            for u, end, tg in zip(rows["user"].tolist(), rows["tpos"].tolist(), rows["targets"].tolist(), strict=True):
                n = sum(1 for x in tg if x)
                keys += [(u, end - k) for k in range(n)]
            return keys
        return list(zip(rows["user"].tolist(), rows["tpos"].tolist(), strict=True))

    def fingerprint(self) -> str:
        """16-hex hash of content and parameters, then ``<file>:sha256=<hex>`` for every data
        file read (result.json's ``fingerprint.data`` names the exact files of a run)."""
        flat = [i for s in self.sequences for i in s]
        blocks = [b for s in self.block_of for b in s]
        lengths = [len(s) for s in self.sequences]
        digest = tensor_fingerprint(sorted(self.params.items()), torch.tensor(flat), torch.tensor(blocks),
                                    torch.tensor(lengths))
        files = self.info.extra.get("files") or {}
        return " ".join([digest, *(f"{name}:sha256={sha}" for name, sha in files.items())])
