"""pk-remi registrations and config dataclasses (stdlib + pk.core only; no torch here).

Task ``candidate-matching`` (REMI / ComiRec protocol), batch format in ``pk_remi.data``:
users are split 8/1/1; a training example is a random cut of a training user's sequence
(history -> one target); a valid/test example is a held-out user whose first 80% predicts
the remaining 20% (multi-target). Histories are padded on the RIGHT to a fixed width L
(ComiRec's layout; RR centres routing rows over all L positions, padding included).
``model.predict(batch)`` returns the user's interest vectors ``[B, K, H]``; items are
scored by exact inner product with ``model.item_embeddings()`` ``[N + 1, H]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pk.core import hookimpl
from pk.core.configs import FileSource, OptimConfig
from pk.core.hookspecs import Register

GE0, GE1 = {"ge": 0}, {"ge": 1}
UNIT = {"ge": 0, "le": 1}

TASKS = ("candidate-matching",)
REMI_PAPER = {
    "title": "Rethinking Multi-Interest Learning for Candidate Matching in Recommender Systems",
    "year": 2023,
    "url": "https://arxiv.org/abs/2302.14532",
}
COMIREC_PAPER = {
    "title": "Controllable Multi-Interest Framework for Recommendation",
    "year": 2020,
    "url": "https://arxiv.org/abs/2005.09347",
}
MIND_PAPER = {
    "title": "Multi-Interest Network with Dynamic Routing for Recommendation at Tmall",
    "year": 2019,
    "url": "https://arxiv.org/abs/1904.08030",
}


# -- datasets --------------------------------------------------------------------------
@dataclass
class MultiInterestSyntheticConfig:
    """Seeded users with ``min_interests..max_interests`` latent interests (item clusters);
    each step stays in the current interest with probability ``stickiness`` or jumps to
    another of the user's interests; items are Zipf(``zipf``)-popular inside a cluster.
    The data and the 8/1/1 user split depend on ``split_seed`` only (not the run seed)."""

    num_users: int = field(default=500, metadata=GE1)
    num_items: int = field(default=400, metadata={"ge": 2})
    num_clusters: int = field(default=16, metadata=GE1)
    min_interests: int = field(default=2, metadata=GE1)
    max_interests: int = field(default=4, metadata=GE1)
    min_len: int = field(default=10, metadata={"ge": 5})
    max_seq_len: int = field(default=40, metadata={"ge": 5})
    stickiness: float = field(default=0.6, metadata=UNIT)
    zipf: float = field(default=1.0, metadata=GE0)
    max_len: int = field(default=20, metadata=GE1)
    split_seed: int = 1230

    pk_test = {"num_users": 150, "num_items": 120, "num_clusters": 8}


@dataclass
class UserSplitConfig(FileSource):
    """A real dataset under REMI's protocol: items with >= ``min_count`` interactions, then
    users with >= ``min_count`` remaining ones, ONE pass (not iterative); users shuffled
    with ``split_seed`` and split 8/1/1; held-out users: first ``history_ratio`` of the
    time-ordered sequence is history (last ``max_len`` kept), the rest are targets.
    ``remi-seq-lines`` reads the file at ``path`` (required with source "file")."""

    min_count: int = field(default=5, metadata=GE0)
    max_len: int = field(default=20, metadata=GE1)
    split_seed: int = 1230
    history_ratio: float = field(default=0.8, metadata={"gt": 0, "lt": 1})


# -- models ----------------------------------------------------------------------------
@dataclass
class MultiInterestConfig:
    """Shared by ComiRec-SA, ComiRec-DR and MIND. H = ``hidden``, K = ``interests``.

    Loss: sampled softmax over ``num_negatives`` uniform negatives shared by the batch
    (accidental hits kept), scored by the hard read-out interest. ``ihn_beta`` > 0 turns on
    REMI's IHN re-weighting (weights not detached unless ``detach_weights``);
    ``rr_lambda`` > 0 adds REMI's routing regulariser on the routing matrix. Both 0 = the
    plain backbone. ``routing_iters`` and ``relu_layer`` only apply to DR/MIND."""

    hidden: int = field(default=64, metadata=GE1)
    interests: int = field(default=4, metadata=GE1)
    num_negatives: int = field(default=1280, metadata=GE1)
    ihn_beta: float = field(default=0.0, metadata=GE0)
    detach_weights: bool = False
    rr_lambda: float = field(default=0.0, metadata=GE0)
    add_position: bool = True
    routing_iters: int = field(default=3, metadata=GE1)
    relu_layer: bool = False

    pk_test = {"num_negatives": 128}


@dataclass
class REMIConfig(MultiInterestConfig):
    """REMI = ComiRec-SA + IHN (beta 1, the Gowalla value) + RR (lambda 100)."""

    ihn_beta: float = field(default=1.0, metadata=GE0)
    rr_lambda: float = field(default=100.0, metadata=GE0)


# -- trainer / evaluator / aggregator --------------------------------------------------
@dataclass
class CandidateMatchingTrainerConfig(OptimConfig):
    """Iteration-based (ComiRec/REMI): each step samples ``batch_size`` distinct training
    users and a random cut per user; validation every ``eval_every`` steps on ``metric``
    over the valid users; early stop after ``patience`` validations without improvement (0: never);
    the best weights are restored. Negatives come from run.generator("negatives").
    ``lr``, ``weight_decay`` and ``optimizer`` (Adam by default) come from ``OptimConfig``."""

    max_steps: int = field(default=5000, metadata=GE1)
    batch_size: int = field(default=128, metadata={"ge": 1, "budget": True})
    eval_every: int = field(default=200, metadata=GE1)
    patience: int = field(default=5, metadata=GE0)
    metric: str = field(default="recall@50", metadata={"protocol": True})
    ks: list[int] = field(default_factory=lambda: [20, 50], metadata={"ge": 1, "protocol": True})
    eval_batch_size: int = field(default=256, metadata=GE1)
    exclude_history: bool = field(default=False, metadata={"protocol": True})

    pk_test = {"eval_every": 2}


@dataclass
class REMIProtocolConfig:
    """Recall/HitRate/NDCG@K (standard, rank-aware NDCG) on held-out ``split`` users,
    top-N by exact inner product per interest, merged by the ``interest-merge`` rule;
    plus routing diagnostics (mean max routing weight, normalised routing entropy)."""

    split: Literal["valid", "test"] = "test"
    ks: list[int] = field(default_factory=lambda: [20, 50], metadata=GE1)
    batch_size: int = field(default=256, metadata=GE1)
    exclude_history: bool = False


@dataclass
class InterestMergeConfig:
    """Merge K per-interest ranked lists: sort by score, drop repeated items (an item keeps
    its best score), return the first ``top_n``; ties broken by smaller item id."""

    top_n: int = field(default=50, metadata=GE1)


# -- registrations ---------------------------------------------------------------------
MODELS = "pk_remi.models"
DATA = "pk_remi.data"


@hookimpl
def pk_register_datasets(register: Register) -> None:
    register("remi-synthetic", f"{DATA}:build_synthetic", config=MultiInterestSyntheticConfig, tasks=TASKS,
             summary="Seeded multi-interest users (2-4 item clusters each), REMI user split 8/1/1 (default)")
    register("remi-ml-100k", f"{DATA}:build_ml100k", config=UserSplitConfig, tasks=TASKS,
             summary="MovieLens-100K under REMI's user-level protocol (8/1/1 users, 80/20 history/targets)")
    register("remi-amazon-beauty", f"{DATA}:build_amazon_beauty", config=UserSplitConfig, tasks=TASKS,
             summary="Amazon Beauty (ICLRec Beauty.txt) under REMI's user-level protocol")
    register("remi-amazon-sports", f"{DATA}:build_amazon_sports", config=UserSplitConfig, tasks=TASKS,
             summary="Amazon Sports and Outdoors (ICLRec txt) under REMI's user-level protocol")
    register("remi-seq-lines", f"{DATA}:build_seq_lines", config=UserSplitConfig, tasks=TASKS,
             summary="Any one-line-per-user file (user item item ...; ICLRec format) at dataset.path, REMI's protocol")


@hookimpl
def pk_register_models(register: Register) -> None:
    register("comirec-sa", f"{MODELS}:build_comirec_sa", config=MultiInterestConfig, tasks=TASKS, paper=COMIREC_PAPER,
             summary="ComiRec-SA: self-attentive multi-interest extractor (routing A, rows stochastic)",
             tags=("baseline",))
    register("comirec-dr", f"{MODELS}:build_comirec_dr", config=MultiInterestConfig, tasks=TASKS, paper=COMIREC_PAPER,
             summary="ComiRec-DR: capsule dynamic routing with per-position bilinear maps (routing c)",
             tags=("baseline",))
    register("mind", f"{MODELS}:build_mind", config=MultiInterestConfig, tasks=TASKS, paper=MIND_PAPER,
             summary="MIND: dynamic routing with a shared bilinear map, N(0,1) routing-logit init", tags=("baseline",))
    register("remi", f"{MODELS}:build_comirec_sa", config=REMIConfig, tasks=TASKS, paper=REMI_PAPER,
             summary="REMI: ComiRec-SA + interest-aware hard negatives (IHN) + routing regularisation (RR)")


@hookimpl
def pk_register_trainers(register: Register) -> None:
    register("candidate-matching", "pk_remi.trainers:CandidateMatchingTrainer", config=CandidateMatchingTrainerConfig,
             tasks=TASKS, accepts=("aggregator",),
             summary="Iteration-based sampled-softmax training, early stop on valid Recall@50, resumable")


@hookimpl
def pk_register_evaluators(register: Register) -> None:
    register("remi-protocol", "pk_remi.evaluators:REMIProtocolEvaluator", config=REMIProtocolConfig, tasks=TASKS,
             summary="REMI protocol: Recall/HR/NDCG@20,50 over held-out users, multi-target, standard NDCG",
             accepts=("aggregator",))


@hookimpl
def pk_register_aggregators(register: Register) -> None:
    register("interest-merge", "pk_remi.aggregators:InterestMerge", config=InterestMergeConfig,
             summary="Top-N merge of per-interest ranked lists (kind 'ranked-lists', unweighted; "
                     "not a model-weight aggregator)")
