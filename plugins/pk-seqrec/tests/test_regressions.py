"""Regression tests for the result-changing deviations (BERT4Rec mask cap, long-history
windows, Pop counts on overlapping rows), the fit budget report, per-user example scores,
config bounds and bad data files. Each docstring names the old code it fails on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from pk_seqrec.data.bundle import bundle_from_sequences, train_tensors
from pk_seqrec.data.datasets import build_ml100k, build_seq_lines, build_synthetic_seq
from pk_seqrec.data.preprocess import window_targets
from pk_seqrec.data.readers import read_atomic_inter, read_seq_lines
from pk_seqrec.models.bert4rec import BERT4Rec
from pk_seqrec.models.pop import Pop
from pk_seqrec.models.sasrec import SASRec
from pk_seqrec.plugin import (
    BERT4RecConfig,
    ML100kConfig,
    NextItemTrainerConfig,
    SeqLinesConfig,
    SyntheticSeqConfig,
)
from pk_seqrec.trainers.next_item import NextItemTrainer

from pk.core.config import validate_params
from pk.core.errors import ConfigError, DataError
from pk.core.testing import MemoryRun

torch.set_num_threads(1)


# -- 1. BERT4Rec mask cap ------------------------------------------------------------------
def test_bert4rec_mask_count_on_a_trimmed_batch() -> None:
    """On a batch the loader trimmed to its longest row (here <= 9 columns while the model's
    L = 50), the mean number of masks per row is mask_ratio x real items (seq + target).

    Fails on the old cap ``int(mask_ratio * batch width)``: 1 for this batch (0 for width
    < 5), so rows of 5+ real items got at most one mask instead of ~0.2 n."""
    data = build_synthetic_seq(SyntheticSeqConfig(num_users=40, min_len=4, max_seq_len=10, max_len=50), seed=0)
    batch = next(iter(data.loader("train", 64)))
    assert batch["seq"].shape[1] < 10  # trimmed: far narrower than max_len + 1
    model = BERT4Rec(data.info.num_items, 50, hidden=8, layers=1, heads=1, inner=8, mask_ratio=0.2)
    torch.manual_seed(0)
    draws = 3000
    total = torch.zeros(batch["seq"].shape[0])
    for _ in range(draws):
        full, masked = model.cloze_batch(batch)
        assert not bool(masked[full == 0].any())
        total += masked.sum(1).float()
    real = (full != 0).sum(1).float()
    per_row = total / draws
    assert torch.allclose(per_row, 0.2 * real, atol=0.1), (per_row, 0.2 * real)
    assert abs(float(per_row.sum()) / float(0.2 * real.sum()) - 1) < 0.02


def test_bert4rec_cap_still_binds_at_the_model_length() -> None:
    """A full-length row keeps at most int(0.2 * (L + 1)) masks (RecBole's cap)."""
    model = BERT4Rec(30, 20, hidden=8, layers=1, heads=1, inner=8, mask_ratio=0.6)
    batch = {"seq": torch.randint(1, 31, (4, 20)), "target": torch.randint(1, 31, (4,))}
    torch.manual_seed(1)
    for _ in range(50):
        _, masked = model.cloze_batch(batch)
        assert int(masked.sum(1).max()) <= int(0.6 * 21)


# -- 2. "all" windows equal RecBole's prefixes on long histories ---------------------------
def test_all_windows_give_every_target_its_prefix_context_on_a_long_history() -> None:
    """A training part of 2L + 7 items: with train_windows = "all" (stride 1) every target is
    trained once and sees min(L, its history) items, exactly as in "prefixes"; one SASRec
    eval-mode loss over all rows equals the prefix rows' loss.

    Fails on the old "all" (disjoint windows tiling the history from its end): targets at
    the start of each later window saw 1, 2, ... items, and the two losses differed."""
    L, n = 5, 17
    items = list(range(1, n + 1))
    contexts: dict[str, dict[int, list[int]]] = {}
    for mode in ("all", "prefixes"):
        seen: dict[int, list[int]] = {}
        for s, e, first in window_targets(n, L, mode):
            for t in range(first, e):
                assert t not in seen, f"{mode}: target {t} trained twice"
                seen[t] = items[s:t]  # the causal context of target t in this row
                assert len(seen[t]) == min(L, t), f"{mode}: target {t} sees {t - s} items"
        assert sorted(seen) == list(range(1, n))
        contexts[mode] = seen
    assert contexts["all"] == contexts["prefixes"]

    torch.manual_seed(0)
    model = SASRec(n + 1, L, hidden=16, heads=2, inner=32, dropout=0.0, attn_dropout=0.0).eval()
    seqs = [items, [3, 9, 4, 12, 1, 7, 2, 5, 11, 8, 6, 10, 13, 14, 15, 16, 17, 2, 5]]
    losses = {}
    for mode in ("all", "prefixes"):
        t = train_tensors(seqs, L, mode=mode)
        assert int((t["targets"] != 0).sum()) == sum(len(s) - 1 for s in seqs)
        losses[mode] = model.loss({"seq": t["seq"], "targets": t["targets"]})
    assert torch.allclose(losses["all"], losses["prefixes"], atol=1e-5)


@pytest.mark.parametrize("stride", [1, 2, 5])
def test_window_stride_bounds_the_context(stride: int) -> None:
    """Stride S: each target once, with at least L - S + 1 items of context (or all of its
    history). Fails on the old tiling for S < L (it had no stride: min context 1)."""
    L, n = 5, 23
    trained = []
    for s, e, first in window_targets(n, L, "all", stride):
        assert e - 1 - s <= L
        for t in range(first, e):
            trained.append(t)
            assert t - s >= min(t, L - stride + 1)
    assert sorted(trained) == list(range(1, n))


def test_pop_counts_each_training_position_once_with_overlapping_rows() -> None:
    """Pop after one epoch = the bundle's item counts, for overlapping rows ("all" stride 1,
    "prefixes"). Fails on the old Pop, which added every ``seq`` item of every row (an item
    in k overlapping rows counted k times)."""
    seqs = [list(range(1, 20)), [4, 2, 9, 4, 7, 1, 3, 8, 5, 6, 2, 2, 10], [5, 6, 7]]
    for mode in ("all", "prefixes"):
        b = bundle_from_sequences(seqs, 20, 4, train_windows=mode)
        pop = Pop(20).train()
        for batch in b.loader("train", 3):
            pop.loss(batch)
        assert torch.equal(pop.counts, b.train_item_counts()), mode
        expected = torch.zeros(21)
        for s in b.sequences:
            for i in s[: len(s) - 2]:
                expected[i] += 1 if len(s) > 3 else 0
        assert torch.equal(b.train_item_counts(), expected)


# -- 6. budget report, example scores, bounds -------------------------------------------------
def test_fit_reports_epochs_run_and_best_epoch_and_test_saves_per_user_scores() -> None:
    """``fit`` returns epochs_run and a 1-based best_epoch; ``evaluate(..., "test")`` saves one
    value per test user whose mean is the metric. Fails on the old trainer (it returned
    "epochs" and a 0-based best_epoch, and saved no example scores)."""
    data = build_synthetic_seq(SyntheticSeqConfig(num_users=50), seed=0)
    torch.manual_seed(0)
    model = SASRec(data.info.num_items, data.info.max_len, hidden=16, heads=2, inner=32)
    run = MemoryRun()
    trainer = NextItemTrainer(NextItemTrainerConfig(max_epochs=2, patience=0, batch_size=32))
    fit = trainer.fit(model, data, run)
    assert fit["epochs_run"] == 2 and fit["best_epoch"] in (1, 2)
    assert "valid" not in run.scores
    metrics = trainer.evaluate(model, data, "test", run)
    saved = run.scores["test"]
    assert set(saved) == {k for k in metrics if k != "history_excluded"}
    for name, arr in saved.items():
        arr = np.asarray(arr)
        assert arr.shape == (data.size("test"),)
        assert abs(arr.mean() - metrics[name]) < 1e-12
    again = MemoryRun()
    trainer.evaluate(model, data, "test", again)
    again_saved = again.scores["test"]  # the same order in a second evaluation
    assert all(np.array_equal(np.asarray(again_saved[k]), np.asarray(v)) for k, v in saved.items())


@pytest.mark.parametrize("cls,key,value", [
    (NextItemTrainerConfig, "max_epochs", 0), (NextItemTrainerConfig, "max_epochs", -1),
    (NextItemTrainerConfig, "batch_size", 0), (NextItemTrainerConfig, "lr", -0.1),
    (NextItemTrainerConfig, "lr", float("nan")), (NextItemTrainerConfig, "lr", float("inf")),
    (NextItemTrainerConfig, "ks", [10, 0]), (NextItemTrainerConfig, "patience", -1),
    (ML100kConfig, "max_len", 0), (ML100kConfig, "window_stride", 0), (SeqLinesConfig, "kcore", -2),
    (BERT4RecConfig, "mask_ratio", 0.0), (BERT4RecConfig, "dropout", 1.0), (BERT4RecConfig, "hidden", -3),
])
def test_config_bounds_refuse_out_of_range_values(cls: type, key: str, value: Any) -> None:
    """Old configs declared no ranges: every one of these resolved silently."""
    with pytest.raises(ConfigError):
        validate_params({key: value}, cls, "x")


def test_window_stride_above_max_len_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="window_stride"):
        build_synthetic_seq(SyntheticSeqConfig(max_len=5, window_stride=6), seed=0)


