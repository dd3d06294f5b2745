"""pk-iurs registrations and config dataclasses (stdlib + pk.core + pk-seqrec's light plugin module).

The streaming protocol (stated once; README "Protocol"): a dataset is cut into T time-ordered
blocks B_0..B_{T-1}. Item ids are re-mapped to 1..N by first appearance in stream order, so
the items known after block t are exactly ``1..K_t``. Every strategy first trains on the
``pretrain_blocks`` first blocks (the same for all strategies, ``pretrain_epochs``), then for
t = P-1 .. T-2: update on block t only (plus the strategy's memory), test on block t+1
(full ranking over the K_t known items; each prefix of each sequence in B_{t+1} predicts its
next item), carry the model forward. Evaluated blocks: P .. T-1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from pk.core import hookimpl
from pk.core.configs import FileSource, OptimConfig
from pk.core.hookspecs import Register

TASK = "streaming-next-item"
TASKS = (TASK,)
DATA = "pk_iurs.data"
STRATEGIES = "pk_iurs.trainers"
SURVEY = {"title": "Incremental Update for Neural Recommender Systems: A Survey", "year": 2023,
          "url": "https://arxiv.org/abs/2303.02851"}
ADER = {"title": "ADER: Adaptively Distilled Exemplar Replay towards Continual Learning for "
                 "Session-based Recommendation",
        "year": 2020, "url": "https://arxiv.org/abs/2007.12000"}
SPMF = {"title": "Streaming Ranking Based Recommender Systems", "year": 2018, "url": "https://doi.org/10.1145/3209978.3210016"}
SML = {"title": "How to Retrain Recommender System? A Sequential Meta-Learning Method", "year": 2020,
       "url": "https://arxiv.org/abs/2005.13258"}
EWC = {"title": "Overcoming catastrophic forgetting in neural networks", "year": 2017, "url": "https://arxiv.org/abs/1612.00796"}
ASMG = {"title": "Learning an Adaptive Meta Model-Generator for Incrementally Updating Recommender Systems",
        "year": 2021, "url": "https://github.com/danni9594/ASMG"}

GE0, GE1, GE2, GT0 = {"ge": 0}, {"ge": 1}, {"ge": 2}, {"gt": 0}
UNIT = {"ge": 0, "le": 1}
#: trainer fields that set how much training a stream gets (compared by ``pk batch``)
BUDGET_EPOCHS = {"ge": 1, "budget": True}


# -- datasets --------------------------------------------------------------------------
@dataclass
class StreamBlocksConfig:
    """What every stream shares: ``pretrain_blocks`` P, the window ``max_len`` L and the
    ``unseen`` rule ("drop" removes items unknown before the test block from test sequences,
    ADER; "miss" keeps them as targets that count as misses)."""

    pretrain_blocks: int = field(default=1, metadata=GE1)
    max_len: int = field(default=50, metadata=GE1)
    unseen: Literal["drop", "miss"] = "drop"


@dataclass
class StreamFileConfig(StreamBlocksConfig, FileSource):
    """A stream read from real files; ``test_sample`` > 0: a fixed subset of that many test
    prefixes per block (same for every run; CPU budget)."""

    test_sample: int = field(default=0, metadata=GE0)


@dataclass
class StreamSyntheticConfig(StreamBlocksConfig):
    """Seeded drifting session stream: sessions walk a Markov chain over item clusters
    (follow the successor w.p. ``follow``); each block re-draws the successor of a
    ``drift`` fraction of clusters and adds ``new_items`` items (new items are popular)."""

    blocks: int = field(default=6, metadata=GE2)
    sessions_per_block: int = field(default=150, metadata=GE1)
    initial_items: int = field(default=120, metadata=GE2)
    new_items: int = field(default=20, metadata=GE0)
    num_clusters: int = field(default=12, metadata=GE2)
    min_len: int = field(default=4, metadata=GE2)
    max_seq_len: int = field(default=12, metadata=GE2)
    follow: float = field(default=0.9, metadata=UNIT)
    drift: float = field(default=0.35, metadata=UNIT)
    max_len: int = field(default=20, metadata=GE1)
    pk_test: ClassVar[dict] = {"blocks": 4, "sessions_per_block": 40, "initial_items": 60, "new_items": 10}


@dataclass
class StreamDigineticaConfig(StreamFileConfig):
    """ADER's weekly DIGINETICA periods ``period_<k>.txt`` for k in [first_period,
    last_period]; each file is one block (sessions never cross blocks)."""

    first_period: int = field(default=0, metadata=GE0)
    last_period: int = field(default=16, metadata=GE1)


@dataclass
class StreamML100kConfig(StreamFileConfig):
    """ml-100k interactions under a STABLE sort on (timestamp, file line), cut into
    ``blocks`` equal-count blocks; a user's sequence spans blocks and earlier items are
    context (never targets) for later blocks."""

    blocks: int = field(default=10, metadata=GE2)
    pretrain_blocks: int = field(default=3, metadata=GE1)


# -- trainers (one registration per strategy) -----------------------------------------
@dataclass
class StreamTrainerConfig(OptimConfig):
    """Shared by every strategy. ``pretrain_epochs`` on blocks 0..P-1 (identical for all
    strategies), then ``epochs`` per update on each block. A fresh ``optimizer`` (Adam) per
    block (the parameter shapes change when items arrive). New item rows: ``init`` = "normal"
    (N(0, init_std)), "mean" (mean of known rows) or "zero"; old rows stay bit-identical.
    Metrics: full-ranking HR(=Recall)/MRR/NDCG@``ks``; ``metric`` is the headline."""

    pretrain_epochs: int = field(default=5, metadata=BUDGET_EPOCHS)
    epochs: int = field(default=1, metadata=GE1)
    batch_size: int = field(default=128, metadata=GE1)
    init: Literal["normal", "mean", "zero"] = "normal"
    init_std: float = field(default=0.02, metadata=GE0)
    ks: list[int] = field(default_factory=lambda: [10, 20], metadata={"ge": 1, "protocol": True})
    metric: str = field(default="hr@20", metadata={"protocol": True})
    eval_batch_size: int = field(default=512, metadata=GE1)
    pk_test: ClassVar[dict] = {"pretrain_epochs": 1, "batch_size": 64}
    pk_test_with: ClassVar[dict] = {"dataset": "stream-synthetic", "model": "sasrec"}


@dataclass
class FullRetrainConfig(StreamTrainerConfig):
    """BURS baseline: at each block retrain on all blocks so far (``window`` = 0) or on the
    last ``window`` blocks, from a fresh initialisation (``from_scratch``) for
    ``retrain_epochs`` epochs (-1: same as ``pretrain_epochs``)."""

    window: int = field(default=0, metadata={"ge": 0, "budget": True})
    from_scratch: bool = True
    retrain_epochs: int = field(default=-1, metadata={"ge": -1, "budget": True})


@dataclass
class FineTuneConfig(StreamTrainerConfig):
    """IU baseline: warm start from M_{t-1}, train ``epochs`` on block t only."""


@dataclass
class ReservoirReplayConfig(StreamTrainerConfig):
    """SPMF-style replay: a reservoir of ``reservoir_size`` past interactions kept by
    reservoir sampling (the n-th interaction enters w.p. |R|/n); each update trains on block
    t plus ``replay_ratio`` x |block t| replayed interactions, drawn "uniform" or "spmf"
    (probability ∝ exp(rank/|R|), rank 0 = the entry the current model scores highest)."""

    reservoir_size: int = field(default=2000, metadata=GE0)
    replay_ratio: float = field(default=0.5, metadata=GE0)
    sampling: Literal["spmf", "uniform"] = "spmf"
    pk_test: ClassVar[dict] = {**StreamTrainerConfig.pk_test, "reservoir_size": 100}


@dataclass
class DistillConfig(StreamTrainerConfig):
    """Knowledge distillation from M_{t-1} on the new block (IncCTR in next-item form):
    loss = (1 - lam) * CE(next item) + lam * T^2 * KL(teacher || student) over the items
    the teacher knew, at every trained position."""

    lam: float = field(default=0.5, metadata=UNIT)
    temperature: float = field(default=1.0, metadata=GT0)


@dataclass
class ADERConfig(StreamTrainerConfig):
    """ADER: ``exemplars`` past sequences kept, allocated per item in proportion to its
    frequency and chosen by ``selection`` ("herding" on the model's hidden states, or
    "random"); each update trains CE on block t plus lam_t * distillation from M_{t-1} on
    the exemplars, lam_t = lam_base * sqrt((|I_{t-1}| / |I_t|) * (|E| / |D_t|)).
    Default 30,000 exemplars = ADER's; recipes that keep fewer say so."""

    exemplars: int = field(default=30000, metadata=GE0)
    lam_base: float = field(default=0.8, metadata=GE0)
    selection: Literal["herding", "random"] = "herding"
    temperature: float = field(default=1.0, metadata=GT0)
    pk_test: ClassVar[dict] = {**StreamTrainerConfig.pk_test, "exemplars": 60}


