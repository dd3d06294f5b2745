"""Aggregator checks (federated learning)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pk.core.testing import strategies as pks
from pk.core.testing.cases import Case
from pk.core.testing.checks.common import (
    _config,
    _state_equal,
)


# -- aggregators -----------------------------------------------------------------------
def _aggregator(case: Case) -> Any:
    from pk.core.contracts import ServerContext
    from pk.core.runner import Components

    reg = case.registration
    assert reg is not None
    comps = Components(_config({"aggregator": reg}))
    ctx = pks.server_context()
    assert isinstance(ctx, ServerContext)
    agg = comps.build("aggregator", context=ctx)
    kind = getattr(agg, "kind", "weights")
    if kind not in ("weights", "delta"):
        pytest.skip(f"aggregator kind {kind!r} does not combine model states; the state-dict properties do not apply")
    return agg


def _close(a: dict[str, Any], b: dict[str, Any], tol: float = 1e-5) -> bool:
    import torch

    return a.keys() == b.keys() and all(torch.allclose(a[k].double(), b[k].double(), atol=tol, rtol=tol) for k in a)


def aggregator_fixed_point(case: Case) -> None:
    @given(st.integers(1, 6), st.integers(0, 2**31 - 1))
    def prop(n: int, seed: int) -> None:
        agg = _aggregator(case)
        glob = pks.model_state(seed)
        client = pks.model_state(seed + 1)
        out, _ = agg.aggregate(glob, [(copy.deepcopy(client), 1.0 + i, {"client": i}) for i in range(n)])
        assert _close(out, client), "aggregating identical updates must return that update"

    prop()


def aggregator_permutation_invariant(case: Case) -> None:
    @given(st.integers(2, 6), st.integers(0, 2**31 - 1), st.randoms(use_true_random=False))
    def prop(n: int, seed: int, rnd: Any) -> None:
        agg = _aggregator(case)
        glob = pks.model_state(seed)
        ups = pks.client_updates(seed, n)
        shuffled = list(ups)
        rnd.shuffle(shuffled)
        a, _ = agg.aggregate(glob, ups)
        b, _ = _aggregator(case).aggregate(glob, shuffled)
        assert _close(a, b, 1e-4), "client order changed the aggregate"

    prop()


def aggregator_weight_scale_invariant(case: Case) -> None:
    @given(st.integers(1, 5), st.integers(0, 2**31 - 1), st.floats(0.1, 10.0))
    def prop(n: int, seed: int, c: float) -> None:
        glob = pks.model_state(seed)
        ups = pks.client_updates(seed, n)
        a, _ = _aggregator(case).aggregate(glob, ups)
        b, _ = _aggregator(case).aggregate(glob, [(s, w * c, m) for s, w, m in ups])
        assert _close(a, b, 1e-4), "scaling every weight by the same factor changed the aggregate"

    prop()


def aggregator_rejects_empty(case: Case) -> None:
    agg = _aggregator(case)
    glob = pks.model_state(0)
    _expect_value_error(lambda: agg.aggregate(glob, []), "an empty round must raise ValueError")
    if getattr(agg, "weighted", True):
        _expect_value_error(lambda: agg.aggregate(glob, [(pks.model_state(1), 0.0, {})]),
                            "zero total weight must raise ValueError")


def _expect_value_error(fn: Any, message: str) -> None:
    try:
        fn()
    except ValueError:
        return
    raise AssertionError(message)


def aggregator_does_not_mutate(case: Case) -> None:
    glob = pks.model_state(0)
    ups = pks.client_updates(0, 3)
    glob_copy, ups_copy = copy.deepcopy(glob), copy.deepcopy(ups)
    _aggregator(case).aggregate(glob, ups)
    assert _state_equal(glob, glob_copy), "aggregate mutated the global state"
    for (a, wa, _), (b, wb, _) in zip(ups, ups_copy):
        assert wa == wb and _state_equal(a, b), "aggregate mutated a client update"


def aggregator_robust_bounded(case: Case) -> None:
    import torch

    agg = _aggregator(case)
    if not getattr(agg, "robust", False):
        pytest.skip("aggregator does not declare robust = True")

    @given(st.integers(0, 2**31 - 1), st.floats(1e3, 1e6))
    def prop(seed: int, scale: float) -> None:
        honest = pks.client_updates(seed, 7)
        # no ground truth in meta
        bad = [({k: v + scale for k, v in s.items()}, w, m) for s, w, m in pks.client_updates(seed + 1, 2)]
        out, _ = _aggregator(case).aggregate(pks.model_state(seed), honest + bad)
        for k in out:
            stack = torch.stack([s[k].double() for s, _, _ in honest])
            lo, hi = stack.min(0).values, stack.max(0).values
            assert bool(((out[k].double() >= lo - 1e-6) & (out[k].double() <= hi + 1e-6)).all()), (
                f"{k}: output leaves the honest clients' range with 2 of 9 clients adversarial"
            )

    prop()
