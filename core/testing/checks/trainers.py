"""Trainer checks: determinism and exact resume."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pk.core.registry import Registration
from pk.core.testing.cases import Case
from pk.core.testing.checks.common import (
    _config,
    _fields,
    _stack,
    _state_equal,
)


# -- trainers --------------------------------------------------------------------------
def _train_once(parts: dict[str, Registration], out_dir: str, seed: int = 0, run_dir: Any = None,
                resume: bool = False, extra: dict[str, dict[str, Any]] | None = None) -> Any:
    from pk.core.console import Reporter
    from pk.core.runner import train

    resolved = _config(parts, seed=seed, out_dir=out_dir, extra=extra)
    return train(resolved, run_dir=run_dir, resume=resume, argv=["pk-check"], reporter=Reporter("quiet"))


def trainer_is_deterministic(case: Case) -> None:
    """Two runs with the same (drawn) seed end with the same metrics."""
    parts = _stack(case, ("dataset", "model"))

    @settings(max_examples=2, deadline=None)
    @given(st.integers(0, 2**16))
    def prop(seed: int) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            _, r1 = _train_once(parts, os.path.join(tmp, "a"), seed=seed)
            _, r2 = _train_once(parts, os.path.join(tmp, "b"), seed=seed)
        assert r1["metrics"] == r2["metrics"], f"two runs with seed {seed} logged different final metrics"

    prop()


def trainer_resume_is_exact(case: Case) -> None:
    from pk.core.io import load_tensors
    from pk.core.run import Run

    parts = _stack(case, ("dataset", "model"))
    builder = case.registration.load()  # type: ignore[union-attr]
    if not getattr(builder, "resumable", False):
        pytest.skip("trainer is not resumable")
    # epoch-bounded where the trainer allows it (max_steps = -1: the suite's 2 epochs), so the
    # interruption after the first epoch leaves one to resume even when an epoch outlasts the step cap
    assert case.registration is not None
    cfg = case.registration.config
    steps = [f for f in (dataclasses.fields(cfg) if cfg is not None else ()) if f.name == "max_steps"]
    unbounded = bool(steps) and steps[0].metadata.get("ge", -1) <= -1 and "gt" not in steps[0].metadata
    extra = {"trainer": {"max_steps": -1}} if unbounded else None
    with tempfile.TemporaryDirectory() as tmp:
        path_full, full = _train_once(parts, os.path.join(tmp, "full"), extra=extra)
        original = Run.save_checkpoint
        calls = {"n": 0}

        def interrupting(self: Any, state: dict[str, Any], tag: str = "last") -> Any:
            out = original(self, state, tag)
            calls["n"] += 1
            if tag == "last" and calls["n"] == 1:
                raise KeyboardInterrupt
            return out

        Run.save_checkpoint = interrupting  # type: ignore[method-assign]
        try:
            with contextlib.suppress(KeyboardInterrupt):  # the interruption we injected
                _train_once(parts, os.path.join(tmp, "cut"), extra=extra)
                pytest.skip("trainer saved no 'last' checkpoint before finishing; nothing to resume")
        finally:
            Run.save_checkpoint = original  # type: ignore[method-assign]
        cut_dir = next(Path(tmp, "cut").iterdir())
        from pk.core.console import Reporter
        from pk.core.plugins import get_registry
        from pk.core.runner import prepare_resume, train

        resolved = prepare_resume(cut_dir, get_registry())
        _, resumed = train(resolved, run_dir=cut_dir, resume=True, reporter=Reporter("quiet"))
        a = load_tensors(path_full / "checkpoints" / "model.pt")["model"]
        b = load_tensors(cut_dir / "checkpoints" / "model.pt")["model"]
    assert resumed["metrics"] == full["metrics"], "resumed run ended with different metrics than an uninterrupted one"
    assert _state_equal(a, b), "resumed run ended with different parameters than an uninterrupted one"


def trainer_zero_steps_leave_weights(case: Case) -> None:
    """With ``max_steps = 0`` a trainer must not change the model (no hidden warm-up step,
    no update outside the step budget)."""
    from pk.core.io import load_tensors
    from pk.core.runner import Components

    if "max_steps" not in _fields(case.registration):
        pytest.skip("trainer has no max_steps budget")
    assert case.registration is not None and case.registration.config is not None
    meta = next(f.metadata for f in dataclasses.fields(case.registration.config) if f.name == "max_steps")
    if meta.get("ge", 0) > 0 or meta.get("gt", -1) >= 0:
        pytest.skip("trainer's max_steps cannot be 0")
    parts = _stack(case, ("dataset", "model"))
    with tempfile.TemporaryDirectory() as tmp:
        from pk.core.console import Reporter
        from pk.core.runner import train

        resolved = _config(parts, out_dir=tmp, extra={"trainer": {"max_steps": 0}})
        path, _ = train(resolved, argv=["pk-check"], reporter=Reporter("quiet"))
        trained = load_tensors(path / "checkpoints" / "model.pt")["model"]
    comps = Components(resolved)
    fresh = comps.model(comps.dataset().info).state_dict()
    assert _state_equal(trained, fresh), "max_steps = 0 still changed the model's weights"
