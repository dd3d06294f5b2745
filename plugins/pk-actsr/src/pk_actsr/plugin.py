"""pk-actsr registrations and config dataclasses (stdlib + pk.core only; no torch here).

AC-TSR (CIKM'23) calibrates self-attention in two stages per layer: a *spatial* calibrator
adds learned order and distance log-likelihood terms to the raw scores, and an
*adversarial* calibrator learns a perturbation mask over the attention weights (trained by
its own, negated loss on its own parameters) and re-weights attention with it.

Both calibrators plug into pk-seqrec's attention seam (``[calibrator] name = ...``). They
need the host layer's input (for q/k, the mask generator and the gate), which pk-seqrec's
seam does not pass, so the full method runs on the ``ac-sasrec`` / ``ac-bert4rec`` models:
pk-seqrec's SASRec / BERT4Rec with a forward pre-hook that shows each attention layer's
input to the calibrator, no absolute position embedding, and the two-loss training step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from pk_seqrec.plugin import BERT4RecConfig, EncoderConfig, NextItemTrainerConfig

from pk.core import hookimpl
from pk.core.hookspecs import Register

CAL = "pk_actsr.calibrators"
MODELS = "pk_actsr.models"
TASKS = ("next-item",)
PAPER = {"title": "Attention Calibration for Transformer-based Sequential Recommendation", "year": 2023,
         "url": "https://arxiv.org/abs/2308.09419"}

#: small shapes for the contract suite's stand-alone calibrator checks (no host attached)
_TEST_SHAPES: dict[str, int] = {"hidden": 8, "heads": 2, "layers": 4, "gate_width": 8}


# -- calibrators -----------------------------------------------------------------------
@dataclass
class CalibratorSizes:
    """What every AC-TSR stage shares: ``hidden``/``heads``/``layers`` = 0 take the host
    model's sizes; ``init_std`` for the stage's Linear layers; ``enabled = false`` is the
    neutral (plain attention) setting."""

    enabled: bool = True
    hidden: int = field(default=0, metadata={"ge": 0})
    heads: int = field(default=0, metadata={"ge": 0})
    layers: int = field(default=0, metadata={"ge": 0})
    init_std: float = field(default=0.02, metadata={"gt": 0})


@dataclass
class SpatialCalibratorConfig(CalibratorSizes):
    """Order + distance terms added to the raw scores of every layer and head.

    E_order = o log p + (1 - o) log(1 - p), p = sigmoid(w_o [q_i; k_j] + b_o), o = [j > i];
    E_dist = -lambda^2 (log(|i - j| + 1) - w_d [q_i; k_j] - b_d)^2 / 2. Both are added
    BEFORE the 1/sqrt(d) scaling and have no loss of their own. ``separable`` computes the
    Linear(2d -> 1) on [q_i; k_j] as w_q q_i + w_k k_j (O(L) memory per row instead of a
    materialised [B, h, L, L, 2d] tensor). Sizes as in :class:`CalibratorSizes`.
    """

    use_order: bool = True
    use_distance: bool = True
    separable: bool = True
    pk_test: ClassVar[dict[str, int]] = {k: v for k, v in _TEST_SHAPES.items() if k != "gate_width"}


@dataclass
class AdversarialCalibratorConfig(CalibratorSizes):
    """Learned perturbation mask M = softmax(Q^ K^T / sqrt(d)) (Q^, K^ = two extra
    Linear(H, H) on the layer's projected query/key), calibrated attention
    softmax(A * exp(1 - M)) and a gate sigma(W_g q~_i) of width ``gate_width`` (0 = the host's
    attention length; the reference hard-codes 50 = max_len) mixing it with A, then softmax
    again (the reference's double softmax). The perturbed branch softmax(A M + eps (1 - M))
    feeds only L_adv = -CE + ``mask_loss_weight`` * mean_l ||1 - M_l||_F, which updates only
    the mask generator; ``mask_loss_weight`` is a constant (0.03 Beauty, 0.3 elsewhere).
    The norm is measured on the reference's fixed batch shape [``penalty_batch``, h,
    ``penalty_len``, ``penalty_len``] (256 x 50 x 50 released; ``penalty_len`` 0 = the host's
    attention length): entries a trimmed batch lacks count as the masked entries they are
    there (1 - M = 1). ``penalty_batch = 0`` takes the raw norm over the actual tensor.
    ``combine``: "gate" (released configs) or "fixed" (softmax(A + 0.5 A_cal)).
    ``attn_dropout`` < 0 takes the host's attention dropout. Sizes as in
    :class:`CalibratorSizes`.
    """

    mask_loss_weight: float = field(default=0.03, metadata={"ge": 0})
    combine: Literal["gate", "fixed"] = "gate"
    gate_width: int = field(default=0, metadata={"ge": 0})
    penalty_batch: int = field(default=256, metadata={"ge": 0})
    penalty_len: int = field(default=0, metadata={"ge": 0})
    attn_dropout: float = field(default=-1.0, metadata={"ge": -1, "lt": 1})
    pk_test: ClassVar[dict[str, int]] = dict(_TEST_SHAPES)


@dataclass
class ACTSRCalibratorConfig(AdversarialCalibratorConfig, SpatialCalibratorConfig):
    """Both stages, as released (``two_level = true``): spatial scores -> softmax ->
    dropout -> adversarial calibration. Fields as in the two stage configs."""

    pk_test: ClassVar[dict[str, int]] = dict(_TEST_SHAPES)


# -- models ----------------------------------------------------------------------------
@dataclass
class ACSASRecConfig(EncoderConfig):
    """pk-seqrec's SASRec (RecBole defaults: H=64, 2 post-LN layers, 2 heads, inner 256,
    dropout 0.5) with the AC-TSR calibrator in every layer and NO absolute position
    embedding (``position_embedding = false``, as in every released AC config). Without a
    ``[calibrator]`` section the full ``ac-tsr`` calibrator with its defaults is used."""

    position_embedding: bool = False


@dataclass
class ACBERT4RecConfig(BERT4RecConfig):
    """pk-seqrec's BERT4Rec with the AC-TSR calibrator (bidirectional: both order classes
    occur) and no absolute position embedding; L_adv on the masked positions."""

    position_embedding: bool = False


# -- trainer ---------------------------------------------------------------------------
@dataclass
class ACNextItemTrainerConfig(NextItemTrainerConfig):
    """pk-seqrec's next-item trainer with AC-TSR's released defaults: Adam lr 1e-4, batch
    256, model selection on valid HR@10 with patience 10. The optimisation split (L_cal ->
    everything but the mask generator, L_adv -> only the mask generator, one Adam step)
    lives in the AC models' ``train_step``, which this trainer (like ``next-item``) calls."""

    max_epochs: int = field(default=200, metadata={"ge": 1})
    lr: float = field(default=1e-4, metadata={"gt": 0})
    patience: int = field(default=10, metadata={"ge": 0})
    metric: str = field(default="hr@10", metadata={"protocol": True})


