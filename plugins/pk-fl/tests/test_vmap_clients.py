"""``client_batching = "vmap"`` gives the loop's client states (1e-5, float32) for the same seeds."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pk_fl.plugin import FedSimConfig, SyntheticImagesConfig
from pk_fl.trainers import vectorised
from pk_fl.trainers.rounds import Federation, clone_state
from pk_fl.trainers.simulator import FedSimTrainer
from pk_fl.trainers.vectorised import VmapClients
from torch import nn

from pk.core.builtins.components import MLP
from pk.core.errors import ConfigError

TOL = 1e-5


def synthetic(n: int = 240) -> Any:
    from pk_fl.data.images import build_synthetic_images

    return build_synthetic_images(SyntheticImagesConfig(num_samples=n, num_valid=40, num_test=40), seed=0)


DATA = synthetic()


def federation(sizes: list[int], malicious: frozenset[int]) -> Federation:
    """Shards of the given (ragged, possibly empty) sizes cut from the synthetic train split."""
    train = DATA.tensors["train"]
    shards, start = [], 0
    for n in sizes:
        idx = torch.arange(start, start + n) % len(train["y"])
        shards.append({k: v[idx] for k, v in train.items()})
        start += n
    return Federation(shards, list(sizes), malicious, 10, None)


def mlp(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return MLP(DATA.info.num_features, 10, [12], 0.0, "relu")


def both_paths(cfg: Any, fed: Federation, seed: int, rounds: int = 2,
               make_model: Any = None) -> tuple[list[Any], list[Any]]:
    """Client states, losses and optimiser states of every round, loop then vmap."""
    model = (make_model or mlp)(seed)
    sampled = list(range(len(fed.sizes)))
    trainer = FedSimTrainer(cfg)
    out = []
    for mode in ("loop", "vmap"):
        global_state = clone_state(model.state_dict())
        worker = copy.deepcopy(model)
        vec = VmapClients(cfg, worker, fed, "cpu") if mode == "vmap" else None
        client_opt: dict[str, Any] = {}
        rounds_out = []
        for rnd in range(1, rounds + 1):
            if vec is None:
                states, losses = trainer.train_loop(fed, worker, global_state, sampled, rnd=rnd, seed=seed,
                                                    device="cpu", client_opt=client_opt)
            else:
                states, losses = vec.train(global_state, sampled, rnd=rnd, seed=seed, client_opt=client_opt)
            rounds_out.append((states, losses, copy.deepcopy(client_opt)))
            # next round starts from the plain mean of the clients (enough to chain rounds)
            global_state = {k: torch.stack([s[k] for s in states]).mean(0) for k in global_state}
        out.append(rounds_out)
    return out[0], out[1]


def max_state_diff(a: list[dict[str, torch.Tensor]], b: list[dict[str, torch.Tensor]]) -> float:
    assert len(a) == len(b)
    diff = 0.0
    for sa, sb in zip(a, b):
        assert list(sa) == list(sb)
        diff = max(diff, *(float((sa[k] - sb[k]).abs().max()) for k in sa))
    return diff


def assert_same(loop: list[Any], vmap: list[Any]) -> None:
    for (s1, l1, o1), (s2, l2, o2) in zip(loop, vmap):
        assert max_state_diff(s1, s2) <= TOL
        assert len(l1) == len(l2) and all(abs(x - y) <= TOL for x, y in zip(l1, l2))
        assert set(o1) == set(o2)
        for cid in o1:
            assert o1[cid]["param_groups"] == o2[cid]["param_groups"]
            assert set(o1[cid]["state"]) == set(o2[cid]["state"])
            for i, st1 in o1[cid]["state"].items():
                assert float((st1["momentum_buffer"] - o2[cid]["state"][i]["momentum_buffer"]).abs().max()) <= TOL


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    sizes=st.lists(st.integers(0, 40), min_size=1, max_size=6).filter(lambda s: sum(s) > 0),
    batch_size=st.integers(1, 16),
    local_epochs=st.integers(1, 2),
    momentum=st.sampled_from([0.0, 0.9]),
    weight_decay=st.sampled_from([0.0, 0.01]),
    proximal_mu=st.sampled_from([0.0, 0.1]),
    persistent=st.booleans(),
    label_attack=st.sampled_from(["none", "label-flip", "all-to-one"]),
)
def test_vmap_gives_the_loops_client_states(seed, sizes, batch_size, local_epochs, momentum, weight_decay,
                                            proximal_mu, persistent, label_attack):
    """Ragged last batches, clients with fewer batches and empty clients included; momentum,
    weight decay, FedProx, persistent per-client optimisers and label poisoning as configured."""
    cfg = dataclasses.replace(
        FedSimConfig(), num_clients=len(sizes), batch_size=batch_size, local_epochs=local_epochs, momentum=momentum,
        weight_decay=weight_decay, proximal_mu=proximal_mu, persistent_client_optimizer=persistent,
        attack=label_attack, malicious_fraction=0.4 if label_attack != "none" else 0.0, lr=0.1,
    )
    malicious = frozenset(range(0, len(sizes), 2)) if label_attack != "none" else frozenset()
    loop, vmap = both_paths(cfg, federation(sizes, malicious), seed)
    assert_same(loop, vmap)


def test_the_equality_check_catches_vmap_without_the_ragged_batch_mask(monkeypatch):
    """The same comparison fails when the mask is dropped (padding counted as data, exhausted
    clients updated): the test above would catch it."""
    cfg = dataclasses.replace(FedSimConfig(), num_clients=4, batch_size=4, momentum=0.9, lr=0.1)
    fed = federation([10, 3, 0, 7], frozenset())
    loop, vmap = both_paths(cfg, fed, seed=1, rounds=1)
    assert_same(loop, vmap)
    plan = vectorised.batch_plan
    monkeypatch.setattr(vectorised, "batch_plan",
                        lambda orders, b: [(idx, torch.ones_like(mask)) for idx, mask in plan(orders, b)])
    loop, broken = both_paths(cfg, fed, seed=1, rounds=1)
    assert max_state_diff(loop[0][0], broken[0][0]) > 1e-3


@pytest.mark.parametrize("attack", ["sign-flip", "label-flip", "lie"])
def test_vmap_fit_matches_the_loop_fit_with_attacks_and_fedprox(fake_run, attack):
    """Whole fedsim runs: sampling, model attacks after training, FedProx, momentum, persistent
    optimisers, aggregation and evaluation see the same client states."""
    data = synthetic(360)
    results = {}
    for mode in ("loop", "vmap"):
        cfg = dataclasses.replace(
            FedSimConfig(), rounds=3, num_clients=6, participation=0.67, batch_size=9, momentum=0.9,
            weight_decay=1e-3, proximal_mu=0.05, persistent_client_optimizer=True, attack=attack,
            malicious_fraction=0.34, partition="dirichlet", alpha=0.3, plot=False, checkpoint_every=0,
            client_batching=mode,
        )
        model = mlp(0)
        run = fake_run(seed=5)
        out = FedSimTrainer(cfg).fit(model, data, run)
        results[mode] = (out, clone_state(model.state_dict()), run.logs)
    (out_l, state_l, logs_l), (out_v, state_v, logs_v) = results["loop"], results["vmap"]
    assert max_state_diff([state_l], [state_v]) <= TOL
    assert out_l.keys() == out_v.keys()
    assert all(out_l[k] == pytest.approx(out_v[k], abs=1e-4) for k in out_l)
    for (r1, s1, m1), (r2, s2, m2) in zip(logs_l, logs_v):
        assert (r1, s1) == (r2, s2) and m1.keys() == m2.keys()
        assert all(m1[k] == pytest.approx(m2[k], abs=1e-4) for k in m1)


def test_vmap_refusals_are_config_errors(fake_run):
    with pytest.raises(ConfigError, match="loop"):
        FedSimTrainer(dataclasses.replace(FedSimConfig(), optimizer="adam", client_batching="vmap"))
    cfg = dataclasses.replace(FedSimConfig(), rounds=1, num_clients=2, plot=False, checkpoint_every=0,
                              client_batching="vmap")
    bn = nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.BatchNorm1d(8), nn.Linear(8, 10))
    dropout = MLP(DATA.info.num_features, 10, [8], 0.2, "relu")
    for model, match in ((bn, "running statistics"), (dropout, "dropout")):
        with pytest.raises(ConfigError, match=match) as err:
            FedSimTrainer(cfg).fit(model, DATA, fake_run())
        assert "\n" not in str(err.value)
    from pk_fl.plugin import FlowerConfig
    from pk_fl.trainers.flower import FlowerTrainer

    with pytest.raises(ConfigError, match="loop"):
        FlowerTrainer(FlowerConfig(client_batching="vmap"))


def test_frozen_parameters_are_constants_as_in_the_loop():
    """A parameter with requires_grad False is skipped by the loop's SGD (no gradient): vmap
    keeps it fixed too, and the optimiser state indices stay those of ``parameters()``."""
    cfg = dataclasses.replace(FedSimConfig(), num_clients=3, batch_size=5, momentum=0.9, weight_decay=0.01,
                              persistent_client_optimizer=True)
    fed = federation([12, 7, 9], frozenset())

    def frozen_first_layer(seed: int) -> nn.Module:
        model = mlp(seed)
        next(model.parameters()).requires_grad_(False)
        return model

    loop, vmap = both_paths(cfg, fed, seed=2, make_model=frozen_first_layer)
    assert_same(loop, vmap)
    first = next(iter(loop[0][0][0]))
    assert all(torch.equal(s[first], loop[0][0][0][first]) for s in vmap[0][0])
