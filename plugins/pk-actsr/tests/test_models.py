"""AC-SASRec / AC-BERT4Rec: causality and padding invariance with calibrators on, the
optimisation split (which loss reaches which parameters), constant mask weight, inference
determinism, the gate-width check."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from pk_actsr.calibrators import ACTSRCalibrator, AdversarialCalibrator, SpatialCalibrator
from pk_actsr.models import ACBERT4Rec, ACSASRec
from pk_actsr.plugin import ACTSRCalibratorConfig, AdversarialCalibratorConfig, SpatialCalibratorConfig

from pk.core.errors import ConfigError

N, L = 30, 8
torch.set_num_threads(1)
SGD = SimpleNamespace(optimizer="sgd", lr=0.5, weight_decay=0.0, grad_clip=0.0)


def _scrambled(model: torch.nn.Module) -> torch.nn.Module:
    """Give every calibrator parameter a large value so its terms matter at test time."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.calibrator.parameters():
            p.normal_(0.0, 0.5)
    return model


def _sasrec(calibrator: object = None, max_len: int = L) -> ACSASRec:
    torch.manual_seed(0)
    return ACSASRec(N, max_len, hidden=16, heads=2, inner=32, calibrator=calibrator)


def _bert(calibrator: object = None) -> ACBERT4Rec:
    torch.manual_seed(0)
    return ACBERT4Rec(N, L, hidden=16, heads=2, inner=32, calibrator=calibrator)


def _left(items: list[int], width: int = L) -> torch.Tensor:
    return torch.tensor([[0] * (width - len(items)) + items])


def _right(items: list[int], width: int = L) -> torch.Tensor:
    return torch.tensor([items + [0] * (width - len(items))])


CALIBRATORS = {
    "ac-tsr": lambda: ACTSRCalibrator(ACTSRCalibratorConfig()),
    "ac-spatial": lambda: SpatialCalibrator(SpatialCalibratorConfig()),
    "ac-adversarial": lambda: AdversarialCalibrator(AdversarialCalibratorConfig()),
}


@given(kind=st.sampled_from(sorted(CALIBRATORS)), items=st.lists(st.integers(1, N), min_size=L, max_size=L),
       t=st.integers(0, L - 2), replacement=st.lists(st.integers(1, N), min_size=L, max_size=L))
def test_ac_sasrec_is_causal_with_calibrators_on(kind: str, items: list[int], t: int, replacement: list[int]) -> None:
    model = _scrambled(_sasrec(CALIBRATORS[kind]())).eval()
    changed = items[: t + 1] + replacement[t + 1:]
    with torch.no_grad():
        a, b = model.encode(torch.tensor([items])), model.encode(torch.tensor([changed]))
    assert torch.allclose(a[:, : t + 1], b[:, : t + 1], atol=1e-5)
    if changed != items:  # the test can fail: later positions do see the change
        assert not torch.allclose(a, b, atol=1e-6)


@given(items=st.lists(st.integers(1, N), min_size=1, max_size=L - 1))
def test_padding_side_and_amount_never_change_scores(items: list[int]) -> None:
    for model in (_scrambled(_sasrec()).eval(), _scrambled(_bert()).eval()):
        with torch.no_grad():
            base = model.predict({"seq": _left(items)})
            right = model.predict({"seq": _right(items)}) if isinstance(model, ACSASRec) else base
            shorter = model.predict({"seq": _left(items, len(items))})
        assert torch.allclose(base, right, atol=1e-4) and torch.allclose(base, shorter, atol=1e-4)
        assert torch.isneginf(base[:, 0]).all() and torch.isfinite(base[:, 1:]).all()


def test_inference_is_deterministic_and_uses_no_noise() -> None:
    model = _scrambled(_sasrec()).eval()
    seq = torch.randint(1, N + 1, (4, L))
    torch.manual_seed(5)
    a = model.predict({"seq": seq})
    torch.manual_seed(6)
    b = model.predict({"seq": seq})
    assert torch.equal(a, b)


