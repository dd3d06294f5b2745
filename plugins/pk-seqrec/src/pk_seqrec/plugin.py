"""pk-seqrec registrations and config dataclasses (stdlib + pk.core only; no torch here).

Conventions shared by every component (stated once, see the README):
item ids are ``1..num_items``, 0 is padding; sequences in batches are padded on the LEFT
(zeros first, the most recent item at ``seq[:, -1]``); positions are counted from the
oldest real item, so models give identical scores for left- or right-aligned input.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pk.core import hookimpl
from pk.core.configs import EpochBudget, FileSource, OptimConfig
from pk.core.hookspecs import Register

DATA = "pk_seqrec.data.datasets"
MODELS = "pk_seqrec.models"
TASKS = ("next-item",)
#: SASRec and GRU4Rec also serve streaming runs (pk-iurs grows their item tables).
MODEL_TASKS = (*TASKS, "streaming-next-item")


# -- datasets --------------------------------------------------------------------------
@dataclass
class SeqWindows:
    """How each user's history becomes training rows of at most ``max_len`` items.
    ``train_windows``: "all" (windows over each history, every position a target once),
    "last" (newest window only) or "prefixes" (one row per target: RecBole's examples).
    ``window_stride`` (1..max_len, "all" only): rows end every ``window_stride`` items and
    each trains only the targets no newer row trained; 1 gives every target
    min(max_len, its history) items of context, exactly RecBole's prefix examples (tested),
    max_len tiles the history with disjoint windows (fewer rows, truncated context)."""

    max_len: int = field(default=50, metadata={"ge": 1})
    train_windows: Literal["all", "last", "prefixes"] = "all"
    window_stride: int = field(default=1, metadata={"ge": 1})


@dataclass
class SyntheticSeqConfig(SeqWindows):
    """Seeded users whose items follow a latent Markov chain over item clusters, with
    Zipf popularity inside each cluster. ``follow`` is the probability of following the
    cluster chain's fixed successor (the sequential signal Pop cannot use)."""

    num_users: int = field(default=400, metadata={"ge": 1})
    num_items: int = field(default=300, metadata={"ge": 2})
    num_clusters: int = field(default=20, metadata={"ge": 1})
    min_len: int = field(default=8, metadata={"ge": 3})
    max_seq_len: int = field(default=30, metadata={"ge": 3})
    follow: float = field(default=0.9, metadata={"ge": 0, "le": 1})
    zipf: float = field(default=1.1, metadata={"ge": 0})
    max_len: int = field(default=20, metadata={"ge": 1})


@dataclass
class SeqFileConfig(SeqWindows, FileSource):
    """A real interaction file cut into leave-one-out training windows (:class:`SeqWindows`);
    ``kcore`` > 0 applies RecBole's iterative k-core on users and items."""

    kcore: int = field(default=0, metadata={"ge": 0})


@dataclass
class ML100kConfig(SeqFileConfig):
    """RecBole atomic ml-100k (``ml-100k.inter``). Sequences by stable sort on (timestamp,
    file line); windows and k-core as in :class:`SeqFileConfig`."""


@dataclass
class SeqLinesConfig(SeqFileConfig):
    """One line per user: ``user item item ...`` (oldest first), ICLRec/S3-Rec format;
    windows and k-core as in :class:`SeqFileConfig`."""


@dataclass
class DigineticaPeriodsConfig(FileSource):
    """ADER weekly session blocks ``period_0..16.txt``. Train on the ``train_periods``
    periods before the valid period ``test_period - 1``; test on ``test_period``. Each
    valid/test session predicts its last item; items unseen in training are dropped from
    valid/test sessions (ADER protocol)."""

    test_period: int = field(default=16, metadata={"ge": 2})
    train_periods: int = field(default=1, metadata={"ge": 1})
    max_len: int = field(default=50, metadata={"ge": 1})


# -- models ----------------------------------------------------------------------------
@dataclass
class EncoderConfig:
    """Sizes of pk-seqrec's Transformer encoder (RecBole defaults: H=64, 2 post-LN layers,
    2 heads, inner 256, dropout 0.5, LayerNorm eps 1e-12, init N(0, 0.02)); the padding row
    stays in the CE softmax when ``ce_include_padding`` (RecBole). Plugins extend it."""

    hidden: int = field(default=64, metadata={"ge": 1})
    layers: int = field(default=2, metadata={"ge": 1})
    heads: int = field(default=2, metadata={"ge": 1})
    inner: int = field(default=256, metadata={"ge": 1})
    dropout: float = field(default=0.5, metadata={"ge": 0, "lt": 1})
    attn_dropout: float = field(default=0.5, metadata={"ge": 0, "lt": 1})
    layer_norm_eps: float = field(default=1e-12, metadata={"gt": 0})
    init_std: float = field(default=0.02, metadata={"gt": 0})
    ce_include_padding: bool = True


@dataclass
class SASRecConfig(EncoderConfig):
    """RecBole defaults: H=64, 2 post-LN layers, 2 heads, inner 256, dropout 0.5, GELU,
    init N(0, 0.02), tied item embeddings. ``loss_type``: "ce" (all items; the padding row
    is in the softmax when ``ce_include_padding``, as in RecBole) or "bpr" with
    ``num_negatives`` uniform negatives. ``position_embedding = false`` removes the
    absolute position table (AC-SASRec)."""

    position_embedding: bool = True
    loss_type: Literal["ce", "bpr"] = "ce"
    num_negatives: int = field(default=1, metadata={"ge": 1})


@dataclass
class BERT4RecConfig(EncoderConfig):
    """Bidirectional encoder with cloze training: each real position masked with
    probability ``mask_ratio``, at most int(mask_ratio * (L+1)) kept (the last ones).
    The [MASK] token is id num_items + 1; the position table has L + 1 rows."""

    position_embedding: bool = True
    mask_ratio: float = field(default=0.2, metadata={"gt": 0, "le": 1})


@dataclass
class GRU4RecConfig:
    """Embedding -> dropout -> GRU -> hidden at each position -> tied-embedding scores."""

    hidden: int = field(default=64, metadata={"ge": 1})
    layers: int = field(default=1, metadata={"ge": 1})
    dropout: float = field(default=0.3, metadata={"ge": 0, "lt": 1})
    init_std: float = field(default=0.02, metadata={"gt": 0})
    loss_type: Literal["ce", "bpr"] = "ce"
    num_negatives: int = field(default=1, metadata={"ge": 1})
    ce_include_padding: bool = True


@dataclass
class PopConfig:
    """Scores = training interaction counts (counted while training)."""

    smoothing: float = field(default=0.0, metadata={"ge": 0})


# -- trainer / evaluator ---------------------------------------------------------------
@dataclass
class NextItemTrainerConfig(OptimConfig, EpochBudget):
    """Mini-batch next-item training; validation every ``eval_every`` epochs on full
    ranking; early stopping after ``patience`` evaluations without a better ``metric`` (0: never);
    the best-validation weights are restored. ``batch_size`` counts training rows (windows
    of up to L targets); ``batch_targets`` > 0 instead sizes batches to ~that many next-item
    targets (RecBole's batch of N prefixes). ``length_buckets`` > 0 batches training
    examples of similar length together (needs a pk-seqrec bundle). A model with
    ``batch_sequences`` > 0 (the contrastive models, whose in-batch negatives are the other
    rows) gets that many rows per batch instead of either. ``exclude_history`` selects the
    ICLRec convention (history items removed from the ranking) instead of RecBole's.
    ``fit`` returns ``epochs_run`` and ``best_epoch`` (1-based: equal to ``epochs_run`` when
    the last epoch was the best)."""

    max_epochs: int = field(default=50, metadata={"ge": 1})
    batch_size: int = field(default=256, metadata={"ge": 1})
    batch_targets: int = field(default=0, metadata={"ge": 0})
    grad_clip: float = field(default=0.0, metadata={"ge": 0})
    length_buckets: int = field(default=0, metadata={"ge": 0})
    patience: int = field(default=10, metadata={"ge": 0})
    eval_every: int = field(default=1, metadata={"ge": 1})
    metric: str = field(default="ndcg@10", metadata={"protocol": True})
    ks: list[int] = field(default_factory=lambda: [5, 10, 20], metadata={"ge": 1, "protocol": True})
    exclude_history: bool = field(default=False, metadata={"protocol": True})
    eval_batch_size: int = field(default=512, metadata={"ge": 1})


@dataclass
class FullRankingConfig:
    """Full-ranking HR/NDCG/MRR@K on ``split``. ``sampled_negatives`` > 0 adds the
    BIASED sampled metrics (prefixed ``sampled_``) over that many uniform negatives."""

    split: str = "test"
    ks: list[int] = field(default_factory=lambda: [5, 10, 20], metadata={"ge": 1})
    exclude_history: bool = False
    sampled_negatives: int = field(default=0, metadata={"ge": 0})
    batch_size: int = field(default=512, metadata={"ge": 1})


# -- registrations ---------------------------------------------------------------------
SASREC_PAPER = {"title": "Self-Attentive Sequential Recommendation", "year": 2018, "url": "https://arxiv.org/abs/1808.09781"}


@hookimpl
def pk_register_datasets(register: Register) -> None:
    register("synthetic-seq", f"{DATA}:build_synthetic_seq", config=SyntheticSeqConfig, tasks=TASKS,
             summary="Seeded Markov chain over item clusters with popularity skew (default, leave-one-out)")
    register("ml-100k", f"{DATA}:build_ml100k", config=ML100kConfig, tasks=TASKS,
             summary="MovieLens-100K, RecBole atomic .inter, time-ordered leave-one-out")
    register("amazon-beauty", f"{DATA}:build_amazon_beauty", config=SeqLinesConfig, tasks=TASKS,
             summary="Amazon Beauty (ICLRec Beauty.txt), leave-one-out")
    register("amazon-sports", f"{DATA}:build_amazon_sports", config=SeqLinesConfig, tasks=TASKS,
             summary="Amazon Sports and Outdoors (ICLRec txt), leave-one-out")
    register("seq-lines", f"{DATA}:build_seq_lines", config=SeqLinesConfig, tasks=TASKS,
             summary="Any one-line-per-user file (user item item ...; Toys, Yelp...), leave-one-out")
    register("diginetica-periods", f"{DATA}:build_diginetica_periods", config=DigineticaPeriodsConfig, tasks=TASKS,
             summary="DIGINETICA weekly session blocks (ADER): train on earlier weeks, test on a later one")


@hookimpl
def pk_register_models(register: Register) -> None:
    register("sasrec", f"{MODELS}.sasrec:build_sasrec", config=SASRecConfig, tasks=MODEL_TASKS, paper=SASREC_PAPER,
             summary="SASRec: causal self-attention next-item model (RecBole flavour)", tags=("baseline",),
             accepts=("calibrator",))
    register("bert4rec", f"{MODELS}.bert4rec:build_bert4rec", config=BERT4RecConfig, tasks=TASKS,
             summary="BERT4Rec: bidirectional encoder trained by cloze", tags=("baseline",),
             paper={"title": "BERT4Rec: Sequential Recommendation with Bidirectional Encoder Representations "
                             "from Transformer", "year": 2019, "url": "https://arxiv.org/abs/1904.06690"},
             accepts=("calibrator",))
    register("gru4rec", f"{MODELS}.gru4rec:build_gru4rec", config=GRU4RecConfig, tasks=MODEL_TASKS,
             summary="GRU4Rec: GRU over the item sequence, tied-embedding scores", tags=("baseline",),
             paper={"title": "Session-based Recommendations with Recurrent Neural Networks", "year": 2016,
                    "url": "https://arxiv.org/abs/1511.06939"})
    register("pop", f"{MODELS}.pop:build_pop", config=PopConfig, tasks=TASKS,
             summary="Popularity: rank items by training interaction count", tags=("baseline",))


@hookimpl
def pk_register_trainers(register: Register) -> None:
    register("next-item", "pk_seqrec.trainers.next_item:NextItemTrainer", config=NextItemTrainerConfig, tasks=TASKS,
             summary="Next-item training (CE/BPR), early stopping on valid NDCG@10, checkpoints and resume")


@hookimpl
def pk_register_evaluators(register: Register) -> None:
    register("full-ranking", "pk_seqrec.evaluators:FullRankingEvaluator", config=FullRankingConfig, tasks=TASKS,
             summary="Full-ranking HR/NDCG/MRR@K (history exclusion switch; sampled metrics as a biased option)")
