"""pk-pignn registrations and config dataclasses (stdlib and pk.core only).

Defaults follow the official PI-GNN code (Jerry2398/PI-GNN, ``utils/get_params.py``,
``models/config.py``); see plugins/pk-pignn/README.md for the deviations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pk_graph.plugin import GraphFileSource, SBMConfig

from pk.core import hookimpl
from pk.core.configs import FileSource
from pk.core.hookspecs import Register

CL = "continual-node-classification"
PAPER = {
    "title": "PI-GNN: A Novel Perspective on Continual Learning for Dynamic Graphs via Parameter Isolation",
    "year": 2023,
    "url": "https://arxiv.org/abs/2305.13825",
}


# -- datasets ------------------------------------------------------------------------------------
@dataclass
class SyntheticStreamConfig(SBMConfig):
    """Drifting communities: ``num_nodes`` nodes arrive in ``num_tasks`` groups; class centroids
    rotate by ``drift * pi`` over the stream; ``rewire_fraction`` extra edges per task join old
    nodes. Random 60/20/20 split."""

    num_tasks: int = field(default=6, metadata={"ge": 1, "le": 10_000})
    feature_signal: float = field(default=2.0, metadata={"ge": 0.0})
    drift: float = field(default=1.0, metadata={"ge": 0.0})
    rewire_fraction: float = field(default=0.2, metadata={"ge": 0.0, "le": 100.0})


@dataclass
class CoraStreamConfig(FileSource):
    """The official 14-snapshot PI-GNN Cora stream (``PIGNN_cora_stream``); features from PyG's
    Cora (``features_path``: its folder; empty = shared data dir / cache) through the id map.
    ``source``: auto | file | synthetic ("auto" without files falls back to the synthetic stream)."""

    source: Literal["auto", "file", "synthetic"] = "auto"
    features_path: str = ""


@dataclass
class GraphStreamConfig(GraphFileSource):
    """A Planetoid graph (via pk-graph) cut into ``num_tasks`` snapshots by ``order`` = "edge"
    (edges in index order / shuffled, equal chunks) or "node" (nodes in equal groups; an edge
    arrives with its later endpoint). ``split``: "random" 60/20/20 or the "dataset" masks.
    ``source``: auto | file | download | synthetic ("auto" without files: pk-graph's CSBM graph)."""

    num_tasks: int = field(default=10, metadata={"ge": 1, "le": 100_000})
    order: Literal["edge", "node"] = "edge"
    shuffle: bool = True
    split: Literal["random", "dataset"] = "random"


# -- model -----------------------------------------------------------------------------------------
@dataclass
class ProgressiveSAGEConfig:
    """2-layer mean-SAGE of weight blocks, initial width ``hidden`` per layer, LeakyReLU(0.01),
    dropout after each layer, bias-free classifier (PI-GNN ``models/config.py``)."""

    hidden: list[int] = field(default_factory=lambda: [12, 12], metadata={"ge": 1})
    dropout: float = field(default=0.5, metadata={"ge": 0.0, "lt": 1.0})
    negative_slope: float = field(default=0.01, metadata={"ge": 0.0})


# -- trainers ----------------------------------------------------------------------------------------
@dataclass
class ContinualConfig:
    """What every continual trainer shares: ``init_epochs`` on task 0 (and retrain), Adam with
    ``lr`` / ``weight_decay``, a uniform replay memory of ``memory_size`` nodes per task,
    ``chunks`` loss-mask chunks (= steps) per epoch, ``reset_optimizer_each_epoch`` (the official
    code's per-epoch Adam rebuild), ``max_tasks`` > 0 stops early (tests), ``checkpoint_every`` k
    saves ``last`` every k tasks (0: only after the last task)."""

    init_epochs: int = field(default=400, metadata={"ge": 1, "le": 1_000_000, "budget": True})
    lr: float = field(default=1e-3, metadata={"gt": 0.0, "le": 10.0})
    weight_decay: float = field(default=0.0, metadata={"ge": 0.0})
    memory_size: int = field(default=64, metadata={"ge": 0})
    chunks: int = field(default=1, metadata={"ge": 1, "le": 10_000})
    reset_optimizer_each_epoch: bool = False
    max_tasks: int = field(default=0, metadata={"ge": 0})
    checkpoint_every: int = field(default=1, metadata={"ge": 0})

    #: the contract suite's tiny schedule
    pk_test = {"init_epochs": 3, "max_tasks": 3}


@dataclass
class PIGNNConfig(ContinualConfig):
    """PI-GNN per task t >= 1: reopen all blocks; ``rectify_epochs`` of CE(memory) - ``beta1`` *
    CE(old affected) on the old topology; expand each layer by ``expand_size``, freeze old blocks;
    ``retrain_epochs`` of CE(memory + affected) + ``beta2`` * CE(memory) on the new topology.
    ``memory_size`` replay nodes redrawn uniformly per task. ``chunks`` loss-mask chunks (= steps)
    per epoch; ``reset_optimizer_each_epoch`` mimics the official code. Ablations: ``rectify``,
    ``expand`` (False: rectification + fine-tune of all parameters), ``beta1 = 0``.
    ``max_tasks`` > 0 stops early (tests); ``checkpoint_every`` k saves ``last`` every k tasks
    (0: only after the last task)."""

    rectify_epochs: int = field(default=10, metadata={"ge": 0, "le": 1_000_000, "budget": True})
    retrain_epochs: int = field(default=100, metadata={"ge": 1, "le": 1_000_000, "budget": True})
    rectify_lr: float = field(default=1e-3, metadata={"gt": 0.0, "le": 10.0})
    beta1: float = field(default=0.01, metadata={"ge": 0.0})
    beta2: float = field(default=0.1, metadata={"ge": 0.0})
    expand_size: list[int] = field(default_factory=lambda: [12, 12], metadata={"ge": 1})
    rectify: bool = True
    expand: bool = True

    pk_test = {"init_epochs": 3, "rectify_epochs": 1, "retrain_epochs": 2, "max_tasks": 3}


@dataclass
class FinetuneConfig(ContinualConfig):
    """Task 0: ``init_epochs`` on snapshot 0; then ``epochs`` of CE on each snapshot's affected
    training nodes (endpoints of the new edges), all parameters (OnlineGNN-style)."""

    epochs: int = field(default=100, metadata={"ge": 1, "le": 1_000_000})

    pk_test = {"init_epochs": 3, "epochs": 2, "max_tasks": 3}


@dataclass
class ReplayConfig(FinetuneConfig):
    """Fine-tune on memory + affected training nodes plus ``replay_weight`` * CE(memory): PI-GNN's
    expansion loss without isolation or rectification; same ``memory_size`` uniform memory."""

    replay_weight: float = field(default=0.1, metadata={"ge": 0.0})


@dataclass
class EWCConfig(FinetuneConfig):
    """Fine-tune plus ``ewc_lambda``/2 * sum F (theta - theta*)^2 (online EWC: squared gradients
    of each task's loss summed over tasks, anchor = parameters after the last task)."""

    ewc_lambda: float = field(default=10000.0, metadata={"ge": 0.0})


@dataclass
class RetrainConfig(ContinualConfig):
    """Upper reference: from the run's initial weights, ``init_epochs`` on ALL training nodes of
    every snapshot (not continual)."""


@dataclass
class PMFMConfig:
    """Draw ``artifacts/accuracy_matrix.png`` when the run holds a task-accuracy matrix."""

    heatmap: bool = True


# -- registrations ---------------------------------------------------------------------------------
@hookimpl
def pk_register_datasets(register: Register) -> None:
    m = "pk_pignn.data"
    register("pignn-synthetic", f"{m}:build_synthetic_stream", config=SyntheticStreamConfig,
             summary="Seeded drifting-community snapshot stream (synthetic default)", tasks=(CL,))
    register("pignn-cora", f"{m}:build_cora_stream", config=CoraStreamConfig,
             summary="Official PI-GNN 14-snapshot Cora stream, Planetoid features via the id map", tasks=(CL,),
             paper=PAPER)
    register("graph-stream", f"{m}:build_graph_stream", config=GraphStreamConfig,
             summary="Any Planetoid graph cut into T snapshots by node or edge arrival order", tasks=(CL,))


@hookimpl
def pk_register_models(register: Register) -> None:
    register("pignn-sage", "pk_pignn.models:build_progressive_sage", config=ProgressiveSAGEConfig,
             summary="Expandable GraphSAGE of weight blocks (old units never read new ones)",
             tasks=(CL, "node-classification"), paper=PAPER)


@hookimpl
def pk_register_trainers(register: Register) -> None:
    m = "pk_pignn.trainers"
    register("pignn", f"{m}:PIGNNTrainer", config=PIGNNConfig, tasks=(CL,), paper=PAPER,
             summary="PI-GNN: rectification, then parameter isolation + expansion per snapshot")
    register("cl-finetune", f"{m}:FinetuneTrainer", config=FinetuneConfig, tasks=(CL,), tags=("baseline",),
             summary="Continual baseline: fine-tune on each snapshot's affected nodes")
    register("cl-replay", f"{m}:ReplayTrainer", config=ReplayConfig, tasks=(CL,), tags=("baseline",),
             summary="Continual baseline: experience replay with a uniform per-task memory")
    register("cl-ewc", f"{m}:EWCTrainer", config=EWCConfig, tasks=(CL,), tags=("baseline",),
             summary="Continual baseline: fine-tune with an online EWC penalty")
    register("cl-retrain", f"{m}:RetrainTrainer", config=RetrainConfig, tasks=(CL,), tags=("baseline",),
             summary="Upper reference: retrain from scratch on every cumulative snapshot")


@hookimpl
def pk_register_evaluators(register: Register) -> None:
    register("pm-fm", "pk_pignn.evaluators:PMFMEvaluator", config=PMFMConfig, tasks=(CL,),
             summary="Performance mean and forgetting measure (FM < 0 = forgetting) + heat map")
