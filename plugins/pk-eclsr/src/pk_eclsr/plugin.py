"""pk-eclsr registrations and config dataclasses (stdlib + pk.core only; no torch here).

Two models on pk-seqrec's SASRec (same encoder, batch format, ``next-item`` trainer and
full-ranking evaluation; sequences padded on the left, i.e. ECL's "right-aligned"):

- ``eclsr``: ECL-SR (RecSys'23). A BERT4Rec generator sharing the item table fills masked
  slots with its argmax item (no gradient through the choice); the SASRec encoder itself,
  fed E[substituted item] + its own output on the original sequence, is the conditional
  discriminator that tells which positions were replaced; a dropout-only second pass gives
  a one-directional cosine InfoNCE. Loss = w_rec L_rec + w_con L_con + w_disc L_disc +
  w_gen L_gen. Inference uses the encoder only.
- ``cl4srec``: CL4SRec-style baseline: SASRec + NT-Xent between two views made by crop /
  mask / reorder, with in-batch negatives.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pk_seqrec.plugin import EncoderConfig

from pk.core import hookimpl
from pk.core.hookspecs import Register

MODELS = "pk_eclsr.models"
TASKS = ("next-item",)


@dataclass
class ECLSRConfig(EncoderConfig):
    """ECL-SR. Encoder sizes are pk-seqrec SASRec's (RecBole defaults); the generator is a
    pk-seqrec BERT4Rec with the same sizes, sharing the item table (N + 2 rows, [MASK] = N + 1).

    Defaults are the released **Amazon Sports** script: dropout 0.5/0.5, ``mask_strategy``
    "sample", ``mask_ratio`` 0.2, ``contrast_k`` 10, weights con 2.0 / disc 0.05 / gen 0.5,
    temperature 0.05 (the ml-1m row: dropout 0.2/0.2, k 20, con 0.001, disc 0.05, gen 0.2).

    ``mask_strategy``: "sample" masks exactly floor(mask_ratio * n + 1) of the n real items,
    never the oldest (capped at n - 1); "prob" masks each real item w.p. ``mask_ratio``
    (never the absolute index 0 of a full-length row), keeps the first ceil(mask_ratio * L + 1),
    and masks the newest item when nothing was chosen. ``contrast_k``: the contrastive view
    is the mean of the user's last min(k, n) real positions (the release's fixed-width
    batches also average padding outputs when n < k; pk pools real items only).
    ``batch_sequences``: rows (sequences) per training batch, asked of pk-seqrec's
    ``next-item`` trainer in place of its ``batch_size``/``batch_targets``: the contrastive
    term's in-batch negatives are the other rows, and the release batches 256 sequences
    (0 = the trainer's sizing).
    ``ce_include_padding``: the padding row stays in the softmax (RecBole quirk, as
    pk-seqrec SASRec); pad *targets* are always ignored (ECL trains them; documented).
    """

    mask_strategy: Literal["sample", "prob"] = "sample"
    mask_ratio: float = field(default=0.2, metadata={"ge": 0, "le": 1})
    contrast_k: int = field(default=10, metadata={"ge": 1})
    temperature: float = field(default=0.05, metadata={"gt": 0})
    weight_rec: float = field(default=1.0, metadata={"ge": 0})
    weight_con: float = field(default=2.0, metadata={"ge": 0})
    weight_disc: float = field(default=0.05, metadata={"ge": 0})
    weight_gen: float = field(default=0.5, metadata={"ge": 0})
    discriminator_bidirectional: bool = False
    batch_sequences: int = field(default=256, metadata={"ge": 0})


@dataclass
class CL4SRecConfig(EncoderConfig):
    """CL4SRec-style SASRec: L = L_rec + ``cl_weight`` * NT-Xent(view1, view2) over the 2B
    in-batch views (dot product / ``temperature``, ICLRec's NCELoss). Each view applies one
    augmentation drawn uniformly per sequence: crop (keep a contiguous max(1, floor(
    ``crop_ratio`` * n)) items), mask (floor(``mask_ratio`` * n) items -> [MASK] = N + 1),
    reorder (shuffle a contiguous floor(``reorder_ratio`` * n) window). Ratios are ICLRec's
    defaults (0.2 / 0.7 / 0.2). The view representation is the hidden state at the newest
    position. ``batch_sequences``: rows per training batch (the NT-Xent's in-batch
    negatives), as for ECL-SR; 0 = the trainer's sizing."""

    crop_ratio: float = field(default=0.2, metadata={"ge": 0, "le": 1})
    mask_ratio: float = field(default=0.7, metadata={"ge": 0, "le": 1})
    reorder_ratio: float = field(default=0.2, metadata={"ge": 0, "le": 1})
    cl_weight: float = field(default=0.1, metadata={"ge": 0})
    temperature: float = field(default=1.0, metadata={"gt": 0})
    batch_sequences: int = field(default=256, metadata={"ge": 0})


ECLSR_PAPER = {"title": "Equivariant Contrastive Learning for Sequential Recommendation", "year": 2023,
               "url": "https://arxiv.org/abs/2211.05290"}
CL4SREC_PAPER = {"title": "Contrastive Learning for Sequential Recommendation", "year": 2022,
                 "url": "https://arxiv.org/abs/2010.14395"}


@hookimpl
def pk_register_models(register: Register) -> None:
    register("eclsr", f"{MODELS}.eclsr:build_eclsr", config=ECLSRConfig, tasks=TASKS, paper=ECLSR_PAPER,
             summary="ECL-SR: SASRec + jointly trained BERT4Rec generator, conditional substitution "
                     "discriminator (the encoder itself) and dropout-view InfoNCE", accepts=("calibrator",))
    register("cl4srec", f"{MODELS}.cl4srec:build_cl4srec", config=CL4SRecConfig, tasks=TASKS, paper=CL4SREC_PAPER,
             summary="CL4SRec-style SASRec: crop/mask/reorder views with in-batch NT-Xent", tags=("baseline",),
             accepts=("calibrator",))
