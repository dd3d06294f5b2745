"""pk-graph registrations and config dataclasses (stdlib and pk.core only).

Bases other graph plugins inherit: :class:`SBMConfig` (a contextual SBM graph),
:class:`GraphFileSource` (a named dataset file), :class:`FoldSplit` (k-fold CV),
:class:`GNNConfig` (a GNN stack) and :class:`EpochTrainerConfig` (an epoch loop).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pk.core import hookimpl
from pk.core.configs import FileSource, OptimConfig
from pk.core.hookspecs import Register

NODE, GRAPH = "node-classification", "graph-classification"
BOTH = (NODE, GRAPH)


# -- dataset bases -----------------------------------------------------------------------------
@dataclass
class SBMConfig:
    """A contextual SBM graph: ``num_nodes`` nodes in balanced classes, ``avg_degree`` mean
    degree, a fraction ``homophily`` of edges inside a class; features
    ``feature_signal * mu[y] + N(0, I)``."""

    num_nodes: int = field(default=600, metadata={"ge": 2, "le": 10_000_000})
    num_classes: int = field(default=3, metadata={"ge": 2})
    num_features: int = field(default=32, metadata={"ge": 1})
    avg_degree: float = field(default=6.0, metadata={"ge": 0.0})
    homophily: float = field(default=0.8, metadata={"ge": 0.0, "le": 1.0})
    feature_signal: float = field(default=1.0, metadata={"ge": 0.0})


@dataclass
class GraphFileSource(FileSource):
    """A named dataset (``dataset_name``) read from files: ``source`` auto | file | download |
    synthetic; ``path`` the dataset folder (empty: the shared data dir and the cache)."""

    dataset_name: str = "Cora"
    source: Literal["auto", "file", "download", "synthetic"] = "auto"


@dataclass
class FoldSplit:
    """Stratified ``num_folds``-fold split: test = ``fold``, valid = the next fold."""

    num_folds: int = field(default=10, metadata={"ge": 3, "le": 1000})
    fold: int = field(default=0, metadata={"ge": 0})


# -- datasets --------------------------------------------------------------------------------
@dataclass
class CSBMConfig(SBMConfig):
    """Contextual SBM: ``num_nodes`` nodes in balanced classes, ``avg_degree`` mean degree, a
    fraction ``homophily`` of edges inside a class; features ``feature_signal * mu[y] + N(0, I)``.
    Split: ``train_per_class`` per class / ``num_valid`` / rest test."""

    train_per_class: int = field(default=20, metadata={"ge": 1})
    num_valid: int = field(default=120, metadata={"ge": 1})


@dataclass
class PlanetoidConfig(GraphFileSource):
    """PyG ``Planetoid`` (Cora, CiteSeer, PubMed) from ``<dataset_name>/raw/ind.*`` files.

    ``source``: auto | file | download | synthetic ("auto" falls back to the CSBM default).
    ``path``: the dataset folder (or its raw/); empty looks in the shared data dir and the cache.
    ``split``: PyG's "public" (20 per class / 500 / 1000) or "full". ``normalize_features``:
    divide each feature row by its sum (Kipf & Welling and GAT do; PyG's NormalizeFeatures)."""

    split: Literal["public", "full"] = "public"
    normalize_features: bool = False


@dataclass
class MotifGraphsConfig(FoldSplit):
    """Random trees + chords with a planted 5-node motif (house = class 1, star + 2 chords = class 0).
    Split: stratified ``num_folds``-fold, test = ``fold``, valid = next fold."""

    num_graphs: int = field(default=200, metadata={"ge": 2, "le": 1_000_000})
    min_nodes: int = field(default=10, metadata={"ge": 1})
    max_nodes: int = field(default=20, metadata={"ge": 1, "le": 100_000})
    num_features: int = field(default=3, metadata={"ge": 1})
    extra_edge_ratio: float = field(default=0.2, metadata={"ge": 0.0, "le": 100.0})


@dataclass
class TUConfig(FoldSplit, GraphFileSource):
    """PyG ``TUDataset`` (MUTAG, PROTEINS_full, ENZYMES, any TU name) from ``<dataset_name>/raw/*.txt``.

    Stratified ``num_folds``-fold CV: test = ``fold``, valid = fold + 1, train = the rest; folds
    are fixed by ``split_seed`` (not the run seed). ``source``: auto | file | download | synthetic
    ("auto" falls back to the motif-graph default)."""

    dataset_name: str = "MUTAG"
    use_node_attr: bool = False
    split_seed: int = field(default=0, metadata={"ge": 0})


# -- models ------------------------------------------------------------------------------------
@dataclass
class GNNConfig:
    """A stack of ``layers`` graph layers of width ``hidden``, ``dropout``; the graph task pools
    (mean/sum) + MLP."""

    hidden: int = field(default=64, metadata={"ge": 1})
    layers: int = field(default=2, metadata={"ge": 1, "le": 64})
    dropout: float = field(default=0.5, metadata={"ge": 0.0, "lt": 1.0})
    pool: Literal["mean", "sum"] = "mean"


@dataclass
class GCNConfig(GNNConfig):
    """Kipf & Welling: 2 layers, 16 hidden, dropout 0.5 (node); graph task pools (mean/sum) + MLP."""

    hidden: int = field(default=16, metadata={"ge": 1})


@dataclass
class GATConfig(GNNConfig):
    """Velickovic et al.: 8 heads x 8 hidden (hidden = 64 total), dropout 0.6 on inputs and attention."""

    heads: int = field(default=8, metadata={"ge": 1})
    dropout: float = field(default=0.6, metadata={"ge": 0.0, "lt": 1.0})


@dataclass
class SAGEConfig(GNNConfig):
    """GraphSAGE with mean aggregation."""


@dataclass
class GINConfig(GNNConfig):
    """GIN (train_eps) with 2-layer MLPs and batch norm; sum pooling as in Xu et al. Graph task,
    ``readout = "layers"`` (Xu et al.): logits = sum over k = 0..layers of a linear map of the
    pooled layer-k states (k = 0: input features), dropout on each; each GIN layer is followed by
    batch norm + ReLU. ``"last"``: pool the last layer + MLP head (the other convolutions' head)."""

    layers: int = field(default=4, metadata={"ge": 1, "le": 64})
    pool: Literal["mean", "sum"] = "sum"
    readout: Literal["layers", "last"] = "layers"


# -- trainers / evaluators ---------------------------------------------------------------------
@dataclass
class EpochTrainerConfig(OptimConfig):
    """An epoch loop: at most ``max_epochs`` epochs, early stop after ``patience`` epochs without a
    better validation score (0: never), mini-batches of ``batch_size``."""

    lr: float = field(default=0.01, metadata={"gt": 0.0, "le": 10.0})
    max_epochs: int = field(default=100, metadata={"ge": 1, "le": 1_000_000})
    patience: int = field(default=0, metadata={"ge": 0})
    batch_size: int = field(default=32, metadata={"ge": 1})
    eval_batch_size: int = field(default=256, metadata={"ge": 1})


@dataclass
class NodeTrainerConfig(EpochTrainerConfig):
    """Full-batch training; best-validation weights kept (accuracy, then loss).
    ``sampler = "neighbor"`` (needs pyg-lib or torch-sparse) uses ``num_neighbors`` per hop."""

    max_epochs: int = field(default=200, metadata={"ge": 1, "le": 1_000_000})
    weight_decay: float = field(default=5e-4, metadata={"ge": 0.0})
    sampler: Literal["full", "neighbor"] = "full"
    num_neighbors: list[int] = field(default_factory=lambda: [10, 10], metadata={"ge": -1})
    batch_size: int = field(default=512, metadata={"ge": 1})
    eval_batch_size: int = field(default=0, metadata={"ge": 0})


@dataclass
class GraphTrainerConfig(EpochTrainerConfig):
    """Shuffled mini-batches of graphs; best-validation weights kept."""


@dataclass
class EvalConfig:
    batch_size: int = field(default=256, metadata={"ge": 1})


PAPERS = {
    "gcn": {"title": "Semi-Supervised Classification with Graph Convolutional Networks", "year": 2017,
            "url": "https://arxiv.org/abs/1609.02907"},
    "gat": {"title": "Graph Attention Networks", "year": 2018, "url": "https://arxiv.org/abs/1710.10903"},
    "sage": {"title": "Inductive Representation Learning on Large Graphs", "year": 2017,
             "url": "https://arxiv.org/abs/1706.02216"},
    "gin": {"title": "How Powerful are Graph Neural Networks?", "year": 2019, "url": "https://arxiv.org/abs/1810.00826"},
}


@hookimpl
def pk_register_datasets(register: Register) -> None:
    m = "pk_graph.data"
    register("csbm", f"{m}:build_csbm", config=CSBMConfig,
             summary="Seeded contextual stochastic block model (synthetic node default)", tasks=(NODE,))
    register("planetoid", f"{m}:build_planetoid", config=PlanetoidConfig,
             summary="Cora / CiteSeer / PubMed through PyG Planetoid (standard split)", tasks=(NODE,))
    register("motif-graphs", f"{m}:build_motif_graphs", config=MotifGraphsConfig,
             summary="Seeded planted-motif graph classification (synthetic graph default)", tasks=(GRAPH,))
    register("tu", f"{m}:build_tu", config=TUConfig,
             summary="TUDataset (MUTAG, PROTEINS_full, ENZYMES...) with stratified k-fold CV", tasks=(GRAPH,))


@hookimpl
def pk_register_models(register: Register) -> None:
    m = "pk_graph.models"
    register("gcn", f"{m}:build_gcn", config=GCNConfig, summary="GCN (PyG GCNConv); node logits or pooled graph logits",
             tasks=BOTH, paper=PAPERS["gcn"], tags=("baseline",))
    register("gat", f"{m}:build_gat", config=GATConfig,
             summary="GAT (PyG GATConv), multi-head attention over neighbours", tasks=BOTH, paper=PAPERS["gat"],
             tags=("baseline",))
    register("graphsage", f"{m}:build_sage", config=SAGEConfig, summary="GraphSAGE (PyG SAGEConv, mean aggregation)",
             tasks=BOTH, paper=PAPERS["sage"], tags=("baseline",))
    register("gin", f"{m}:build_gin", config=GINConfig, summary="GIN (PyG GINConv) with sum pooling", tasks=BOTH,
             paper=PAPERS["gin"], tags=("baseline",))


@hookimpl
def pk_register_trainers(register: Register) -> None:
    m = "pk_graph.trainers"
    register("node-classification", f"{m}:NodeClassificationTrainer", config=NodeTrainerConfig,
             summary="Full-batch node classification (neighbour sampling with pyg-lib/torch-sparse)", tasks=(NODE,))
    register("graph-classification", f"{m}:GraphClassificationTrainer", config=GraphTrainerConfig,
             summary="Mini-batch graph classification (PyG DataLoader)", tasks=(GRAPH,))


@hookimpl
def pk_register_evaluators(register: Register) -> None:
    m = "pk_graph.evaluators"
    register("graph-accuracy", f"{m}:AccuracyEvaluator", config=EvalConfig,
             summary="Test accuracy (node or graph classification)", tasks=BOTH)
    register("graph-macro-f1", f"{m}:MacroF1Evaluator", config=EvalConfig,
             summary="Test macro-F1 (node or graph classification)", tasks=BOTH)
