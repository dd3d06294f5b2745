"""Shared helpers: a minimal run handle for calling trainers directly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from pk.core.seed import derive_seed


class FakeRun:
    """The parts of the run handle the streaming trainers use; checkpoints kept in memory."""

    device = "cpu"

    def __init__(self, tmp: Path, seed: int = 0, checkpoint: dict[str, Any] | None = None) -> None:
        self.dir, self.seed = Path(tmp), seed
        self.logs: list[tuple[int, str, dict[str, float]]] = []
        self.saved: list[dict[str, Any]] = []
        self._resume = checkpoint
        self._gens: dict[str, torch.Generator] = {}

    def generator(self, name: str) -> torch.Generator:
        if name not in self._gens:
            self._gens[name] = torch.Generator().manual_seed(derive_seed(self.seed, name))
        return self._gens[name]

    def generator_states(self) -> dict[str, Any]:
        return {name: g.get_state() for name, g in self._gens.items()}

    def restore_generator_states(self, states: dict[str, Any]) -> None:
        for name, state in states.items():
            self.generator(name).set_state(state)

    def log(self, step: int, split: str = "train", **m: float) -> None:
        self.logs.append((step, split, m))

    def save_checkpoint(self, state: dict[str, Any], tag: str = "last") -> None:
        import copy

        self.saved.append(copy.deepcopy(state))

    def latest_checkpoint(self) -> dict[str, Any] | None:
        return self._resume

    def artifact_path(self, name: str) -> Path:
        (self.dir / "artifacts").mkdir(parents=True, exist_ok=True)
        return self.dir / "artifacts" / name

    def progress(self, it: Any, total: Any = None, description: str = "") -> Any:
        return it

    def echo(self, message: str) -> None:
        pass


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
def fake_run() -> type:
    return FakeRun


@pytest.fixture
def small() -> Any:
    """A 4-block synthetic stream config (30 sessions per block)."""
    return _small_config()


@pytest.fixture
def model_for() -> Any:
    """``model_for(stream)``: a tiny SASRec sized for the stream, fixed init."""
    return _small_model