@dataclass
class EWCConfig(StreamTrainerConfig):
    """EWC: loss = CE(block t) + lam/2 * sum_i F_i (theta_i - theta*_i)^2, theta* = M_{t-1};
    diagonal Fisher from ``fisher_samples`` examples of the block just learned (squared
    gradients of mini-batches of ``fisher_batch_size``, times that size; 1 = exact empirical
    Fisher); new rows get F = 0. ``mode = "l2"`` uses F = 1 (plain L2 to the previous model)."""

    lam: float = field(default=1000.0, metadata=GE0)
    fisher_samples: int = field(default=1000, metadata=GE1)
    fisher_batch_size: int = field(default=16, metadata=GE1)
    mode: Literal["ewc", "l2"] = "ewc"
    pk_test: ClassVar[dict] = {**StreamTrainerConfig.pk_test, "fisher_samples": 32}


@dataclass
class SMLConfig(StreamTrainerConfig):
    """SML: at block t, (1) train the transfer Θ so that f_Θ(W_{t-2}, Ŵ_{t-1}) does well on
    block t (the block after Ŵ_{t-1}'s data), (2) fine-tune Ŵ_t from W_{t-1} on block t,
    (3) W_t = f_Θ(W_{t-1}, Ŵ_t). f_Θ on item embeddings: two 1-wide convs (3 -> n1 -> n2
    channels) over [W, Ŵ, W⊙Ŵ/‖W‖] per row, then a 2-layer GELU MLP; other tensors: a
    learned per-tensor gate a·W + (1-a)·Ŵ (pk simplification)."""

    meta_lr: float = field(default=1e-3, metadata=GT0)
    meta_epochs: int = field(default=1, metadata=BUDGET_EPOCHS)
    n1: int = field(default=10, metadata=GE1)
    n2: int = field(default=5, metadata=GE1)
    mlp_hidden: int = field(default=64, metadata=GE1)