# -- issue 19: bad data files -------------------------------------------------------------------
@pytest.mark.parametrize("content,line", [
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe", 1),
    (b"u1 1 2 3\nu2 4 5 \xff\xfe 6\n", 2),
    (b"u1 1 2 3\nu2 4\x00 5\n", 2),
])
def test_binary_or_garbage_seq_lines_file_is_a_data_error(tmp_path: Path, content: bytes, line: int) -> None:
    """Old readers opened files as UTF-8 text: a binary file raised a bare UnicodeDecodeError."""
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    with pytest.raises(DataError, match=rf"{path}:{line}:"):
        read_seq_lines(path)


def test_binary_and_empty_atomic_files_are_data_errors(tmp_path: Path) -> None:
    path = tmp_path / "ml-100k.inter"
    path.write_bytes(b"user_id:token\titem_id:token\ttimestamp:float\n1\t2\t3\n\xff\xd8\xff\xe0\n")
    with pytest.raises(DataError, match=rf"{path}:3:"):
        read_atomic_inter(path)
    path.write_bytes(b"")
    with pytest.raises(DataError, match=rf"{path}:1:"):
        read_atomic_inter(path)


def test_truncated_ml100k_gives_a_data_error_not_zero_training_steps(tmp_path: Path) -> None:
    """The first lines of ml-100k (one interaction per user): every user is dropped or has
    no training target. Old code built a bundle with 0 training rows (0 steps, metrics 0)."""
    path = tmp_path / "ml-100k.inter"
    path.write_text("user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
                    "196\t242\t3\t881250949\n186\t302\t3\t891717742\n22\t377\t1\t878887116\n"
                    "196\t51\t2\t880606923\n196\t346\t1\t886397596\n")
    with pytest.raises(DataError, match=rf"{path}: no training example"):
        build_ml100k(ML100kConfig(source="file", path=str(path)))
    lines = tmp_path / "lines.txt"
    lines.write_text("u1 1 2 3\nu2 4 5 6\n")  # 3 items each: valid and test only
    with pytest.raises(DataError, match="no training example"):
        build_seq_lines(SeqLinesConfig(source="file", path=str(lines)))


def test_empty_period_file_is_a_data_error(tmp_path: Path) -> None:
    """Old read_session_period returned [] for an empty file, and the diginetica builder then
    failed with a bare ValueError (max of an empty sequence)."""
    from pk_seqrec.data.readers import read_session_period

    path = tmp_path / "period_3.txt"
    path.write_text("\n")
    with pytest.raises(DataError, match=rf"{path}: no 'session_id item_id' lines"):
        read_session_period(path)
