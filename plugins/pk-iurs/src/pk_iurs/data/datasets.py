"""The three streaming datasets: ``stream-synthetic``, ``stream-diginetica``, ``stream-ml-100k``.

Item ids are re-mapped to ``1..N`` by first appearance in stream order (:func:`make_stream`).

Bad files: every real file is checked first (:func:`check_text_file`: unreadable, empty,
binary or non-UTF-8 bytes -> ``DataError`` naming the file and line), then parsed by
pk-seqrec's readers (which name the file and line of a malformed row); a stream whose
pretraining blocks hold no training example, or whose evaluated blocks hold no test
example, is a ``DataError`` too (a truncated file ends up here).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import torch
from pk_seqrec.data.datasets import ML100K_REMOTE
from pk_seqrec.data.readers import read_atomic_inter, read_session_period

from pk.core.contracts import DatasetInfo
from pk.core.datasource import check_text_file, locate
from pk.core.errors import ConfigError, DataError
from pk.core.seed import derive_seed
from pk_iurs.data.bundle import TASK, StreamBundle


def _params(config: Any) -> dict[str, Any]:
    return asdict(config) if is_dataclass(config) else dict(vars(config))


def make_stream(raw_sequences: Sequence[Sequence[Any]], raw_blocks: Sequence[Sequence[int]],
                order: Sequence[tuple[int, int]], num_blocks: int, *, pretrain_blocks: int, max_len: int,
                unseen: str, params: dict[str, Any], extra: dict[str, Any]) -> StreamBundle:
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
                          pretrain_blocks=pretrain_blocks, unseen=unseen, params=params,
                          test_sample=int(params.get("test_sample", 0)))
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
        raise ConfigError("stream-synthetic: need blocks >= 2, num_clusters >= 2, initial_items >= 2*num_clusters, "
                          "2 <= min_len <= max_seq_len")
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
    return _block_sessions(synthetic_stream(seed, config), pretrain_blocks=int(p["pretrain_blocks"]),
                           max_len=int(p["max_len"]), unseen=p["unseen"],
                           params={"dataset": "stream-synthetic", "seed": seed, **p},
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
        raise DataError(f"{where}: the pretraining blocks 0..{P - 1} hold no training example "
                        "(no sequence with two items); is the file truncated?")
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
    bundle = _block_sessions(periods, pretrain_blocks=int(config.pretrain_blocks), max_len=int(config.max_len),
                             unseen=config.unseen,
                             params={"dataset": "stream-diginetica", "sha256": files, **_params(config)},
                             extra={"source": "file", "dataset": "stream-diginetica",
                                    "periods": list(range(first, last + 1)), "files": files})
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
        raise DataError(f"{file}: {len(records)} interactions cannot fill {T} blocks; is the file truncated? "
                        "(or lower dataset.blocks)")
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
                         extra={"source": "file", "dataset": "stream-ml-100k", "file": str(file),
                                "files": {file.name: digest}})
    return _check_usable(bundle, file)
