"""Partitioners, attacks, client sampling and malicious-id selection."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from pk_fl.data.partition import partition, sinkhorn_balance
from pk_fl.trainers.attacks import lie_paper_z, poison_labels, poison_updates
from pk_fl.trainers.rounds import malicious_ids, sample_clients

METHODS = ("iid", "dirichlet", "dynafed-dirichlet", "shards")


@pytest.mark.parametrize("method", METHODS)
@given(
    n=st.integers(20, 400), classes=st.integers(2, 10), clients=st.integers(1, 12),
    alpha=st.sampled_from([0.01, 0.1, 0.5, 10.0]), seed=st.integers(0, 2**31),
)
def test_partitions_cover_each_index_exactly_once_and_are_deterministic(method, n, classes, clients, alpha, seed):
    labels = np.random.default_rng(seed).integers(0, classes, n)
    parts = partition(labels, clients, method, seed, alpha=alpha, shards_per_client=2)
    assert len(parts) == clients
    allidx = np.concatenate(parts)
    assert np.array_equal(np.sort(allidx), np.arange(n))
    again = partition(labels, clients, method, seed, alpha=alpha, shards_per_client=2)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again))


def test_different_seeds_give_different_partitions():
    labels = np.arange(500) % 10
    a = partition(labels, 8, "dirichlet", 0, alpha=0.5)
    b = partition(labels, 8, "dirichlet", 1, alpha=0.5)
    assert any(not np.array_equal(x, y) for x, y in zip(a, b))


def test_dirichlet_gets_more_skewed_as_alpha_shrinks():
    labels = np.arange(4000) % 10

    def mean_classes(alpha: float) -> float:
        parts = partition(labels, 20, "dirichlet", 3, alpha=alpha)
        return float(np.mean([len(np.unique(labels[p])) for p in parts]))

    assert mean_classes(0.01) < mean_classes(0.5) < mean_classes(100.0)


@given(classes=st.integers(2, 10), clients=st.integers(2, 30), seed=st.integers(0, 10_000))
def test_sinkhorn_rows_sum_to_one_and_balances_clients(classes, clients, seed):
    x = np.random.default_rng(seed).dirichlet([0.5] * clients, size=classes)
    y = sinkhorn_balance(x)
    np.testing.assert_allclose(y.sum(1), 1.0, atol=1e-9)
    # column sums approach C / K (each client gets about the same share of the data)
    assert np.abs(y.sum(0) - classes / clients).max() < 0.05 * classes / clients + 1e-6


def test_dynafed_split_gives_nearly_equal_client_sizes_and_extreme_skew():
    labels = np.repeat(np.arange(10), 800)
    parts = partition(labels, 20, "dynafed-dirichlet", 4, alpha=0.01)
    sizes = np.array([len(p) for p in parts])
    assert sizes.max() - sizes.min() <= 0.1 * sizes.mean()
    assert np.mean([len(np.unique(labels[p])) for p in parts]) < 3


def test_label_attacks():
    y = torch.arange(10)
    assert torch.equal(poison_labels(y, 10, "label-flip"), (y + 1) % 10)
    assert torch.equal(poison_labels(y, 10, "all-to-one"), torch.ones(10, dtype=torch.long))
    assert poison_labels(y, 10, "none") is y


def test_model_attacks():
    glob = {"w": torch.zeros(3), "n": torch.tensor(5)}
    states = [
        {"w": torch.tensor([1.0, 2.0, 3.0]), "n": torch.tensor(6)},
        {"w": torch.tensor([3.0, 2.0, 1.0]), "n": torch.tensor(6)},
    ]
    flipped = poison_updates(glob, states, "sign-flip", scale=2.0)
    assert torch.equal(flipped[0]["w"], torch.tensor([-2.0, -4.0, -6.0]))
    assert torch.equal(flipped[0]["n"], torch.tensor(6))  # integer buffers untouched
    lie = poison_updates(glob, states, "lie", z=1.0)
    torch.testing.assert_close(lie[0]["w"], torch.tensor([1.0, 2.0, 1.0]))  # mean 2 - std (1, 0, 1)
    assert torch.equal(states[0]["w"], torch.tensor([1.0, 2.0, 3.0]))  # inputs untouched
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    assert torch.equal(poison_updates(glob, states, "gaussian", generator=g1)[1]["w"],
                       poison_updates(glob, states, "gaussian", generator=g2)[1]["w"])


def test_sampling_is_seeded_and_malicious_ids_are_fixed():
    a = [sample_clients(20, 0.4, g) for g in [torch.Generator().manual_seed(1)] for _ in range(5)]
    b = [sample_clients(20, 0.4, g) for g in [torch.Generator().manual_seed(1)] for _ in range(5)]
    assert a == b and all(len(s) == 8 for s in a) and len({tuple(s) for s in a}) > 1
    assert malicious_ids(20, 0.2, 7) == malicious_ids(20, 0.2, 7)
    assert len(malicious_ids(20, 0.4, 7)) == 8


def test_lie_uses_benign_statistics_and_lie_own_the_attackers_own():
    """Catches LIE computed from the malicious clients' own deltas (the old "lie"): here the
    benign clients move +1 and +3 and the attackers -10 and -12, so the two statistics differ."""
    glob = {"w": torch.zeros(2)}
    bad = [{"w": torch.tensor([-10.0, -10.0])}, {"w": torch.tensor([-12.0, -12.0])}]
    good = [{"w": torch.tensor([1.0, 1.0])}, {"w": torch.tensor([3.0, 3.0])}]
    lie = poison_updates(glob, bad, "lie", z=1.5, benign=good)
    torch.testing.assert_close(lie[0]["w"], torch.tensor([2.0 - 1.5 * 1.0] * 2))  # mean 2, std 1 of the benign deltas
    assert torch.equal(lie[0]["w"], lie[1]["w"])
    own = poison_updates(glob, bad, "lie-own", z=1.5, benign=good)
    torch.testing.assert_close(own[0]["w"], torch.tensor([-11.0 - 1.5 * 1.0] * 2))
    # with no benign client in the round, lie falls back to the attackers' own statistics
    torch.testing.assert_close(poison_updates(glob, bad, "lie", z=1.5)[0]["w"], own[0]["w"])


def test_lie_paper_z_matches_the_papers_formula():
    """z_max = Phi^-1((n - s) / n), s = floor(n/2 + 1) - m: n = 10, m = 2 gives s = 4, p = 0.6;
    n = 50, m = 12 gives s = 14, p = 0.72; n = 10, m = 4 gives s = 2, p = 0.8. Catches s without
    the floor (n = 11, m = 2: s = 4, p = 7/11, not 4.5) and the benign count n - m in place of s."""
    assert lie_paper_z(10, 2) == pytest.approx(0.253347, abs=1e-6)
    assert lie_paper_z(50, 12) == pytest.approx(0.582842, abs=1e-6)
    assert lie_paper_z(10, 4) == pytest.approx(0.841621, abs=1e-6)
    assert lie_paper_z(11, 2) == pytest.approx(0.348755, abs=1e-6)  # Phi^-1(7/11)
    with pytest.raises(ValueError, match="0 <= m <= n"):
        lie_paper_z(5, 6)


@given(n=st.integers(1, 500), m=st.integers(0, 500))
def test_lie_paper_z_is_finite_non_negative_and_grows_with_the_attackers(n, m):
    m = min(m, n)
    z = lie_paper_z(n, m)
    assert 0.0 <= z < 10.0
    if m < n:
        assert lie_paper_z(n, m + 1) >= z


@pytest.mark.parametrize("rule", ["fixed", "paper"])
def test_fedsim_logs_the_lie_z_each_round_used(fake_run, rule):
    """With ``lie_z_rule = "paper"`` every round that sampled an attacker uses z_max of its own
    sampled clients and attackers; with "fixed" the config's ``lie_z``. Catches a rule that is
    ignored (the fixed 1.0 would show up in the paper run's log)."""
    import dataclasses

    from pk_fl.data.images import build_synthetic_images
    from pk_fl.plugin import FedSimConfig, SyntheticImagesConfig
    from pk_fl.trainers.simulator import FedSimTrainer

    from pk.core.builtins.components import MLP

    data = build_synthetic_images(SyntheticImagesConfig(num_samples=300, num_valid=50, num_test=50), seed=0)
    model = MLP(data.info.num_features, 10, [8], 0.0, "relu")
    cfg = dataclasses.replace(FedSimConfig(), rounds=3, num_clients=10, participation=0.5, attack="lie",
                              malicious_fraction=0.3, lie_z_rule=rule, plot=False, checkpoint_every=0)
    run = fake_run()
    FedSimTrainer(cfg).fit(model, data, run)
    rounds = [m for _step, split, m in run.logs if split == "train" and "malicious_sampled" in m]
    attacked = [m for m in rounds if m["malicious_sampled"] > 0]
    assert attacked and all("lie_z" not in m for m in rounds if m["malicious_sampled"] == 0)
    for m in attacked:
        expected = lie_paper_z(5, int(m["malicious_sampled"])) if rule == "paper" else 1.0
        assert m["lie_z"] == pytest.approx(expected)
