"""Shared fixtures: a tiny seeded image bundle in [0, 1], a trained MLP and a minimal run handle."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from pk_oracle.plugin import FMRConfig

from pk.core.base import TensorBundle
from pk.core.builtins.components import MLP
from pk.core.contracts import DatasetInfo
from pk.core.testing import MemoryRun


def make_bundle(seed: int = 0, n: int = 300, classes: int = 3, noise: float = 0.15) -> TensorBundle:
    """Class templates (8x8) + Gaussian noise, clamped to [0, 1]; 60/10/30 split."""
    g = torch.Generator().manual_seed(seed)
    templates = (torch.rand(classes, 1, 8, 8, generator=g) > 0.5).float()
    y = torch.arange(n) % classes
    x = (templates[y] + noise * torch.randn(n, 1, 8, 8, generator=g)).clamp(0, 1)
    order = torch.randperm(n, generator=g)
    a, b = int(0.6 * n), int(0.7 * n)
    parts = {"train": order[:a], "valid": order[a:b], "test": order[b:]}
    info = DatasetInfo(task="classification", num_features=64, num_classes=classes, extra={"image_shape": [1, 8, 8]})
    return TensorBundle(info=info, tensors={k: {"x": x[i], "y": y[i]} for k, i in parts.items()}, params={"seed": seed})


def train_mlp(data: TensorBundle, seed: int = 0, epochs: int = 30, noise: float = 0.0) -> MLP:
    torch.manual_seed(seed)
    model = MLP(64, data.info.num_classes, [16], 0.0, "relu")
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, y = data.tensors["train"]["x"], data.tensors["train"]["y"]
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        opt.zero_grad()
        xi = x + noise * torch.randn(x.shape, generator=g) if noise else x
        model.loss({"x": xi, "y": y}).backward()
        opt.step()
    return model.eval()


def fmr_config(**changes) -> FMRConfig:
    base = dict(budget=10, latent_dim=8, grid_images=0, cache=False, pgd_steps=5)
    base.update(changes)
    return dataclasses.replace(FMRConfig(), **base)


@pytest.fixture(scope="session")
def bundle() -> TensorBundle:
    return make_bundle()


@pytest.fixture(scope="session")
def mlp(bundle: TensorBundle) -> MLP:
    return train_mlp(bundle)


@pytest.fixture(scope="session")
def kit():
    """Helper functions for tests (conftest modules are not importable under importlib mode)."""
    import types

    return types.SimpleNamespace(make_bundle=make_bundle, train_mlp=train_mlp, FakeRun=MemoryRun, fmr_config=fmr_config)
