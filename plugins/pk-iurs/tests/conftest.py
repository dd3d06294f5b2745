"""Shared helpers: a minimal run handle for calling trainers directly."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from pk.core.testing import MemoryRun


def _small_config() -> Any:
    from pk_iurs.plugin import StreamSyntheticConfig

    return StreamSyntheticConfig(blocks=4, sessions_per_block=30, initial_items=40, new_items=8, num_clusters=6,
                                 max_len=10)


def _small_model(stream: Any) -> Any:
    from pk_seqrec.models.sasrec import SASRec

    torch.manual_seed(0)
    return SASRec(stream.info.num_items, stream.max_len, hidden=16, layers=1, heads=1, inner=32, dropout=0.1,
                  attn_dropout=0.1)


@pytest.fixture
def fake_run() -> Callable[..., MemoryRun]:
    """``fake_run(dir, seed=0, checkpoint=None)``: an in-memory run handle (resumes from ``checkpoint``)."""

    def make(tmp: Path, seed: int = 0, checkpoint: dict[str, Any] | None = None) -> MemoryRun:
        return MemoryRun(tmp, seed, resume_from=checkpoint)

    return make


@pytest.fixture
def small() -> Any:
    """A 4-block synthetic stream config (30 sessions per block)."""
    return _small_config()


@pytest.fixture
def model_for() -> Any:
    """``model_for(stream)``: a tiny SASRec sized for the stream, fixed init."""
    return _small_model
