"""Properties of the oracle zoo, generators, latent search, PGD and the FMR evaluator."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pk_oracle.evaluators.common import make_logits_fn
from pk_oracle.evaluators.fmr import FMREvaluator
from pk_oracle.evaluators.pgd import PGDEvaluator
from pk_oracle.evaluators.search import fmr_metrics, latent_search, pgd_linf, predict_labels
from pk_oracle.models.generators import CustomGenerator, PCAGenerator, PixelGenerator
from pk_oracle.models.oracles import (
    OracleZoo,
    SklearnOracle,
    TorchOracle,
    accept_from_probabilities,
    calibrate_tau,
    load_clip_oracle,
    make_sklearn_estimator,
)

from pk.core.errors import ConfigError


@pytest.fixture(scope="module")
def zoo(bundle):
    x = bundle.tensors["train"]["x"].reshape(-1, 64)
    y = bundle.tensors["train"]["y"]
    oracles = []
    for fam in ("svc", "knn", "logreg"):
        est = make_sklearn_estimator(fam, 0).fit(x.double().numpy(), y.numpy())
        oracles.append(SklearnOracle(fam, est, 3))
    return OracleZoo(oracles, rule="all", tau=0.5)


def _test_xy(bundle):
    return bundle.tensors["test"]["x"].reshape(-1, 64), bundle.tensors["test"]["y"]


# -- acceptance rule -------------------------------------------------------------------------
@given(st.integers(1, 4), st.integers(1, 6), st.integers(2, 5), st.floats(0.0, 1.0), st.integers(0, 10_000))
def test_rule_all_accepts_only_when_every_oracle_agrees(h, n, k, tau, seed):
    g = torch.Generator().manual_seed(seed)
    proba = torch.softmax(torch.randn(h, n, k, generator=g) * 3, dim=-1)
    y = torch.randint(0, k, (n,), generator=g)
    accepted = accept_from_probabilities(proba, y, "all", tau)
    for i in range(n):
        every = all(int(proba[j, i].argmax()) == int(y[i]) for j in range(h))
        mean_p = float(proba[:, i, y[i]].mean())
        assert bool(accepted[i]) == (every and mean_p >= tau)
    majority = accept_from_probabilities(proba, y, "majority", 0.0)
    assert bool((accepted & ~majority).sum() == 0)  # "all" is stricter than "majority"


def test_calibrate_tau_returns_smallest_threshold_meeting_precision():
    p = torch.tensor([0.95, 0.9, 0.8, 0.7, 0.6, 0.5])
    correct = torch.tensor([True, True, True, False, True, False])
    # thresholds: 0.8 -> 3/3 correct; 0.7 -> 3/4; so the smallest tau with precision 1.0 is 0.8
    assert calibrate_tau(p, correct, precision=1.0) == pytest.approx(0.8)
    assert calibrate_tau(p, correct, precision=0.7) == pytest.approx(0.6)  # 0.6 -> 4/5 = 0.8 >= 0.7; 0.5 -> 4/6
    assert math.isinf(calibrate_tau(p, torch.zeros(6, dtype=torch.bool), precision=0.5))


# -- search invariants -----------------------------------------------------------------------
def test_zero_budget_pixel_space_gives_pa_equal_clean_accuracy(bundle, mlp, zoo):
    x, y = _test_xy(bundle)
    f = make_logits_fn(mlp, [1, 8, 8])
    res = latent_search(f, PixelGenerator(0.0, 1.0), zoo, x, y, step_size=0.25, budget=0)
    assert torch.equal(res.x_star, x)
    m = fmr_metrics(y, predict_labels(f, x), x, res, 3)
    assert m["pa"] == pytest.approx(m["sa_valid"])
    assert m["mean_steps"] == 0.0 and m["mean_l2"] == 0.0


def test_zero_budget_pca_gives_accuracy_on_valid_reconstructions(bundle, mlp, zoo):
    x, y = _test_xy(bundle)
    gen = PCAGenerator(8, 0.0, 1.0).fit(bundle.tensors["train"]["x"].reshape(-1, 64))
    f = make_logits_fn(mlp, [1, 8, 8])
    res = latent_search(f, gen, zoo, x, y, step_size=0.25, budget=0)
    recon = gen.decode(gen.encode(x))
    want = (predict_labels(f, recon)[res.valid] == y[res.valid]).float().mean()
    m = fmr_metrics(y, predict_labels(f, x), x, res, 3)
    assert m["pa"] == pytest.approx(float(want))


@settings(max_examples=6)
@given(st.integers(0, 12), st.floats(0.05, 1.0))
def test_accepted_images_keep_the_label_for_every_oracle(bundle, mlp, zoo, budget, step):
    x, y = _test_xy(bundle)
    gen = PCAGenerator(8, 0.0, 1.0).fit(bundle.tensors["train"]["x"].reshape(-1, 64))
    res = latent_search(make_logits_fn(mlp, [1, 8, 8]), gen, zoo, x, y, step_size=step, budget=budget)
    votes = zoo.probabilities(res.x_star[res.valid]).argmax(-1)
    assert bool((votes == y[res.valid]).all())
    assert int(res.steps.max()) <= budget


def test_pa_is_non_increasing_in_budget(bundle, mlp, zoo):
    x, y = _test_xy(bundle)
    gen = PCAGenerator(8, 0.0, 1.0).fit(bundle.tensors["train"]["x"].reshape(-1, 64))
    f = make_logits_fn(mlp, [1, 8, 8])
    clean = predict_labels(f, x)
    pas = [fmr_metrics(y, clean, x, latent_search(f, gen, zoo, x, y, step_size=0.5, budget=b), 3)["pa"]
           for b in (0, 1, 3, 8, 20)]
    assert all(a >= b for a, b in zip(pas, pas[1:])), pas
    assert pas[-1] < pas[0], "the search never fooled the target: the test would not catch a broken search"


def test_oracle_is_never_differentiated(bundle, mlp):
    x, y = _test_xy(bundle)
    oracle_net = type(mlp)(64, 3, [16], 0.0, "relu")
    oracle_net.load_state_dict(mlp.state_dict())
    mlp.zero_grad(set_to_none=True)
    zoo = OracleZoo([TorchOracle("torch", oracle_net, 3, [1, 8, 8])], tau=0.0)
    latent_search(make_logits_fn(mlp, [1, 8, 8]), PixelGenerator(0.0, 1.0), zoo, x, y, step_size=0.3, budget=5)
    assert all(p.grad is None for p in oracle_net.parameters())
    assert all(p.grad is None for p in mlp.parameters())


@settings(max_examples=8)
@given(st.floats(0.01, 0.3), st.integers(1, 6))
def test_pgd_stays_in_the_eps_ball_and_the_data_range(bundle, mlp, eps, steps):
    x, y = _test_xy(bundle)
    adv = pgd_linf(make_logits_fn(mlp, [1, 8, 8]), x, y, eps=eps, steps=steps, step_size=eps / 2, lo=0.0, hi=1.0)
    assert float((adv - x).abs().max()) <= eps + 1e-6
    assert float(adv.min()) >= 0.0 and float(adv.max()) <= 1.0


def test_pca_generator_round_trips_latents_without_clamping():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(50, 10, generator=g)
    gen = PCAGenerator(10, None, None).fit(x)
    assert torch.allclose(gen.decode(gen.encode(x)), x, atol=1e-4)


# -- the evaluator ---------------------------------------------------------------------------
def test_evaluator_metrics_in_declared_ranges_and_deterministic(bundle, mlp, kit, tmp_path):
    cfg = kit.fmr_config(generator="autoencoder", ae_epochs=3, budget=8)
    first = FMREvaluator(cfg)
    m1 = first.evaluate(mlp, bundle, kit.FakeRun(tmp_path / "a", seed=3))
    m2 = FMREvaluator(cfg).evaluate(mlp, bundle, kit.FakeRun(tmp_path / "b", seed=3))
    assert m1 == m2
    for key, value in m1.items():
        low, high, _ = first.metrics[key]
        assert low <= value <= high, (key, value)
    assert m1["fmr"] == pytest.approx(m1["pa"] / m1["sa"])
    assert {"class0.pa", "class2.fmr", "pgd_accuracy", "pgd_oracle_rejected", "oracle_valid"} <= set(m1)


def test_zoo_that_disagrees_with_clean_labels_is_refused_or_reported(bundle, mlp, kit, tmp_path):
    from pk.core.base import TensorBundle

    shifted = {k: {"x": v["x"], "y": (v["y"] + 1) % 3 if k == "test" else v["y"]} for k, v in bundle.tensors.items()}
    bad = TensorBundle(info=bundle.info, tensors=shifted, params={"shifted": True})
    with pytest.raises(ConfigError, match="disagrees with the clean test labels"):
        FMREvaluator(kit.fmr_config()).evaluate(mlp, bad, kit.FakeRun(tmp_path / "a"))
    run = kit.FakeRun(tmp_path / "b")
    m = FMREvaluator(kit.fmr_config(allow_weak_oracles=True)).evaluate(mlp, bad, run)
    assert m["weak_oracles"] == 3.0
    assert any("disagrees" in msg for msg in run.messages)


def test_unknown_oracle_and_missing_generator_weights_are_clear_errors(bundle, mlp, kit, tmp_path):
    with pytest.raises(ConfigError, match="unknown oracle 'resnet'"):
        FMREvaluator(kit.fmr_config(oracles=["resnet"])).evaluate(mlp, bundle, kit.FakeRun(tmp_path))
    with pytest.raises(ConfigError, match="generator_factory"):
        CustomGenerator("", "", [1, 8, 8], 0.0, 1.0)


def test_clip_without_weights_is_skipped_with_a_message(bundle, mlp, kit, tmp_path, monkeypatch):
    monkeypatch.delenv("PK_CLIP_PATH", raising=False)
    assert load_clip_oracle("", 3, [1, 8, 8]) is None
    run = kit.FakeRun(tmp_path)
    FMREvaluator(kit.fmr_config(oracles=["svc", "clip"], budget=1)).evaluate(mlp, bundle, run)
    assert any("clip' skipped" in m for m in run.messages)


def test_custom_generator_plugs_in(bundle, mlp, zoo, tmp_path, monkeypatch):
    (tmp_path / "my_vqgan.py").write_text(
        "class Halves:\n"
        "    def __init__(self, path, shape):\n        self.shape = shape\n"
        "    def encode(self, x):\n        return x * 2.0\n"
        "    def decode(self, z):\n        return z / 2.0\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    gen = CustomGenerator("my_vqgan:Halves", "", [1, 8, 8], 0.0, 1.0)
    x, y = _test_xy(bundle)
    res = latent_search(make_logits_fn(mlp, [1, 8, 8]), gen, zoo, x, y, step_size=0.5, budget=3)
    assert torch.allclose(res.reconstruction, x)
    assert int(res.steps.sum()) > 0


def test_clip_zero_shot_code_path_with_a_tiny_random_model():
    transformers = pytest.importorskip("transformers")
    from pk_oracle.models.oracles import CLIPZeroShotOracle

    cfg = transformers.CLIPConfig(
        text_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                     "vocab_size": 50, "max_position_embeddings": 8},
        vision_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "image_size": 16, "patch_size": 8},
        projection_dim=8,
    )
    torch.manual_seed(0)
    oracle = CLIPZeroShotOracle(transformers.CLIPModel(cfg), None, ["0", "1", "2"], [1, 8, 8])
    p = oracle.predict_proba(torch.rand(5, 64))
    assert p.shape == (5, 3)
    assert torch.allclose(p.sum(-1), torch.ones(5), atol=1e-5)


def test_pgd_evaluator_reports_oracle_rejections(bundle, mlp, kit, tmp_path):
    import dataclasses

    from pk_oracle.plugin import PGDConfig

    ev = PGDEvaluator(dataclasses.replace(PGDConfig(), eps=0.3, steps=5, step_size=0.1, cache=False))
    m = ev.evaluate(mlp, bundle, kit.FakeRun(tmp_path))
    assert m["pgd_accuracy"] <= m["clean_accuracy"]
    assert m["pgd_oracle_agree"] + m["pgd_oracle_rejected"] == pytest.approx(1.0)
    for key, value in m.items():
        low, high, _ = ev.metrics[key]
        assert low <= value <= high