@dataclass
class ASMGConfig(StreamTrainerConfig):
    """ASMG: a GRU meta-generator (hidden ``rnn_hidden``; one cell per parameter position,
    item-table rows share per-column cells) reads the last ``seq_length`` naive fine-tuned
    models M̂ and emits the served model; output k (after reading M̂_j) is trained with the
    model's loss on block j+1, weighted ``loss_weight`` over k (release: linear, seq_length
    3, hidden 4, meta lr 1e-2 on Tmall), ``meta_epochs`` passes of Adam at ``meta_lr``.
    ``residual``: output = input + GRU correction, starting as IU (pk's choice)."""

    seq_length: int = field(default=3, metadata=GE1)
    rnn_hidden: int = field(default=4, metadata=GE1)
    meta_lr: float = field(default=1e-3, metadata=GT0)
    meta_epochs: int = field(default=1, metadata=BUDGET_EPOCHS)
    loss_weight: Literal["linear", "uniform", "exp"] = "linear"
    residual: bool = True


# -- evaluator -------------------------------------------------------------------------
@dataclass
class StreamingEvalConfig:
    """Summarises the trainer's per-block record (``artifacts/stream.json``): mean of each
    metric over evaluated blocks (``last_blocks`` > 0: only the last ones, ASMG style),
    update cost, and the forgetting view (the final model re-tested on every earlier test
    block; drop = at-the-time value - final value). Writes ``artifacts/quality.png``."""

    metric: str = "hr@20"
    last_blocks: int = field(default=0, metadata=GE0)
    forgetting: bool = True
    plot: bool = True
    pk_test_with: ClassVar[dict] = {"dataset": "stream-synthetic", "model": "sasrec"}


