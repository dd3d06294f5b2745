"""Protocol and budget fingerprint: the config fields that decide whether two runs compare.

A run's fingerprint holds every ``dataset.*`` and ``evaluator.*`` field, and the trainer
fields that set its budget: those named in :data:`BUDGET_FIELDS`, plus any trainer field
whose dataclass metadata says ``{"budget": True}`` (examples or batches seen, schedule
length) or ``{"protocol": True}`` (metric settings a trainer owns). Component names and the
components' own hyper-parameters are not in it: they are what a comparison varies.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from pk.core.config import Resolved

#: Trainer fields that are a training budget whatever the trainer.
BUDGET_FIELDS = frozenset({
    "max_epochs", "epochs", "min_epochs", "max_steps", "steps", "patience", "rounds", "num_rounds",
    "local_epochs", "local_steps", "iterations", "max_batches", "warmup_steps", "eval_every",
})


def _budget_keys(resolved: Resolved) -> set[str]:
    reg = resolved.registrations.get("trainer")
    keys = set(BUDGET_FIELDS)
    if reg is not None and reg.config is not None:
        for f in dataclasses.fields(reg.config):
            if f.metadata.get("budget") or f.metadata.get("protocol"):
                keys.add(f.name)
    return keys


def fingerprint(resolved: Resolved) -> dict[str, Any]:
    """Flat ``{"section.key": value}`` of the fields two compared runs must share."""
    data = resolved.data
    out: dict[str, Any] = {}
    for section in ("dataset", "evaluator"):
        for key, value in sorted(data.get(section, {}).items()):
            if not key.startswith("_"):
                out[f"{section}.{key}"] = value
    budget = _budget_keys(resolved)
    for key, value in sorted(data.get("trainer", {}).items()):
        if key in budget:
            out[f"trainer.{key}"] = value
    return out


def differences(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """Keys whose values differ, or that only one fingerprint has, in sorted order.

    A trainer budget key that only one side has is not a difference: two trainers may
    count their budget in different units (epochs vs steps), and each is still compared
    on the keys they share."""
    keys = set(a) | set(b)
    out = []
    for key in sorted(keys):
        if key in a and key in b:
            if a[key] != b[key]:
                out.append(key)
        elif not key.startswith("trainer."):
            out.append(key)
    return out
