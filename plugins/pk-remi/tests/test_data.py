"""REMI's user-level protocol: split, cuts, loaders and bad input."""

from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from pk_remi.data import (
    MIN_CUT,
    build_ml100k,
    build_synthetic,
    bundle_from_user_sequences,
    history_target_cut,
    user_split,
)
from pk_remi.plugin import MultiInterestSyntheticConfig, UserSplitConfig

from pk.core.errors import DataError
from pk.core.paths import shared_data_dir


@given(st.integers(10, 500), st.integers(0, 2**31 - 1))
def test_user_split_is_disjoint_and_8_1_1(n, seed):
    parts = user_split(n, seed)
    all_users = parts["train"] + parts["valid"] + parts["test"]
    assert sorted(all_users) == list(range(n))
    assert len(parts["train"]) == int(0.8 * n) and len(parts["valid"]) == int(0.1 * n)


@st.composite
def sequences(draw):
    n = draw(st.integers(20, 40))
    return [list(range(1, draw(st.integers(5, 30)) + 1)) for _ in range(n)]  # item id = time order


@given(sequences(), st.integers(3, 12))
def test_held_out_history_precedes_targets_and_train_cuts_are_in_range(seqs, max_len):
    bundle = bundle_from_user_sequences(seqs, 30, max_len, split_seed=7)
    for split in ("valid", "test"):
        t = bundle.eval_tensors(split)
        for row, user in enumerate(t["user"].tolist()):
            k = history_target_cut(len(seqs[user]))
            hist = [i for i in t["seq"][row].tolist() if i]
            targets = [i for i in t["targets"][row].tolist() if i]
            assert hist == seqs[user][:k][-max_len:] and targets == seqs[user][k:]
            assert max(hist) < min(targets)  # ids encode time here: history strictly before targets
    batch = bundle.sample_train_batch(16, torch.Generator().manual_seed(0))
    for row, user in enumerate(batch["user"].tolist()):
        k = int(batch["cut"][row])
        assert MIN_CUT <= k < len(seqs[user]) and int(batch["target"][row]) == seqs[user][k]
        assert [i for i in batch["seq"][row].tolist() if i] == seqs[user][max(0, k - max_len) : k]
        assert user in bundle.users["train"]


def test_synthetic_is_deterministic_and_splits_are_disjoint():
    a, b = build_synthetic(MultiInterestSyntheticConfig()), build_synthetic(MultiInterestSyntheticConfig())
    assert a.fingerprint() == b.fingerprint()
    keys = [set(a.split_keys(s)) for s in a.splits]
    assert not (keys[0] & keys[1] or keys[0] & keys[2] or keys[1] & keys[2])
    assert a.fingerprint() != build_synthetic(MultiInterestSyntheticConfig(split_seed=1)).fingerprint()


def test_malformed_inter_file_names_file_and_line(tmp_path: Path):
    bad = tmp_path / "ml-100k.inter"
    bad.write_text("user_id:token\titem_id:token\ttimestamp:float\n1\t2\t3\n1\t2\n")
    with pytest.raises(DataError, match=r"ml-100k.inter:3"):
        build_ml100k(UserSplitConfig(source="file", path=str(tmp_path)))


def test_ml100k_counts_under_remi_filter():
    if shared_data_dir() is None or not (shared_data_dir() / "ml-100k").is_dir():
        pytest.skip("shared data (../shared/data/ml-100k) is not available")
    bundle = build_ml100k(UserSplitConfig(source="file"))
    assert (bundle.info.num_users, bundle.info.num_items, bundle.info.extra["interactions"]) == (943, 1349, 99287)
    assert len(bundle.users["valid"]) == 94 and len(bundle.users["test"]) == 95
