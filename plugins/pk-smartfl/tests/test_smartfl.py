"""SmartFL properties: simplex weights, convex combination, FedAvg special cases, gradients."""

from __future__ import annotations

import copy
import itertools
from types import SimpleNamespace

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pk_smartfl.aggregators import SmartFL, project_to_simplex
from torch import nn

from pk.core.contracts import ServerContext


def build_model() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))


def context(seed: int = 0) -> ServerContext:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(100, 4, generator=g)
    teacher = torch.randn(4, 3, generator=g)
    return ServerContext(build_model=build_model, proxy_data={"x": x, "y": (x @ teacher).argmax(1)})


def clients(seed: int, m: int) -> list[dict[str, torch.Tensor]]:
    torch.manual_seed(seed)
    return [{k: v.detach().clone() for k, v in build_model().state_dict().items()} for _ in range(m)]


def smartfl(param: str = "softmax", steps: int = 20, init: str = "uniform") -> SmartFL:
    return SmartFL(SimpleNamespace(weight_param=param, init=init, steps=steps, lr=0.1, simplex_lr=0.05), context())


@given(v=st.lists(st.floats(-5, 5), min_size=1, max_size=6))
def test_projection_is_the_euclidean_projection(v):
    vt = torch.tensor(v, dtype=torch.float64)
    p = project_to_simplex(vt)
    assert bool((p >= 0).all()) and abs(float(p.sum()) - 1) < 1e-9
    # brute force: the best point among projections onto every face (support set)
    best = float("inf")
    for r in range(1, len(v) + 1):
        for support in itertools.combinations(range(len(v)), r):
            q = torch.zeros_like(vt)
            idx = list(support)
            q[idx] = vt[idx] - (vt[idx].sum() - 1) / r
            if bool((q >= 0).all()):
                best = min(best, float(((q - vt) ** 2).sum()))
    assert float(((p - vt) ** 2).sum()) <= best + 1e-9
    if len(v) > 1 and max(v) - min(v) > 2:
        assert bool((p == 0).any())  # exact zeros are possible


@pytest.mark.parametrize("param", ["softmax", "simplex", "exponentiated"])
@settings(max_examples=15)
@given(seed=st.integers(0, 1000), m=st.integers(2, 5))
def test_weights_on_simplex_and_result_is_a_convex_combination(param, seed, m):
    states = clients(seed, m)
    agg = smartfl(param)
    out, _ = agg.aggregate(states[0], [(s, 10.0 + i, {}) for i, s in enumerate(states)])
    w = torch.tensor(agg.last_client_weights, dtype=torch.float64)
    assert bool((w >= 0).all()) and abs(float(w.sum()) - 1) < 1e-9
    for k in out:
        stack = torch.stack([s[k] for s in states])
        assert bool((out[k] >= stack.min(0).values - 1e-6).all() and (out[k] <= stack.max(0).values + 1e-6).all())
        oracle = sum(float(wi) * s[k].double() for wi, s in zip(w, states))
        torch.testing.assert_close(out[k].double(), oracle, rtol=0, atol=1e-6)


@pytest.mark.parametrize("param", ["softmax", "simplex", "exponentiated"])
def test_optimised_weights_do_not_raise_the_proxy_loss_and_move_off_uniform(param):
    states = clients(1, 4)
    agg = smartfl(param, steps=40)
    agg.aggregate(states[0], [(s, 1.0, {}) for s in states])
    first, best = agg.last_proxy_loss
    assert best < first
    assert max(agg.last_client_weights) - min(agg.last_client_weights) > 1e-3


@pytest.mark.parametrize("init,expected", [("uniform", [0.25] * 4), ("size", [0.1, 0.2, 0.3, 0.4])])
def test_zero_steps_is_fedavg(init, expected):
    states = clients(2, 4)
    agg = smartfl(steps=0, init=init)
    out, _ = agg.aggregate(states[0], [(s, float(i + 1), {}) for i, s in enumerate(states)])
    assert agg.last_client_weights == pytest.approx(expected)
    for k in out:
        torch.testing.assert_close(
            out[k].double(), sum(e * s[k].double() for e, s in zip(expected, states)), rtol=0, atol=1e-6
        )


def test_identical_clients_and_permutation():
    states = clients(3, 4)
    same, _ = smartfl().aggregate(states[0], [(copy.deepcopy(states[0]), 1.0, {}) for _ in range(3)])
    for k in same:
        torch.testing.assert_close(same[k], states[0][k], rtol=0, atol=1e-6)
    a_agg, b_agg = smartfl(), smartfl()
    a, _ = a_agg.aggregate(states[0], [(s, 1.0, {}) for s in states])
    perm = [2, 0, 3, 1]
    b, _ = b_agg.aggregate(states[0], [(states[i], 1.0, {}) for i in perm])
    assert [b_agg.last_client_weights[perm.index(i)] for i in range(4)] == pytest.approx(
        a_agg.last_client_weights, abs=1e-5
    )
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-5)


