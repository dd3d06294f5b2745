"""Block streams: time order, coverage, vocabulary growth, unseen-item rule, no test leakage."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pk_iurs import trainers as S
from pk_iurs.data import build_stream_synthetic, make_stream
from pk_iurs.plugin import (
    ADERConfig,
    ASMGConfig,
    DistillConfig,
    EWCConfig,
    FineTuneConfig,
    FullRetrainConfig,
    ReservoirReplayConfig,
    SMLConfig,
    StreamSyntheticConfig,
)


@st.composite
def raw_streams(draw):
    """Random users with non-decreasing block indices and raw string items."""
    T = draw(st.integers(2, 5))
    users = draw(st.lists(st.lists(st.tuples(st.integers(0, T - 1), st.integers(0, 12)), min_size=1, max_size=12),
                          min_size=1, max_size=8))
    seqs, blocks, events = [], [], []
    for u, evs in enumerate(users):
        evs = sorted(evs, key=lambda e: e[0])
        seqs.append([f"i{i}" for _, i in evs])
        blocks.append([b for b, _ in evs])
        events += [(b, u, j) for j, (b, _) in enumerate(evs)]
    order = [(u, j) for _, u, j in sorted(events)]
    return make_stream(seqs, blocks, order, T, pretrain_blocks=1, max_len=5, unseen="drop", params={}, extra={})


@given(raw_streams())
def test_blocks_partition_the_data_in_time_order_and_vocabulary_is_a_prefix(stream) -> None:
    seen = [(u, j) for b in range(stream.num_blocks) for u, s, e in stream.ranges[b] for j in range(s, e)]
    assert sorted(seen) == sorted((u, j) for u, s in enumerate(stream.sequences) for j in range(len(s)))
    assert len(seen) == len(set(seen))
    for b in range(stream.num_blocks):
        items = {stream.sequences[u][j] for u, s, e in stream.ranges[b] for j in range(s, e)}
        assert items <= set(range(1, stream.known[b] + 1))
        earlier = {stream.sequences[u][j] for c in range(b) for u, s, e in stream.ranges[c] for j in range(s, e)}
        if b:  # new ids are exactly the ones above everything seen before
            assert {i for i in items if i not in earlier} == set(range(stream.known[b - 1] + 1, stream.known[b] + 1))
    for u, blocks in enumerate(stream.block_of):
        assert blocks == sorted(blocks), f"user {u}: blocks not time ordered"


@given(raw_streams())
def test_drop_rule_never_tests_an_unknown_item(stream) -> None:
    for b in range(1, stream.num_blocks):
        rows = stream.test_rows(b)
        known = stream.known[b - 1]
        assert all(t <= known for t in rows["target"].tolist())
        assert all(i <= known for i in rows["seq"].flatten().tolist())
        for u, j in zip(rows["user"].tolist(), rows["tpos"].tolist(), strict=True):
            assert stream.block_of[u][j] == b


def test_miss_rule_keeps_unknown_targets_and_counts_them_as_misses(small, model_for) -> None:
    stream = build_stream_synthetic(StreamSyntheticConfig(**{**vars(small), "unseen": "miss"}), seed=1)
    rows = stream.test_rows(1)
    unknown = rows["target"] > stream.known[0]
    assert bool(unknown.any()), "the synthetic stream should bring new items into block 1"
    model = model_for(stream)
    from pk_iurs.models.growth import set_item_count

    set_item_count(model, stream.known[0])
    drop = build_stream_synthetic(small, seed=1)
    miss_hr = S.test_block(model, stream, 1, [20])["hr@20"]
    drop_hr = S.test_block(model, drop, 1, [20])["hr@20"]
    n_miss, n_drop = int(rows["target"].shape[0]), int(drop.test_rows(1)["target"].shape[0])
    assert n_miss == n_drop + int(unknown.sum())
    assert miss_hr == pytest.approx(drop_hr * n_drop / n_miss)


TRAINERS = [(S.FineTuneTrainer, FineTuneConfig), (S.FullRetrainTrainer, FullRetrainConfig),
            (S.ReservoirReplayTrainer, ReservoirReplayConfig), (S.DistillTrainer, DistillConfig),
            (S.ADERTrainer, ADERConfig), (S.EWCTrainer, EWCConfig), (S.SMLTrainer, SMLConfig),
            (S.ASMGTrainer, ASMGConfig)]


@pytest.mark.parametrize("cls,cfg", TRAINERS, ids=[c.__name__ for c, _ in TRAINERS])
def test_no_training_row_comes_from_an_untested_block(cls, cfg, tmp_path, small, model_for, fake_run) -> None:
    """Instrument the bundle: every target handed out for training must lie in a pretraining
    block or in a block that was already tested."""
    stream = build_stream_synthetic(small, seed=0)
    tested: set[int] = set()
    violations: list[tuple[int, int]] = []

    def guard(pairs):
        for u, j in pairs:
            b = stream.block_of[u][j]
            if b >= stream.pretrain_blocks and b not in tested:
                violations.append((b, max(tested, default=-1)))

    orig_train, orig_rows = stream.train_rows, stream.rows_for
    orig_inter, orig_test = stream.interactions, stream.test_rows

    def train_rows(blocks):
        rows = orig_train(blocks)
        for u, end, tg in zip(rows["user"].tolist(), rows["tpos"].tolist(), rows["targets"].tolist(), strict=True):
            guard([(u, end - k) for k in range(sum(1 for x in tg if x))])
        return rows

    def rows_for(pairs):
        guard(pairs)
        return orig_rows(pairs)

    def interactions(blocks):
        out = orig_inter(blocks)
        guard(out)
        return out

    def test_rows(b):
        tested.add(b)
        return orig_test(b)

    stream.train_rows, stream.rows_for = train_rows, rows_for
    stream.interactions, stream.test_rows = interactions, test_rows
    config = cfg(pretrain_epochs=1, batch_size=32)
    if hasattr(config, "fisher_samples"):
        config.fisher_samples = 20
    cls(config).fit(model_for(stream), stream, fake_run(tmp_path))
    assert tested == set(stream.evaluated_blocks)
    assert not violations, f"trained on block(s) before testing them: {violations[:3]}"
