"""Calibrator properties: valid attention (stand-alone and attached to a host layer), the
perturbation mask in [0, 1], separable == direct spatial terms, neutral settings."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from pk_actsr.calibrators import (
    ACTSRCalibrator,
    AdversarialCalibrator,
    SpatialCalibrator,
    pair_linear_direct,
    pair_linear_separable,
)
from pk_actsr.plugin import ACTSRCalibratorConfig, AdversarialCalibratorConfig, SpatialCalibratorConfig
from pk_seqrec.models.encoder import MultiHeadAttention, causal_mask, masked_softmax, padding_mask, position_ids
from torch import nn

from pk.core.errors import ConfigError

torch.set_num_threads(1)
KINDS = {"ac-spatial": (SpatialCalibrator, SpatialCalibratorConfig),
         "ac-adversarial": (AdversarialCalibrator, AdversarialCalibratorConfig),
         "ac-tsr": (ACTSRCalibrator, ACTSRCalibratorConfig)}


def _attached(kind: str, hidden: int, heads: int, layers: int, length: int, **overrides: object) -> nn.Module:
    cls, cfg = KINDS[kind]
    cal = cls(cfg(**overrides))  # type: ignore[arg-type]
    cal.attach(hidden=hidden, heads=heads, layers=layers, seq_len=length, attn_dropout=0.0)
    # make every learned term matter (the N(0, 0.02) init is nearly neutral)
    with torch.no_grad():
        for p in cal.parameters():
            p.normal_(0.0, 0.7)
    return cal.eval()


def _sequences(seed: int, batch: int, length: int, num_items: int = 20) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    seq = torch.randint(1, num_items + 1, (batch, length), generator=g)
    lengths = torch.randint(1, length + 1, (batch,), generator=g)
    return seq * (torch.arange(length)[None, :] >= (length - lengths[:, None]))


def _run_layer(cal: nn.Module, seq: torch.Tensor, hidden: int, heads: int, layer: int, causal: bool, seed: int
               ) -> tuple[torch.Tensor, torch.Tensor, object]:
    """One pk-seqrec attention layer's seam, driven by hand with the host's q/k: returns
    (calibrated attention [B, h, L, L], mask, session)."""
    torch.manual_seed(seed)
    attention = MultiHeadAttention(hidden, heads, 0.0, 0.0, 1e-12)
    x = torch.randn(seq.shape[0], seq.shape[1], hidden) * 3
    mask = causal_mask(seq) if causal else padding_mask(seq)
    session = cal.begin(position_ids(seq), keep_trace=True)
    cal.observe(attention, x, layer)
    q, k = attention._split(attention.query(x)), attention._split(attention.key(x))
    scores = cal.adjust_scores(q @ k.transpose(-1, -2) / math.sqrt(hidden // heads), mask, layer=layer)
    attn = cal.calibrate(masked_softmax(scores, mask), mask, layer=layer)
    cal.end()
    return attn, mask, session


def _assert_valid_attention(attn: torch.Tensor, mask: torch.Tensor) -> None:
    full = mask.expand_as(attn)
    assert bool(torch.isfinite(attn).all())
    assert bool((attn >= 0).all())
    assert bool((attn[~full] == 0).all()), "masked keys must get exactly 0"
    rows = full.any(-1)
    sums = attn.sum(-1)
    assert torch.allclose(sums[rows], torch.ones_like(sums[rows]), atol=1e-5)
    assert bool((sums[~rows] == 0).all())


@given(kind=st.sampled_from(sorted(KINDS)), seed=st.integers(0, 2**31 - 1), batch=st.integers(1, 4),
       length=st.integers(1, 9), heads=st.sampled_from([1, 2, 4]), layer=st.integers(0, 2), causal=st.booleans())
def test_calibrated_attention_is_row_stochastic_and_zero_on_masked_keys(
        kind: str, seed: int, batch: int, length: int, heads: int, layer: int, causal: bool) -> None:
    hidden = 4 * heads
    cal = _attached(kind, hidden, heads, 3, length)
    seq = _sequences(seed, batch, length)
    with torch.no_grad():
        attn, mask, _ = _run_layer(cal, seq, hidden, heads, layer, causal, seed)
    _assert_valid_attention(attn, mask)


@given(seed=st.integers(0, 2**31 - 1), length=st.integers(1, 9), causal=st.booleans())
def test_perturbation_mask_is_a_distribution_in_unit_interval(seed: int, length: int, causal: bool) -> None:
    cal = _attached("ac-tsr", 8, 2, 2, length)
    seq = _sequences(seed, 3, length)
    with torch.no_grad():
        _, mask, session = _run_layer(cal, seq, 8, 2, 1, causal, seed)
    perturbation = session.masks[1]
    assert bool((perturbation >= 0).all()) and bool((perturbation <= 1).all())
    _assert_valid_attention(perturbation, mask)
    _assert_valid_attention(session.attention[1], mask)  # A_sp, the stage's input


@given(seed=st.integers(0, 2**31 - 1), batch=st.integers(1, 3), length=st.integers(1, 10), d=st.integers(1, 12),
       heads=st.integers(1, 3))
def test_separable_pair_linear_equals_materialised_concatenation(seed: int, batch: int, length: int, d: int,
                                                                  heads: int) -> None:
    g = torch.Generator().manual_seed(seed)
    linear = nn.Linear(2 * d, 1)
    with torch.no_grad():
        linear.weight.copy_(torch.randn(1, 2 * d, generator=g))
        linear.bias.copy_(torch.randn(1, generator=g))
    q, k = torch.randn(batch, heads, length, d, generator=g) * 2, torch.randn(batch, heads, length, d, generator=g) * 2
    assert torch.allclose(pair_linear_separable(q, k, linear), pair_linear_direct(q, k, linear), atol=1e-5)


@given(seed=st.integers(0, 2**31 - 1), length=st.integers(1, 8))
def test_separable_and_direct_spatial_terms_agree(seed: int, length: int) -> None:
    cal = _attached("ac-spatial", 8, 2, 2, length)
    g = torch.Generator().manual_seed(seed)
    q, k = torch.randn(2, 2, length, 4, generator=g), torch.randn(2, 2, length, 4, generator=g)
    positions = position_ids(_sequences(seed, 2, length))
    with torch.no_grad():
        fast = cal.spatial_terms(q, k, positions, 1, separable=True)
        slow = cal.spatial_terms(q, k, positions, 1, separable=False)
    assert torch.allclose(fast, slow, atol=1e-5)
    assert fast.abs().max() > 1e-3  # the terms are not trivially zero


def test_spatial_stage_without_terms_is_plain_scaled_dot_product_attention() -> None:
    cal = _attached("ac-spatial", 8, 2, 2, 6, use_order=False, use_distance=False)
    seq = _sequences(3, 4, 6)
    attn, mask, _ = _run_layer(cal, seq, 8, 2, 0, True, 3)
    torch.manual_seed(3)
    attention = MultiHeadAttention(8, 2, 0.0, 0.0, 1e-12)
    x = torch.randn(4, 6, 8) * 3
    q, k = attention._split(attention.query(x)), attention._split(attention.key(x))
    plain = masked_softmax(q @ k.transpose(-1, -2) / 2.0, mask)
    assert torch.allclose(attn, plain, atol=1e-6)
    with_terms, _, _ = _run_layer(_attached("ac-spatial", 8, 2, 2, 6), seq, 8, 2, 0, True, 3)
    assert not torch.allclose(with_terms, plain, atol=1e-3)  # the terms do change attention


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_disabled_calibrator_is_neutral(kind: str) -> None:
    cal = _attached(kind, 8, 2, 2, 5, enabled=False)
    assert cal.neutral
    seq = _sequences(1, 3, 5)
    attn, mask, _ = _run_layer(cal, seq, 8, 2, 0, True, 1)
    torch.manual_seed(1)
    attention = MultiHeadAttention(8, 2, 0.0, 0.0, 1e-12)
    x = torch.randn(3, 5, 8) * 3
    q, k = attention._split(attention.query(x)), attention._split(attention.key(x))
    assert torch.allclose(attn, masked_softmax(q @ k.transpose(-1, -2) / 2.0, mask), atol=1e-6)


def test_gate_width_must_match_the_attention_length() -> None:
    cal = AdversarialCalibrator(AdversarialCalibratorConfig(gate_width=50))
    with pytest.raises(ConfigError, match="gate_width = 50.*attention length is 20"):
        cal.attach(hidden=8, heads=2, layers=2, seq_len=20, attn_dropout=0.0)


def test_explicit_sizes_must_match_the_host() -> None:
    cal = SpatialCalibrator(SpatialCalibratorConfig(heads=4))
    with pytest.raises(ConfigError, match=r"calibrator.heads = 4 .* model.heads = 2"):
        cal.attach(hidden=8, heads=2, layers=2, seq_len=5, attn_dropout=0.0)


def test_unsized_calibrator_on_a_plain_host_says_how_to_fix_it() -> None:
    cal = SpatialCalibrator(SimpleNamespace())
    with pytest.raises(ConfigError, match="ac-sasrec"):
        cal.adjust_scores(torch.zeros(1, 2, 3, 3), torch.ones(1, 1, 3, 3, dtype=torch.bool))
