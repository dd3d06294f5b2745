"""Property tests for the aggregators pk-fl registers, and the core FedAvg it reuses."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from pk_fl.aggregators import CoordinateMedian, Krum, TrimmedMean

from pk.core.builtins.components import FedAvg

ROBUST = {
    "median": lambda: CoordinateMedian(SimpleNamespace()),
    "trimmed-mean": lambda: TrimmedMean(SimpleNamespace(trim_ratio=0.2, plus_one=True)),
    "krum": lambda: Krum(SimpleNamespace(byzantine_ratio=0.2, plus_one=True, multi=1)),
}
ALL = {**ROBUST, "fedavg": lambda: FedAvg(SimpleNamespace(server_lr=1.0))}


def make_states(seed: int, m: int, shape: tuple[int, ...] = (3, 4)) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [{"w": torch.randn(shape, generator=g), "b": torch.randn(shape[0], generator=g)} for _ in range(m)]


def as_updates(states, weights=None):
    weights = weights or [1.0] * len(states)
    return [(s, float(w), {"client_id": i}) for i, (s, w) in enumerate(zip(states, weights))]


@pytest.mark.parametrize("name", sorted(ALL))
@given(seed=st.integers(0, 10_000), m=st.integers(1, 7))
def test_identical_updates_return_that_model(name, seed, m):
    state = make_states(seed, 1)[0]
    out, _ = ALL[name]().aggregate(state, as_updates([copy.deepcopy(state) for _ in range(m)], list(range(1, m + 1))))
    for k in state:
        torch.testing.assert_close(out[k], state[k], rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", sorted(ALL))
@given(seed=st.integers(0, 10_000), m=st.integers(2, 8), perm_seed=st.integers(0, 1000))
def test_permutation_of_clients_changes_nothing(name, seed, m, perm_seed):
    states = make_states(seed, m)
    weights = [float(1 + (i * 7) % 5) for i in range(m)]
    updates = as_updates(states, weights)
    perm = torch.randperm(m, generator=torch.Generator().manual_seed(perm_seed)).tolist()
    a, _ = ALL[name]().aggregate(states[0], updates)
    b, _ = ALL[name]().aggregate(states[0], [updates[i] for i in perm])
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6)


@given(seed=st.integers(0, 10_000), m=st.integers(1, 6), scale=st.floats(0.01, 100.0))
def test_fedavg_equals_weighted_mean_and_is_scale_invariant(seed, m, scale):
    states = make_states(seed, m)
    weights = [float(i + 1) for i in range(m)]
    out, _ = FedAvg(SimpleNamespace(server_lr=1.0)).aggregate(states[0], as_updates(states, weights))
    scaled, _ = FedAvg(SimpleNamespace(server_lr=1.0)).aggregate(states[0], as_updates(states, [w * scale for w in weights]))
    for k in out:
        oracle = sum(s[k].double() * w for s, w in zip(states, weights)) / sum(weights)
        torch.testing.assert_close(out[k].double(), oracle, rtol=0, atol=1e-6)
        torch.testing.assert_close(out[k], scaled[k], rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", sorted(ROBUST))
@given(seed=st.integers(0, 10_000), honest=st.integers(5, 9), magnitude=st.floats(1e3, 1e9))
def test_robust_rules_ignore_a_minority_of_huge_updates(name, seed, honest, magnitude):
    states = make_states(seed, honest)
    attackers = max(1, honest // 4)  # well under a third of all clients
    g = torch.Generator().manual_seed(seed + 1)
    bad = [{k: magnitude * torch.sign(torch.randn(v.shape, generator=g)) for k, v in states[0].items()} for _ in range(attackers)]
    agg = ROBUST[name]()
    out, _ = agg.aggregate(states[0], as_updates(states + bad))
    for k in out:
        stack = torch.stack([s[k] for s in states])
        assert bool((out[k] >= stack.min(0).values - 1e-6).all() and (out[k] <= stack.max(0).values + 1e-6).all())
    assert sum(agg.last_client_weights[honest:]) < 1e-9 if name == "krum" else True
    assert abs(sum(agg.last_client_weights) - 1.0) < 1e-9


def test_fedavg_is_dragged_by_the_same_huge_update():
    """Control for the robust test: FedAvg does follow the attacker (the test above can fail)."""
    states = make_states(0, 6)
    bad = {k: 1e6 * torch.ones_like(v) for k, v in states[0].items()}
    out, _ = FedAvg(None).aggregate(states[0], as_updates(states + [bad]))
    assert float(out["w"].abs().min()) > 1e4


@pytest.mark.parametrize("name", sorted(ALL))
def test_empty_round_and_zero_weight_are_errors(name):
    states = make_states(0, 3)
    with pytest.raises(ValueError, match="empty round"):
        ALL[name]().aggregate(states[0], [])
    with pytest.raises(ValueError, match="zero"):
        ALL[name]().aggregate(states[0], as_updates(states, [0.0, 0.0, 0.0]))


@pytest.mark.parametrize("name", sorted(ALL))
def test_zero_weight_client_has_no_influence_and_inputs_are_not_mutated(name):
    states = make_states(3, 5)
    junk = {k: 1e6 * torch.ones_like(v) for k, v in states[0].items()}
    before = copy.deepcopy(states)
    a, _ = ALL[name]().aggregate(states[0], as_updates(states))
    b, _ = ALL[name]().aggregate(states[0], as_updates(states + [junk], [1.0] * 5 + [0.0]))
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6)
    for s, s0 in zip(states, before):
        for k in s:
            assert torch.equal(s[k], s0[k])


def test_trimmed_mean_uses_dynafed_trim_count():
    agg = TrimmedMean(SimpleNamespace(trim_ratio=0.2, plus_one=True))
    assert agg.trim_count(10) == 3  # ceil(2) + 1
    assert agg.trim_count(3) == 1  # capped at (m - 1) // 2
    values = [{"w": torch.tensor([float(v)])} for v in range(10)]
    out, _ = agg.aggregate(values[0], as_updates(values))
    assert float(out["w"]) == pytest.approx(sum(range(3, 7)) / 4)


def test_median_of_even_count_averages_the_middle_pair():
    values = [{"w": torch.tensor([float(v)])} for v in (1, 2, 10, 40)]
    out, _ = CoordinateMedian(None).aggregate(values[0], as_updates(values))
    assert float(out["w"]) == 6.0
