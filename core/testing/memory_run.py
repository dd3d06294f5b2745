"""An in-memory :class:`pk.core.contracts.RunHandle` for driving a trainer or evaluator in a
plugin's own tests, without the CLI, run dirs or files (except artifacts under ``dir``)."""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from pk.core.seed import NamedGenerators


class MemoryRun(NamedGenerators):
    """A run handle that keeps everything in memory.

    Named generators are seeded ``derive_seed(seed, name)`` as in a real run. ``logs`` holds
    every ``log`` call as ``(step, split, metrics)``, ``saved`` a deep copy of every
    checkpoint, ``scores`` the per-example scores by split, ``messages`` what was echoed.
    ``latest_checkpoint`` returns ``resume_from`` (a state to resume from, or None).
    ``build(section, *args, **kwargs)`` calls ``builders[section](*args, **kwargs)`` (None when absent).
    """

    def __init__(self, dir: str | Path | None = None, seed: int = 0, *, resume_from: dict[str, Any] | None = None,
                 builders: Mapping[str, Callable[..., Any]] | None = None, config: dict[str, Any] | None = None,
                 device: str = "cpu") -> None:
        self.dir = Path(dir) if dir is not None else Path(tempfile.mkdtemp(prefix="pk-memory-run-"))
        self.seed = seed
        self.device = device
        self.config: dict[str, Any] = dict(config or {})
        self.logs: list[tuple[int, str, dict[str, float]]] = []
        self.saved: list[dict[str, Any]] = []
        self.scores: dict[str, dict[str, Any]] = {}
        self.messages: list[str] = []
        self.resume_from = resume_from
        self._builders = dict(builders or {})
        NamedGenerators.__init__(self)

    def log(self, step: int, split: str = "train", **metrics: float) -> None:
        self.logs.append((step, split, dict(metrics)))

    def save_checkpoint(self, state: dict[str, Any], tag: str = "last") -> Path:
        self.saved.append(copy.deepcopy(state))
        return self.dir / "checkpoints" / f"{tag}.pt"

    def latest_checkpoint(self) -> dict[str, Any] | None:
        return self.resume_from

    def artifact_path(self, name: str) -> Path:
        path = self.dir / "artifacts" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def save_example_scores(self, split: str, scores: Mapping[str, Any]) -> Path | None:
        self.scores[split] = dict(scores)
        return None

    def build(self, section: str, *args: Any, **kwargs: Any) -> Any:
        builder = self._builders.get(section)
        return builder(*args, **kwargs) if builder is not None else None

    def progress(self, iterable: Iterable[Any], total: int | None = None, description: str = "") -> Iterable[Any]:
        return iterable

    def echo(self, message: str) -> None:
        self.messages.append(message)
