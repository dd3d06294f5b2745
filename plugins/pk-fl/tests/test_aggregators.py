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
    scaled, _ = FedAvg(SimpleNamespace(server_lr=1.0)).aggregate(
        states[0], as_updates(states, [w * scale for w in weights])
    )
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
    bad = [
        {k: magnitude * torch.sign(torch.randn(v.shape, generator=g)) for k, v in states[0].items()}
        for _ in range(attackers)
    ]
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


# -- proxy-data rules: ABAVG and FLTrust -----------------------------------------------------
def linear_context(seed: int = 0, n: int = 120):
    """A 4-feature, 3-class linear problem with a proxy set and a Linear server model."""
    from pk.core.contracts import ServerContext

    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    truth = torch.randn(3, 4, generator=g)
    ctx = ServerContext(build_model=lambda: torch.nn.Linear(4, 3), generator=torch.Generator().manual_seed(1),
                        proxy_data={"x": x, "y": (x @ truth.T).argmax(1)})
    return ctx, truth


def test_abavg_weights_are_proxy_accuracies_normalised():
    """Catches weights that ignore accuracy (e.g. plain FedAvg) and scoring on a subset: the
    weights must equal each model's accuracy on the *whole* proxy set divided by their sum."""
    from pk_fl.aggregators import ABAVG

    ctx, truth = linear_context()
    good = {"weight": truth.clone(), "bias": torch.zeros(3)}
    bad = {"weight": -truth.clone(), "bias": torch.zeros(3)}
    mid = {
        "weight": truth + 1.5 * torch.randn(3, 4, generator=torch.Generator().manual_seed(5)),
        "bias": torch.zeros(3),
    }
    agg = ABAVG(None, ctx)
    x, y = ctx.proxy_data["x"], ctx.proxy_data["y"]
    acc = [float(((x @ s["weight"].T).argmax(1) == y).double().mean()) for s in (good, mid, bad)]
    out, _ = agg.aggregate(good, as_updates([good, mid, bad], [100.0, 1.0, 1.0]))
    assert agg.last_client_weights == pytest.approx([a / sum(acc) for a in acc])
    assert acc[0] == 1.0 and acc[2] < 0.2 and agg.last_client_weights[2] < 0.1
    oracle = sum(w * s["weight"].double() for w, s in zip(agg.last_client_weights, (good, mid, bad)))
    torch.testing.assert_close(out["weight"].double(), oracle, rtol=0, atol=1e-6)


def test_fltrust_zero_trust_for_opposed_updates_and_norm_clipping():
    """Mechanism: a client whose update opposes the server's root-data update gets trust 0;
    a client pushing the server's direction 1000x too far is rescaled to the server update's
    norm. Catches plain averaging (the huge update would dominate) and missing ReLU."""
    from pk_fl.aggregators import FLTrust

    ctx, truth = linear_context()
    glob = {"weight": torch.zeros(3, 4), "bias": torch.zeros(3)}
    agg = FLTrust(SimpleNamespace(server_epochs=3, server_lr=0.5, server_batch_size=32), ctx)
    g0 = FLTrust(
        SimpleNamespace(server_epochs=3, server_lr=0.5, server_batch_size=32), linear_context()[0]
    ).server_update(glob)
    direction = {k: v.float() for k, v in g0.items()}
    honest = {k: glob[k] + direction[k] for k in glob}
    huge = {k: glob[k] + 1000.0 * direction[k] for k in glob}
    opposed = {k: glob[k] - 5.0 * direction[k] for k in glob}
    out, _ = agg.aggregate(glob, as_updates([honest, huge, opposed]))
    assert agg.last_client_weights[2] == 0.0
    assert agg.last_client_weights[0] == pytest.approx(0.5) and agg.last_client_weights[1] == pytest.approx(0.5)
    for k in out:  # both trusted updates are rescaled to ||g0||: the result is global + g0
        torch.testing.assert_close(out[k].double(), (glob[k] + direction[k]).double(), rtol=1e-5, atol=1e-5)
    # nobody trusted: the global state comes back unchanged
    out2, _ = FLTrust(
        SimpleNamespace(server_epochs=3, server_lr=0.5, server_batch_size=32), linear_context()[0]
    ).aggregate(glob, as_updates([opposed, opposed]))
    for k in out2:
        assert torch.equal(out2[k], glob[k])


def test_fltrust_drags_less_than_fedavg_under_sign_flip():
    """Control for the test above: under a 5x sign flip FedAvg's result moves against the server
    direction, FLTrust's does not."""
    from pk_fl.aggregators import FLTrust

    ctx, _ = linear_context()
    glob = {"weight": torch.zeros(3, 4), "bias": torch.zeros(3)}
    g0 = FLTrust(
        SimpleNamespace(server_epochs=3, server_lr=0.5, server_batch_size=32), linear_context()[0]
    ).server_update(glob)
    honest = [{k: glob[k] + g0[k].float() * (1 + 0.1 * i) for k in glob} for i in range(3)]
    flipped = [{k: glob[k] - 5.0 * g0[k].float() for k in glob} for _ in range(2)]
    ups = as_updates(honest + flipped)
    fl, _ = FLTrust(SimpleNamespace(server_epochs=3, server_lr=0.5, server_batch_size=32), ctx).aggregate(glob, ups)
    avg, _ = FedAvg(None).aggregate(glob, ups)
    flat_g0 = torch.cat([g0[k].reshape(-1) for k in glob])
    assert float(torch.cat([fl[k].reshape(-1) for k in glob]).double() @ flat_g0) > 0
    assert float(torch.cat([avg[k].reshape(-1) for k in glob]).double() @ flat_g0) < 0


@pytest.mark.parametrize("name", ["abavg", "fltrust"])
def test_proxy_rules_need_proxy_data(name):
    from pk_fl.aggregators import ABAVG, FLTrust

    from pk.core.contracts import ServerContext
    from pk.core.errors import ConfigError

    cls = {"abavg": ABAVG, "fltrust": FLTrust}[name]
    agg = cls(None, ServerContext(build_model=lambda: torch.nn.Linear(4, 3)))
    s = {"weight": torch.zeros(3, 4), "bias": torch.zeros(3)}
    with pytest.raises(ConfigError, match="proxy"):
        agg.aggregate(s, as_updates([s, s]))
