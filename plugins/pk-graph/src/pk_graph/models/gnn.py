"""A stack of PyG convolutions with a node head or a pooled graph head.

Batches: node tasks get one PyG ``Data`` with ``x [N, F]``, ``edge_index [2, E]``, ``y [N]``
and ``mask [N]`` (the nodes whose loss counts); graph tasks get a PyG ``Batch`` with
``batch [N]`` and ``y [num_graphs]``. ``predict`` returns ``[N, C]`` or ``[num_graphs, C]`` logits.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch_geometric.nn import GATConv, GCNConv, GINConv, SAGEConv, global_add_pool, global_mean_pool

from pk.core.contracts import DatasetInfo

TASKS = ("node-classification", "graph-classification")


def graph_targets(batch: Any) -> torch.Tensor:
    """Labels of the examples ``predict`` scores: masked nodes, or every graph of a batch."""
    mask = getattr(batch, "mask", None)
    if getattr(batch, "batch", None) is None and mask is not None:
        return batch.y[mask]
    return batch.y.view(-1)


def graph_loss(logits: torch.Tensor, batch: Any) -> torch.Tensor:
    """Cross-entropy over the masked nodes (node task) or all graphs (graph task)."""
    mask = getattr(batch, "mask", None)
    if getattr(batch, "batch", None) is None and mask is not None:
        return nn.functional.cross_entropy(logits[mask], batch.y[mask])
    return nn.functional.cross_entropy(logits, batch.y.view(-1))


def _conv(kind: str, width_in: int, width_out: int, heads: int, last: bool, dropout: float) -> nn.Module:
    if kind == "gcn":
        return GCNConv(width_in, width_out)
    if kind == "sage":
        return SAGEConv(width_in, width_out, aggr="mean")
    if kind == "gat":
        # hidden layers concatenate `heads` heads of width_out // heads; the last averages them
        if last:
            return GATConv(width_in, width_out, heads=1, dropout=dropout)
        return GATConv(width_in, width_out // heads, heads=heads, dropout=dropout)
    if kind == "gin":
        mlp = nn.Sequential(nn.Linear(width_in, width_out), nn.BatchNorm1d(width_out), nn.ReLU(),
                            nn.Linear(width_out, width_out))
        return GINConv(mlp, train_eps=True)
    raise ValueError(f"unknown conv {kind!r}; use gcn, gat, sage or gin")


class GNNClassifier(nn.Module):
    """``layers`` convolutions of width ``hidden`` (ReLU, dropout between).

    Node task: the last convolution maps to ``num_classes`` logits per node. Graph task: all
    layers keep ``hidden`` width; ``readout="last"``: ``pool`` (mean or sum) of the last layer and
    a 2-layer MLP to classes; ``readout="layers"`` (GIN, Xu et al.): logits = sum over
    k = 0..layers of ``dropout(Linear_k(pool(h_k)))`` with ``h_0`` the input features, and (GIN)
    batch norm + ReLU after every convolution, no dropout between layers.
    """

    def __init__(
        self, conv: str, in_features: int, num_classes: int, task: str, hidden: int = 64, layers: int = 2,
        dropout: float = 0.5, heads: int = 8, pool: str = "mean", input_dropout: float | None = None,
        readout: str = "last",
    ) -> None:
        super().__init__()
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {task!r}")
        if layers < 1:
            raise ValueError("layers must be >= 1")
        if pool not in ("mean", "sum"):
            raise ValueError(f"pool must be mean or sum, got {pool!r}")
        if readout not in ("last", "layers"):
            raise ValueError(f"readout must be last or layers, got {readout!r}")
        if conv == "gat" and hidden % heads:
            raise ValueError(f"gat: hidden ({hidden}) must be divisible by heads ({heads})")
        self.task, self.conv_kind, self.dropout, self.pool = task, conv, dropout, pool
        # node tasks drop input features (Kipf & Welling, GAT); graph tasks keep them (GIN)
        if input_dropout is None:
            input_dropout = dropout if task == "node-classification" else 0.0
        self.input_dropout = input_dropout
        node_task = task == "node-classification"
        widths = [in_features] + [hidden] * (layers - 1) + ([num_classes] if node_task else [hidden])
        self.convs = nn.ModuleList(
            _conv(conv, widths[i], widths[i + 1], heads, last=node_task and i == layers - 1, dropout=dropout)
            for i in range(layers)
        )
        self.readout = "last" if node_task else readout
        self.head = None
        self.norms = None
        self.layer_heads = None
        if self.readout == "layers":
            self.layer_heads = nn.ModuleList(nn.Linear(w, num_classes) for w in widths)
            if conv == "gin":
                self.norms = nn.ModuleList(nn.BatchNorm1d(hidden) for _ in range(layers))
        elif not node_task:
            self.head = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(dropout),
                                      nn.Linear(hidden, num_classes))

    def embed(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        """Node representations after every convolution (``[N, C]`` for node tasks, else ``[N, hidden]``)."""
        h = nn.functional.dropout(x.float(), self.input_dropout, self.training)
        last = len(self.convs) - 1
        for i, conv in enumerate(self.convs):
            h = conv(h, edge_index)
            if i < last or self.task != "node-classification":
                h = nn.functional.elu(h) if self.conv_kind == "gat" else nn.functional.relu(h)
                if i < last:
                    h = nn.functional.dropout(h, self.dropout, self.training)
        return h

    def layer_states(self, x: torch.Tensor, edge_index: torch.Tensor) -> list[torch.Tensor]:
        """``[h_0 = x, h_1, ..., h_L]`` for the "layers" readout (graph task)."""
        h = nn.functional.dropout(x.float(), self.input_dropout, self.training)
        states = [h]
        for i, conv in enumerate(self.convs):
            h = conv(h, edge_index)
            if self.norms is not None:
                h = self.norms[i](h)
            h = nn.functional.elu(h) if self.conv_kind == "gat" else nn.functional.relu(h)
            states.append(h)
            if self.norms is None and i < len(self.convs) - 1:
                h = nn.functional.dropout(h, self.dropout, self.training)
        return states

    def _pool(self, h: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return global_mean_pool(h, index) if self.pool == "mean" else global_add_pool(h, index)

    def forward(self, batch: Any) -> torch.Tensor:
        index = batch.batch if getattr(batch, "batch", None) is not None else torch.zeros(
            batch.x.shape[0], dtype=torch.long, device=batch.x.device)
        if self.layer_heads is not None:
            states = self.layer_states(batch.x, batch.edge_index)
            return sum(  # type: ignore[return-value]
                nn.functional.dropout(lin(self._pool(h, index)), self.dropout, self.training)
                for lin, h in zip(self.layer_heads, states, strict=True)
            )
        h = self.embed(batch.x, batch.edge_index)
        if self.head is None:
            return h
        return self.head(self._pool(h, index))

    def predict(self, batch: Any) -> torch.Tensor:
        return self(batch)

    def loss(self, batch: Any) -> torch.Tensor:
        return graph_loss(self(batch), batch)


def _build(conv: str, config: Any, info: DatasetInfo) -> GNNClassifier:
    if not info.num_features or not info.num_classes:
        raise ValueError(f"{conv} needs a dataset with num_features and num_classes")
    return GNNClassifier(
        conv, info.num_features, info.num_classes, info.task, hidden=config.hidden, layers=config.layers,
        dropout=config.dropout, heads=getattr(config, "heads", 1), pool=config.pool,
        readout=getattr(config, "readout", "last"),
    )


def build_gcn(config: Any, info: DatasetInfo) -> GNNClassifier:
    return _build("gcn", config, info)


def build_gat(config: Any, info: DatasetInfo) -> GNNClassifier:
    return _build("gat", config, info)


def build_sage(config: Any, info: DatasetInfo) -> GNNClassifier:
    return _build("sage", config, info)


def build_gin(config: Any, info: DatasetInfo) -> GNNClassifier:
    return _build("gin", config, info)