def test_gradient_matches_finite_differences():
    states = clients(4, 3)
    agg = smartfl()
    loss = agg.proxy_loss_fn(states)
    w = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64, requires_grad=True)
    loss(w).backward()
    eps = 1e-3
    for k in range(3):
        e = torch.zeros(3, dtype=torch.float64)
        e[k] = eps
        fd = (float(loss(w.detach() + e)) - float(loss(w.detach() - e))) / (2 * eps)
        assert float(w.grad[k]) == pytest.approx(fd, rel=2e-2, abs=2e-3)


def test_malicious_client_gets_small_weight():
    states = clients(5, 4)
    bad = {k: -20.0 * v for k, v in states[0].items()}
    agg = smartfl(steps=50)
    agg.aggregate(states[0], [(s, 1.0, {}) for s in states] + [(bad, 1.0, {})])
    assert agg.last_client_weights[-1] < 0.2 * 0.5  # started at 0.2


def test_missing_proxy_data_is_a_clear_error():
    from pk.core.errors import ConfigError

    agg = SmartFL(SimpleNamespace(weight_param="softmax", init="uniform", steps=5, lr=0.1, simplex_lr=0.05),
                  ServerContext(build_model=build_model))
    states = clients(0, 2)
    with pytest.raises(ConfigError, match="proxy"):
        agg.aggregate(states[0], [(s, 1.0, {}) for s in states])
    with pytest.raises(ValueError, match="empty round"):
        agg.aggregate(states[0], [])


def shared_offset_toy(offset_scale: float = 3.0) -> tuple[ServerContext, list[dict[str, torch.Tensor]]]:
    """5 linear clients theta_k = G + delta_k sharing a large random offset G; client 0's delta is
    the true classifier, the others' are noise, so client 0 is clearly the best. The shared G makes
    every weight's gradient <grad L, theta_k> carry the same large component (all of one sign)."""
    d, c = 8, 3
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, d, generator=g)
    truth = torch.randn(c, d, generator=g)
    offset = offset_scale * torch.randn(c, d, generator=g)
    states = []
    for k in range(5):
        noise = torch.randn(c, d, generator=g)
        states.append({"weight": offset + (truth if k == 0 else 0.5 * noise), "bias": torch.zeros(c)})
    ctx = ServerContext(build_model=lambda: nn.Linear(d, c), proxy_data={"x": x, "y": (x @ truth.T).argmax(1)})
    return ctx, states


@pytest.mark.parametrize("param", ["simplex", "exponentiated"])
def test_simplex_variants_leave_uniform_when_one_client_is_clearly_better(param):
    """Catches the old simplex variant (Adam on w, then projection): on this toy it stays at
    exactly [0.2] * 5 (see the control below), so the weight on client 0 would be 0.2."""
    ctx, states = shared_offset_toy()
    agg = SmartFL(SimpleNamespace(weight_param=param, init="uniform", steps=30, lr=0.05, simplex_lr=1.0), ctx)
    agg.aggregate(states[0], [(s, 1.0, {}) for s in states])
    w = agg.last_client_weights
    assert w[0] > 0.6, w
    assert all(v < 0.2 for v in w[1:]), w
    first, best = agg.last_proxy_loss
    assert best < 0.8 * first


def test_control_adam_plus_projection_stays_uniform_on_the_toy():
    """Control: the toy really is the case the issue describes. Adam's per-coordinate
    normalisation turns the shared gradient component into identical steps that the projection
    cancels; if this ever moved, the test above would not discriminate the old code."""
    ctx, states = shared_offset_toy()
    agg = SmartFL(SimpleNamespace(weight_param="simplex", init="uniform", steps=30, lr=0.05, simplex_lr=1.0), ctx)
    loss_of = agg.proxy_loss_fn(states)
    w = torch.full((5,), 0.2, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([w], lr=0.05)
    for _ in range(30):
        opt.zero_grad()
        loss_of(w).backward()
        opt.step()
        with torch.no_grad():
            w.copy_(project_to_simplex(w))
    assert torch.allclose(w.detach(), torch.full((5,), 0.2, dtype=torch.float64), atol=0.02)


@pytest.mark.parametrize("param", ["simplex", "exponentiated"])
def test_simplex_variants_never_raise_the_proxy_loss(param):
    """Armijo backtracking. Clients = truth + independent noise, so their mean beats every single
    client and a huge fixed step (to a vertex) raises the loss: catches dropping the Armijo test."""
    d, c = 8, 3
    g = torch.Generator().manual_seed(3)
    x = torch.randn(300, d, generator=g)
    truth = torch.randn(c, d, generator=g)
    states = [{"weight": truth + 2.0 * torch.randn(c, d, generator=g), "bias": torch.zeros(c)} for _ in range(5)]
    ctx = ServerContext(build_model=lambda: nn.Linear(d, c), proxy_data={"x": x, "y": (x @ truth.T).argmax(1)})
    agg = SmartFL(SimpleNamespace(weight_param=param, init="uniform", steps=10, lr=0.05, simplex_lr=1e6), ctx)
    agg.aggregate(states[0], [(s, 1.0, {}) for s in states])
    first, best = agg.last_proxy_loss
    assert best <= first + 1e-7
    vertex = min(float(agg.proxy_loss_fn(states)(torch.eye(5, dtype=torch.float64)[k])) for k in range(5))
    assert vertex > first  # the toy's premise: every single client is worse than the mean
