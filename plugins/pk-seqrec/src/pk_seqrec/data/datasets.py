"""Dataset builders: ``build(config, *, root, seed) -> SeqBundle``.

Real datasets resolve files with ``pk.core.datasource.locate`` (source "auto" | "file" |
"download" | "synthetic"); "auto" falls back to ``synthetic-seq`` when no file is found.
The source used is recorded in ``info.extra["source"]``.
"""

from __future__ import annotations

from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import torch

from pk.core.datasource import Remote, locate
from pk.core.errors import ConfigError, DataError
from pk.core.seed import derive_seed
from pk_seqrec.data.bundle import SeqBundle, bundle_from_sequences, bundle_from_splits
from pk_seqrec.data.preprocess import interactions_to_sequences, kcore_filter, remap_items
from pk_seqrec.data.readers import read_atomic_inter, read_periods, read_seq_lines

#: RecBole's bundled ml-100k atomic file (byte-identical to ../shared/data/ml-100k).
ML100K_REMOTE = Remote(
    url="https://raw.githubusercontent.com/RUCAIBox/RecBole/v1.2.1/recbole/dataset_example/ml-100k/ml-100k.inter",
    sha256="4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff",
    filename="ml-100k.inter",
)


def _params(config: Any) -> dict[str, Any]:
    return asdict(config) if is_dataclass(config) else dict(vars(config))


def _stride(params: dict[str, Any]) -> int:
    """``window_stride`` (1..max_len) of a dataset config; ConfigError when it exceeds max_len."""
    stride, max_len = int(params.get("window_stride", 1)), int(params.get("max_len", 50))
    if not 1 <= stride <= max_len:
        raise ConfigError(f"dataset.window_stride must be in 1..dataset.max_len ({max_len}), got {stride}")
    return stride


def _require_training(bundle: SeqBundle, where: str) -> SeqBundle:
    """DataError when the bundle has no training target (a truncated or tiny file)."""
    targets = bundle.tensors["train"].get("targets")
    if targets is None or not bool((targets != 0).any()):
        raise DataError(f"{where}: no training example (need users with at least 4 items: one to train on, "
                        f"one to validate, one to test, plus their context); is the file truncated?")
    return bundle


# -- synthetic ---------------------------------------------------------------------------
def synthetic_sequences(
    seed: int, *, num_users: int = 400, num_items: int = 300, num_clusters: int = 20, min_len: int = 8,
    max_seq_len: int = 30, follow: float = 0.9, zipf: float = 1.1,
) -> list[list[int]]:
    """Users walk a latent Markov chain over item clusters: with probability ``follow`` the
    next cluster is the current one's fixed successor, else a uniform cluster. Items are
    drawn inside the cluster with Zipf(``zipf``) popularity; no immediate repeats."""
    if num_items < num_clusters * 2 or not 0 <= follow <= 1 or min_len < 3 or max_seq_len < min_len:
        raise ConfigError("synthetic-seq: need num_items >= 2*num_clusters, 0 <= follow <= 1, "
                          "3 <= min_len <= max_seq_len")
    g = torch.Generator().manual_seed(derive_seed(seed, "synthetic-seq"))
    perm = torch.randperm(num_items, generator=g) + 1
    clusters = [perm[c::num_clusters] for c in range(num_clusters)]
    successor = torch.randperm(num_clusters, generator=g)
    weights = [1.0 / torch.arange(1, len(c) + 1, dtype=torch.float64) ** zipf for c in clusters]
    out: list[list[int]] = []
    for _ in range(num_users):
        length = int(torch.randint(min_len, max_seq_len + 1, (1,), generator=g))
        cluster = int(torch.randint(num_clusters, (1,), generator=g))
        items: list[int] = []
        while len(items) < length:
            item = int(clusters[cluster][int(torch.multinomial(weights[cluster], 1, generator=g))])
            if not items or item != items[-1]:
                items.append(item)
                u = float(torch.rand((), generator=g, dtype=torch.float64))
                cluster = int(successor[cluster]) if u < follow else int(torch.randint(num_clusters, (1,), generator=g))
        out.append(items)
    return out


def build_synthetic_seq(config: Any, *, root: Any = None, seed: int = 0) -> SeqBundle:
    """The embedded default (leave-one-out over synthetic users)."""
    from pk_seqrec.plugin import SyntheticSeqConfig

    p = {**asdict(SyntheticSeqConfig()), **_params(config)}
    seqs = synthetic_sequences(
        seed, num_users=p["num_users"], num_items=p["num_items"], num_clusters=p["num_clusters"],
        min_len=p["min_len"], max_seq_len=p["max_seq_len"], follow=p["follow"], zipf=p["zipf"],
    )
    return bundle_from_sequences(
        seqs, p["num_items"], p["max_len"], train_windows=p["train_windows"], window_stride=_stride(p),
        params={"dataset": "synthetic-seq", "seed": seed, **p},
        extra={"source": "synthetic", "dataset": "synthetic-seq"},
    )


