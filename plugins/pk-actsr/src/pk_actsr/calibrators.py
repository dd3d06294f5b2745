"""AC-TSR calibrators for pk-seqrec's attention seam.

Seam (pk_seqrec.models.encoder), per layer ``i``: ``scores = Q Kᵀ / sqrt(d)`` [B, h, L, L]
-> ``adjust_scores`` -> masked softmax -> ``calibrate`` -> dropout -> ``@ V``. ``mask`` is
bool [B, 1, L|1, L], True where a query may attend a key.

The seam passes no query/key features, so a host that wants the full method calls
:meth:`attach` once (sizes, gate width, dropout) and, per forward, :meth:`begin` (key
positions), ``observe(attention_module, x, layer)`` from a pre-hook on every attention
layer, and :meth:`end` (returns the :class:`Session` with the adversarial trace). Stand-alone
(not attached, as in pk's contract suite) the predictors see zero features and the key
positions are the tensor indices; the output is still a valid attention.

Invariants (tested): outputs are non-negative, rows sum to 1 over unmasked keys, masked
keys get exactly 0; the perturbation mask M is in [0, 1] before dropout; the separable and
the direct spatial terms agree.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import torch
from pk_seqrec.models.encoder import masked_softmax
from torch import nn

from pk.core.errors import ConfigError

LOG_EPS = 1e-24  # the reference's epsilon inside log p and log(1 - p)


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


# -- spatial calibrator ----------------------------------------------------------------
def pair_linear_separable(q: torch.Tensor, k: torch.Tensor, linear: nn.Linear) -> torch.Tensor:
    """Linear(2d -> 1) applied to every [q_i; k_j], as w_qᵀ q_i + w_kᵀ k_j + b.
    ``q``, ``k``: [B, h, L, d] -> [B, h, L, L]; memory O(B h L²), never [B, h, L, L, 2d]."""
    d = q.shape[-1]
    w = linear.weight[0]
    return (q @ w[:d])[..., :, None] + (k @ w[d:])[..., None, :] + linear.bias[0]


def pair_linear_direct(q: torch.Tensor, k: torch.Tensor, linear: nn.Linear) -> torch.Tensor:
    """The reference's form: materialise [B, h, L, L, 2d] = [q_i; k_j] and apply the Linear."""
    B, h, L, d = q.shape
    pairs = torch.cat([q[:, :, :, None, :].expand(B, h, L, L, d), k[:, :, None, :, :].expand(B, h, L, L, d)], dim=-1)
    return linear(pairs).squeeze(-1)


class SpatialCalibrator(_Stage):
    """``ac-spatial``: S' = S + E_order + E_dist before the 1/sqrt(d) scaling (so the seam's
    scaled scores get ``+ (E_order + E_dist) / sqrt(d)``). One order and one distance
    Linear(2d -> 1) per layer, shared by the heads; one scalar lambda per layer (randn init,
    not the N(0, 0.02) init). No loss of its own: trained through the recommendation loss."""

    def __init__(self, config: Any) -> None:
        self.use_order = bool(getattr(config, "use_order", True))
        self.use_distance = bool(getattr(config, "use_distance", True))
        self.separable = bool(getattr(config, "separable", True))
        super().__init__(config)

    def _build(self) -> None:
        d, n = self.head_dim, self.num_layers
        self.order = nn.ModuleList(nn.Linear(2 * d, 1) for _ in range(n)) if self.use_order else None
        self.distance = nn.ModuleList(nn.Linear(2 * d, 1) for _ in range(n)) if self.use_distance else None
        _init_linear(self, self.init_std)
        self.distance_scale = nn.Parameter(torch.randn(n)) if self.use_distance else None

    def spatial_terms(self, q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor, layer: int,
                      separable: bool | None = None) -> torch.Tensor:
        """E_order + E_dist [B, h, L, L] from per-head ``q``, ``k`` [B, h, L, d] and key
        positions [B, L] (query i's position = key i's)."""
        pair = pair_linear_separable if (self.separable if separable is None else separable) else pair_linear_direct
        rel = (positions[:, None, :] - positions[:, :, None])[:, None].to(q.dtype)  # [B, 1, L, L]: pos_j - pos_i
        terms = torch.zeros((), dtype=q.dtype, device=q.device)
        if self.order is not None:
            later = (rel > 0).to(q.dtype)
            p = torch.sigmoid(pair(q, k, self.order[layer]))
            terms = terms + later * torch.log(p + LOG_EPS) + (1 - later) * torch.log(1 - p + LOG_EPS)
        if self.distance is not None and self.distance_scale is not None:
            target = torch.log(rel.abs() + 1)
            terms = terms - (target - pair(q, k, self.distance[layer])).square() * self.distance_scale[layer].square() / 2
        return terms

    def adjust_scores(self, scores: torch.Tensor, mask: torch.Tensor, *, layer: int = 0) -> torch.Tensor:
        if not self.enabled or not (self.use_order or self.use_distance):
            return scores
        self._require_built()
        B, h, L, _ = scores.shape
        inp = self._input(layer)
        if inp is None:
            q = k = scores.new_zeros(B, h, L, self.head_dim)
        else:
            q, k = _heads(inp.query(), self.heads), _heads(inp.key(), self.heads)
        positions = _key_positions(self._session, B, L, scores.device)
        return scores + self.spatial_terms(q, k, positions, layer) / math.sqrt(self.head_dim)

    def calibrate(self, attn: torch.Tensor, mask: torch.Tensor, *, layer: int = 0) -> torch.Tensor:
        return attn


