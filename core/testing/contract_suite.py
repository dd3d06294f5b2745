"""The contract suite as a pytest module, parametrized by ``--pk-plugin`` (used by ``pk check``)."""

from __future__ import annotations

from typing import Any

import pytest

from pk.core.testing import cases_for, check


def pytest_generate_tests(metafunc: Any) -> None:
    if "case" not in metafunc.fixturenames:
        return
    cases = []
    for plugin in metafunc.config.getoption("pk_plugin") or []:
        cases += cases_for(plugin)
    metafunc.parametrize("case", cases, ids=[c.id for c in cases])


def test_contract(case: Any) -> None:
    check(case)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(pytest.main([__file__]))
