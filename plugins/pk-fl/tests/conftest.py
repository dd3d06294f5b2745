"""Tests share 2 CPU cores with other jobs: one torch thread avoids oversubscription. Also a
minimal in-memory run handle (fixture ``fake_run``) for driving trainers without the CLI."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest
import torch

from pk.core.seed import derive_seed

torch.set_num_threads(1)


class FakeRun:
    """Enough of :class:`pk.core.contracts.RunHandle` for ``fedsim``/``flower``: seeded named
    generators, logged metrics in ``self.logs``, no checkpoints, aggregator from ``build_aggregator``."""

    def __init__(self, tmp: Path, seed: int = 0, build_aggregator: Callable[..., Any] | None = None) -> None:
        self.dir = Path(tmp)
        self.config: dict[str, Any] = {}
        self.seed = seed
        self.device = "cpu"
        self._gens: dict[str, torch.Generator] = {}
        self.logs: list[tuple[int, str, dict[str, float]]] = []
        self.scores: dict[str, dict[str, Any]] = {}
        self._build = build_aggregator

    def generator(self, name: str) -> torch.Generator:
        if name not in self._gens:
            self._gens[name] = torch.Generator().manual_seed(derive_seed(self.seed, name))
        return self._gens[name]

    def generator_states(self) -> dict[str, Any]:
        return {name: g.get_state() for name, g in self._gens.items()}

    def log(self, step: int, split: str = "train", **metrics: float) -> None:
        self.logs.append((step, split, dict(metrics)))

    def save_checkpoint(self, state: dict[str, Any], tag: str = "last") -> Path:
        return self.dir / f"{tag}.pt"

    def latest_checkpoint(self) -> None:
        return None

    def artifact_path(self, name: str) -> Path:
        path = self.dir / "artifacts" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def save_example_scores(self, split: str, scores: Mapping[str, Any]) -> None:
        self.scores[split] = dict(scores)

    def build(self, section: str, **kwargs: Any) -> Any:
        return self._build(**kwargs) if section == "aggregator" and self._build is not None else None

    def progress(self, iterable: Iterable[Any], total: int | None = None, description: str = "") -> Iterable[Any]:
        return iterable

    def echo(self, message: str) -> None:
        pass


@pytest.fixture
def fake_run(tmp_path: Path) -> Callable[..., FakeRun]:
    """``fake_run(seed=0, build_aggregator=None)`` -> a :class:`FakeRun` under ``tmp_path``."""

    def make(seed: int = 0, build_aggregator: Callable[..., Any] | None = None) -> FakeRun:
        return FakeRun(tmp_path, seed, build_aggregator)

    return make
