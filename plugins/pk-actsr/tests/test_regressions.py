"""Regression tests: AC-BERT4Rec's mask cap, the mask penalty measured on the reference's
batch shape, config bounds. Each docstring names the old code it fails on."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from pk_actsr.calibrators import ACTSRCalibrator, mask_penalty
from pk_actsr.models import ACBERT4Rec, ACSASRec
from pk_actsr.plugin import ACNextItemTrainerConfig, ACTSRCalibratorConfig, AdversarialCalibratorConfig

from pk.core.config import validate_params
from pk.core.errors import ConfigError

torch.set_num_threads(1)
N = 30


class _Stop(Exception):
    pass


def test_ac_bert4rec_mask_count_on_a_trimmed_batch() -> None:
    """A batch trimmed to 6 columns (L = 50): the input AC-BERT4Rec's ``losses`` encodes
    holds, per row, 0.2 x real items [MASK] tokens on average. Fails on the old
    AC-BERT4Rec, which capped masks at int(0.2 x batch width) = 1."""
    torch.manual_seed(0)
    model = ACBERT4Rec(N, 50, hidden=8, heads=2, inner=8, layers=1)
    lengths = torch.tensor([5, 4, 5, 3, 5, 2])
    seq = torch.zeros(6, 5, dtype=torch.long)
    for r, n in enumerate(lengths.tolist()):
        seq[r, 5 - n :] = torch.randint(1, N + 1, (n,))
    batch = {"seq": seq, "target": torch.randint(1, N + 1, (6,))}
    total = torch.zeros(6)

    def record(inputs: torch.Tensor, keep_trace: bool = False) -> Any:
        total.add_((inputs == model.mask_token).sum(1).float())
        raise _Stop  # the count is all this test needs: skip the forward pass

    model.encode_traced = record  # type: ignore[method-assign]
    draws = 3000
    for _ in range(draws):
        try:
            model.losses(batch)
        except _Stop:
            pass
    # rows where nothing was masked return before encoding: they add 0 masks, as they should
    assert torch.allclose(total / draws, 0.2 * (lengths + 1).float(), atol=0.08), total / draws


def _padded_to(m: torch.Tensor, batch: int, length: int) -> torch.Tensor:
    """m [B, h, w, w] zero-padded (masked entries, M = 0) to [batch, h, length, length]."""
    B, h, w, _ = m.shape
    out = torch.zeros(batch, h, length, length)
    out[:B, :, length - w :, length - w :] = m
    return out


def test_mask_penalty_equals_the_norm_on_the_reference_batch_shape() -> None:
    """A trimmed [44, 2, 9, 9] mask measures like the same mask zero-padded into the
    reference's [256, 2, 50, 50] batch. Fails on the old raw norm (about 10x smaller)."""
    torch.manual_seed(0)
    masks = [torch.rand(44, 2, 9, 9).softmax(-1) for _ in range(3)]
    reference = torch.stack([torch.linalg.vector_norm(1 - _padded_to(m, 256, 50)) for m in masks]).mean()
    assert torch.allclose(mask_penalty(masks, (256, 50)), reference, rtol=1e-5)
    raw = mask_penalty(masks)
    assert float(reference / raw) > 5  # what the old code lost


def test_model_mask_penalty_ignores_extra_padding_columns() -> None:
    """AC-SASRec's L_adv penalty of a batch is the same trimmed or padded to max_len (and
    its gradient on the mask generator too). Fails on the old raw norm, which grew with
    every padding column (each a masked entry with 1 - M = 1)."""
    cal = ACTSRCalibrator(ACTSRCalibratorConfig())
    torch.manual_seed(0)
    model = ACSASRec(N, 12, hidden=16, heads=2, inner=32, calibrator=cal).eval()
    rows = [[3, 5, 7], [1, 2, 3, 4, 5], [9]]
    values = []
    for width in (5, 12):
        seq = torch.tensor([[0] * (width - len(r)) + r for r in rows])
        _, session = model.encode_traced(seq, keep_trace=True)

        def no_ce(h: torch.Tensor) -> torch.Tensor:
            return h.sum() * 0.0

        penalty = model.adversarial_loss(session, no_ce) / cal.mask_loss_weight  # L_adv's mask term
        grads = torch.autograd.grad(penalty, cal.adversarial_parameters(), allow_unused=True)
        values.append((penalty.detach(), [g for g in grads if g is not None]))
    assert torch.allclose(values[0][0], values[1][0], rtol=1e-5)
    for a, b in zip(values[0][1], values[1][1], strict=True):
        assert torch.allclose(a, b, atol=1e-7)


def test_penalty_reference_follows_the_host_length() -> None:
    cal = ACTSRCalibrator(ACTSRCalibratorConfig())
    ACSASRec(N, 20, hidden=16, heads=2, inner=32, calibrator=cal)
    assert cal.adversarial.penalty_reference == (256, 20)
    raw = ACTSRCalibrator(ACTSRCalibratorConfig(penalty_batch=0))
    ACSASRec(N, 20, hidden=16, heads=2, inner=32, calibrator=raw)
    assert raw.adversarial.penalty_reference is None


@pytest.mark.parametrize("cls,key,value", [
    (ACNextItemTrainerConfig, "max_epochs", 0), (ACNextItemTrainerConfig, "lr", float("nan")),
    (ACNextItemTrainerConfig, "patience", -1), (ACNextItemTrainerConfig, "batch_size", 0),
    (AdversarialCalibratorConfig, "mask_loss_weight", -0.1), (AdversarialCalibratorConfig, "attn_dropout", 1.0),
    (ACTSRCalibratorConfig, "penalty_batch", -1), (ACTSRCalibratorConfig, "gate_width", -5),
])
def test_config_bounds(cls: type, key: str, value: Any) -> None:
    """Old configs declared no ranges (and ac-next-item re-declared max_epochs/lr/patience
    without any): all of these resolved silently."""
    with pytest.raises(ConfigError):
        validate_params({key: value}, cls, "x")
