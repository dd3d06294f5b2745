"""Shared helpers of the contract checks: registries, companions, configs, builds."""

from __future__ import annotations

import dataclasses
import tempfile
from typing import Any

import pytest

from pk.core.config import resolve
from pk.core.registry import Registration
from pk.core.testing.cases import Case

TRAINER_BUDGET = {"max_epochs": 2, "max_steps": 6, "rounds": 2, "epochs": 1, "patience": 100}


# -- helpers ---------------------------------------------------------------------------
def _registry() -> Any:
    from pk.core.plugins import get_registry

    return get_registry()


def _test_params(reg: Registration, section: str) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if reg.config is None:
        return params
    fields = {f.name for f in dataclasses.fields(reg.config)}
    if section == "dataset" and "source" in fields:
        params["source"] = "synthetic"
    if section == "trainer":
        params.update({k: v for k, v in TRAINER_BUDGET.items() if k in fields})
    params.update(getattr(reg.config, "pk_test", {}) or {})
    return params


def _bases(distribution: str) -> list[str]:
    """The pk-* distributions ``distribution`` requires (its domain bases), transitively."""
    import re
    from importlib import metadata

    out: list[str] = []
    todo = [distribution]
    while todo:
        try:
            reqs = metadata.requires(todo.pop()) or []
        except metadata.PackageNotFoundError:
            continue
        for req in reqs:
            name = re.split(r"[\s<>=!~\[;(]", req, maxsplit=1)[0]
            if name.startswith("pk-") and name != "pk-core" and name not in out and "extra ==" not in req:
                out.append(name)
                todo.append(name)
    return out


def _companion(kind: str, tasks: tuple[str, ...], prefer: str) -> Registration | None:
    """A registration of ``kind`` sharing a task: from the plugin ``prefer`` itself, then its
    declared pk-* bases, then the core built-ins. Never from an unrelated plugin that happens
    to be installed (``pk_test_with`` names such a companion explicitly)."""
    order = [prefer, *_bases(prefer), "pk-core"]
    regs = [r for r in _registry() if r.kind == kind and r.distribution in order
            and (not tasks or not r.tasks or set(r.tasks) & set(tasks))]
    regs.sort(key=lambda r: (order.index(r.distribution), r.name))
    return regs[0] if regs else None


_SCRATCH: list[tempfile.TemporaryDirectory[str]] = []


def _scratch_dir() -> str:
    """One placeholder ``run.out_dir`` per process for checks that never write a run; removed at exit."""
    if not _SCRATCH:
        _SCRATCH.append(tempfile.TemporaryDirectory(prefix="pk-check-"))
    return _SCRATCH[0].name


def _config(parts: dict[str, Registration], seed: int = 0, out_dir: str | None = None,
            extra: dict[str, dict[str, Any]] | None = None) -> Any:
    raw: dict[str, Any] = {"run": {"seed": seed, "threads": 1, "out_dir": out_dir or _scratch_dir()}}
    for section, reg in parts.items():
        raw[section] = {"name": reg.qualified_name, **_test_params(reg, section), **(extra or {}).get(section, {})}
    return resolve(raw, _registry(), required=())


def _stack(case: Case, need: tuple[str, ...]) -> dict[str, Registration]:
    """The registration under test plus companions for the sections in ``need``."""
    reg = case.registration
    assert reg is not None
    parts = {reg.kind[:-1]: reg}
    tasks = reg.tasks
    preferred = dict(getattr(reg.config, "pk_test_with", {}) or {}) if reg.config is not None else {}
    for section in need:
        if section in parts:
            continue
        if section in preferred:
            parts[section] = _registry().get(section + "s", preferred[section])
            continue
        comp = _companion(section + "s", tasks, reg.distribution)
        if comp is None:
            pytest.skip(f"no installed {section} shares a task with {reg.name} ({', '.join(tasks) or 'any'})")
        parts[section] = comp
        tasks = tuple(set(tasks) & set(comp.tasks)) if tasks and comp.tasks else (tasks or comp.tasks)
    return parts


def _fields(reg: Registration | None) -> set[str]:
    return {f.name for f in dataclasses.fields(reg.config)} if reg is not None and reg.config is not None else set()


def _build_data_model(parts: dict[str, Registration], seed: int = 0) -> tuple[Any, Any]:
    import torch

    from pk.core.runner import Components

    torch.set_num_threads(1)
    comps = Components(_config(parts, seed))
    data = comps.dataset()
    model = comps.model(data.info)
    return data, model


def _first_batch(data: Any, size: int = 4) -> Any:
    split = "train" if "train" in data.splits else data.splits[0]
    return next(iter(data.loader(split, size)))


def _tensor_equal(a: Any, b: Any) -> bool:
    import torch

    return a.shape == b.shape and bool(torch.equal(torch.nan_to_num(a.float()), torch.nan_to_num(b.float())))


def _state_equal(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a.keys() == b.keys() and all(_tensor_equal(a[k], b[k]) for k in a)
