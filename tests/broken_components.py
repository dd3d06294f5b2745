"""Deliberately broken components used by test_contract_suite_catches.py."""

from __future__ import annotations

import torch
from torch import nn

from pk.core.base import TensorBundle
from pk.core.builtins.components import FedAvg, build_synthetic_classification
from pk.core.builtins.plugin import SyntheticClassificationConfig
from pk.core.contracts import DatasetInfo


class MutatingAggregator(FedAvg):
    def aggregate(self, global_state, updates, state=None):
        out, st = super().aggregate(global_state, updates, state)
        for k in global_state:
            global_state[k].add_(1.0)
        return out, st


class FirstClientAggregator:
    kind = "weights"

    def __init__(self, config=None, context=None):
        pass

    def aggregate(self, global_state, updates, state=None):
        if not updates or sum(w for _, w, _ in updates) <= 0:
            raise ValueError("empty")
        return {k: v.clone() for k, v in updates[0][0].items()}, state


class LenientAggregator(FedAvg):
    def aggregate(self, global_state, updates, state=None):
        if not updates:
            return dict(global_state), state
        return super().aggregate(global_state, updates, state)


class MeanClaimingRobust(FedAvg):
    robust = True


class LeakyCalibrator:
    def __init__(self, config=None):
        pass

    def calibrate(self, attn, mask, *, layer=0):
        return torch.full_like(attn, 1.0 / attn.shape[-1])


class Noisy(nn.Module):
    def __init__(self, d, c):
        super().__init__()
        self.lin = nn.Linear(d, c)

    def predict(self, batch):
        return self.lin(batch["x"]) + torch.randn(batch["x"].shape[0], self.lin.out_features)

    def loss(self, batch):
        return nn.functional.cross_entropy(self.predict(batch), batch["y"])


def build_noisy(config, info):
    return Noisy(info.num_features, info.num_classes)


class OneLogit(Noisy):
    def predict(self, batch):
        return self.lin(batch["x"])[:, :1]


def build_wrong_shape(config, info):
    return OneLogit(info.num_features, info.num_classes)


def build_leaky(config, *, root=None, seed=0):
    good = build_synthetic_classification(SyntheticClassificationConfig(), seed=seed)
    tensors = dict(good.tensors)
    tensors["test"] = {k: torch.cat([v, good.tensors["train"][k][:5]]) for k, v in good.tensors["test"].items()}
    return TensorBundle(info=DatasetInfo(task="classification", num_features=good.info.num_features, num_classes=good.info.num_classes), tensors=tensors)


class OutOfRangeEvaluator:
    metrics = {"accuracy": (0.0, 1.0, True)}

    def __init__(self, config=None):
        pass

    def evaluate(self, model, data, run):
        return {"accuracy": 2.0}


def build_mlp_no_calibrator(config, info):
    """Declares accepts=("calibrator",) in the test, but its signature takes no calibrator."""
    from pk.core.builtins.components import MLP

    return MLP(info.num_features, info.num_classes, [config.width], 0.0, "relu")