def _batch(model: object) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    seq = torch.randint(1, N + 1, (6, L), generator=g)
    seq[0, :3] = 0
    targets = torch.roll(seq, -1, 1)
    targets[:, -1] = torch.randint(1, N + 1, (6,), generator=g)
    targets[seq == 0] = 0
    return {"seq": seq, "targets": targets, "target": targets[:, -1]}


@pytest.mark.parametrize("make", [_sasrec, _bert], ids=["ac-sasrec", "ac-bert4rec"])
def test_each_loss_updates_only_its_own_parameter_group(make: object) -> None:
    model = _scrambled(make()).eval()  # eval: no dropout, so the two passes below see the same graph
    batch = _batch(model)
    recommendation, adversary = model.parameter_groups()
    generator_ids = {id(p) for m in (model.calibrator.adversarial.attack_query, model.calibrator.adversarial.attack_key)
                     for p in m.parameters()}
    assert {id(p) for p in adversary} == generator_ids
    assert not generator_ids & {id(p) for p in recommendation}
    assert len(recommendation) + len(adversary) == len(list(model.parameters()))

    torch.manual_seed(11)
    loss_cal, loss_adv = model.losses(batch)
    # without the split, each loss WOULD reach the other group: the test can fail
    leak_cal = torch.autograd.grad(loss_cal, adversary, retain_graph=True)
    leak_adv = torch.autograd.grad(loss_adv, recommendation, retain_graph=True, allow_unused=True)
    assert any(g.abs().sum() > 0 for g in leak_cal)
    assert any(g is not None and g.abs().sum() > 0 for g in leak_adv)
    want_rec = torch.autograd.grad(loss_cal, recommendation, retain_graph=True, allow_unused=True)
    want_adv = torch.autograd.grad(loss_adv, adversary)

    before = [p.detach().clone() for p in model.parameters()]
    weight_before = model.calibrator.mask_loss_weight
    optimizers = model.configure_optimizers(SGD)
    torch.manual_seed(11)
    model.train_step(batch, optimizers)
    params = list(model.parameters())
    index = {id(p): i for i, p in enumerate(params)}
    for group, grads in ((recommendation, want_rec), (adversary, want_adv)):
        for p, g in zip(group, grads, strict=True):
            expected = before[index[id(p)]] - SGD.lr * (torch.zeros_like(p) if g is None else g)
            assert torch.allclose(p.detach(), expected, atol=1e-6)
    assert model.calibrator.mask_loss_weight == weight_before
    assert all(not isinstance(v, torch.nn.Parameter) for v in vars(model.calibrator.adversarial).values())


def test_mask_weight_is_a_constant_never_a_parameter() -> None:
    model = _sasrec(ACTSRCalibrator(ACTSRCalibratorConfig(mask_loss_weight=0.3)))
    names = [n for n, _ in model.named_parameters()]
    assert not any("mask_loss" in n or "weight_mask" in n for n in names)
    optimizers = model.configure_optimizers(SimpleNamespace(optimizer="adam", lr=1e-2, weight_decay=0.0))
    for _ in range(3):
        model.train_step(_batch(model), optimizers)
    assert model.calibrator.mask_loss_weight == 0.3


def test_spatial_only_model_trains_with_a_single_loss() -> None:
    model = _sasrec(SpatialCalibrator(SpatialCalibratorConfig()))
    loss_cal, loss_adv = model.losses(_batch(model))
    assert loss_adv is None and model.parameter_groups()[1] == []
    assert len(model.configure_optimizers(SGD)[0].param_groups) == 1


def test_gate_width_other_than_max_len_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="gate_width = 50 but the model's attention length is 8"):
        _sasrec(ACTSRCalibrator(ACTSRCalibratorConfig(gate_width=50)))
    with pytest.raises(ConfigError, match="attention length is 9"):  # BERT4Rec attends L + 1 tokens
        torch.manual_seed(0)
        ACBERT4Rec(N, L, hidden=16, heads=2, inner=32, calibrator=ACTSRCalibrator(ACTSRCalibratorConfig(gate_width=8)))
    assert _sasrec(ACTSRCalibrator(ACTSRCalibratorConfig(gate_width=L))).calibrator.max_len == L


def test_ac_models_have_no_absolute_position_embedding() -> None:
    assert _sasrec().position_embedding is None and _bert().position_embedding is None
