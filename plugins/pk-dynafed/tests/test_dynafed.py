"""Dynafed properties: matching loss, targets, kd_loss, trajectory bookkeeping, one-time
synthesis, fine-tuning, equivalence with unweighted FedAvg, checkpoint round trip, DSA."""

from __future__ import annotations

import copy
import io
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pk_dynafed.aggregators import DEFAULTS, Dynafed
from pk_dynafed.data.dsa import FAMILIES, augment, parse_strategy
from pk_dynafed.data.synthesis import FlatModel, kd_loss, matching_loss, matching_target, synthesize
from torch import nn
from torch.nn import functional as F

from pk.core.builtins.components import FedAvg
from pk.core.contracts import DatasetInfo, ServerContext
from pk.core.errors import ConfigError

SHAPE = (1, 6, 6)
CLASSES = 3


def build_model() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(36, 12), nn.ReLU(), nn.Linear(12, CLASSES))


def context(seed: int = 0) -> ServerContext:
    info = DatasetInfo(task="classification", num_features=36, num_classes=CLASSES, extra={"image_shape": list(SHAPE)})
    return ServerContext(build_model=build_model, generator=torch.Generator().manual_seed(seed), info=info)


def config(**overrides: Any) -> SimpleNamespace:
    small = {
        "min_trajectory_length": 5,
        "ipc": 2,
        "syn_steps": 4,
        "iterations": 6,
        "distill_iter": 3,
        "distill_lr": 1e-3,
    }
    return SimpleNamespace(**{**DEFAULTS, **small, **overrides})


