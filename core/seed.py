"""Seeds: one master seed, named derived seeds, and RNG state capture for resume."""

from __future__ import annotations

import hashlib
import os
import random
from typing import Any


def derive_seed(seed: int, *names: str) -> int:
    """A stable 63-bit seed from ``seed`` and names (same inputs, same output, any process)."""
    h = hashlib.sha256(repr((int(seed), *names)).encode()).digest()
    return int.from_bytes(h[:8], "little") & ((1 << 63) - 1)


def seed_everything(seed: int, *, deterministic: bool = True) -> None:
    """Seed python, numpy (if imported) and torch; optionally force deterministic kernels."""
    import sys

    import torch

    random.seed(seed)
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True


def capture_rng_state() -> dict[str, Any]:
    """Global RNG states (python, torch CPU and CUDA) as checkpointable values."""
    import torch

    version, inner, gauss_next = random.getstate()
    state: dict[str, Any] = {"python": list(inner), "python_version": version, "torch": torch.get_rng_state()}
    if gauss_next is not None:  # random.gauss's cached second value
        state["python_gauss_next"] = float(gauss_next)
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    import torch

    inner = [int(x) for x in state["python"]]
    if len(inner) == 626:  # checkpoints before the gauss_next fix appended a placeholder
        inner = inner[:-1]
    random.setstate((state["python_version"], tuple(inner), state.get("python_gauss_next")))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class NamedGenerators:
    """Named CPU ``torch.Generator`` objects, each seeded ``derive_seed(self.seed, name)`` on
    first use and the same object afterwards (a run handle's ``generator`` and the states a
    checkpoint saves). Subclasses set ``seed`` and call :meth:`__init__`."""

    seed: int

    def __init__(self) -> None:
        self._generators: dict[str, Any] = {}

    def generator(self, name: str) -> Any:
        """A CPU ``torch.Generator`` seeded from (run seed, name); the same object per name."""
        import torch

        if name not in self._generators:
            self._generators[name] = torch.Generator().manual_seed(derive_seed(self.seed, name))
        return self._generators[name]

    def generator_states(self) -> dict[str, Any]:
        """States of every named generator handed out so far (for checkpoints)."""
        return {name: g.get_state() for name, g in self._generators.items()}

    def restore_generator_states(self, states: dict[str, Any]) -> None:
        for name, state in states.items():
            self.generator(name).set_state(state)
