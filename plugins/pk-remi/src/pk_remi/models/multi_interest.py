"""Multi-interest retrievers: ComiRec-SA, ComiRec-DR and MIND (ComiRec / REMI code layout).

Shapes: B batch, L = max_len (histories are right-padded to exactly L), H hidden, K
interests, N items (ids 1..N, row 0 of the embedding table is padding).

Every model provides ``extract(seq) -> (interests [B, K, H], routing [B, K, L])``:
- ComiRec-SA: routing A = softmax_L(W2 tanh(W1 (E + P))) with pads masked: each row sums
  to 1 over real items and is exactly 0 on pads (``routing_is_stochastic = True``).
- ComiRec-DR / MIND: routing c = softmax over ALL L positions, then pads zeroed (the
  reference code's order), so a row sums to 1 only without padding, < 1 otherwise
  (``routing_is_stochastic = False``). REMI's RR on c is an inference, see the README.

``loss(batch)``: hard read-out interest -> sampled softmax over the batch's shared uniform
negatives (``batch["negatives"]`` [M] if given, else drawn from torch's global RNG), with
REMI's IHN weights when ``ihn_beta`` > 0, plus ``rr_lambda`` * RR(routing).
``predict(batch)`` returns the interests [B, K, H]; ``item_embeddings()`` the [N + 1, H] table.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch
from torch import nn

from pk.core.contracts import DatasetInfo
from pk.core.errors import ConfigError
from pk_remi.models.losses import hard_readout, routing_regulariser, sampled_softmax_loss

#: fixed seed of MIND's N(0, 1) routing-logit draw in eval mode (keeps predict deterministic)
EVAL_ROUTING_SEED = 1230


class MultiInterestModel(nn.Module, ABC):
    """Shared embedding table, loss and serving API (subclasses implement ``extract``)."""

    routing_is_stochastic = False

    def __init__(self, num_items: int, max_len: int, config: Any) -> None:
        super().__init__()
        if int(config.interests) < 1 or int(config.hidden) < 1 or int(config.num_negatives) < 1:
            raise ConfigError("model: interests, hidden and num_negatives must be >= 1")
        if float(config.ihn_beta) < 0 or float(config.rr_lambda) < 0:
            raise ConfigError("model: ihn_beta and rr_lambda must be >= 0 (0 turns the add-on off)")
        self.num_items = int(num_items)
        self.max_len = int(max_len)
        self.hidden = int(config.hidden)
        self.num_interests = int(config.interests)
        self.num_negatives = int(config.num_negatives)
        self.ihn_beta = float(config.ihn_beta)
        self.detach_weights = bool(config.detach_weights)
        self.rr_lambda = float(config.rr_lambda)
        self.embeddings = nn.Embedding(self.num_items + 1, self.hidden, padding_idx=0)
        self.last_loss_parts: dict[str, float] = {}

    def reset_parameters(self) -> None:
        """REMI's init: kaiming_normal_ on every parameter, embeddings included."""
        for p in self.parameters():
            nn.init.kaiming_normal_(p)

    # -- inputs ---------------------------------------------------------------------
    def _history(self, seq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """seq [B, W<=L] -> (seq [B, L], mask [B, L] bool, pad-zeroed embeddings [B, L, H])."""
        width = seq.shape[1]
        if width > self.max_len:
            raise ValueError(f"history width {width} exceeds the model's max_len {self.max_len}")
        if width < self.max_len:
            seq = torch.nn.functional.pad(seq, (0, self.max_len - width))
        mask = seq != 0
        emb = self.embeddings(seq) * mask[..., None]
        return seq, mask, emb

    @abstractmethod
    def extract(self, seq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ...

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.extract(batch["seq"])

    # -- serving --------------------------------------------------------------------
    def predict(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The user's interest vectors [B, K, H] (score items with ``item_embeddings``)."""
        return self.extract(batch["seq"])[0]

    def routing(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The item-to-interest routing matrices [B, K, L]."""
        return self.extract(batch["seq"])[1]

    def item_embeddings(self) -> torch.Tensor:
        """[N + 1, H]; row 0 is padding and must never be retrieved."""
        return self.embeddings.weight

    # -- training -------------------------------------------------------------------
    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        interests, routing = self.extract(batch["seq"])
        target_emb = self.embeddings(batch["target"])
        readout, _ = hard_readout(interests, target_emb)
        negatives = batch.get("negatives")
        if negatives is None:
            negatives = torch.randint(1, self.num_items + 1, (self.num_negatives,), device=readout.device)
        pos = (readout * target_emb).sum(-1)
        neg = readout @ self.embeddings(negatives).T
        ssm = sampled_softmax_loss(pos, neg, self.ihn_beta, self.detach_weights)
        total = ssm
        rr = torch.zeros((), device=ssm.device)
        if self.rr_lambda > 0:
            rr = routing_regulariser(routing, self.hidden)
            total = ssm + self.rr_lambda * rr
        self.last_loss_parts = {"sampled_softmax": float(ssm.detach()), "rr": float(rr.detach())}
        return total


class ComiRecSA(MultiInterestModel):
    """ComiRec-SA: position parameter P (1, L, H) enters the attention only; interests
    V = A E (pads zeroed)."""

    routing_is_stochastic = True

    def __init__(self, num_items: int, max_len: int, config: Any) -> None:
        super().__init__(num_items, max_len, config)
        h, k = self.hidden, self.num_interests
        self.add_position = bool(config.add_position)
        self.position = nn.Parameter(torch.empty(1, self.max_len, h)) if self.add_position else None
        self.w1 = nn.Linear(h, 4 * h, bias=False)
        self.w2 = nn.Linear(4 * h, k, bias=False)
        self.reset_parameters()

    def extract(self, seq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        seq, mask, emb = self._history(seq)
        att_in = emb + self.position if self.position is not None else emb
        logits = self.w2(torch.tanh(self.w1(att_in))).transpose(1, 2)  # [B, K, L]
        routing = torch.softmax(logits.masked_fill(~mask[:, None, :], float("-inf")), dim=-1)
        return routing @ emb, routing


def squash(s: torch.Tensor) -> torch.Tensor:
    """Capsule squash along the last dim: |s|^2 / (1 + |s|^2) * s / |s|."""
    norm2 = (s * s).sum(-1, keepdim=True)
    return norm2 / (1 + norm2) / torch.sqrt(norm2 + 1e-9) * s


class CapsuleRouting(MultiInterestModel):
    """Dynamic routing shared by ComiRec-DR and MIND (``routing_iters`` iterations; the
    predictions u_hat are detached in all but the last one)."""

    random_init = False

    def __init__(self, num_items: int, max_len: int, config: Any) -> None:
        super().__init__(num_items, max_len, config)
        self.routing_iters = int(config.routing_iters)
        if self.routing_iters < 1:
            raise ConfigError("model.routing_iters must be >= 1")
        self.relu = nn.Linear(self.hidden, self.hidden, bias=False) if config.relu_layer else None

    @abstractmethod
    def predictions(self, emb: torch.Tensor) -> torch.Tensor:
        """u_hat [B, K, L, H] from pad-zeroed embeddings [B, L, H]."""

    def _initial_logits(self, shape: tuple[int, int, int], device: torch.device) -> torch.Tensor:
        if not self.random_init:
            return torch.zeros(shape, device=device)
        if self.training:
            return torch.randn(shape, device=device)
        g = torch.Generator().manual_seed(EVAL_ROUTING_SEED)
        return torch.randn(shape, generator=g).to(device)

    def extract(self, seq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        seq, mask, emb = self._history(seq)
        u_hat = self.predictions(emb)  # [B, K, L, H]
        u_fixed = u_hat.detach()
        b = self._initial_logits((seq.shape[0], self.num_interests, self.max_len), emb.device)
        for i in range(self.routing_iters):
            c = torch.softmax(b, dim=-1) * mask[:, None, :]  # softmax over all L, then pads zeroed
            if i < self.routing_iters - 1:
                v = squash((c[:, :, None, :] @ u_fixed).squeeze(2))  # [B, K, H]
                b = b + (u_fixed @ v[..., None]).squeeze(-1)
            else:
                v = squash((c[:, :, None, :] @ u_hat).squeeze(2))
        if self.relu is not None:
            v = torch.relu(self.relu(v))
        return v, c


class ComiRecDR(CapsuleRouting):
    """ComiRec-DR: a separate bilinear map per position, W (1, L, K*H, H); b starts at 0."""

    def __init__(self, num_items: int, max_len: int, config: Any) -> None:
        super().__init__(num_items, max_len, config)
        self.w = nn.Parameter(torch.empty(1, self.max_len, self.num_interests * self.hidden, self.hidden))
        self.reset_parameters()

    def predictions(self, emb: torch.Tensor) -> torch.Tensor:
        u = torch.einsum("lmh,blh->blm", self.w[0], emb)  # [B, L, K*H]
        b, length = emb.shape[:2]
        return u.reshape(b, length, self.num_interests, self.hidden).transpose(1, 2)


class MIND(CapsuleRouting):
    """MIND: one shared Linear(H, H) for every interest; b drawn from N(0, 1) (in eval mode
    from a fixed-seed generator so that serving is deterministic)."""

    random_init = True

    def __init__(self, num_items: int, max_len: int, config: Any) -> None:
        super().__init__(num_items, max_len, config)
        self.linear = nn.Linear(self.hidden, self.hidden, bias=False)
        self.reset_parameters()

    def predictions(self, emb: torch.Tensor) -> torch.Tensor:
        u = self.linear(emb)  # [B, L, H]
        return u[:, None].expand(-1, self.num_interests, -1, -1)


def _check_info(info: DatasetInfo, name: str) -> tuple[int, int]:
    if info.task != "candidate-matching" or not info.num_items or not info.max_len:
        raise ConfigError(f"{name} needs a candidate-matching dataset (e.g. remi-synthetic, remi-ml-100k), "
                          f"got task {info.task!r}")
    return int(info.num_items), int(info.max_len)


def build_comirec_sa(config: Any, info: DatasetInfo) -> ComiRecSA:
    return ComiRecSA(*_check_info(info, "comirec-sa"), config)


def build_comirec_dr(config: Any, info: DatasetInfo) -> ComiRecDR:
    return ComiRecDR(*_check_info(info, "comirec-dr"), config)


def build_mind(config: Any, info: DatasetInfo) -> MIND:
    return MIND(*_check_info(info, "mind"), config)
