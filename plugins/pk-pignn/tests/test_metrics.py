"""PM / FM against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from pk_pignn.evaluators import forgetting_measure, performance_mean

NAN = float("nan")


def test_pm_fm_on_a_hand_built_matrix():
    acc = torch.tensor([[0.80, NAN, NAN], [0.70, 0.90, NAN], [0.60, 0.95, 0.85]], dtype=torch.float64)
    assert performance_mean(acc) == pytest.approx((0.80 + 0.90 + 0.85) / 3)
    # FM over tasks 0..T-2: ((0.60 - 0.80) + (0.95 - 0.90)) / 2 = -0.075 (negative = forgetting)
    assert forgetting_measure(acc) == pytest.approx(-0.075)


def test_fm_positive_means_backward_transfer_and_single_task_is_zero():
    acc = torch.tensor([[0.5, NAN], [0.7, 0.6]], dtype=torch.float64)
    assert forgetting_measure(acc) == pytest.approx(0.2)
    assert forgetting_measure(torch.tensor([[0.4]])) == 0.0
    with pytest.raises(ValueError):
        performance_mean(torch.zeros(2, 3))


@given(st.integers(1, 8), st.integers(0, 10_000))
def test_pm_fm_match_a_loop_over_a_random_lower_triangular_matrix(t, seed):
    g = torch.Generator().manual_seed(seed)
    acc = (torch.rand(t, t, generator=g, dtype=torch.float64).tril()
           + torch.triu(torch.full((t, t), NAN, dtype=torch.float64), 1))
    pm = sum(float(acc[i, i]) for i in range(t)) / t
    fm = sum(float(acc[t - 1, i] - acc[i, i]) for i in range(t - 1)) / (t - 1) if t > 1 else 0.0
    assert math.isclose(performance_mean(acc), pm, abs_tol=1e-12)
    assert math.isclose(forgetting_measure(acc), fm, abs_tol=1e-12)
    assert -1.0 <= forgetting_measure(acc) <= 1.0
