"""Aggregators never see ground truth: which clients are malicious stays in the simulator."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from pk_fl.plugin import FedSimConfig, SyntheticImagesConfig
from pk_fl.trainers.rounds import META_KEYS, client_meta
from pk_fl.trainers.simulator import FedSimTrainer

from pk.core.builtins.components import FedAvg

FORBIDDEN = ("malicious", "is_malicious", "attack", "byzantine", "poisoned", "label_attack")


class SpyAggregator(FedAvg):
    """FedAvg that records every meta dict and the context it was built with."""

    def __init__(self, context: Any = None) -> None:
        super().__init__(None)
        self.context = context
        self.metas: list[dict[str, Any]] = []

    def aggregate(self, global_state, updates, state=None):  # type: ignore[no-untyped-def]
        self.metas += [dict(m) for _s, _w, m in updates]
        return super().aggregate(global_state, updates, state)


def assert_no_ground_truth(meta: dict[str, Any]) -> None:
    """The contract check: an aggregator's meta holds exactly META_KEYS, none of them ground truth."""
    assert set(meta) == set(META_KEYS), f"aggregator meta has keys {sorted(meta)}; allowed: {list(META_KEYS)}"
    assert not any(k in meta for k in FORBIDDEN)


@pytest.mark.parametrize("attack", ["sign-flip", "label-flip", "lie"])
def test_fedsim_hands_aggregators_no_malicious_flag(fake_run, attack):
    """Catches the old simulator, whose meta carried ``"malicious": cid in bad`` to every
    aggregator (checked by restoring that key in ``client_meta``: this test then fails)."""
    from pk_fl.data.images import build_synthetic_images

    data = build_synthetic_images(SyntheticImagesConfig(num_samples=300, num_valid=50, num_test=50), seed=0)
    from pk.core.builtins.components import MLP

    model = MLP(data.info.num_features, 10, [8], 0.0, "relu")
    cfg = dataclasses.replace(
        FedSimConfig(), rounds=2, num_clients=5, attack=attack, malicious_fraction=0.4, plot=False, checkpoint_every=0
    )
    spy: dict[str, SpyAggregator] = {}

    def build(**kwargs: Any) -> SpyAggregator:
        spy["agg"] = SpyAggregator(kwargs.get("context"))
        return spy["agg"]

    run = fake_run(build_aggregator=build)
    out = FedSimTrainer(cfg).fit(model, data, run)
    assert out["num_malicious"] == 2.0 and len(spy["agg"].metas) == 10
    for meta in spy["agg"].metas:
        assert_no_ground_truth(meta)
    # the ground truth is still in the simulator's own log
    assert any("malicious_weight" in m for _step, split, m in run.logs if split == "train")
    context = spy["agg"].context
    assert not any(hasattr(context, k) for k in FORBIDDEN)


def test_the_contract_check_fails_when_the_flag_leaks():
    """The check itself can fail: a meta with the old ``malicious`` key is rejected."""
    with pytest.raises(AssertionError):
        assert_no_ground_truth({**client_meta(3, 10), "malicious": True})
    assert_no_ground_truth(client_meta(3, 10))
