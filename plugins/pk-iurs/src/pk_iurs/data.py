"""Block streams: ``StreamBundle`` and the builders of the three streaming datasets.

A stream holds full per-user (or per-session) item sequences, oldest first, and the block
index of every interaction (non-decreasing along a sequence). Item ids are re-mapped to
``1..N`` by first appearance in stream order, so the items known after block t are exactly
``1..known[t]``. Batches use pk-seqrec's format (left-padded ``seq``, ``targets``, ``target``,
``len``, ``user``, ``tpos``; see ``pk_seqrec.data.bundle``).

Bad files: every real file is checked first (:func:`check_text_file`: unreadable, empty,
binary or non-UTF-8 bytes -> ``DataError`` naming the file and line), then parsed by
pk-seqrec's readers (which name the file and line of a malformed row); a stream whose
pretraining blocks hold no training example, or whose evaluated blocks hold no test
example, is a ``DataError`` too (a truncated file ends up here).

Leakage guard: the bundle logs every block whose interactions are handed out for training
(``("train", b)``) or testing (``("test", b)``) in ``access_log``; the protocol never asks
for training rows of a block before that block has been tested.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any

import torch
from pk_seqrec.data.bundle import SeqBundle
from pk_seqrec.data.datasets import ML100K_REMOTE
from pk_seqrec.data.readers import read_atomic_inter, read_session_period

from pk.core.base import tensor_fingerprint
from pk.core.contracts import DatasetInfo
from pk.core.datasource import check_text_file, locate
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


def _rows(seq_rows: list[list[int]], tgt_rows: list[list[int]], users: list[int], tpos: list[int], width: int) -> dict[str, torch.Tensor]:
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
    many test examples per block (independent of the run seed; a CPU budget knob). Static splits for the DataBundle contract: ``train`` =
    every interaction of blocks 0..T-2, ``test`` = block T-1 (what the last update is tested on).
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
            raise ConfigError(f"dataset: need 1 <= pretrain_blocks < blocks, got {self.pretrain_blocks} and {self.num_blocks}")
        if self.unseen not in ("drop", "miss"):
            raise ConfigError(f"dataset.unseen must be 'drop' or 'miss', got {self.unseen!r}")
        self.ranges: list[list[tuple[int, int, int]]] = [[] for _ in range(self.num_blocks)]
        top = [0] * self.num_blocks
        for u, (items, blocks) in enumerate(zip(self.sequences, self.block_of, strict=True)):
            start = 0
            for j in range(1, len(items) + 1):
                if j == len(items) or blocks[j] != blocks[start]:
                    if blocks[start] < 0 or blocks[start] >= self.num_blocks or (j < len(items) and blocks[j] < blocks[start]):
                        raise DataError(f"sequence {u}: block indices must be non-decreasing in 0..{self.num_blocks - 1}")
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
                "user": torch.tensor(users, dtype=torch.long).reshape(-1), "tpos": torch.tensor(tpos, dtype=torch.long).reshape(-1),
                "known": torch.full((len(targets),), known, dtype=torch.long),
            }
        return self._test_cache[b]

    def block_stats(self) -> list[dict[str, int]]:
        """Per block: interactions, sequences, items known after it, new items."""
        out, prev = [], 0
        for b in range(self.num_blocks):
            out.append({"block": b, "interactions": sum(e - s for _, s, e in self.ranges[b]),
                        "sequences": len(self.ranges[b]), "known_items": self.known[b], "new_items": self.known[b] - prev})
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

    def loader(self, split: str, batch_size: int, *, shuffle: bool = False, generator: Any = None) -> Iterator[dict[str, Any]]:
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
        digest = tensor_fingerprint(sorted(self.params.items()), torch.tensor(flat), torch.tensor(blocks), torch.tensor(lengths))
        files = self.info.extra.get("files") or {}
        return " ".join([digest, *(f"{name}:sha256={sha}" for name, sha in files.items())])


# -- building streams --------------------------------------------------------------------
def _params(config: Any) -> dict[str, Any]:
    return asdict(config) if is_dataclass(config) else dict(vars(config))


def make_stream(raw_sequences: Sequence[Sequence[Any]], raw_blocks: Sequence[Sequence[int]], order: Sequence[tuple[int, int]],
                num_blocks: int, *, pretrain_blocks: int, max_len: int, unseen: str, params: dict[str, Any],
                extra: dict[str, Any]) -> StreamBundle:
    """Remap raw item ids to 1..N by first appearance along ``order`` (a list of
    ``(sequence, position)`` in stream time order) and build the bundle."""
    mapping: dict[Any, int] = {}
    for u, j in order:
        mapping.setdefault(raw_sequences[u][j], len(mapping) + 1)
    seqs = [[mapping[i] for i in s] for s in raw_sequences]
    info = DatasetInfo(task=TASK, num_items=len(mapping), num_users=len(seqs), max_len=int(max_len), padding_id=0,
                       extra={"padding": "left", "blocks": num_blocks, "pretrain_blocks": pretrain_blocks,
                              "unseen_items": unseen, "interactions": sum(map(len, seqs)), **extra})
    bundle = StreamBundle(info=info, sequences=seqs, block_of=[list(b) for b in raw_blocks], num_blocks=num_blocks,
                          pretrain_blocks=pretrain_blocks, unseen=unseen, params=params, test_sample=int(params.get("test_sample", 0)))
    info.extra["known_items"] = list(bundle.known)
    return bundle


def _block_sessions(blocks: Sequence[Sequence[Sequence[Any]]], **kwargs: Any) -> StreamBundle:
    """Sessions grouped per block (sessions never cross blocks); time order = block, then file order."""
    seqs, blk, order = [], [], []
    for b, sessions in enumerate(blocks):
        for s in sessions:
            order += [(len(seqs), j) for j in range(len(s))]
            seqs.append(list(s))
            blk.append([b] * len(s))
    return make_stream(seqs, blk, order, len(blocks), **kwargs)


def synthetic_stream(seed: int, config: Any) -> list[list[list[int]]]:
    """Sessions per block of the drifting synthetic stream (see ``StreamSyntheticConfig``)."""
    p = _params(config)
    T, C = int(p["blocks"]), int(p["num_clusters"])
    if T < 2 or C < 2 or p["initial_items"] < 2 * C or p["min_len"] < 2 or p["max_seq_len"] < p["min_len"]:
        raise ConfigError("stream-synthetic: need blocks >= 2, num_clusters >= 2, initial_items >= 2*num_clusters, 2 <= min_len <= max_seq_len")
    g = torch.Generator().manual_seed(derive_seed(seed, "stream-synthetic"))
    total = p["initial_items"] + p["new_items"] * (T - 1)
    cluster_of = torch.cat([torch.randperm(p["initial_items"], generator=g) % C,
                            torch.randint(C, (total - p["initial_items"],), generator=g)])
    successor = torch.randperm(C, generator=g)
    n_drift = round(float(p["drift"]) * C)
    out = []
    for b in range(T):
        if b > 0 and n_drift:
            moved = torch.randperm(C, generator=g)[:n_drift]
            successor[moved] = torch.randint(C, (n_drift,), generator=g)
        available = p["initial_items"] + p["new_items"] * b
        members = [torch.nonzero(cluster_of[:available] == c).flatten().flip(0) for c in range(C)]  # newest first
        weights = [1.0 / torch.arange(1, len(m) + 1, dtype=torch.float64) ** 1.1 for m in members]
        sessions = []
        for _ in range(p["sessions_per_block"]):
            length = int(torch.randint(p["min_len"], p["max_seq_len"] + 1, (1,), generator=g))
            c = int(torch.randint(C, (1,), generator=g))
            items: list[int] = []
            while len(items) < length:
                if len(members[c]):
                    item = int(members[c][int(torch.multinomial(weights[c], 1, generator=g))]) + 1
                    if not items or item != items[-1]:
                        items.append(item)
                follow = float(torch.rand((), generator=g, dtype=torch.float64)) < p["follow"]
                c = int(successor[c]) if follow else int(torch.randint(C, (1,), generator=g))
            sessions.append(items)
        out.append(sessions)
    return out


def build_stream_synthetic(config: Any, *, root: Any = None, seed: int = 0) -> StreamBundle:
    p = _params(config)
    return _block_sessions(synthetic_stream(seed, config), pretrain_blocks=int(p["pretrain_blocks"]), max_len=int(p["max_len"]),
                           unseen=p["unseen"], params={"dataset": "stream-synthetic", "seed": seed, **p},
                           extra={"source": "synthetic", "dataset": "stream-synthetic"})


def _fallback(config: Any, name: str, seed: int) -> StreamBundle:
    from pk_iurs.plugin import StreamSyntheticConfig

    bundle = build_stream_synthetic(StreamSyntheticConfig(max_len=int(config.max_len), unseen=config.unseen), seed=seed)
    bundle.info.extra["requested"] = name
    return bundle


def _check_usable(bundle: StreamBundle, where: Path) -> StreamBundle:
    """DataError unless the pretraining blocks hold a training example and some evaluated
    block a test example."""
    P = bundle.pretrain_blocks
    if not any(e - max(s, 1) > 0 for b in range(P) for _, s, e in bundle.ranges[b]):
        raise DataError(f"{where}: the pretraining blocks 0..{P - 1} hold no training example (no sequence with two items); "
                        "is the file truncated?")
    log = list(bundle.access_log)
    if all(int(bundle.test_rows(b)["target"].shape[0]) == 0 for b in bundle.evaluated_blocks):
        raise DataError(f"{where}: no evaluated block has a test example; is the file truncated?")
    bundle.access_log[:] = log  # checking is not part of the stream protocol
    return bundle


def build_stream_diginetica(config: Any, *, root: Any = None, seed: int = 0) -> StreamBundle:
    """One block per ADER period file, ``first_period..last_period``; each file is checked
    (text, non-empty, at least one session) and its name and sha256 recorded in
    ``info.extra["files"]`` and the fingerprint."""
    first, last = int(config.first_period), int(config.last_period)
    if not 0 <= first < last:
        raise ConfigError(f"stream-diginetica: need 0 <= first_period < last_period, got {first} and {last}")
    where = locate("stream-diginetica", source=config.source, path=config.path, shared_folder="diginetica-periods",
                   required=(f"period_{first}.txt", f"period_{last}.txt"))
    if where is None:
        return _fallback(config, "stream-diginetica", seed)
    periods, files = [], {}
    for k in range(first, last + 1):
        path = Path(where) / f"period_{k}.txt"
        if not path.exists():
            raise DataError(f"{path}: missing period file; check dataset.path, first_period and last_period")
        files[path.name] = check_text_file(path)
        sessions = read_session_period(path)
        if not sessions:
            raise DataError(f"{path}: no sessions in this period file; is it truncated?")
        periods.append(sessions)
    bundle = _block_sessions(periods, pretrain_blocks=int(config.pretrain_blocks), max_len=int(config.max_len), unseen=config.unseen,
                             params={"dataset": "stream-diginetica", "sha256": files, **_params(config)},
                             extra={"source": "file", "dataset": "stream-diginetica", "periods": list(range(first, last + 1)),
                                    "files": files})
    return _check_usable(bundle, Path(where))


def build_stream_ml100k(config: Any, *, root: Any = None, seed: int = 0) -> StreamBundle:
    """Equal-count blocks over the stable (timestamp, line) order of ``ml-100k.inter``."""
    T = int(config.blocks)
    where = locate("stream-ml-100k", source=config.source, path=config.path, shared_folder="ml-100k",
                   required=("ml-100k.inter",), remote=ML100K_REMOTE)
    if where is None:
        return _fallback(config, "stream-ml-100k", seed)
    file = where / "ml-100k.inter" if where.is_dir() else where
    digest = check_text_file(file)
    records = read_atomic_inter(file)
    if T > len(records):
        raise DataError(f"{file}: {len(records)} interactions cannot fill {T} blocks; is the file truncated? (or lower dataset.blocks)")
    ranked = sorted(range(len(records)), key=lambda k: (records[k][2], k))  # stable: ties keep file order
    users: dict[str, int] = {}
    seqs: list[list[str]] = []
    blk: list[list[int]] = []
    order: list[tuple[int, int]] = []
    for rank, k in enumerate(ranked):
        user, item, _ts = records[k]
        u = users.setdefault(user, len(users))
        if u == len(seqs):
            seqs.append([])
            blk.append([])
        order.append((u, len(seqs[u])))
        seqs[u].append(item)
        blk[u].append(rank * T // len(records))
    bundle = make_stream(seqs, blk, order, T, pretrain_blocks=int(config.pretrain_blocks), max_len=int(config.max_len),
                         unseen=config.unseen, params={"dataset": "stream-ml-100k", "file": file.name, "sha256": digest,
                                                       "size": file.stat().st_size, **_params(config)},
                         extra={"source": "file", "dataset": "stream-ml-100k", "file": str(file), "files": {file.name: digest}})
    return _check_usable(bundle, file)
