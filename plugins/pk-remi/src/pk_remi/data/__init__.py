"""REMI's user-level protocol as a DataBundle (task ``candidate-matching``).

Batch format (dicts of tensors; B batch, L = ``info.max_len``, ids ``1..num_items``, 0 = pad):

- every split: ``seq`` [B, L] long, the history window padded on the RIGHT (oldest item at
  column 0, zeros after the last real item; always exactly L columns), ``len`` [B] long
  (real items in ``seq``, >= 1), ``user`` [B] long (index into ``bundle.sequences``).
- train: ``target`` [B] long, the item right after the history; ``cut`` [B] long, its index
  in the user's sequence. A cut k is drawn uniformly from ``[4, len(sequence))`` (ComiRec's
  ``range(4, len)``); the history is the last L items before it.
- valid/test: ``targets`` [B, T] long, the user's DISTINCT items after the 80% cut in time
  order, 0-padded on the right; ``num_targets`` [B] long; ``history`` [B, Hmax] long, the
  whole 80% part (for the optional history exclusion), 0-padded.

Loading reuses pk-seqrec's readers and preprocessing; only the user split and the cuts are
REMI's. The split depends on ``split_seed`` (default 1230, as in REMI), not on the run seed.

Real files: each is checked first (:func:`check_text_file`: unreadable, empty, binary or
non-UTF-8 -> ``DataError`` with file and line), its name and sha256 go into
``info.extra["files"]`` and ``fingerprint()`` (so result.json's ``fingerprint.data`` names
the exact file of a run), and degenerate data (no user left, too few users for the split)
is a ``DataError`` naming the file. ``remi-seq-lines`` reads any one-line-per-user file.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any

import torch
from pk_seqrec.data.preprocess import interactions_to_sequences, kcore_filter, remap_items
from pk_seqrec.data.readers import read_atomic_inter, read_seq_lines

from pk.core.base import tensor_fingerprint
from pk.core.contracts import DatasetInfo
from pk.core.datasource import check_text_file, locate
from pk.core.errors import ConfigError, DataError
from pk.core.seed import derive_seed

#: the first training cut (ComiRec samples the target index from range(4, len))
MIN_CUT = 4
SPLITS = ("train", "valid", "test")


def user_split(num_users: int, seed: int, fractions: tuple[float, float] = (0.8, 0.1)) -> dict[str, list[int]]:
    """Shuffle user indices with ``seed`` and cut them 80/10/10 (train/valid/test);
    the three lists are disjoint and cover every user."""
    g = torch.Generator().manual_seed(int(seed))
    order = torch.randperm(num_users, generator=g).tolist()
    n_train = int(num_users * fractions[0])
    n_valid = int(num_users * fractions[1])
    return {"train": order[:n_train], "valid": order[n_train : n_train + n_valid], "test": order[n_train + n_valid :]}


def history_target_cut(length: int, ratio: float = 0.8) -> int:
    """Index k where a held-out user's history ends: items[:k] history, items[k:] targets."""
    return int(length * ratio)


def _right_pad(rows: Sequence[Sequence[int]], width: int | None = None) -> torch.Tensor:
    width = width if width is not None else max((len(r) for r in rows), default=0) or 1
    out = torch.zeros(len(rows), width, dtype=torch.long)
    for r, items in enumerate(rows):
        if items:
            out[r, : len(items)] = torch.tensor(items[:width], dtype=torch.long)
    return out


def _distinct(items: Sequence[int]) -> list[int]:
    seen: set[int] = set()
    return [i for i in items if not (i in seen or seen.add(i))]


