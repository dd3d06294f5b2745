"""AC-SASRec and AC-BERT4Rec: pk-seqrec's SASRec / BERT4Rec (same encoder code, not a copy)
with an AC-TSR calibrator in every attention layer and the two-loss training step.

What the subclass adds to pk-seqrec's model, and nothing else:

- a forward pre-hook on each ``encoder.attention[i]`` that shows the layer input ``x`` to
  the calibrator (pk-seqrec's seam passes only scores/weights, the calibrators need q/k);
- ``position_embedding = False`` by default (position information comes from the spatial
  terms); the host's attention dropout is skipped when the calibrator applies it itself;
- ``losses(batch) -> (L_cal, L_adv | None)``: L_cal is the host's CE on the calibrated
  branch; L_adv = -CE(perturbed branch of the LAST layer) + w_mask * mean_l ||1 - M_l||_F;
- ``configure_optimizers`` / ``train_step`` (pk-seqrec's next-item trainer extension
  point): one Adam over two parameter groups; L_cal's gradient is taken with respect to
  every parameter except the mask generator, L_adv's only with respect to the mask
  generator (``torch.autograd.grad`` on each group), then a single step.

Inference (``predict``) uses the calibrated branch only and draws no noise.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

import torch
from pk_seqrec.models.bert4rec import BERT4Rec
from pk_seqrec.models.encoder import last_real_index, next_item_loss, position_ids
from pk_seqrec.models.sasrec import SASRec
from torch import nn

from pk.core.contracts import DatasetInfo
from pk.core.errors import ConfigError
from pk.core.torch_helpers import make_optimizer
from pk_actsr.calibrators import ACTSRCalibrator, Session, perturbed_attention


def _show_layer_input(module: nn.Module, args: tuple[Any, ...]) -> None:
    """Forward pre-hook on pk-seqrec's MultiHeadAttention, called as ``attn(x, mask,
    calibrator, layer)`` by its TransformerEncoder: hands ``x`` to the calibrator."""
    if len(args) >= 4:
        observe = getattr(args[2], "observe", None)
        if observe is not None:
            observe(module, args[0], int(args[3]))


class _Calibrated(ABC):
    """Mixin over a pk-seqrec transformer model (needs ``encoder``, ``encode``)."""

    encoder: Any
    training: bool

    def _setup_calibration(self, calibrator: Any, *, hidden: int, heads: int, layers: int, seq_len: int,
                           attn_dropout: float) -> None:
        self._grad_clip = 0.0
        if calibrator is None:
            from pk_actsr.plugin import ACTSRCalibratorConfig

            calibrator = ACTSRCalibrator(ACTSRCalibratorConfig())
        self.encoder.calibrator = calibrator
        attach = getattr(calibrator, "attach", None)
        if attach is None:  # e.g. the built-in identity calibrator: plain attention
            return
        attach(hidden=hidden, heads=heads, layers=layers, seq_len=seq_len, attn_dropout=attn_dropout)
        for attention in self.encoder.attention:
            attention.register_forward_pre_hook(_show_layer_input)
            if getattr(calibrator, "applies_attention_dropout", False):
                attention.attn_dropout = nn.Identity()  # the calibrator drops A and M itself

    @property
    def calibrator(self) -> Any:
        return self.encoder.calibrator

    def _has_adversary(self) -> bool:
        return bool(getattr(self.calibrator, "has_adversary", False))

    def encode_traced(self, seq: torch.Tensor, keep_trace: bool = False) -> tuple[torch.Tensor, Session | None]:
        """[B, L] ids -> ([B, L, H] calibrated hidden states, the calibrator's session)."""
        begin = getattr(self.calibrator, "begin", None)
        if begin is None:
            return super().encode(seq), None  # type: ignore[misc]
        begin(position_ids(seq), keep_trace)
        try:
            hidden = super().encode(seq)  # type: ignore[misc]
        finally:
            session = self.calibrator.end()
        return hidden, session

    def encode(self, seq: torch.Tensor) -> torch.Tensor:
        return self.encode_traced(seq)[0]

    def adversarial_hidden(self, session: Session) -> torch.Tensor:
        """O_adv [B, L, H] of the last layer: the perturbed attention through the layer's own
        value, output projection, dropout, LayerNorm and feed-forward (shared with O_cal)."""
        last = len(self.encoder.attention) - 1
        if last not in session.masks or last not in session.inputs:
            raise RuntimeError("no adversarial trace for the last layer; call encode_traced(seq, keep_trace=True)")
        attention, x = session.inputs[last].attention, session.inputs[last].x
        attn = perturbed_attention(session.attention[last], session.masks[last], session.attention_masks[last])
        context = (attn @ attention._split(attention.value(x))).transpose(1, 2).reshape(x.shape)
        out = attention.norm(x + attention.out_dropout(attention.out(context)))
        return self.encoder.feed_forward[last](out)

    def adversarial_loss(self, session: Session, ce: Any) -> torch.Tensor:
        """L_adv = -CE(O_adv) + w_mask * mean_l ||1 - M_l||_F (w_mask a constant; the norm
        measured on the reference's fixed batch shape, ``calibrator.mask_penalty``)."""
        masks = [session.masks[i] for i in sorted(session.masks)]
        adversarial = -ce(self.adversarial_hidden(session))
        return adversarial + self.calibrator.mask_loss_weight * self.calibrator.mask_penalty(masks)

    # -- optimisation (pk-seqrec next-item trainer extension point) ----------------------
    def parameter_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(recommendation parameters, mask-generator parameters), disjoint, covering all."""
        adversary = list(getattr(self.calibrator, "adversarial_parameters", list)()) if self._has_adversary() else []
        ids = {id(p) for p in adversary}
        return [p for p in self.parameters() if id(p) not in ids], adversary  # type: ignore[attr-defined]

    def configure_optimizers(self, trainer_config: Any) -> list[torch.optim.Optimizer]:
        recommendation, adversary = self.parameter_groups()
        groups = [{"params": recommendation, "name": "recommendation"}]
        if adversary:
            groups.append({"params": adversary, "name": "mask-generator"})
        self._grad_clip = float(getattr(trainer_config, "grad_clip", 0.0))
        return [make_optimizer(trainer_config.optimizer, groups, trainer_config.lr, trainer_config.weight_decay)]

    def train_step(self, batch: Mapping[str, torch.Tensor],
                   optimizers: list[torch.optim.Optimizer]) -> dict[str, float]:
        """One step: grads of L_cal w.r.t. the recommendation group, of L_adv w.r.t. the
        mask generator only, then a single optimizer step over both groups."""
        (optimizer,) = optimizers
        optimizer.zero_grad(set_to_none=True)
        recommendation, adversary = self.parameter_groups()
        loss_cal, loss_adv = self.losses(batch)
        grads = torch.autograd.grad(loss_cal, recommendation, retain_graph=loss_adv is not None, allow_unused=True)
        for p, g in zip(recommendation, grads, strict=True):
            p.grad = g
        out = {"loss": float(loss_cal.detach())}
        if loss_adv is not None:
            for p, g in zip(adversary, torch.autograd.grad(loss_adv, adversary, allow_unused=True), strict=True):
                p.grad = g
            out["adv_loss"] = float(loss_adv.detach())
        if self._grad_clip > 0:
            nn.utils.clip_grad_norm_(recommendation + adversary, self._grad_clip)
        optimizer.step()
        return out

    @abstractmethod
    def losses(self, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:  # pragma: no cover
        ...

    def loss(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The recommendation loss L_cal (what a plain trainer would minimise)."""
        return self.losses(batch, with_adversary=False)[0]  # type: ignore[call-arg]


class ACSASRec(_Calibrated, SASRec):
    """AC-SASRec. ``losses``: every position with a target when the batch has ``targets``
    [B, L] (pk-seqrec's one-pass equivalent of prefix augmentation), else the last one."""

    def __init__(self, num_items: int, max_len: int, *, calibrator: Any = None, position_embedding: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(num_items, max_len, loss_type="ce", calibrator=None, position_embedding=position_embedding,
                         **kwargs)
        first = self.encoder.attention[0]
        self._setup_calibration(calibrator, hidden=first.query.in_features, heads=first.heads,
                                layers=len(self.encoder.attention), seq_len=max_len, attn_dropout=first.attn_dropout.p)

    def losses(self, batch: Mapping[str, torch.Tensor],
               with_adversary: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        seq = batch["seq"]
        adversary = with_adversary and self._has_adversary()
        hidden, session = self.encode_traced(seq, keep_trace=adversary)
        if "targets" in batch:
            targets = batch["targets"]

            def pick(h: torch.Tensor) -> torch.Tensor:
                return h
        else:
            targets, rows, last = batch["target"], torch.arange(seq.shape[0], device=seq.device), last_real_index(seq)

            def pick(h: torch.Tensor) -> torch.Tensor:
                return h[rows, last]

        def ce(h: torch.Tensor) -> torch.Tensor:
            return next_item_loss(pick(h), targets, self.item_embedding.weight, loss_type="ce",
                                  include_padding=self.ce_include_padding)

        loss_cal = ce(hidden)
        if not adversary or session is None:
            return loss_cal, None
        return loss_cal, self.adversarial_loss(session, ce)


class ACBERT4Rec(_Calibrated, BERT4Rec):
    """AC-BERT4Rec: cloze training as pk-seqrec's BERT4Rec; both losses on the masked positions."""

    def __init__(self, num_items: int, max_len: int, *, calibrator: Any = None, position_embedding: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(num_items, max_len, calibrator=None, position_embedding=position_embedding, **kwargs)
        first = self.encoder.attention[0]
        self._setup_calibration(calibrator, hidden=first.query.in_features, heads=first.heads,
                                layers=len(self.encoder.attention), seq_len=max_len + 1,
                                attn_dropout=first.attn_dropout.p)

    def losses(self, batch: Mapping[str, torch.Tensor],
               with_adversary: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        full, masked = self.cloze_batch(batch)  # cap from the model's length L + 1, not the batch width
        if not masked.any():
            return self.item_embedding.weight.sum() * 0.0, None
        adversary = with_adversary and self._has_adversary()
        hidden, session = self.encode_traced(full.masked_fill(masked, self.mask_token), keep_trace=adversary)

        def ce(h: torch.Tensor) -> torch.Tensor:
            logits = h[masked] @ self._item_weight().t() + self.output_bias
            if not self.ce_include_padding:
                logits[:, 0] = float("-inf")
            return nn.functional.cross_entropy(logits, full[masked])

        loss_cal = ce(hidden)
        if not adversary or session is None:
            return loss_cal, None
        return loss_cal, self.adversarial_loss(session, ce)


def _common(config: Any, info: DatasetInfo, name: str) -> dict[str, Any]:
    if not info.num_items or not info.max_len:
        raise ConfigError(f"{name} needs a next-item dataset (info.num_items and info.max_len); "
                          "pick a pk-seqrec dataset")
    return {"hidden": config.hidden, "layers": config.layers, "heads": config.heads, "inner": config.inner,
            "dropout": config.dropout, "attn_dropout": config.attn_dropout, "layer_norm_eps": config.layer_norm_eps,
            "init_std": config.init_std, "position_embedding": config.position_embedding,
            "ce_include_padding": config.ce_include_padding}


def build_ac_sasrec(config: Any, info: DatasetInfo, *, calibrator: Any = None, device: str = "cpu") -> ACSASRec:
    return ACSASRec(info.num_items, info.max_len, calibrator=calibrator, **_common(config, info, "ac-sasrec"))  # type: ignore[arg-type]


def build_ac_bert4rec(config: Any, info: DatasetInfo, *, calibrator: Any = None, device: str = "cpu") -> ACBERT4Rec:
    return ACBERT4Rec(info.num_items, info.max_len, calibrator=calibrator, mask_ratio=config.mask_ratio,  # type: ignore[arg-type]
                      **_common(config, info, "ac-bert4rec"))
