"""Turning a plugin's registrations into contract-check cases."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from pk.core.registry import Registration, Registry

#: checks run for each kind (names are functions in pk.core.testing.checks)
CHECKS: dict[str, tuple[str, ...]] = {
    "plugin": ("entry_module_is_light", "recipes_are_valid"),
    "all": ("registration_is_valid",),
    "datasets": ("dataset_is_deterministic", "dataset_splits_are_disjoint", "dataset_batches_fit_info"),
    "models": ("model_output_has_task_shape", "model_is_deterministic", "model_state_dict_round_trips",
               "model_loss_backpropagates", "model_accepts_drawn_configs"),
    "trainers": ("trainer_is_deterministic", "trainer_resume_is_exact", "trainer_zero_steps_leave_weights"),
    "aggregators": (
        "aggregator_fixed_point",
        "aggregator_permutation_invariant",
        "aggregator_weight_scale_invariant",
        "aggregator_rejects_empty",
        "aggregator_does_not_mutate",
        "aggregator_robust_bounded",
    ),
    "calibrators": ("calibrator_keeps_rows_stochastic", "calibrator_neutral_is_identity"),
    "evaluators": ("evaluator_metrics_in_range",),
}


#: checks selected by a registration's tasks (its tags), as scikit-learn selects estimator
#: checks by estimator tags: kind -> task -> checks
TASK_CHECKS: dict[str, dict[str, tuple[str, ...]]] = {
    "models": {
        "classification": ("model_batch_independent",),
        "next-item": ("model_batch_independent", "model_padding_invariant"),
        "node-classification": ("model_permutation_equivariant",),
    },
}


def checks_for(reg: Registration) -> tuple[str, ...]:
    """The checks a registration gets: every registration's, its kind's, and its tasks'."""
    by_task = TASK_CHECKS.get(reg.kind, {})
    tagged = [c for task in reg.tasks for c in by_task.get(task, ())]
    return tuple(dict.fromkeys([*CHECKS["all"], *CHECKS[reg.kind], *tagged]))


@dataclass(frozen=True)
class Case:
    """One check on one registration (``registration`` is None for plugin-level checks)."""

    check: str
    plugin: str
    registration: Registration | None = None

    @property
    def id(self) -> str:
        if self.registration is None:
            return f"plugin:{self.plugin}::{self.check}"
        return f"{self.registration.kind[:-1]}:{self.registration.name}::{self.check}"


def cases_for(plugin: str, registry: Registry | None = None, kinds: tuple[str, ...] | None = None) -> list[Case]:
    """Every check for every registration made by ``plugin`` (distribution or entry-point name)."""
    from pk.core.plugins import load_registry

    registry = registry or load_registry()
    infos = [p for p in registry.plugins if p.distribution == plugin or p.name == plugin]
    if not infos:
        loaded = ", ".join(p.distribution for p in registry.plugins)
        raise LookupError(f"plugin {plugin!r} is not loaded (loaded: {loaded}); install it or fix PK_LOAD_PLUGINS")
    info = infos[0]
    if info.error:
        raise LookupError(f"plugin {plugin!r} failed to load: {info.error}")
    out: list[Case] = []
    if not info.builtin:
        out += [Case(c, info.distribution) for c in CHECKS["plugin"]]
    for reg in registry:
        if reg.distribution != info.distribution:
            continue
        if kinds and reg.kind not in kinds:
            continue
        for c in checks_for(reg):
            out.append(Case(c, info.distribution, reg))
    return out


def parametrize_contracts(
    plugin: str, kinds: tuple[str, ...] | None = None, expected_failures: dict[str, str] | None = None
) -> Any:
    """A ``pytest.mark.parametrize("case", ...)`` over ``plugin``'s contract cases.

    ``expected_failures`` maps a case id to a reason; those become strict xfails.
    """
    cases = cases_for(plugin, kinds=kinds)
    expected_failures = expected_failures or {}
    params = [
        pytest.param(c, id=c.id, marks=pytest.mark.xfail(reason=expected_failures[c.id], strict=True))
        if c.id in expected_failures
        else pytest.param(c, id=c.id)
        for c in cases
    ]
    return pytest.mark.parametrize("case", params)


def check(case: Case) -> None:
    """Run one contract check (raises AssertionError on violation, skips when not applicable)."""
    from pk.core.testing import checks

    getattr(checks, case.check)(case)
