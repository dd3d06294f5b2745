"""Preprocessing conventions, splits and loaders (synthetic and, when present, real files)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from pk_seqrec.data.bundle import bundle_from_sequences
from pk_seqrec.data.datasets import build_synthetic_seq
from pk_seqrec.data.preprocess import interactions_to_sequences, kcore_filter, remap_items, training_windows
from pk_seqrec.data.readers import read_atomic_inter, read_seq_lines, read_session_period
from pk_seqrec.plugin import ML100kConfig, SeqLinesConfig, SyntheticSeqConfig

from pk.core.errors import DataError
from pk.core.paths import shared_data_dir

seqs_st = st.lists(st.lists(st.integers(1, 12), min_size=1, max_size=14), min_size=1, max_size=8)


@given(seqs=seqs_st, max_len=st.integers(1, 6), mode=st.sampled_from(["all", "prefixes"]))
def test_split_leaks_no_eval_item_into_training(seqs: list[list[int]], max_len: int, mode: str) -> None:
    b = bundle_from_sequences(seqs, 12, max_len, train_windows=mode)
    kept = [s for s in seqs if len(s) >= 3]
    assert b.sequences == kept
    train = b.tensors["train"]
    for u, s in enumerate(kept):
        rows = (train["user"] == u).nonzero().flatten()
        # every training position (input or target) comes from the first n-2 items
        pos = sorted(int(train["tpos"][r]) for r in rows)
        assert (max(pos) == len(s) - 3) if len(s) > 3 else not pos  # 3 items: nothing left to train on
        targets = [t for r in rows for t in train["targets"][r].tolist() if t]
        assert sorted(targets) == sorted(s[1 : len(s) - 2])  # each train target exactly once
        for split, t in (("valid", len(s) - 2), ("test", len(s) - 1)):
            row = int((b.tensors[split]["user"] == u).nonzero())
            assert int(b.tensors[split]["target"][row]) == s[t]
            hist = [x for x in b.tensors[split]["history"][row].tolist() if x]
            assert hist == s[:t]
            seq = [x for x in b.tensors[split]["seq"][row].tolist() if x]
            assert seq == s[:t][-max_len:]
            assert b.tensors[split]["seq"][row, -1].item() == s[t - 1]  # left padding: newest last
    for a, c in (("train", "valid"), ("train", "test"), ("valid", "test")):
        assert not set(b.split_keys(a)) & set(b.split_keys(c))


@given(seqs=seqs_st, max_len=st.integers(1, 6))
def test_prefix_rows_train_one_target_each_and_count_items_once(seqs: list[list[int]], max_len: int) -> None:
    b = bundle_from_sequences(seqs, 12, max_len, train_windows="prefixes")
    train = b.tensors["train"]
    assert ((train["targets"] != 0).sum(1) == 1).all() and (train["targets"][:, -1] == train["target"]).all()
    expected = torch.zeros(13)
    for s in (s for s in b.sequences if len(s) > 3):  # 3 items: nothing to train on
        for item in s[: len(s) - 2]:
            expected[item] += 1
    if train["target"].numel():
        assert torch.equal(b.train_item_counts(), expected)


@given(n=st.integers(0, 40), max_len=st.integers(1, 9), mode=st.sampled_from(["all", "last", "prefixes"]))
def test_training_windows_tile_targets(n: int, max_len: int, mode: str) -> None:
    wins = training_windows(n, max_len, mode)
    targets = [t for s, e in wins for t in range(s + 1, e)]
    assert all(e - 1 - s <= max_len for s, e in wins)
    if mode == "all":
        assert sorted(targets) == list(range(1, n))
    elif mode == "prefixes":  # one window per target, holding the max_len items before it
        assert [e - 1 for _, e in wins] == list(range(n - 1, 0, -1))
        assert all(s == max(0, e - 1 - max_len) for s, e in wins)
    else:
        assert len(wins) <= 1 and (not wins or wins[0][1] == n)


@given(seqs=st.dictionaries(st.integers(0, 20), st.lists(st.integers(0, 15), max_size=12), max_size=20),
       k=st.integers(1, 4))
def test_iterative_kcore_is_a_fixed_point(seqs: dict[int, list[int]], k: int) -> None:
    once = kcore_filter(seqs, k)
    assert kcore_filter(once, k) == once
    counts: dict[int, int] = {}
    for items in once.values():
        assert len(items) >= k
        for i in items:
            counts[i] = counts.get(i, 0) + 1
    assert all(c >= k for c in counts.values())


def test_stable_time_order_and_remap() -> None:
    records = [("u", "b", 5.0), ("u", "a", 1.0), ("u", "c", 5.0), ("v", "c", 0.0)]
    seqs = interactions_to_sequences(records)
    assert seqs == {"u": ["a", "b", "c"], "v": ["c"]}
    remapped, raw = remap_items(list(seqs.values()))
    assert remapped == [[1, 2, 3], [3]] and raw == [None, "a", "b", "c"]


@pytest.mark.parametrize("text,line", [("u1 1 2\nu2 x 3\n", 2), ("u1 1 2\nu2\n", 2), ("u1 0 2\n", 1)])
def test_seq_lines_rejects_malformed_file(tmp_path: Path, text: str, line: int) -> None:
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(DataError) as err:
        read_seq_lines(path)
    msg = str(err.value)
    assert f"{path}:{line}:" in msg and "\n" not in msg


def test_atomic_and_session_readers_reject_malformed_files(tmp_path: Path) -> None:
    inter = tmp_path / "x.inter"
    inter.write_text("user_id:token\titem_id:token\ttimestamp:float\n1\t2\t3\n1\t2\n")
    with pytest.raises(DataError, match=rf"{inter}:3:"):
        read_atomic_inter(inter)
    inter.write_text("user item\n1 2\n")
    with pytest.raises(DataError, match=rf"{inter}:1:"):
        read_atomic_inter(inter)
    period = tmp_path / "period_0.txt"
    period.write_text("1 2\n1 2 3\n")
    with pytest.raises(DataError, match=rf"{period}:2:"):
        read_session_period(period)


def test_cli_reports_malformed_file_in_one_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = tmp_path / "bad.txt"
    path.write_text("u1 1 2 3\nu2 4 five\n")
    pk = Path(sys.executable).with_name("pk")
    res = subprocess.run([str(pk), "train", "-c", "model.name=pop", "-c", "dataset.name=seq-lines", "-c",
                          f"dataset.path={str(path)!r}", "-c", "trainer.name=next-item",
                          "-c", f"run.out_dir={str(tmp_path / 'runs')!r}"], capture_output=True, text=True, timeout=120)
    out = res.stdout + res.stderr
    assert res.returncode == 2, out
    assert f"{path}:2:" in out and "Traceback" not in out


def test_synthetic_has_sequential_signal() -> None:
    """The successor cluster of the last item predicts the target far above chance."""
    b = build_synthetic_seq(SyntheticSeqConfig(), seed=0)
    assert b.info.num_items == 300 and b.info.extra["source"] == "synthetic"
    a = build_synthetic_seq(SyntheticSeqConfig(), seed=0)
    assert a.fingerprint() == b.fingerprint()
    assert build_synthetic_seq(SyntheticSeqConfig(), seed=1).fingerprint() != b.fingerprint()


def test_loader_trims_and_buckets() -> None:
    b = build_synthetic_seq(SyntheticSeqConfig(), seed=0)
    g = torch.Generator().manual_seed(0)
    seen = []
    for batch in b.loader("train", 32, shuffle=True, generator=g, length_buckets=4):
        assert batch["seq"].shape[1] == int(batch["len"].max())
        assert torch.equal(batch["targets"][:, -1], batch["target"])
        seen += batch["tpos"].tolist()
    assert len(seen) == b.size("train")


# -- real files ------------------------------------------------------------------------
def _shared(sub: str) -> Path:
    root = shared_data_dir()
    if root is None or not (root / sub).exists():
        pytest.skip(f"real data {sub!r} not found (set PK_SHARED_DATA to the shared data folder)")
    return root / sub


def test_ml100k_counts() -> None:
    _shared("ml-100k")
    from pk_seqrec.data.datasets import build_ml100k

    raw = build_ml100k(ML100kConfig(source="file"))
    assert (raw.info.num_users, raw.info.num_items, raw.info.extra["interactions"]) == (943, 1682, 100_000)
    core = build_ml100k(ML100kConfig(source="file", kcore=5))
    assert (core.info.num_users, core.info.num_items, core.info.extra["interactions"]) == (943, 1349, 99_287)


@pytest.mark.parametrize("name,sub,counts", [("amazon-beauty", "amazon-beauty", (22_363, 12_101, 198_502)),
                                              ("amazon-sports", "amazon-sports-outdoors", (35_598, 18_357, 296_337))])
def test_amazon_counts(name: str, sub: str, counts: tuple[int, int, int]) -> None:
    _shared(sub)
    from pk_seqrec.data import datasets

    build = {"amazon-beauty": datasets.build_amazon_beauty, "amazon-sports": datasets.build_amazon_sports}[name]
    b = build(SeqLinesConfig(source="file"))
    assert (b.info.num_users, b.info.num_items, b.info.extra["interactions"]) == counts


def test_diginetica_counts() -> None:
    folder = _shared("diginetica-periods")
    from pk_seqrec.data.readers import read_periods

    periods = read_periods(folder, list(range(17)))
    actions = sum(len(s) for p in periods for s in p)
    items = {i for p in periods for s in p for i in s}
    assert actions == 993_483 and len(items) == 43_136
    # sessions: ids straddling a week count once per period in the files; ADER's total counts them once
    assert sum(len(p) for p in periods) >= 204_789
