"""Tests share 2 CPU cores with other jobs: one torch thread avoids oversubscription. Also a
minimal in-memory run handle (fixture ``fake_run``) for driving trainers without the CLI."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from pk.core.testing import MemoryRun

torch.set_num_threads(1)


@pytest.fixture
def fake_run(tmp_path: Path) -> Callable[..., MemoryRun]:
    """``fake_run(seed=0, build_aggregator=None)`` -> an in-memory run handle under ``tmp_path``
    whose ``run.build("aggregator", **kwargs)`` calls ``build_aggregator(**kwargs)``."""

    def make(seed: int = 0, build_aggregator: Callable[..., Any] | None = None) -> MemoryRun:
        return MemoryRun(tmp_path, seed, builders={"aggregator": build_aggregator} if build_aggregator else None)

    return make
