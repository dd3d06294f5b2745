"""Config bases plugins inherit instead of copying fields (stdlib only; no torch).

Subclass them with ``@dataclass class MyTrainerConfig(OptimConfig, EpochBudget): ...``;
override a default by redeclaring the field with its metadata.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass
class OptimConfig:
    """Optimizer settings: ``lr`` > 0, ``weight_decay`` >= 0, a closed optimizer choice."""

    lr: float = field(default=1e-3, metadata={"gt": 0})
    weight_decay: float = field(default=0.0, metadata={"ge": 0})
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"


@dataclass
class EpochBudget:
    """An epoch-based training budget (part of the comparison fingerprint): at most
    ``max_epochs`` epochs and, when ``max_steps`` >= 0, at most that many optimizer steps."""

    max_epochs: int = field(default=10, metadata={"ge": 1})
    max_steps: int = field(default=-1, metadata={"ge": -1})
    batch_size: int = field(default=64, metadata={"ge": 1})
    eval_batch_size: int = field(default=256, metadata={"ge": 1})


@dataclass
class FileSource:
    """Where a dataset's real file comes from: ``source`` "auto" (the real file when found,
    else the plugin's seeded default), "synthetic" or a plugin-defined name; ``path`` any
    file (or folder) in the dataset's format, overriding the default location."""

    source: str = "auto"
    path: str = ""
