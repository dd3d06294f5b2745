"""Dataset builders (``build(config, *, root, seed) -> DataBundle``) and the Cora helper."""

from __future__ import annotations

from typing import Any

import torch

from pk.core.contracts import DatasetInfo
from pk.core.errors import ConfigError, DataError
from pk.core.seed import derive_seed
from pk_graph.data.bundles import GraphBundle, NodeBundle, cv_split
from pk_graph.data.real import cora, load_planetoid, load_tu
from pk_graph.data.synthetic import csbm, motif_graphs

__all__ = [
    "GraphBundle", "NodeBundle", "build_csbm", "build_motif_graphs", "build_planetoid", "build_tu", "cora",
    "load_planetoid", "load_tu",
    "normalize_rows",
]


def _node_bundle(data: Any, name: str, source: str, params: dict[str, Any]) -> NodeBundle:
    num_classes = int(data.y.max()) + 1
    info = DatasetInfo(
        task="node-classification", num_features=int(data.x.shape[1]), num_classes=num_classes,
        extra={"source": source, "name": name, "num_nodes": int(data.num_nodes),
               "num_edges": int(data.edge_index.shape[1])},
    )
    return NodeBundle(info, data, params)


def _csbm_data(config: Any, seed: int) -> Any:
    g = torch.Generator().manual_seed(derive_seed(seed, "csbm"))
    return csbm(
        config.num_nodes, config.num_classes, config.num_features, config.avg_degree, config.homophily,
        config.feature_signal, config.train_per_class, config.num_valid, g,
    )


def build_csbm(config: Any, *, root: Any = None, seed: int = 0) -> NodeBundle:
    """Seeded contextual SBM (see :func:`pk_graph.data.synthetic.csbm`)."""
    return _node_bundle(_csbm_data(config, seed), "csbm", "synthetic", {"seed": seed, **vars(config)})


def build_planetoid(config: Any, *, root: Any = None, seed: int = 0) -> NodeBundle:
    """Planetoid ``config.dataset_name`` (standard split); "auto" without files falls back to the CSBM default."""
    loaded = load_planetoid(config.dataset_name, source=config.source, path=config.path, split=config.split)
    if loaded is None:
        from pk_graph.plugin import CSBMConfig

        return _node_bundle(_csbm_data(CSBMConfig(), seed), "csbm", "synthetic", {"seed": seed, "fallback": "csbm"})
    data, source = loaded
    if config.normalize_features:
        data.x = normalize_rows(data.x)
    params = {"dataset_name": config.dataset_name, "split": config.split,
              "normalize_features": config.normalize_features}
    return _node_bundle(data, config.dataset_name, source, params)


def normalize_rows(x: torch.Tensor) -> torch.Tensor:
    """Each row divided by its sum (Kipf & Welling's row normalisation); all-zero rows stay zero."""
    total = x.sum(dim=1, keepdim=True)
    return torch.where(total != 0, x / torch.where(total != 0, total, torch.ones_like(total)), x)


def _graph_bundle(graphs: list[Any], name: str, source: str, num_folds: int, fold: int, split_seed: int,
                  params: dict[str, Any], where: str = "") -> GraphBundle:
    where = where or f"dataset {name}"
    if fold >= num_folds:
        raise ConfigError(f"dataset.fold must be < dataset.num_folds ({num_folds}), got {fold}")
    if len(graphs) < num_folds:
        raise DataError(f"{where}: {len(graphs)} graphs are too few for {num_folds}-fold CV; "
                        "use more graphs or fewer folds")
    labels = torch.cat([g.y.view(-1) for g in graphs])
    g = torch.Generator().manual_seed(derive_seed(split_seed, "cv-folds", name))
    indices = cv_split(labels, num_folds, fold, g)
    train_classes = torch.unique(labels[indices["train"]]).numel()
    if indices["train"].numel() == 0 or train_classes < 2:
        raise DataError(f"{where}: the training folds hold {indices['train'].numel()} graphs of "
                        f"{train_classes} class(es); graph classification needs at least 2 classes; "
                        "check the graph labels")
    sizes = torch.tensor([gr.num_nodes for gr in graphs], dtype=torch.float)
    info = DatasetInfo(
        task="graph-classification", num_features=int(graphs[0].x.shape[1]), num_classes=int(labels.max()) + 1,
        extra={"source": source, "name": name, "num_graphs": len(graphs), "avg_nodes": float(sizes.mean()),
               "num_folds": num_folds, "fold": fold},
    )
    return GraphBundle(info, graphs, indices, params)


def _motif_graphs(config: Any, seed: int) -> list[Any]:
    g = torch.Generator().manual_seed(derive_seed(seed, "motif-graphs"))
    return motif_graphs(config.num_graphs, config.min_nodes, config.max_nodes, config.num_features,
                        config.extra_edge_ratio, g)


def build_motif_graphs(config: Any, *, root: Any = None, seed: int = 0) -> GraphBundle:
    """Seeded planted-motif graph classification, k-fold split (see :func:`motif_graphs`)."""
    if config.min_nodes > config.max_nodes:
        raise ConfigError(f"dataset.min_nodes ({config.min_nodes}) must be <= dataset.max_nodes ({config.max_nodes})")
    params = {"seed": seed, **vars(config)}
    return _graph_bundle(_motif_graphs(config, seed), "motif-graphs", "synthetic", config.num_folds, config.fold, seed,
                         params)


def build_tu(config: Any, *, root: Any = None, seed: int = 0) -> GraphBundle:
    """TUDataset ``config.dataset_name``, stratified ``num_folds``-fold CV (folds fixed by ``split_seed``);
    "auto" without files falls back to the motif-graph default."""
    loaded = load_tu(config.dataset_name, source=config.source, path=config.path, use_node_attr=config.use_node_attr)
    if loaded is None:
        from pk_graph.plugin import MotifGraphsConfig

        mc = MotifGraphsConfig(num_folds=config.num_folds, fold=config.fold)
        return _graph_bundle(_motif_graphs(mc, seed), "motif-graphs", "synthetic", mc.num_folds, mc.fold, seed,
                             {"seed": seed, "fallback": "motif"})
    graphs, source = loaded
    params = {"dataset_name": config.dataset_name, "num_folds": config.num_folds, "fold": config.fold,
              "split_seed": config.split_seed, "use_node_attr": config.use_node_attr}
    where = f"dataset {config.dataset_name} ({config.dataset_name}_graph_labels.txt)"
    return _graph_bundle(graphs, config.dataset_name, source, config.num_folds, config.fold, config.split_seed, params,
                         where)
