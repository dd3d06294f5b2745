"""``ac-tsr``: the spatial stage, then the adversarial stage (the released two-level setting)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from pk_actsr.calibrators.adversarial import AdversarialCalibrator
from pk_actsr.calibrators.base import Session
from pk_actsr.calibrators.spatial import SpatialCalibrator


class ACTSRCalibrator(nn.Module):
    """``ac-tsr``: the spatial stage on the scores, then the adversarial stage on the
    resulting (dropped-out) attention, sharing one per-forward :class:`Session`."""

    applies_attention_dropout = True

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.spatial = SpatialCalibrator(config)
        self.adversarial = AdversarialCalibrator(config)
        self.enabled = self.spatial.enabled
        self.neutral = not self.enabled

    @property
    def num_heads(self) -> int | None:
        return self.spatial.num_heads

    @property
    def num_layers(self) -> int:
        return self.spatial.num_layers

    @property
    def max_len(self) -> int | None:
        return self.adversarial.max_len

    @property
    def mask_loss_weight(self) -> float:
        return self.adversarial.mask_loss_weight

    @property
    def has_adversary(self) -> bool:
        return self.adversarial.has_adversary

    def mask_penalty(self, masks: list[torch.Tensor]) -> torch.Tensor:
        return self.adversarial.mask_penalty(masks)

    def attach(self, **sizes: Any) -> None:
        self.spatial.attach(**sizes)
        self.adversarial.attach(**sizes)

    def begin(self, positions: torch.Tensor | None, keep_trace: bool = False) -> Session:
        session = self.spatial.begin(positions, keep_trace)
        self.adversarial.share(session)
        return session

    def observe(self, attention: nn.Module, x: torch.Tensor, layer: int) -> None:
        self.spatial.observe(attention, x, layer)

    def end(self) -> Session | None:
        self.adversarial.share(None)
        return self.spatial.end()

    def adversarial_parameters(self) -> list[nn.Parameter]:
        return self.adversarial.adversarial_parameters()

    def adjust_scores(self, scores: torch.Tensor, mask: torch.Tensor, *, layer: int = 0) -> torch.Tensor:
        return self.spatial.adjust_scores(scores, mask, layer=layer)

    def calibrate(self, attn: torch.Tensor, mask: torch.Tensor, *, layer: int = 0) -> torch.Tensor:
        return self.adversarial.calibrate(attn, mask, layer=layer)
