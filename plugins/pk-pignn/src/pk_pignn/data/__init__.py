"""Dataset builders (``build(config, *, root, seed) -> StreamBundle``) for snapshot streams."""

from __future__ import annotations

from typing import Any

import torch

from pk.core.datasource import locate
from pk.core.seed import derive_seed
from pk_pignn.data.cora_stream import REQUIRED, load_cora_stream
from pk_pignn.data.stream import SnapshotStream, StreamBundle, TaskGraphs, stream_info
from pk_pignn.data.synthetic import drifting_stream, stream_from_graph

__all__ = [
    "SnapshotStream", "StreamBundle", "TaskGraphs", "build_cora_stream", "build_graph_stream", "build_synthetic_stream",
    "drifting_stream", "load_cora_stream", "stream_from_graph",
]


def _synthetic(config: Any, seed: int) -> SnapshotStream:
    g = torch.Generator().manual_seed(derive_seed(seed, "pignn-synthetic"))
    return drifting_stream(
        config.num_nodes, config.num_tasks, config.num_classes, config.num_features, config.avg_degree,
        config.homophily, config.feature_signal, config.drift, config.rewire_fraction, g,
    )


def build_synthetic_stream(config: Any, *, root: Any = None, seed: int = 0) -> StreamBundle:
    """Seeded drifting-community stream (the synthetic default; see :func:`drifting_stream`)."""
    stream = _synthetic(config, seed)
    return StreamBundle(stream_info(stream, "synthetic"), stream, {"seed": seed, **vars(config)})


def _fallback(seed: int, why: str) -> StreamBundle:
    from pk_pignn.plugin import SyntheticStreamConfig

    cfg = SyntheticStreamConfig()
    stream = _synthetic(cfg, seed)
    return StreamBundle(stream_info(stream, "synthetic", {"fallback": why}), stream,
                        {"seed": seed, "fallback": why, **vars(cfg)})


def build_cora_stream(config: Any, *, root: Any = None, seed: int = 0) -> StreamBundle:
    """The official 14-snapshot PI-GNN Cora stream (features from PyG Cora via the id map);
    ``source="auto"`` without files falls back to the synthetic stream."""
    folder = locate("pignn-cora", source=config.source, path=config.path, shared_folder="PIGNN_cora_stream",
                    required=tuple(f"raw/{r}" for r in REQUIRED))
    if folder is None:
        return _fallback(seed, "no PIGNN_cora_stream found")
    stream, extra = load_cora_stream(folder, config.features_path)
    return StreamBundle(stream_info(stream, "file", extra), stream,
                        {"stream": "pignn-cora", "features_path": config.features_path})


def build_graph_stream(config: Any, *, root: Any = None, seed: int = 0) -> StreamBundle:
    """Any Planetoid graph (via pk-graph) cut into ``num_tasks`` snapshots by node or edge order;
    "auto" without files uses pk-graph's CSBM default graph (also cut by this builder)."""
    from pk_graph.data import build_csbm, load_planetoid

    g = torch.Generator().manual_seed(derive_seed(seed, "graph-stream", config.dataset_name))
    loaded = load_planetoid(config.dataset_name, source=config.source, path=config.path)
    if loaded is None:
        from pk_graph.plugin import CSBMConfig

        data, source, name = build_csbm(CSBMConfig(), seed=seed).data, "synthetic", "csbm-stream"
    else:
        (data, source), name = loaded, f"{config.dataset_name.lower()}-stream"
    masks = (data.train_mask, data.val_mask, data.test_mask) if config.split == "dataset" else None
    stream = stream_from_graph(data.x, data.y, data.edge_index, config.num_tasks, config.order, config.shuffle, g,
                               masks, name)
    params = {"seed": seed, **vars(config), "resolved_source": source}
    return StreamBundle(stream_info(stream, source, {"order": config.order}), stream, params)