def toy_data(seed: int, n: int = 90) -> tuple[torch.Tensor, torch.Tensor]:
    """Images whose class is the bright row band (top / middle / bottom) plus noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, CLASSES, (n,), generator=g)
    x = 0.2 * torch.randn(n, *SHAPE, generator=g)
    for c in range(CLASSES):
        x[y == c, :, 2 * c : 2 * c + 2, :] += 1.0
    return x, y


def client_round(
    global_state: dict[str, torch.Tensor], seed: int, m: int = 3
) -> list[tuple[dict[str, torch.Tensor], float, dict]]:
    """``m`` clients, each a few SGD steps from ``global_state`` on its own toy data."""
    out = []
    for i in range(m):
        model = build_model()
        model.load_state_dict(global_state)
        opt = torch.optim.SGD(model.parameters(), lr=0.2)
        x, y = toy_data(seed * 101 + i, 30)
        for _ in range(3):
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
        out.append(({k: v.detach().clone() for k, v in model.state_dict().items()}, float(10 + i), {"client_id": i}))
    return out


def simulate(agg: Any, rounds: int, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """Run ``rounds`` rounds of toy federated training with ``agg``; the globals after each round."""
    torch.manual_seed(seed)
    state = {k: v.detach().clone() for k, v in build_model().state_dict().items()}
    out = []
    for r in range(rounds):
        state, _ = agg.aggregate(state, client_round(state, seed * 1000 + r))
        out.append(state)
    return out


def toy_trajectory(length: int, seed: int = 0) -> list[torch.Tensor]:
    torch.manual_seed(seed)
    net = FlatModel(build_model())
    w0 = {k: v.detach().clone() for k, v in net.module.state_dict().items()}
    agg = FedAvg(None)
    states = [w0] + simulate(agg, length - 1, seed)
    return [net.flatten(s) for s in states]


@settings(max_examples=20)
@given(st.integers(0, 10_000), st.integers(1, 5))
def test_matching_loss_is_one_when_the_student_does_not_move(seed, steps):
    g = torch.Generator().manual_seed(seed)
    net = FlatModel(build_model())
    start = torch.randn(net.flatten(net.module.state_dict()).numel(), generator=g)
    target = start + torch.randn(start.shape, generator=g)
    images, labels = torch.randn(6, *SHAPE, generator=g), torch.randn(6, CLASSES, generator=g)
    loss = matching_loss(net, start, target, images, labels, torch.tensor(0.0), steps, lambda x: x)
    assert float(loss.detach()) == pytest.approx(1.0, abs=1e-6)
    moved = matching_loss(net, start, target, images, labels, torch.tensor(0.5), steps, lambda x: x)
    assert float(moved.detach()) != pytest.approx(1.0, abs=1e-6)


def test_matching_loss_decreases_over_outer_iterations():
    traj = toy_trajectory(8)
    cfg = config(iterations=60, ipc=3, syn_steps=5, lr_teacher=0.1, dsa_strategy="none")
    syn = synthesize(FlatModel(build_model()), traj, num_classes=CLASSES, input_shape=SHAPE, cfg=cfg, families=(),
                     gen=torch.Generator().manual_seed(0))
    first, last = sum(syn.losses[:10]) / 10, sum(syn.losses[-10:]) / 10
    assert last < first - 0.02, (first, last)


@settings(max_examples=30)
@given(st.integers(0, 10_000), st.integers(1, 4), st.booleans())
def test_weight_averaged_target_is_a_convex_combination_of_the_next_s_snapshots(seed, s, averaging):
    g = torch.Generator().manual_seed(seed)
    traj = [torch.full((4,), float(i)) + 0.01 * torch.randn(4, generator=g) for i in range(12)]
    start = int(torch.randint(0, 12 - s, (1,), generator=g))
    target, picks = matching_target(traj, start, s, weight_averaging=averaging, least_ave_num=2, max_ave_num=3, gen=g)
    assert all(start + 1 <= p <= start + s for p in picks)
    if averaging:
        assert min(2, s) <= len(picks) <= min(3, s)
        torch.testing.assert_close(target, torch.stack([traj[p] for p in picks]).mean(0))
    else:
        assert picks == [start + s]
        torch.testing.assert_close(target, traj[start + s])


@given(st.integers(0, 10_000), st.integers(1, 8), st.integers(2, 12))
def test_kd_loss_is_soft_label_cross_entropy_divided_by_classes(seed, batch, classes):
    g = torch.Generator().manual_seed(seed)
    logits, labels = 3 * torch.randn(batch, classes, generator=g), 3 * torch.randn(batch, classes, generator=g)
    soft_ce = -(labels.softmax(-1) * logits.log_softmax(-1)).sum(-1).mean()
    torch.testing.assert_close(kd_loss(logits, labels), soft_ce / classes)
    hard = F.one_hot(labels.argmax(-1), classes).float() * 1e4
    torch.testing.assert_close(kd_loss(logits, hard) * classes, F.cross_entropy(logits, labels.argmax(-1)))


def test_trajectory_holds_w0_and_one_snapshot_per_round_and_synthesis_fires_once(monkeypatch):
    agg = Dynafed(config(min_trajectory_length=4), context())
    calls = []
    original = agg.synthesize
    monkeypatch.setattr(agg, "synthesize", lambda: calls.append(agg.rounds_seen) or original())
    torch.manual_seed(0)
    w0 = {k: v.detach().clone() for k, v in build_model().state_dict().items()}
    state, seen = w0, [w0]
    for r in range(7):
        state, _ = agg.aggregate(state, client_round(state, r))
        seen.append(state)
        if r < 3:
            assert len(agg.trajectory) == r + 1
    assert calls == [4]  # round 4 starts from w^3, the 4th snapshot
    assert agg.synthesis_round == 4 and len(agg.trajectory) == 4
    net = FlatModel(build_model())
    for i in range(4):
        assert torch.equal(agg.trajectory[i], net.flatten(seen[i]))
    assert agg.synthetic is not None and agg.synthetic.images.shape == (CLASSES * 2, *SHAPE)


def test_distill_iter_zero_leaves_the_average_unchanged():
    agg = Dynafed(config(min_trajectory_length=4, distill_iter=0), context())
    ref = FedAvg(None)
    state = {k: v.detach().clone() for k, v in build_model().state_dict().items()}
    for r in range(6):
        ups = client_round(state, r)
        expected, _ = ref.aggregate(state, [(s, 1.0, m) for s, _w, m in ups])
        state, _ = agg.aggregate(state, ups)
        for k in state:
            assert torch.equal(state[k], expected[k])
    assert agg.synthetic is not None


def test_finetuning_changes_the_model_after_synthesis_only():
    agg = Dynafed(config(min_trajectory_length=4), context())
    state = {k: v.detach().clone() for k, v in build_model().state_dict().items()}
    for r in range(5):
        ups = client_round(state, r)
        plain, _ = FedAvg(None).aggregate(state, [(s, 1.0, m) for s, _w, m in ups])
        state, _ = agg.aggregate(state, ups)
        same = all(torch.equal(state[k], plain[k]) for k in state)
        assert same == (r < 3), f"round {r + 1}"


def test_synthesis_beyond_the_last_round_is_unweighted_fedavg_bitwise():
    dyn = simulate(Dynafed(config(min_trajectory_length=100), context()), 6)
    ref = simulate(
        SimpleNamespace(aggregate=lambda g, u, s=None: FedAvg(None).aggregate(g, [(a, 1.0, m) for a, _w, m in u])), 6
    )
    for a, b in zip(dyn, ref):
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_uniform_average_ignores_weights_but_drops_zero_weight_clients():
    agg = Dynafed(config(), context())
    state = {k: v.detach().clone() for k, v in build_model().state_dict().items()}
    ups = client_round(state, 0, m=3)
    out, _ = agg.aggregate(state, [(s, w if i < 2 else 0.0, m) for i, (s, w, m) in enumerate(ups)])
    assert agg.last_client_weights == [0.5, 0.5, 0.0]
    for k in out:
        torch.testing.assert_close(out[k], (ups[0][0][k] + ups[1][0][k]) / 2)
    with pytest.raises(ValueError, match="empty round"):
        agg.aggregate(state, [])
    weighted = Dynafed(config(average="examples"), context())
    weighted.aggregate(state, ups)
    assert weighted.last_client_weights == pytest.approx([10 / 33, 11 / 33, 12 / 33])


def test_state_dict_round_trip_resumes_identically():
    full = Dynafed(config(min_trajectory_length=4), context(3))
    expected = simulate(full, 7, seed=1)

    first = Dynafed(config(min_trajectory_length=4), context(3))
    torch.manual_seed(1)
    state = {k: v.detach().clone() for k, v in build_model().state_dict().items()}
    for r in range(5):  # past the synthesis round
        state, _ = first.aggregate(state, client_round(state, 1000 + r))
    buf = io.BytesIO()
    torch.save({"agg": first.state_dict(), "gen": first.generator.get_state()}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)
    ctx = context(99)
    ctx.generator.set_state(saved["gen"])
    resumed = Dynafed(config(min_trajectory_length=4), ctx)
    resumed.load_state_dict(saved["agg"])
    assert resumed.synthetic is not None and resumed.synthesis_round == 4
    assert torch.equal(resumed.synthetic.images, first.synthetic.images)
    for r in range(5, 7):
        state, _ = resumed.aggregate(state, client_round(state, 1000 + r))
        assert all(torch.equal(state[k], expected[r][k]) for k in state)


@settings(max_examples=20)
@given(st.integers(0, 10_000), st.sampled_from(sorted(FAMILIES)), st.sampled_from([(1, 8, 8), (3, 6, 10)]))
def test_dsa_keeps_shape_is_differentiable_and_seeded(seed, family, shape):
    x = torch.randn(5, *shape, generator=torch.Generator().manual_seed(seed)).requires_grad_(True)
    a = augment(x, (family,), torch.Generator().manual_seed(seed))
    b = augment(x, (family,), torch.Generator().manual_seed(seed))
    assert a.shape == x.shape and torch.equal(a, b)
    (a * torch.linspace(0, 1, a.numel()).view_as(a)).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    flat = torch.randn(5, 12)
    assert torch.equal(augment(flat, (family,), torch.Generator()), flat)


def test_bad_config_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown DSA"):
        parse_strategy("color_blur")
    with pytest.raises(ConfigError, match="dsa_strategy"):
        Dynafed(config(dsa_strategy="color_blur"), context())
    with pytest.raises(ConfigError, match="min_trajectory_length"):
        Dynafed(config(min_trajectory_length=3, expert_epochs=3), context())
    agg = Dynafed(config(), ServerContext())
    state = {k: v.detach().clone() for k, v in build_model().state_dict().items()}
    with pytest.raises(ConfigError, match="build_model"):
        agg.aggregate(state, [(copy.deepcopy(state), 1.0, {})])


def test_noise_init_uses_the_datasets_per_channel_statistics():
    """Catches the old scalar MNIST default (0.1307 / 0.3081 for every channel): with the
    dataset's per-channel statistics in ``info.extra`` the initial images follow them, and an
    explicit per-channel config wins."""
    shape = (3, 6, 6)
    info = DatasetInfo(
        task="classification",
        num_features=108,
        num_classes=CLASSES,
        extra={"image_shape": list(shape), "pixel_mean": [0.1, 0.5, 0.9], "pixel_std": [0.01, 0.02, 0.03]},
    )

    def ctx() -> ServerContext:
        return ServerContext(build_model=lambda: nn.Sequential(nn.Flatten(), nn.Linear(108, CLASSES)),
                             generator=torch.Generator().manual_seed(0), info=info)

    agg = Dynafed(config(ipc=20, iterations=0, min_trajectory_length=4), ctx())
    agg.trajectory = [torch.zeros(108 * CLASSES + CLASSES)] * 4
    images = agg.synthesize().images
    means, stds = images.mean(dim=(0, 2, 3)), images.std(dim=(0, 2, 3))
    torch.testing.assert_close(means, torch.tensor([0.1, 0.5, 0.9]), atol=0.01, rtol=0)
    torch.testing.assert_close(stds, torch.tensor([0.01, 0.02, 0.03]), atol=0.005, rtol=0)
    own = Dynafed(
        config(ipc=20, iterations=0, min_trajectory_length=4, pixel_mean=[0.0, 0.0, 0.0], pixel_std=[1.0]), ctx()
    )
    own.trajectory = agg.trajectory
    assert abs(float(own.synthesize().images.mean()) - 0.0) < 0.05
    with pytest.raises(ConfigError, match="pixel_mean"):
        Dynafed(config(pixel_mean=[0.1, 0.2]), ctx()).init_stats(3)


def test_zero_iterations_is_the_noise_control():
    """``iterations = 0``: D_syn is the initial noise (no matching step, no image change) and the
    server still fine-tunes on it, so the run differs from FedAvg only by that fine-tuning."""
    agg = Dynafed(config(min_trajectory_length=4, iterations=0), context())
    states = simulate(agg, 6)
    summary = agg.summary()
    assert agg.synthetic is not None and agg.synthetic.losses == []
    assert summary["image_change"] == 0.0 and "matching_loss_start" not in summary
    fedavg = simulate(Dynafed(config(min_trajectory_length=50), context()), 6)  # unweighted FedAvg
    assert all(torch.equal(states[r][k], fedavg[r][k]) for r in range(3) for k in states[r])
    assert any(not torch.equal(states[5][k], fedavg[5][k]) for k in states[5])


def test_summary_reports_matching_progress_and_survives_a_state_round_trip():
    agg = Dynafed(config(min_trajectory_length=4, iterations=12), context())
    simulate(agg, 5)
    summary = agg.summary()
    for key in (
        "matching_loss_start",
        "matching_loss_end",
        "syn_lr",
        "label_max_prob",
        "label_classes",
        "image_change",
    ):
        assert key in summary
    assert summary["image_change"] > 0 and 1 <= summary["label_classes"] <= CLASSES
    buf = io.BytesIO()
    torch.save(agg.state_dict(), buf)
    buf.seek(0)
    other = Dynafed(config(min_trajectory_length=4, iterations=12), context())
    other.load_state_dict(torch.load(buf, weights_only=True))
    assert other.summary() == summary