# -- registrations ---------------------------------------------------------------------
@hookimpl
def pk_register_calibrators(register: Register) -> None:
    register("ac-spatial", f"{CAL}:SpatialCalibrator", config=SpatialCalibratorConfig, paper=PAPER,
             summary="AC-TSR spatial calibrator: learned order + distance terms on raw attention scores")
    register("ac-adversarial", f"{CAL}:AdversarialCalibrator", config=AdversarialCalibratorConfig, paper=PAPER,
             summary="AC-TSR adversarial calibrator: learned perturbation mask, calibrated attention and gate")
    register("ac-tsr", f"{CAL}:ACTSRCalibrator", config=ACTSRCalibratorConfig, paper=PAPER,
             summary="AC-TSR: spatial then adversarial calibration (the released two-level setting)")


@hookimpl
def pk_register_models(register: Register) -> None:
    register("ac-sasrec", f"{MODELS}:build_ac_sasrec", config=ACSASRecConfig, tasks=TASKS, paper=PAPER,
             summary="AC-SASRec: pk-seqrec SASRec + AC-TSR calibrators, no position embedding, two-loss step",
             accepts=("calibrator",))
    register("ac-bert4rec", f"{MODELS}:build_ac_bert4rec", config=ACBERT4RecConfig, tasks=TASKS, paper=PAPER,
             summary="AC-BERT4Rec: pk-seqrec BERT4Rec + AC-TSR calibrators, no position embedding, two-loss step",
             accepts=("calibrator",))


@hookimpl
def pk_register_trainers(register: Register) -> None:
    register("ac-next-item", "pk_actsr.trainers:ACNextItemTrainer", config=ACNextItemTrainerConfig, tasks=TASKS,
             summary="next-item training with AC-TSR defaults (lr 1e-4, select on HR@10); resumable")
