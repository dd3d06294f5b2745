"""pk's contract suite: property checks for every registered component.

A plugin runs it on its own registrations with a three-line test file::

    from pk.core.testing import check, parametrize_contracts

    @parametrize_contracts("pk-myplugin")
    def test_contract(case):
        check(case)

``pk check NAME`` runs the same suite on any installed plugin. Config dataclasses may define
a class attribute ``pk_test = {"field": value}`` to shrink a component for the suite
(trainers' ``max_epochs``/``max_steps``/``rounds`` are shrunk automatically), and
``pk_test_with = {"dataset": "name", "model": "name"}`` to choose the companions a model,
trainer or evaluator is checked with (default: the first registration sharing a task,
preferring the same plugin).
"""

from __future__ import annotations

import pytest

pytest.register_assert_rewrite("pk.core.testing.checks")

from pk.core.testing.cases import Case, cases_for, check, parametrize_contracts  # noqa: E402
from pk.core.testing.memory_run import MemoryRun  # noqa: E402

__all__ = ["Case", "MemoryRun", "cases_for", "check", "parametrize_contracts"]
