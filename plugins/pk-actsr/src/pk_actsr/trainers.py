"""The ``ac-next-item`` trainer: pk-seqrec's next-item trainer (checkpoints every epoch,
bit-identical resume, early stopping, best-validation weights) run with AC-TSR's released
defaults (see :class:`pk_actsr.plugin.ACNextItemTrainerConfig`).

The optimisation split itself is the AC models' ``train_step`` (pk-seqrec's extension
point), so plain ``next-item`` trains AC models the same way; this trainer additionally
refuses models that do not take over their optimisation step, so an AC recipe can never
silently fall back to a single loss.
"""

from __future__ import annotations

from typing import Any

from pk_seqrec.trainers.next_item import NextItemTrainer
from torch import nn

from pk.core.contracts import RunHandle
from pk.core.errors import ConfigError


class ACNextItemTrainer(NextItemTrainer):
    """``fit`` as pk-seqrec's ``next-item``; needs a model with ``configure_optimizers`` and
    ``train_step`` (``ac-sasrec``, ``ac-bert4rec``)."""

    resumable = True

    def fit(self, model: nn.Module, data: Any, run: RunHandle) -> dict[str, float]:
        if not (hasattr(model, "configure_optimizers") and hasattr(model, "train_step")):
            raise ConfigError(
                f"trainer ac-next-item needs an AC model (model.name = ac-sasrec or ac-bert4rec), got "
                f"{type(model).__name__}; use trainer.name = next-item for other models"
            )
        return super().fit(model, data, run)
