"""Shared training state: what a resumable trainer saves every epoch and restores on resume.

One :class:`TrainState` holds the model, named optimizers and schedulers, the epoch and step
counters, the best-so-far record and any extra plain values; :meth:`TrainState.save` writes
them with the run's named generators and the global RNG states through
``run.save_checkpoint``; :meth:`TrainState.restore` puts everything back, so a resumed run
ends bit-identical on CPU. torch is imported only when a state is saved or restored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pk.core.contracts import RunHandle
from pk.core.seed import capture_rng_state, restore_rng_state


class TrainState:
    """Checkpointable state of one training loop.

    ``epoch`` is the last *completed* epoch (-1 before the first), so a loop runs
    ``range(state.start_epoch, max_epochs)``; ``step`` counts optimizer steps; ``best`` is
    the trainer's best-so-far record (any checkpointable dict, e.g. metric, epoch, weights);
    ``extra`` holds further plain values (tensors, numbers, lists, dicts of those).
    """

    def __init__(self, model: Any, optimizers: Mapping[str, Any] | None = None,
                 schedulers: Mapping[str, Any] | None = None, **extra: Any) -> None:
        self.model = model
        self.optimizers = dict(optimizers or {})
        self.schedulers = dict(schedulers or {})
        self.epoch = -1
        self.step = 0
        self.best: dict[str, Any] = {}
        self.extra: dict[str, Any] = dict(extra)

    @property
    def start_epoch(self) -> int:
        """The first epoch still to run."""
        return self.epoch + 1

    def state_dict(self, run: RunHandle) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
            "generators": run.generator_states(),
            "rng": capture_rng_state(),
            "epoch": self.epoch,
            "step": self.step,
            "best": self.best,
            "extra": self.extra,
        }

    def save(self, run: RunHandle, tag: str = "last") -> None:
        """Checkpoint everything after an epoch (call after updating ``epoch``/``step``)."""
        run.save_checkpoint(self.state_dict(run), tag=tag)

    def load_state_dict(self, state: Mapping[str, Any], run: RunHandle) -> None:
        self.model.load_state_dict(state["model"])
        for key, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][key])
        for key, sched in self.schedulers.items():
            sched.load_state_dict(state["schedulers"][key])
        run.restore_generator_states(state["generators"])
        restore_rng_state(state["rng"])
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        self.best = dict(state.get("best") or {})
        self.extra = dict(state.get("extra") or {})

    def restore(self, run: RunHandle) -> bool:
        """Load the run's latest checkpoint if there is one; True when it resumed."""
        ckpt = run.latest_checkpoint()
        if ckpt is None:
            return False
        self.load_state_dict(ckpt, run)
        run.echo(f"resumed at epoch {self.start_epoch}")
        return True