@dataclass
class UserSplitBundle:
    """Users split 8/1/1 with REMI's cuts (see the module docstring for the batches).

    ``sequences[u]`` is user u's item list (oldest first, ids ``1..num_items``);
    ``users[split]`` the user indices of a split. Training users shorter than
    ``MIN_CUT + 1`` items cannot give a cut and are left out of ``users["train"]``.
    """

    info: DatasetInfo
    sequences: list[list[int]]
    users: dict[str, list[int]]
    params: dict[str, Any] = field(default_factory=dict)
    history_ratio: float = 0.8
    _eval_cache: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict, repr=False)

    @property
    def splits(self) -> Sequence[str]:
        return SPLITS

    @property
    def max_len(self) -> int:
        return int(self.info.max_len or 20)

    def split_keys(self, split: str) -> list[int]:
        """User indices of ``split`` (disjoint across splits)."""
        return list(self.users[split])

    def fingerprint(self) -> str:
        """16-hex hash of content, split and parameters, then ``<file>:sha256=<hex>`` for the
        data file read (none for synthetic data)."""
        flat = torch.tensor([i for s in self.sequences for i in s], dtype=torch.long)
        lengths = torch.tensor([len(s) for s in self.sequences], dtype=torch.long)
        digest = tensor_fingerprint(sorted(self.params.items()), flat, lengths, *(self.users[s] for s in SPLITS))
        files = self.info.extra.get("files") or {}
        return " ".join([digest, *(f"{name}:sha256={sha}" for name, sha in files.items())])

    # -- training examples ----------------------------------------------------------
    def train_batch(self, users: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """One training batch for ``users`` [B]: a cut k ~ U{4..len-1} per user (from
        ``generator``), target = item k, history = the last L items before k."""
        lengths = torch.tensor([len(self.sequences[u]) for u in users.tolist()], dtype=torch.long)
        u01 = torch.rand(len(lengths), generator=generator, dtype=torch.float64)
        cuts = MIN_CUT + (u01 * (lengths - MIN_CUT).double()).floor().long()
        cuts = torch.minimum(cuts, lengths - 1)
        rows, targets = [], []
        for u, k in zip(users.tolist(), cuts.tolist(), strict=True):
            seq = self.sequences[u]
            rows.append(seq[max(0, k - self.max_len) : k])
            targets.append(seq[k])
        seq_t = _right_pad(rows, self.max_len)
        return {"seq": seq_t, "len": (seq_t != 0).sum(1), "target": torch.tensor(targets, dtype=torch.long),
                "cut": cuts, "user": users.clone().long()}

    def sample_train_batch(self, batch_size: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """ComiRec's step: ``batch_size`` distinct training users drawn at random, one cut each."""
        pool = torch.tensor(self.users["train"], dtype=torch.long)
        pick = torch.randperm(len(pool), generator=generator)[: min(batch_size, len(pool))]
        return self.train_batch(pool[pick], generator)

    # -- evaluation examples ----------------------------------------------------------
    def eval_tensors(self, split: str) -> dict[str, torch.Tensor]:
        """All held-out examples of ``split`` (cached): 80% history -> distinct later items."""
        if split not in self._eval_cache:
            rows, targets, hist = [], [], []
            for u in self.users[split]:
                seq = self.sequences[u]
                k = history_target_cut(len(seq), self.history_ratio)
                rows.append(seq[:k][-self.max_len :])
                targets.append(_distinct(seq[k:]))
                hist.append(seq[:k])
            seq_t = _right_pad(rows, self.max_len)
            tgt = _right_pad(targets)
            self._eval_cache[split] = {
                "seq": seq_t, "len": (seq_t != 0).sum(1), "targets": tgt, "num_targets": (tgt != 0).sum(1),
                "history": _right_pad(hist), "user": torch.tensor(self.users[split], dtype=torch.long).reshape(-1),
            }
        return self._eval_cache[split]

    def loader(self, split: str, batch_size: int, *, shuffle: bool = False,
               generator: torch.Generator | None = None) -> Iterator[dict[str, torch.Tensor]]:
        """Batches of ``split``. Train: every training user once (shuffled with ``generator``
        when ``shuffle``), cuts drawn from ``generator`` (a fixed seed when None, so the
        loader is deterministic). Valid/test: held-out users in split order."""
        if split not in SPLITS:
            raise KeyError(f"unknown split {split!r}; have {', '.join(SPLITS)}")
        if split == "train":
            gen = generator if generator is not None else torch.Generator().manual_seed(0)
            pool = torch.tensor(self.users["train"], dtype=torch.long)
            order = pool[torch.randperm(len(pool), generator=gen)] if shuffle else pool
            for start in range(0, len(order), batch_size):
                yield self.train_batch(order[start : start + batch_size], gen)
            return
        t = self.eval_tensors(split)
        n = int(t["seq"].shape[0])
        for start in range(0, n, batch_size):
            batch = {k: v[start : start + batch_size] for k, v in t.items()}
            width = max(int(batch["num_targets"].max()), 1) if n else 1
            batch["targets"] = batch["targets"][:, :width]
            yield batch


def bundle_from_user_sequences(
    sequences: Sequence[Sequence[int]], num_items: int, max_len: int, *, split_seed: int = 1230,
    history_ratio: float = 0.8, params: dict[str, Any] | None = None, extra: dict[str, Any] | None = None,
) -> UserSplitBundle:
    """REMI's protocol over remapped sequences (ids ``1..num_items``, oldest first)."""
    seqs = [list(s) for s in sequences]
    for u, s in enumerate(seqs):
        if not s or min(s) < 1 or max(s) > num_items:
            raise ValueError(f"sequence {u} is empty or has ids outside 1..{num_items}; remap ids first")
    if max_len < 1 or not 0 < history_ratio < 1:
        raise ConfigError("dataset: need max_len >= 1 and 0 < history_ratio < 1")
    users = user_split(len(seqs), split_seed)
    users["train"] = [u for u in users["train"] if len(seqs[u]) > MIN_CUT]
    for split in ("valid", "test"):  # a held-out user needs >= 1 history item and >= 1 target
        users[split] = [u for u in users[split] if 1 <= history_target_cut(len(seqs[u]), history_ratio) < len(seqs[u])]
    if not all(users.values()):
        raise DataError(f"too few users for an 8/1/1 split ({len(seqs)} users, {[len(v) for v in users.values()]}); "
                        "use more users or longer sequences")
    info = DatasetInfo(
        task="candidate-matching", num_items=int(num_items), num_users=len(seqs), max_len=int(max_len), padding_id=0,
        extra={"split": "user-8/1/1", "padding": "right", "history_ratio": history_ratio, "split_seed": split_seed,
               "interactions": sum(map(len, seqs)), **{f"{k}_users": len(v) for k, v in users.items()},
               **(extra or {})},
    )
    return UserSplitBundle(info=info, sequences=seqs, users=users, history_ratio=history_ratio,
                           params={"max_len": max_len, "split_seed": split_seed, "history_ratio": history_ratio,
                                   **(params or {})})


def _params(config: Any) -> dict[str, Any]:
    return asdict(config) if is_dataclass(config) else dict(vars(config))


# -- synthetic -----------------------------------------------------------------------------
def synthetic_multi_interest(config: Any) -> list[list[int]]:
    """Users with several latent interests (see ``MultiInterestSyntheticConfig``)."""
    c = config
    if c.num_items < 2 * c.num_clusters or not 1 <= c.min_interests <= c.max_interests <= c.num_clusters:
        raise ConfigError("remi-synthetic: need num_items >= 2*num_clusters and "
                          "1 <= min_interests <= max_interests <= num_clusters")
    if not MIN_CUT + 1 <= c.min_len <= c.max_seq_len or not 0 <= c.stickiness <= 1:
        raise ConfigError(f"remi-synthetic: need {MIN_CUT + 1} <= min_len <= max_seq_len and 0 <= stickiness <= 1")
    g = torch.Generator().manual_seed(derive_seed(c.split_seed, "remi-synthetic"))
    perm = torch.randperm(c.num_items, generator=g) + 1
    clusters = [perm[k :: c.num_clusters] for k in range(c.num_clusters)]
    weights = [1.0 / torch.arange(1, len(cl) + 1, dtype=torch.float64) ** c.zipf for cl in clusters]
    out: list[list[int]] = []
    for _ in range(c.num_users):
        k = int(torch.randint(c.min_interests, c.max_interests + 1, (1,), generator=g))
        mine = torch.randperm(c.num_clusters, generator=g)[:k].tolist()
        length = int(torch.randint(c.min_len, c.max_seq_len + 1, (1,), generator=g))
        current = mine[0]
        items: list[int] = []
        while len(items) < length:
            item = int(clusters[current][int(torch.multinomial(weights[current], 1, generator=g))])
            if not items or item != items[-1]:
                items.append(item)
            if float(torch.rand((), generator=g)) >= c.stickiness:
                current = mine[int(torch.randint(k, (1,), generator=g))]
        out.append(items)
    return out


def build_synthetic(config: Any, *, root: Any = None, seed: int = 0) -> UserSplitBundle:
    """The embedded default (the run seed does not change the data; ``split_seed`` does)."""
    from pk_remi.plugin import MultiInterestSyntheticConfig

    cfg = MultiInterestSyntheticConfig(**{**asdict(MultiInterestSyntheticConfig()), **_params(config)})
    seqs = synthetic_multi_interest(cfg)
    return bundle_from_user_sequences(seqs, cfg.num_items, cfg.max_len, split_seed=cfg.split_seed,
                                      params={"dataset": "remi-synthetic", **asdict(cfg)},
                                      extra={"source": "synthetic", "dataset": "remi-synthetic"})


# -- real data -------------------------------------------------------------------------------
def remi_filter(user_seqs: dict[Any, list[Any]], min_count: int) -> dict[Any, list[Any]]:
    """REMI's filter: items with >= min_count interactions, then users with >= min_count
    remaining ones, once (pk-seqrec's ``kcore_filter(..., iterative=False)``)."""
    return kcore_filter(user_seqs, min_count, iterative=False) if min_count > 0 else dict(user_seqs)


def _finish(user_seqs: dict[Any, list[Any]], config: Any, name: str, file: Path, digest: str) -> UserSplitBundle:
    filtered = remi_filter(user_seqs, int(config.min_count))
    if not filtered:
        raise DataError(f"{file}: no user is left after the min_count={config.min_count} filter; "
                        "lower dataset.min_count")
    seqs, raw_items = remap_items([filtered[u] for u in filtered])
    try:
        return bundle_from_user_sequences(
            seqs, len(raw_items) - 1, int(config.max_len), split_seed=int(config.split_seed),
            history_ratio=float(config.history_ratio),
            params={"dataset": name, "file": file.name, "sha256": digest, "size": file.stat().st_size,
                    **_params(config)},
            extra={"source": "file", "dataset": name, "file": str(file), "files": {file.name: digest},
                   "filter": f"single-pass {config.min_count}"},
        )
    except DataError as exc:
        raise DataError(f"{file}: {exc}") from None


def _fallback(config: Any, name: str) -> UserSplitBundle:
    from pk_remi.plugin import MultiInterestSyntheticConfig

    bundle = build_synthetic(MultiInterestSyntheticConfig(max_len=int(config.max_len),
                                                          split_seed=int(config.split_seed)))
    bundle.info.extra["requested"] = name
    return bundle


def build_ml100k(config: Any, *, root: Any = None, seed: int = 0) -> UserSplitBundle:
    """ml-100k ``.inter`` read by pk-seqrec (stable sort on (timestamp, file line))."""
    where = locate("remi-ml-100k", source=config.source, path=config.path, shared_folder="ml-100k",
                   required=("ml-100k.inter",))
    if where is None:
        return _fallback(config, "remi-ml-100k")
    file = where / "ml-100k.inter" if where.is_dir() else where
    digest = check_text_file(file)
    return _finish(interactions_to_sequences(read_atomic_inter(file)), config, "remi-ml-100k", file, digest)


def _build_lines(config: Any, name: str, folder: str, filename: str) -> UserSplitBundle:
    if not folder:  # remi-seq-lines: any file, no shared default
        if config.source in ("file", "download") and not config.path:
            raise ConfigError(f"dataset {name}: set dataset.path to your one-line-per-user file (user item item ...)")
        where = Path(config.path).expanduser() if config.path and config.source != "synthetic" else None
        if where is not None and not where.is_file():
            raise DataError(f"{where}: no such file; check dataset.path")
    else:
        where = locate(name, source=config.source, path=config.path, shared_folder=folder, required=(filename,))
    if where is None:
        return _fallback(config, name)
    file = where / filename if where.is_dir() else where
    digest = check_text_file(file)
    users, seqs = read_seq_lines(file)
    if len(set(users)) != len(users):
        raise DataError(f"{file}: user ids repeat across lines; one line per user is expected")
    return _finish(dict(zip(users, seqs, strict=True)), config, name, file, digest)


def build_amazon_beauty(config: Any, *, root: Any = None, seed: int = 0) -> UserSplitBundle:
    return _build_lines(config, "remi-amazon-beauty", "amazon-beauty", "Beauty.txt")


def build_amazon_sports(config: Any, *, root: Any = None, seed: int = 0) -> UserSplitBundle:
    return _build_lines(config, "remi-amazon-sports", "amazon-sports-outdoors", "Sports_and_Outdoors.txt")


def build_seq_lines(config: Any, *, root: Any = None, seed: int = 0) -> UserSplitBundle:
    """Any ICLRec-format file (``user item item ...`` per line, oldest first) at ``dataset.path``."""
    return _build_lines(config, "remi-seq-lines", "", "")