# -- adversarial calibrator ------------------------------------------------------------
def perturbed_attention(attn: torch.Tensor, perturbation: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """A_adv = softmax(A * M + eps * (1 - M)) over unmasked keys, eps ~ N(0, 1) fresh (global
    torch RNG). Used only by L_adv; inference never draws eps."""
    noise = torch.randn_like(perturbation)
    return masked_softmax(attn * perturbation + noise * (1 - perturbation), mask)


def mask_penalty(masks: list[torch.Tensor], reference: tuple[int, int] | None = None) -> torch.Tensor:
    """mean over layers of ||1 - M_l||_F over the whole [B, h, w, w] tensor.

    ``reference = (B_ref, L_ref)`` measures each M_l as the reference does, on its fixed
    [B_ref, h, L_ref, L_ref] batch (256 x 50 x 50 in AC-TSR's release): the entries a
    trimmed pk batch lacks (padding columns, missing rows) are masked entries there, with
    M = 0, so each adds (1 - 0)^2 = 1 under the root. The norm, and the gradient on every
    real entry, then no longer depend on the batch's width or row count (a raw norm over a
    batch of ~44 rows x ~10 columns made w_mask ~10x stronger). A batch larger than the
    reference is measured as it is."""
    norms = []
    for m in masks:
        squares = (1 - m).square().sum()
        if reference is not None:
            B, h, w, w2 = m.shape
            missing = max(reference[0] * h * reference[1] * reference[1] - B * h * w * w2, 0)
            squares = squares + missing
        norms.append(squares.sqrt())
    return torch.stack(norms).mean()


class AdversarialCalibrator(_Stage):
    """``ac-adversarial``: from the attention A it receives (softmax of the seam's scores),
    M = Dropout(softmax(Q^ K^ᵀ / sqrt(d))), A_cal = softmax(A exp(1 - M)),
    A_comb = softmax(g A + (1 - g) A_cal) with g = sigmoid(W_g q~_i) read at each key's
    position (gate width = the host's attention length). Applies the attention dropout to A
    and M itself (as the reference does); hosts then skip their own dropout."""

    applies_attention_dropout = True

    def __init__(self, config: Any) -> None:
        self.combine = str(getattr(config, "combine", "gate"))
        if self.combine not in ("gate", "fixed"):
            raise ConfigError(f"calibrator.combine must be 'gate' or 'fixed', got {self.combine!r}")
        self.gate_width = int(getattr(config, "gate_width", 0))
        self.mask_loss_weight = float(getattr(config, "mask_loss_weight", 0.03))  # a constant, never trained
        self.penalty_batch = int(getattr(config, "penalty_batch", 256))
        self.penalty_len = int(getattr(config, "penalty_len", 0))
        p = float(getattr(config, "attn_dropout", -1.0))
        super().__init__(config)
        self.dropout = nn.Dropout(max(p, 0.0))
        self._dropout_from_host = p < 0

    @property
    def max_len(self) -> int | None:
        return self.gate_width or None

    @property
    def penalty_reference(self) -> tuple[int, int] | None:
        """(B_ref, L_ref) for :func:`mask_penalty`; None (raw norm) when ``penalty_batch`` is 0."""
        if self.penalty_batch <= 0:
            return None
        return self.penalty_batch, self.penalty_len or self.gate_width

    def mask_penalty(self, masks: list[torch.Tensor]) -> torch.Tensor:
        """mean_l ||1 - M_l||_F measured on the reference's batch shape (see :func:`mask_penalty`)."""
        return mask_penalty(masks, self.penalty_reference)

    def _build(self) -> None:
        H, n = self.hidden, self.num_layers
        self.attack_query = nn.ModuleList(nn.Linear(H, H) for _ in range(n))
        self.attack_key = nn.ModuleList(nn.Linear(H, H) for _ in range(n))
        if self.combine == "gate":
            if self.gate_width <= 0:
                raise ConfigError("calibrator.gate_width must be > 0 when the calibrator is used without a model")
            self.gate = nn.ModuleList(nn.Linear(H, self.gate_width) for _ in range(n))
        _init_linear(self, self.init_std)

    def attach(self, *, hidden: int, heads: int, layers: int, seq_len: int, attn_dropout: float) -> None:
        if self.gate_width and self.gate_width != seq_len:
            raise ConfigError(
                f"calibrator.gate_width = {self.gate_width} but the model's attention length is {seq_len} "
                "(dataset.max_len for ac-sasrec, max_len + 1 for ac-bert4rec); the gate needs one column per "
                f"key position: set calibrator.gate_width = {seq_len} (or 0 to take it from the model)"
            )
        self.gate_width = seq_len
        self.penalty_len = self.penalty_len or seq_len
        if self._dropout_from_host:
            self.dropout.p = float(attn_dropout)
        super().attach(hidden=hidden, heads=heads, layers=layers, seq_len=seq_len, attn_dropout=attn_dropout)

    def adversarial_parameters(self) -> list[nn.Parameter]:
        if not self._built:
            return []
        return [*self.attack_query.parameters(), *self.attack_key.parameters()]

    def perturbation_mask(self, query: torch.Tensor, key: torch.Tensor, mask: torch.Tensor, layer: int) -> torch.Tensor:
        """M [B, h, L, L] from the projected query/key [B, L, H]: rows sum to 1 over unmasked
        keys, 0 on masked ones, in [0, 1] (before dropout)."""
        q = _heads(self.attack_query[layer](query), self.heads)
        k = _heads(self.attack_key[layer](key), self.heads)
        return masked_softmax(q @ k.transpose(-1, -2) / math.sqrt(self.head_dim), mask)

    def gate_weights(self, query: torch.Tensor, positions: torch.Tensor, layer: int) -> torch.Tensor:
        """g [B, 1, L, L]: sigmoid(W_g q~_i) [B, L, gate_width], column = the key's position."""
        B, L, _ = query.shape
        if int(positions.max()) >= self.gate_width:
            raise ConfigError(f"a sequence position reaches {int(positions.max())} but calibrator.gate_width is "
                              f"{self.gate_width}; set calibrator.gate_width to the model's attention length")
        g = torch.sigmoid(self.gate[layer](query))
        return g.gather(2, positions[:, None, :].expand(B, L, L))[:, None]

    def adjust_scores(self, scores: torch.Tensor, mask: torch.Tensor, *, layer: int = 0) -> torch.Tensor:
        return scores

    def calibrate(self, attn: torch.Tensor, mask: torch.Tensor, *, layer: int = 0) -> torch.Tensor:
        if not self.enabled:
            return attn
        self._require_built()
        B, h, L, _ = attn.shape
        inp = self._input(layer)
        if inp is None:
            query = key = attn.new_zeros(B, L, self.hidden)
        else:
            query, key = inp.query(), inp.key()
        mask = mask.expand(B, 1, L, L)
        dropped = self.dropout(attn)
        perturbation = self.dropout(self.perturbation_mask(query, key, mask, layer))
        calibrated = masked_softmax(dropped * torch.exp(1 - perturbation), mask)
        if self.combine == "gate":
            gate = self.gate_weights(query, _key_positions(self._session, B, L, attn.device), layer)
            combined = gate * dropped + (1 - gate) * calibrated
        else:
            combined = masked_softmax(dropped + 0.5 * calibrated, mask)
        if self._session is not None and self._session.keep_trace:
            self._session.attention[layer] = dropped
            self._session.masks[layer] = perturbation
            self._session.attention_masks[layer] = mask
        return masked_softmax(combined, mask)


# -- both stages -----------------------------------------------------------------------
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