def _synthetic_fallback(config: Any, name: str, seed: int) -> SeqBundle:
    from pk_seqrec.plugin import SyntheticSeqConfig

    synth = SyntheticSeqConfig(max_len=getattr(config, "max_len", 20))
    bundle = build_synthetic_seq(synth, seed=seed)
    bundle.info.extra["requested"] = name
    return bundle


# -- real data ---------------------------------------------------------------------------
def _finish(user_seqs: dict[Any, list[Any]], config: Any, name: str, file: Path, source: str) -> SeqBundle:
    kcore = int(getattr(config, "kcore", 0))
    params = _params(config)
    stride = _stride(params)
    filtered = kcore_filter(user_seqs, kcore, iterative=True) if kcore > 0 else user_seqs
    users = list(filtered)
    seqs, raw_items = remap_items([filtered[u] for u in users])
    if not seqs:
        raise DataError(f"{file}: no user is left after {kcore}-core filtering; lower dataset.kcore")
    bundle = bundle_from_sequences(
        seqs, len(raw_items) - 1, int(config.max_len), user_ids=users, item_ids=raw_items,
        train_windows=getattr(config, "train_windows", "all"), window_stride=stride,
        params={"dataset": name, "file": file.name, "size": file.stat().st_size, **params},
        extra={"source": source, "dataset": name, "file": str(file), "kcore": kcore},
    )
    return _require_training(bundle, str(file))


def build_ml100k(config: Any, *, root: Any = None, seed: int = 0) -> SeqBundle:
    """ml-100k from RecBole's atomic ``ml-100k.inter``; stable sort by (timestamp, line)."""
    where = locate("ml-100k", source=config.source, path=config.path, shared_folder="ml-100k",
                   required=("ml-100k.inter",), remote=ML100K_REMOTE)
    if where is None:
        return _synthetic_fallback(config, "ml-100k", seed)
    file = where / "ml-100k.inter" if where.is_dir() else where
    records = read_atomic_inter(file)
    return _finish(interactions_to_sequences(records), config, "ml-100k", file, "file")


def _build_lines(config: Any, seed: int, name: str, folder: str, filename: str) -> SeqBundle:
    if name == "seq-lines" and config.source in ("file", "download") and not config.path:
        raise ConfigError("dataset seq-lines: set dataset.path to your one-line-per-user file (user item item ...)")
    if name == "seq-lines":
        where = Path(config.path).expanduser() if config.path and config.source != "synthetic" else None
        if where is not None and not where.is_file():
            raise DataError(f"{where}: no such file; check dataset.path")
    else:
        where = locate(name, source=config.source, path=config.path, shared_folder=folder, required=(filename,))
    if where is None:
        return _synthetic_fallback(config, name, seed)
    file = where / filename if where.is_dir() else where
    users, seqs = read_seq_lines(file)
    if len(set(users)) != len(users):
        raise DataError(f"{file}: user ids repeat across lines; one line per user is expected")
    return _finish(dict(zip(users, seqs, strict=True)), config, name, file, "file")


def build_amazon_beauty(config: Any, *, root: Any = None, seed: int = 0) -> SeqBundle:
    return _build_lines(config, seed, "amazon-beauty", "amazon-beauty", "Beauty.txt")


def build_amazon_sports(config: Any, *, root: Any = None, seed: int = 0) -> SeqBundle:
    return _build_lines(config, seed, "amazon-sports", "amazon-sports-outdoors", "Sports_and_Outdoors.txt")


def build_seq_lines(config: Any, *, root: Any = None, seed: int = 0) -> SeqBundle:
    return _build_lines(config, seed, "seq-lines", "", "")


def build_diginetica_periods(config: Any, *, root: Any = None, seed: int = 0) -> SeqBundle:
    """Train on periods ``[test-1-train_periods, test-1)``, validate on ``test-1``, test on
    ``test``. Valid/test sessions keep only items seen in training (ADER); item ids are the
    files' own (1..N by first appearance across periods)."""
    test, n_train = int(config.test_period), int(config.train_periods)
    first = test - 1 - n_train
    if first < 0 or n_train < 1:
        raise ConfigError("diginetica-periods: need train_periods >= 1 and test_period - 1 - train_periods >= 0")
    where = locate("diginetica-periods", source=config.source, path=config.path, shared_folder="diginetica-periods",
                   required=(f"period_{test}.txt",))
    if where is None:
        return _synthetic_fallback(config, "diginetica-periods", seed)
    periods = read_periods(where, list(range(first, test + 1)))
    train = [s for p in periods[:-2] for s in p]
    if not any(len(s) >= 2 for s in train):
        raise DataError(f"{where}: periods {first}..{test - 2} hold no session with 2 or more items; "
                        "check the period files or raise dataset.train_periods")
    known = {i for s in train for i in s}
    num_items = max(max(s) for p in periods for s in p)
    valid = [[i for i in s if i in known] for s in periods[-2]]
    tst = [[i for i in s if i in known] for s in periods[-1]]
    return bundle_from_splits(
        train, valid, tst, num_items, int(config.max_len), window_stride=_stride(_params(config)),
        params={"dataset": "diginetica-periods", **_params(config)},
        extra={"source": "file", "dataset": "diginetica-periods", "periods": list(range(first, test + 1))},
    )
