"""What the AC-TSR calibrators share: the per-forward :class:`Session` (the layer inputs a
host shows them, the adversarial trace) and :class:`_Stage` (sizes, attach/begin/observe/end).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from pk.core.errors import ConfigError


# -- per-forward context ---------------------------------------------------------------
@dataclass
class LayerInput:
    """One attention layer's input ``x`` [B, L, H] and the pk-seqrec attention module; the
    projected query/key [B, L, H] are computed once and shared by both stages."""

    attention: nn.Module
    x: torch.Tensor
    _query: torch.Tensor | None = None
    _key: torch.Tensor | None = None

    def query(self) -> torch.Tensor:
        if self._query is None:
            self._query = self.attention.query(self.x)
        return self._query

    def key(self) -> torch.Tensor:
        if self._key is None:
            self._key = self.attention.key(self.x)
        return self._key


@dataclass
class Session:
    """What one forward pass shows the calibrators and what the adversarial stage leaves
    for L_adv: per layer the dropped-out attention A [B, h, L, L] that entered the stage,
    the perturbation mask M [B, h, L, L] and the attention mask (only with ``keep_trace``)."""

    positions: torch.Tensor | None = None
    keep_trace: bool = False
    inputs: dict[int, LayerInput] = field(default_factory=dict)
    attention: dict[int, torch.Tensor] = field(default_factory=dict)
    masks: dict[int, torch.Tensor] = field(default_factory=dict)
    attention_masks: dict[int, torch.Tensor] = field(default_factory=dict)


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """[B, L, H] -> [B, h, L, H/h]."""
    B, L, H = x.shape
    return x.view(B, L, heads, H // heads).transpose(1, 2)


def _init_linear(modules: nn.Module, std: float) -> None:
    """RecBole init for the calibrator's Linear layers: weight N(0, std), bias 0."""
    for m in modules.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, std)
            nn.init.zeros_(m.bias)


def _key_positions(session: Session | None, batch: int, length: int, device: torch.device) -> torch.Tensor:
    """[B, L] position of each key counted from the oldest real item (tensor index when no host)."""
    if session is not None and session.positions is not None and session.positions.shape[-1] == length:
        return session.positions
    return torch.arange(length, device=device).expand(batch, length)


class _Stage(nn.Module, ABC):
    """Sizes, attach/begin/observe/end shared by the calibrators. Parameters are created as
    soon as ``hidden``, ``heads`` and ``layers`` are known (config, or the host's attach)."""

    applies_attention_dropout = False

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.enabled = bool(getattr(config, "enabled", True))
        self.neutral = not self.enabled
        self.init_std = float(getattr(config, "init_std", 0.02))
        self.hidden = int(getattr(config, "hidden", 0))
        self.heads = int(getattr(config, "heads", 0))
        self.num_layers = int(getattr(config, "layers", 0))
        self._session: Session | None = None
        self._built = False
        if self.hidden % max(self.heads, 1):
            raise ConfigError(f"calibrator.hidden ({self.hidden}) must be divisible by calibrator.heads ({self.heads})")
        if self.hidden > 0 and self.heads > 0 and self.num_layers > 0:
            self._build()
            self._built = True

    # -- sizes -------------------------------------------------------------------------
    @property
    def num_heads(self) -> int | None:
        return self.heads or None

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @abstractmethod
    def _build(self) -> None:  # pragma: no cover - overridden
        ...

    def _check_size(self, name: str, mine: int, host: int, host_field: str) -> int:
        if mine and mine != host:
            raise ConfigError(
                f"calibrator.{name} = {mine} but the model has {host_field} = {host}; "
                f"set calibrator.{name} = {host} (or 0 to take the model's value)"
            )
        return host

    def attach(self, *, hidden: int, heads: int, layers: int, seq_len: int, attn_dropout: float) -> None:
        """Adopt the host's sizes (explicit config sizes must match) and build parameters."""
        self.hidden = self._check_size("hidden", self.hidden, hidden, "model.hidden")
        self.heads = self._check_size("heads", self.heads, heads, "model.heads")
        self.num_layers = self._check_size("layers", self.num_layers, layers, "model.layers")
        if not self._built:
            self._build()
            self._built = True

    # -- per-forward session -----------------------------------------------------------
    def begin(self, positions: torch.Tensor | None, keep_trace: bool = False) -> Session:
        self._session = Session(positions=positions, keep_trace=keep_trace)
        return self._session

    def share(self, session: Session | None) -> None:
        self._session = session

    def observe(self, attention: nn.Module, x: torch.Tensor, layer: int) -> None:
        if self._session is not None:
            self._session.inputs[layer] = LayerInput(attention, x)

    def end(self) -> Session | None:
        session, self._session = self._session, None
        return session

    def _input(self, layer: int) -> LayerInput | None:
        return None if self._session is None else self._session.inputs.get(layer)

    def _require_built(self) -> None:
        if not self._built:
            raise ConfigError(
                f"{type(self).__name__} has no sizes: use it with model.name = ac-sasrec or ac-bert4rec "
                "(pk-seqrec's seam passes no query/key features), or set calibrator.hidden/heads/layers"
            )

    def adversarial_parameters(self) -> list[nn.Parameter]:
        """Parameters trained by L_adv only (the mask generator); empty for the spatial stage."""
        return []

    @property
    def has_adversary(self) -> bool:
        return bool(self.adversarial_parameters()) and self.enabled
