"""Evaluator checks."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from pk.core.testing.cases import Case
from pk.core.testing.checks.common import (
    _config,
    _stack,
)


# -- evaluators ------------------------------------------------------------------------
def evaluator_metrics_in_range(case: Case) -> None:
    """Every declared metric lies in its declared range, and the same (drawn) seed gives the
    same metrics twice."""
    from pk.core.run import Run
    from pk.core.runner import Components

    parts = _stack(case, ("dataset", "model"))

    @settings(max_examples=2, deadline=None)
    @given(st.integers(0, 2**16))
    def prop(seed: int) -> None:
        results = []
        for _ in range(2):
            resolved = _config(parts, seed=seed)
            comps = Components(resolved)
            data = comps.dataset()
            model = comps.model(data.info)
            model.eval()
            evaluator = comps.build("evaluator")
            with tempfile.TemporaryDirectory() as tmp:
                results.append(evaluator.evaluate(model, data, Run(Path(tmp), resolved, builder=comps.build)))
        declared = dict(evaluator.metrics)
        for name, value in results[0].items():
            if name in declared:
                lo, hi, _ = declared[name]
                assert lo - 1e-9 <= value <= hi + 1e-9, (
                    f"metric {name}={value} outside its declared range [{lo}, {hi}] (seed {seed})")
        assert results[0] == results[1], f"evaluator is not deterministic under seed {seed}"

    prop()
