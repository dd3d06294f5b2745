"""IHN weights, sampled softmax, RR and the hard read-out (hypothesis property tests)."""

import math

import torch
from hypothesis import given
from hypothesis import strategies as st
from pk_remi.models.losses import hard_readout, ihn_weights, routing_regulariser, sampled_softmax_loss

seeds = st.integers(0, 2**31 - 1)


def _scores(seed: int, b: int = 4, m: int = 16, scale: float = 3.0) -> torch.Tensor:
    return torch.randn(b, m, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * scale


@given(seeds)
def test_ihn_weights_are_uniform_at_beta_zero(seed):
    w = ihn_weights(_scores(seed), 0.0)
    assert torch.equal(w, torch.ones_like(w))


@given(seeds)
def test_beta_zero_is_plain_sampled_softmax(seed):
    neg = _scores(seed)
    pos = _scores(seed + 1, m=1)[:, 0]
    plain = torch.nn.functional.cross_entropy(torch.cat([pos[:, None], neg], 1), torch.zeros(4, dtype=torch.long))
    assert torch.allclose(sampled_softmax_loss(pos, neg, 0.0), plain, atol=1e-10)


@given(seeds, st.sampled_from([0.1, 1.0, 10.0]), st.floats(-50, 50))
def test_ihn_weights_mean_one_and_shift_invariant(seed, beta, shift):
    s = _scores(seed)
    w = ihn_weights(s, beta)
    assert torch.allclose(w.mean(-1), torch.ones(4, dtype=torch.float64), atol=1e-9)
    assert torch.allclose(ihn_weights(s + shift, beta), w, atol=1e-8)
    pos = _scores(seed + 1, m=1)[:, 0]
    shifted = sampled_softmax_loss(pos + shift, s + shift, beta)
    assert torch.allclose(shifted, sampled_softmax_loss(pos, s, beta), atol=1e-8)


@given(seeds, st.sampled_from([0.1, 1.0, 10.0]))
def test_ihn_upweights_hard_negatives_and_raises_loss(seed, beta):
    s = _scores(seed)
    w = ihn_weights(s, beta)
    order = s.argsort(-1)
    assert bool((w.gather(1, order).diff(dim=-1) >= -1e-12).all()), "weights must increase with the score"
    pos = _scores(seed + 1, m=1)[:, 0]
    # sum_j w_j e^{s_j} >= sum_j e^{s_j} (Chebyshev), so the IHN loss is never below plain
    assert sampled_softmax_loss(pos, s, beta) >= sampled_softmax_loss(pos, s, 0.0) - 1e-10


def test_ihn_weights_carry_gradient_unless_detached():
    s = torch.tensor([[0.5, 2.0, -1.0]], requires_grad=True)
    pos = torch.tensor([1.0])
    g_flow = torch.autograd.grad(sampled_softmax_loss(pos, s, 1.0), s)[0]
    g_detached = torch.autograd.grad(sampled_softmax_loss(pos, s, 1.0, detach_weights=True), s)[0]
    assert not torch.allclose(g_flow, g_detached)


@given(st.integers(1, 5), st.integers(1, 4), st.integers(2, 12))
def test_rr_zero_for_uniform_routing_positive_for_one_hot(b, k, length):
    uniform = torch.full((b, k, length), 1.0 / length)
    assert float(routing_regulariser(uniform, 64)) < 1e-12  # float32 rounding of 1/L only
    one_hot = torch.zeros(b, k, length)
    one_hot[..., 0] = 1.0
    rr = float(routing_regulariser(one_hot, 64))
    # per row: variance term (1 - 1/L) / 64, squared; summed over B*K rows
    assert math.isclose(rr, b * k * ((1 - 1 / length) / 64) ** 2, rel_tol=1e-5)


@given(seeds)
def test_rr_is_summed_over_the_batch(seed):
    a = torch.softmax(torch.randn(3, 4, 10, generator=torch.Generator().manual_seed(seed)) * 3, -1)
    doubled = torch.cat([a, a], 0)
    assert torch.allclose(routing_regulariser(doubled, 64), 2 * routing_regulariser(a, 64))
    assert torch.allclose(routing_regulariser(a, 32), 4 * routing_regulariser(a, 64))


@given(seeds)
def test_hard_readout_picks_the_best_interest(seed):
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(5, 4, 8, generator=g)
    e = torch.randn(5, 8, generator=g)
    readout, chosen = hard_readout(v, e)
    for i in range(5):
        best = max(range(4), key=lambda k: float(v[i, k] @ e[i]))
        assert int(chosen[i]) == best
        assert torch.equal(readout[i], v[i, best])
