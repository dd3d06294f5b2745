"""Per-example scores for pk batch's paired bootstrap."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from pk_iurs.evaluators.streaming import block_weighted


@given(st.lists(st.lists(st.floats(0, 1), min_size=1, max_size=30), min_size=1, max_size=6))
def test_block_weighted_mean_is_the_mean_of_block_means(blocks) -> None:
    """Blocks of unequal size: plain concatenation would weight blocks by their size (the
    streaming metric averages block means), which this catches."""
    per = [torch.tensor(b, dtype=torch.float64) for b in blocks]
    want = sum(float(p.mean()) for p in per) / len(per)
    got = block_weighted(per)
    assert got.numel() == sum(len(b) for b in blocks)
    assert float(got.mean()) == pytest.approx(want, abs=1e-9)
    if len({len(b) for b in blocks}) == 1:  # equal sizes: the scores themselves
        assert torch.allclose(got, torch.cat(per))
