"""Calibrator checks (attention)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given

from pk.core.testing import strategies as pks
from pk.core.testing.cases import Case
from pk.core.testing.checks.common import (
    _config,
)


# -- calibrators -----------------------------------------------------------------------
def _calibrator(case: Case) -> Any:
    from pk.core.runner import Components

    return Components(_config({"calibrator": case.registration})).build("calibrator")  # type: ignore[dict-item]


def _calibrated(cal: Any, scores: Any, mask: Any, layer: int) -> Any:
    import torch

    s = cal.adjust_scores(scores, mask, layer=layer) if hasattr(cal, "adjust_scores") else scores
    s = s.masked_fill(~mask, float("-inf"))
    attn = torch.softmax(s, dim=-1).nan_to_num(0.0)
    return cal.calibrate(attn, mask, layer=layer) if hasattr(cal, "calibrate") else attn


def calibrator_keeps_rows_stochastic(case: Case) -> None:
    import torch

    cal = _calibrator(case)
    if hasattr(cal, "eval"):
        cal.eval()

    @given(pks.attention_inputs(num_heads=getattr(cal, "num_heads", None), max_len=getattr(cal, "max_len", None)))
    def prop(inputs: tuple[Any, Any, int]) -> None:
        scores, mask, layer = inputs
        layer = min(layer, max(0, int(getattr(cal, "num_layers", 1)) - 1))
        with torch.no_grad():
            attn = _calibrated(cal, scores, mask, layer)
        assert attn.shape == scores.shape, "calibration changed the attention shape"
        assert bool((attn >= 0).all()), "negative attention weight"
        assert bool((attn[~mask.expand_as(attn)] == 0).all()), "masked keys must get exactly 0"
        rows = mask.expand_as(attn).any(-1)
        sums = attn.sum(-1)
        assert torch.allclose(sums[rows], torch.ones_like(sums[rows]), atol=1e-5), (
            "rows must sum to 1 over unmasked keys"
        )

    prop()


def calibrator_neutral_is_identity(case: Case) -> None:
    import torch

    cal = _calibrator(case)
    if not getattr(cal, "neutral", False):
        pytest.skip("calibrator's default config does not declare itself neutral")
    scores, mask, _ = pks.attention_example(seed=0, num_heads=getattr(cal, "num_heads", None),
                                            max_len=getattr(cal, "max_len", None))
    plain = torch.softmax(scores.masked_fill(~mask, float("-inf")), -1).nan_to_num(0.0)
    with torch.no_grad():
        assert torch.allclose(_calibrated(cal, scores, mask, 0), plain, atol=1e-6)
