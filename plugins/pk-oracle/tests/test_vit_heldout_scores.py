"""The small ViT target, the held-out oracle ablation and the per-image scores for paired tests."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from pk_oracle.evaluators.assets import load_or_build_assets
from pk_oracle.evaluators.fmr import FMREvaluator
from pk_oracle.evaluators.pgd import PGDEvaluator
from pk_oracle.models.vit import SmallViT, build_vit
from pk_oracle.plugin import PGDConfig, ViTConfig

from pk.core.contracts import DatasetInfo
from pk.core.errors import ConfigError


def test_vit_patches_are_the_image_tiles_in_row_major_order() -> None:
    """Each patch row equals the matching ``p x p`` tile of the image. Catches a wrong
    reshape/permute (patches that mix pixels of different tiles still have the right shape)."""
    vit = SmallViT((2, 6, 9), 3, patch=3, dim=8, depth=1, heads=2, mlp_ratio=2.0, dropout=0.0)
    x = torch.arange(2 * 2 * 6 * 9, dtype=torch.float32).reshape(2, 2, 6, 9)
    got = vit.patches(x)
    assert got.shape == (2, 6, 2 * 9)
    for b in range(2):
        k = 0
        for i in range(2):
            for j in range(3):
                assert torch.equal(got[b, k], x[b, :, 3 * i : 3 * i + 3, 3 * j : 3 * j + 3].reshape(-1))
                k += 1


def test_vit_learns_and_accepts_flat_inputs(bundle) -> None:
    """Logits [B, C] from image or flat inputs alike; 40 Adam steps fit the toy templates."""
    torch.manual_seed(0)
    info = DatasetInfo(task="classification", num_features=64, num_classes=3, extra={"image_shape": [1, 8, 8]})
    vit = build_vit(dataclasses.replace(ViTConfig(), patch=4, dim=16, depth=1, heads=2), info)
    x, y = bundle.tensors["train"]["x"], bundle.tensors["train"]["y"]
    assert torch.equal(vit.predict({"x": x}), vit.predict({"x": x.reshape(len(x), -1)}))
    opt = torch.optim.Adam(vit.parameters(), lr=3e-3)
    first = float(vit.loss({"x": x, "y": y}).detach())
    for _ in range(40):
        opt.zero_grad()
        vit.loss({"x": x, "y": y}).backward()
        opt.step()
    assert float(vit.loss({"x": x, "y": y}).detach()) < 0.5 * first
    with pytest.raises(ConfigError, match="patch"):
        build_vit(dataclasses.replace(ViTConfig(), patch=9), info)


def test_heldout_oracles_fit_on_unscored_test_images_only(kit, bundle, tmp_path, monkeypatch) -> None:
    """``oracle_data = "heldout"`` fits the zoo on the test images after ``max_test`` (none of
    them trained on or scored) and caches it under its own key; too small a pool is refused.
    Catches a zoo silently fitted on the train split (the targets' data) in the ablation."""
    monkeypatch.setenv("PK_CACHE_DIR", str(tmp_path / "cache"))
    x_train, y_train = bundle.tensors["train"]["x"], bundle.tensors["train"]["y"]
    n_test = len(bundle.tensors["test"]["y"])
    run = kit.FakeRun(tmp_path / "r")
    held = kit.fmr_config(oracles=["knn", "logreg"], oracle_data="heldout", max_test=30, cache=True)
    zoo = load_or_build_assets(held, bundle, run, x_train, y_train, with_generator=False).oracles
    fitted_on = zoo[0].estimator._fit_X
    pool = bundle.tensors["test"]["x"][30:].reshape(n_test - 30, -1).double().numpy()
    assert fitted_on.shape == pool.shape and np.array_equal(fitted_on, pool)
    train = load_or_build_assets(dataclasses.replace(held, oracle_data="train"), bundle, run, x_train, y_train,
                                 with_generator=False).oracles
    assert train[0].estimator._fit_X.shape[0] == len(y_train)
    assert len(list((tmp_path / "cache" / "oracle").glob("*.npz"))) == 2, "held-out and train zoos share a cache key"
    with pytest.raises(ConfigError, match="max_test"):
        load_or_build_assets(dataclasses.replace(held, max_test=0), bundle, run, x_train, y_train, with_generator=False)
    with pytest.raises(ConfigError, match="pool"):
        load_or_build_assets(dataclasses.replace(held, max_test=n_test - 5), bundle, run, x_train, y_train,
                             with_generator=False)


class ScoringRun:
    """FakeRun plus ``save_example_scores`` (kept in memory)."""

    def __init__(self, base) -> None:
        self.base, self.saved = base, {}

    def __getattr__(self, name: str):
        return getattr(self.base, name)

    def save_example_scores(self, split: str, scores) -> Path | None:
        self.saved[split] = {k: torch.as_tensor(v).double() for k, v in scores.items()}
        return None


def test_per_image_scores_average_to_the_metrics(kit, bundle, mlp, tmp_path) -> None:
    """FMR and PGD evaluators save per-test-image scores whose means are the reported SA,
    oracle-valid and PGD accuracy (what pk batch's paired bootstrap needs), and
    fmr_generated.npz carries what PA and FMR are computed from."""
    run = ScoringRun(kit.FakeRun(tmp_path / "a"))
    config = kit.fmr_config(oracles=["knn", "logreg"], allow_weak_oracles=True)
    metrics = FMREvaluator(config).evaluate(mlp, bundle, run)
    saved = run.saved["eval"]
    for key in ("sa", "oracle_valid", "pgd_accuracy"):
        assert float(saved[key].mean()) == pytest.approx(metrics[key], abs=1e-12)
        assert len(saved[key]) == len(bundle.tensors["test"]["y"])
    with np.load(tmp_path / "a" / "artifacts" / "fmr_generated.npz", allow_pickle=False) as npz:
        valid, fooled = npz["valid"], npz["fooled"]
        assert float((~fooled[valid]).mean()) == pytest.approx(metrics["pa"])
        assert float(npz["clean_correct"].mean()) == pytest.approx(metrics["sa"])
    run = ScoringRun(kit.FakeRun(tmp_path / "b"))
    pgd_cfg = dataclasses.replace(PGDConfig(), eps=0.2, steps=3, step_size=0.1, cache=False, oracles=["knn"])
    m = PGDEvaluator(pgd_cfg).evaluate(mlp, bundle, run)
    assert float(run.saved["eval"]["pgd_accuracy"].mean()) == pytest.approx(m["pgd_accuracy"], abs=1e-12)
    assert float(run.saved["eval"]["clean_accuracy"].mean()) == pytest.approx(m["clean_accuracy"], abs=1e-12)
