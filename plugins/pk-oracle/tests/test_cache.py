"""The oracle/generator cache holds arrays and JSON only (npz), and nothing on disk is unpickled."""

from __future__ import annotations

import dataclasses
import io
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from pk_oracle.evaluators import assets as ev
from pk_oracle.evaluators.assets import load_or_build_assets
from pk_oracle.evaluators.fmr import FMREvaluator

ZOO = ["svc", "knn", "logreg", "mlp-oracle", "model:mlp"]


class _Planted:
    """Unpickling this makes a folder: a stand-in for arbitrary code in a cache file."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (os.mkdir, (str(self.target),))


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PK_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "oracle"


@pytest.fixture
def no_unpickling(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every unpickling entry point records its use and fails."""
    calls: list[str] = []

    def refuse(name: str):
        def fn(*args: object, **kwargs: object) -> None:
            calls.append(name)
            raise AssertionError(f"{name} called")

        return fn

    monkeypatch.setattr(pickle, "load", refuse("pickle.load"))
    monkeypatch.setattr(pickle, "loads", refuse("pickle.loads"))
    monkeypatch.setattr(pickle, "Unpickler", refuse("pickle.Unpickler"))
    monkeypatch.setattr(torch, "load", refuse("torch.load"))
    return calls


@pytest.mark.parametrize("generator", ["pca", "autoencoder"])
def test_cache_is_npz_and_restores_exactly_without_unpickling(kit, bundle, mlp, tmp_path, cache, no_unpickling,
                                                              monkeypatch, generator):
    """Run 1 fits and writes ``<key>.npz``; run 2 restores logreg, mlp-oracle, model:mlp and the
    generator from it (only svc and kNN are refitted) and gives identical metrics. Catches the
    old pickle cache (pickle.load is called, a ``.pkl`` is written) and an incomplete restore
    (a fitted attribute or buffer missing changes predictions, hence the metrics)."""
    cfg = kit.fmr_config(oracles=ZOO, cache=True, generator=generator, latent_dim=6, ae_epochs=2, model_oracle_epochs=2,
                         allow_weak_oracles=True, pgd_eps=0.0)
    first = FMREvaluator(cfg).evaluate(mlp, bundle, kit.FakeRun(tmp_path / "a"))
    files = sorted(p.name for p in cache.iterdir())
    assert len(files) == 1 and files[0].endswith(".npz"), files
    with np.load(cache / files[0], allow_pickle=False) as npz:
        assert all(npz[k].dtype != object for k in npz.files)
        slots = {k.split("|")[0] for k in npz.files if k != "__meta__"}
    assert slots == {"oracle:logreg", "oracle:mlp-oracle", "oracle:model:mlp", "generator"}

    fitted: list[str] = []
    real_build, real_gen = ev.build_oracles, ev.build_generator
    monkeypatch.setattr(ev, "build_oracles", lambda names, *a, **k: fitted.extend(names) or real_build(names, *a, **k))
    monkeypatch.setattr(ev, "build_generator", lambda *a, **k: fitted.append("generator") or real_gen(*a, **k))
    second = FMREvaluator(cfg).evaluate(mlp, bundle, kit.FakeRun(tmp_path / "b"))
    assert fitted == ["svc", "knn"]
    assert second == first
    assert no_unpickling == []
    with np.load(tmp_path / "b" / "artifacts" / "fmr_generated.npz", allow_pickle=False) as npz:
        assert {"x_star", "y", "valid", "fooled", "clean_correct"} <= set(npz.files)


def test_a_planted_pickle_is_never_executed(kit, bundle, mlp, tmp_path, cache):
    """A cache file carrying a pickled object is rejected by ``np.load(allow_pickle=False)`` and
    rebuilt; the object's code never runs. Catches ``allow_pickle=True`` or any pickle reader."""
    cfg = kit.fmr_config(oracles=["logreg"], cache=True, allow_weak_oracles=True, pgd_eps=0.0)
    run = kit.FakeRun(tmp_path / "a")
    x, y = bundle.tensors["train"]["x"], bundle.tensors["train"]["y"]
    load_or_build_assets(cfg, bundle, run, x, y, with_generator=True)
    (path,) = cache.iterdir()
    flag = tmp_path / "pwned"
    buf = io.BytesIO()
    np.savez(buf, __meta__=np.array([_Planted(flag)], dtype=object))
    path.write_bytes(buf.getvalue())
    assets = load_or_build_assets(cfg, bundle, run, x, y, with_generator=True)
    assert not flag.exists(), "the planted pickle was executed"
    assert [o.name for o in assets.oracles] == ["logreg"]
    with np.load(path, allow_pickle=False) as npz:  # rebuilt as a clean npz
        assert "oracle:logreg|coef_" in npz.files


def test_restored_members_predict_bit_identically(kit, bundle, tmp_path, cache):
    """For each cacheable member, predict_proba (oracles) and decode (generators) of the
    restored object equal the fitted one's exactly."""
    cfg = kit.fmr_config(oracles=["logreg", "mlp-oracle", "model:mlp"], cache=True, generator="autoencoder",
                         latent_dim=4, ae_epochs=2, model_oracle_epochs=2)
    run = kit.FakeRun(tmp_path / "a")
    x, y = bundle.tensors["train"]["x"], bundle.tensors["train"]["y"]
    fitted = load_or_build_assets(cfg, bundle, run, x, y, with_generator=True)
    restored = load_or_build_assets(cfg, bundle, run, x, y, with_generator=True)
    probe = bundle.tensors["test"]["x"].reshape(-1, 64)
    for a, b in zip(fitted.oracles, restored.oracles):
        assert a is not b and torch.equal(a.predict_proba(probe), b.predict_proba(probe)), a.name
    z = fitted.generator.encode(probe)
    assert torch.equal(fitted.generator.decode(z), restored.generator.decode(z))
    pca = dataclasses.replace(cfg, generator="pca")
    p1 = load_or_build_assets(pca, bundle, run, x, y, with_generator=True).generator
    p2 = load_or_build_assets(pca, bundle, run, x, y, with_generator=True).generator
    assert p1 is not p2 and torch.equal(p1.decode(p1.encode(probe)), p2.decode(p2.encode(probe)))