# -- registrations ---------------------------------------------------------------------
@hookimpl
def pk_register_datasets(register: Register) -> None:
    register("stream-synthetic", f"{DATA}:build_stream_synthetic", config=StreamSyntheticConfig, tasks=TASKS,
             summary="Seeded drifting session stream with new items per block (streaming default)")
    register("stream-diginetica", f"{DATA}:build_stream_diginetica", config=StreamDigineticaConfig, tasks=TASKS,
             summary="DIGINETICA weekly periods (ADER) as a block stream; new items arrive every week", paper=ADER)
    register("stream-ml-100k", f"{DATA}:build_stream_ml100k", config=StreamML100kConfig, tasks=TASKS,
             summary="ml-100k cut into equal-count time blocks (stable sort on timestamp, line)")


@hookimpl
def pk_register_trainers(register: Register) -> None:
    register("iu-full-retrain", f"{STRATEGIES}:FullRetrainTrainer", config=FullRetrainConfig, tasks=TASKS, paper=SURVEY,
             summary="BURS baseline: retrain on all blocks so far (or a window) at every block", tags=("baseline",))
    register("iu-fine-tune", f"{STRATEGIES}:FineTuneTrainer", config=FineTuneConfig, tasks=TASKS, paper=SURVEY,
             summary="IU baseline: warm-started fine-tuning on the new block only", tags=("baseline",))
    register("iu-reservoir", f"{STRATEGIES}:ReservoirReplayTrainer", config=ReservoirReplayConfig, tasks=TASKS,
             paper=SPMF, summary="Reservoir sample replay (SPMF): new block + score-weighted reservoir sample",
             tags=("method",))
    register("iu-distill", f"{STRATEGIES}:DistillTrainer", config=DistillConfig, tasks=TASKS, paper=SURVEY,
             summary="Knowledge distillation from the previous model on the new block (IncCTR-style)", tags=("method",))
    register("iu-ader", f"{STRATEGIES}:ADERTrainer", config=ADERConfig, tasks=TASKS, paper=ADER,
             summary="ADER: herding exemplar replay with adaptively weighted distillation", tags=("method",))
    register("iu-ewc", f"{STRATEGIES}:EWCTrainer", config=EWCConfig, tasks=TASKS, paper=EWC,
             summary="EWC: Fisher-weighted L2 towards the previous model (or plain L2)", tags=("method",))
    register("iu-sml", f"{STRATEGIES}:SMLTrainer", config=SMLConfig, tasks=TASKS, paper=SML,
             summary="SML: meta-learned transfer of old and fine-tuned weights, trained on the next block",
             tags=("method",))
    register("iu-asmg", f"{STRATEGIES}:ASMGTrainer", config=ASMGConfig, tasks=TASKS, paper=ASMG,
             summary="ASMG: GRU meta-generator over the last fine-tuned models, trained on each next block",
             tags=("method",))


@hookimpl
def pk_register_evaluators(register: Register) -> None:
    register("streaming", "pk_iurs.evaluators:StreamingEvaluator", config=StreamingEvalConfig, tasks=TASKS,
             summary="Streaming protocol summary: per-block and mean quality, update cost, forgetting, plot")
