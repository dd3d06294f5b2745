"""Growth, reservoir uniformity, ADER's lambda, EWC penalty, herding, empty-block no-op, resume."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from pk_iurs import trainers as S
from pk_iurs.data import build_stream_synthetic
from pk_iurs.models.growth import resize_rows, set_item_count
from pk_iurs.plugin import ADERConfig, ASMGConfig, EWCConfig, FineTuneConfig, ReservoirReplayConfig, SMLConfig
from pk_iurs.trainers.memory import Reservoir, ader_lambda, ewc_penalty, herding
from pk_seqrec.models.gru4rec import GRU4Rec
from pk_seqrec.models.sasrec import SASRec
from torch import nn


@given(st.integers(1, 30), st.integers(0, 40), st.sampled_from(["normal", "mean", "zero"]), st.integers(0, 2**31 - 1))
def test_growth_keeps_old_rows_bit_identical_and_follows_the_policy(n_old, extra, policy, seed) -> None:
    torch.manual_seed(seed)
    table = nn.Embedding(n_old + 1, 8, padding_idx=0)
    before = table.weight.detach().clone()
    grown = resize_rows(table, n_old + 1 + extra, policy, 0.02, torch.Generator().manual_seed(seed))
    assert torch.equal(grown.weight[: n_old + 1], before)
    new = grown.weight[n_old + 1:].detach()
    if policy == "zero" and extra:
        assert bool((new == 0).all())
    if policy == "mean" and extra:
        assert torch.allclose(new, before[1:].mean(0).expand_as(new))
    if policy == "normal" and extra >= 20:
        assert 0.005 < float(new.std()) < 0.05


@pytest.mark.parametrize("cls", [SASRec, GRU4Rec])
def test_model_growth_keeps_scores_of_old_items(cls) -> None:
    torch.manual_seed(0)
    model = cls(30, hidden=16) if cls is GRU4Rec else cls(30, 10, hidden=16, layers=1, heads=1, inner=32)
    model.eval()
    batch = {"seq": torch.tensor([[0, 3, 5, 7], [1, 2, 3, 4]])}
    before = model.predict(batch)
    assert set_item_count(model, 45, "normal", 0.02, torch.Generator().manual_seed(1)) == 15
    after = model.predict(batch)
    assert after.shape == (2, 46)
    # old rows are bit-identical (test above); scores agree to float rounding only, because a
    # GEMM over a wider table may block its reductions differently
    assert torch.allclose(after[:, :31], before, rtol=0, atol=1e-6)


def test_reservoir_keeps_each_element_with_probability_capacity_over_n() -> None:
    """Over 2000 seeded streams of 50 elements into 10 slots, each element's inclusion
    frequency must be 0.2 (chi-square over the 50 positions at the 0.1% level)."""
    n, cap, trials = 50, 10, 2000
    counts = torch.zeros(n)
    gen = torch.Generator().manual_seed(1234)
    for _ in range(trials):
        r = Reservoir(cap)
        r.extend(list(range(n)), gen)
        assert len(r.items) == cap and len(set(r.items)) == cap
        counts[torch.tensor(r.items)] += 1
    expected = trials * cap / n
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 86.7, (f"chi2={chi2:.1f} with 49 dof: inclusion is not uniform "
                         f"({counts.min():.0f}..{counts.max():.0f} vs {expected:.0f})")
    # a biased rule (keep the newest) must fail the same test
    biased = torch.zeros(n)
    biased[-cap:] = trials
    assert float(((biased - expected) ** 2 / expected).sum()) > 86.7


def test_reservoir_state_round_trips() -> None:
    r = Reservoir(5)
    r.extend([(i, i + 1) for i in range(20)], torch.Generator().manual_seed(0))
    s = Reservoir(0)
    s.load_state_dict(r.state_dict())
    assert s.items == r.items and s.seen == 20


@given(st.integers(1, 10**5), st.integers(0, 10**5), st.integers(0, 10**5), st.integers(0, 10**5), st.floats(0.1, 2.0))
def test_ader_lambda_matches_the_formula(prev, grow, ex, new, base) -> None:
    cur = prev + grow
    got = ader_lambda(prev, cur, ex, new, base)
    want = base * math.sqrt(prev / cur * ex / new) if ex and new else 0.0
    assert got == pytest.approx(want)


def test_ewc_penalty_is_zero_with_zero_gradient_at_the_anchor_and_ignores_grown_rows() -> None:
    torch.manual_seed(0)
    model = SASRec(20, 8, hidden=8, layers=1, heads=1, inner=16)
    anchor = {n: p.detach().clone() for n, p in model.named_parameters()}
    fisher = {n: torch.rand_like(p) for n, p in anchor.items()}
    set_item_count(model, 25, "normal", 0.5, torch.Generator().manual_seed(0))
    pen = ewc_penalty(model, anchor, fisher)
    pen.backward()
    assert float(pen.detach()) == 0.0
    assert all(p.grad is None or float(p.grad.abs().max()) == 0.0 for p in model.parameters())
    with torch.no_grad():
        model.item_embedding.weight[3] += 1.0
    expected = 0.5 * float(fisher["item_embedding.weight"][3].sum())
    assert float(ewc_penalty(model, anchor, fisher)) == pytest.approx(expected, rel=1e-5)


def test_herding_picks_the_row_nearest_the_mean_first() -> None:
    feats = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    assert herding(feats, 1) == [2]
    assert sorted(herding(feats, 3)) == [0, 1, 2]


@pytest.mark.parametrize("cls,cfg", [(S.FineTuneTrainer, FineTuneConfig),
                                     (S.ReservoirReplayTrainer, ReservoirReplayConfig),
                                     (S.EWCTrainer, EWCConfig), (S.ASMGTrainer, ASMGConfig)])
def test_update_on_an_empty_block_is_a_no_op(cls, cfg, tmp_path, small, model_for, fake_run) -> None:
    stream = build_stream_synthetic(small, seed=0)
    stream.ranges[2] = []  # block 2 loses every interaction
    model = model_for(stream)
    set_item_count(model, stream.known[1])
    trainer = cls(cfg())
    run = fake_run(tmp_path)
    trainer.after_update(model, stream, 0, run)  # give stateful strategies a memory
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.eval()
    batch = {k: v[:8] for k, v in stream.test_rows(1).items()}
    scores = model.predict(batch)
    cost = trainer.update(model, stream, 2, run)
    assert cost["examples"] == 0 and cost["steps"] == 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.equal(model.predict(batch), scores)


@pytest.mark.parametrize("cls,cfg", [(S.ReservoirReplayTrainer, ReservoirReplayConfig), (S.SMLTrainer, SMLConfig),
                                     (S.ADERTrainer, ADERConfig), (S.ASMGTrainer, ASMGConfig)])
def test_resume_mid_stream_reproduces_the_uninterrupted_run(cls, cfg, tmp_path, small, model_for, fake_run) -> None:
    stream = build_stream_synthetic(small, seed=0)
    full_run = fake_run(tmp_path / "a")
    full_model = model_for(stream)
    full = cls(cfg(pretrain_epochs=1, batch_size=32)).fit(full_model, stream, full_run)
    cut = full_run.saved[1]  # after pretraining and one update
    resumed_model = model_for(build_stream_synthetic(small, seed=0))
    resumed_run = fake_run(tmp_path / "b", checkpoint=cut)
    resumed_stream = build_stream_synthetic(small, seed=0)
    resumed = cls(cfg(pretrain_epochs=1, batch_size=32)).fit(resumed_model, resumed_stream, resumed_run)
    assert resumed == full
    pairs = zip(full_model.state_dict().values(), resumed_model.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
