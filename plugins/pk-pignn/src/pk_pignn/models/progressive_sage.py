"""Expandable GraphSAGE (PI-GNN's progressive SAGE) on PyG's ``MessagePassing``.

A layer is a list of weight *blocks*. Block ``b`` was created at some task with input width
``in_b`` (the layer's input width at that time) and ``out_b`` units:

    m = mean of neighbour inputs (computed once over the full current input width)
    out_b = m[:, :in_b] @ Wl_b + bias_b + x[:, :in_b] @ Wr_b
    layer output = concat_b out_b, then LeakyReLU(0.01) and dropout.

So old blocks never read units added later (no new -> old flow); new blocks read every input
unit (old -> new lateral flow). The classifier is bias-free: ``logits = sum_b h_b @ Wcls_b``
where ``h_b`` are the last layer's units of block ``b``. Shapes: ``x [N, F]`` -> ``[N, C]``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch_geometric.nn import MessagePassing

from pk.core.contracts import DatasetInfo


def _xavier(*shape: int) -> nn.Parameter:
    p = nn.Parameter(torch.empty(*shape))
    nn.init.xavier_uniform_(p)
    return p


class ExpandableSAGELayer(MessagePassing):
    """Mean-aggregation SAGE layer made of blocks (``lin_l``, ``lin_r``, ``bias`` ParameterLists)."""

    def __init__(self, in_width: int, out_width: int) -> None:
        super().__init__(aggr="mean")
        self.lin_l = nn.ParameterList()
        self.lin_r = nn.ParameterList()
        self.bias = nn.ParameterList()
        self.add_block(in_width, out_width)

    @property
    def in_width(self) -> int:
        return max(int(w.shape[0]) for w in self.lin_l)

    @property
    def out_width(self) -> int:
        return sum(int(w.shape[1]) for w in self.lin_l)

    def block_widths(self) -> list[tuple[int, int]]:
        """``[(in_b, out_b), ...]`` in creation order."""
        return [(int(w.shape[0]), int(w.shape[1])) for w in self.lin_l]

    def add_block(self, in_width: int, out_width: int) -> None:
        """Append a freshly Xavier-initialised block reading the first ``in_width`` inputs."""
        self.lin_l.append(_xavier(in_width, out_width))
        self.lin_r.append(_xavier(in_width, out_width))
        self.bias.append(_xavier(1, out_width))

    def blocks(self) -> Iterator[tuple[nn.Parameter, nn.Parameter, nn.Parameter]]:
        return zip(self.lin_l, self.lin_r, self.bias)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        """``x [N, >= in_width]`` (dense, or sparse CSR) -> ``[N, out_width]`` (pre-activation).

        Mean aggregation is linear, so ``mean_j(x_j[:in_b]) @ Wl_b == mean_j(x_j[:in_b] @ Wl_b)``:
        each run of blocks with the same in-width (and trainability) is projected with ONE matmul (sparse inputs
        stay sparse) and the narrow projection is aggregated. Same function as aggregating first.
        """
        groups: list[tuple[tuple[int, bool], list[int]]] = []
        for b, (k, _) in enumerate(self.block_widths()):
            key = (k, self.lin_l[b].requires_grad)  # frozen blocks apart: no weight gradient for them
            if groups and groups[-1][0] == key:
                groups[-1][1].append(b)
            else:
                groups.append((key, [b]))
        neigh_parts, root_parts = [], []
        for (k, _), members in groups:
            inputs = x if k == x.shape[1] else (x.to_dense() if x.layout != torch.strided else x)[:, :k]
            weight = torch.cat([self.lin_l[b] for b in members] + [self.lin_r[b] for b in members], dim=1)
            proj = torch.sparse.mm(inputs, weight) if inputs.layout != torch.strided else inputs @ weight
            half = proj.shape[1] // 2
            neigh_parts.append(proj[:, :half])
            root_parts.append(proj[:, half:])
        neigh = torch.cat(neigh_parts, dim=1)
        n = neigh.shape[0]
        bias = torch.cat(list(self.bias), dim=1)
        return self.propagate(edge_index, x=neigh, size=(n, n)) + torch.cat(root_parts, dim=1) + bias

    def message(self, x_j: torch.Tensor) -> torch.Tensor:
        return x_j


class ProgressiveSAGE(nn.Module):
    """PI-GNN's expandable 2-layer GraphSAGE with a bias-free block classifier.

    ``hidden[i]`` is layer i's initial width; ``expand(sizes)`` adds ``sizes[i]`` units to
    layer i (and ``sizes[-1]`` rows to the classifier). ``predict(batch)`` -> ``[N, C]`` logits
    for a PyG ``Data`` with ``x``/``edge_index``; ``loss(batch)`` is CE over ``batch.mask``
    (all nodes when absent).
    """

    def __init__(self, in_features: int, num_classes: int, hidden: Sequence[int] = (12, 12), dropout: float = 0.5,
                 negative_slope: float = 0.01) -> None:
        super().__init__()
        if not hidden:
            raise ValueError("hidden needs at least one layer width")
        self.in_features, self.num_classes = int(in_features), int(num_classes)
        self.dropout, self.negative_slope = float(dropout), float(negative_slope)
        widths = [self.in_features, *[int(h) for h in hidden]]
        self.layers = nn.ModuleList(ExpandableSAGELayer(widths[i], widths[i + 1]) for i in range(len(hidden)))
        self.classifier = nn.ParameterList([_xavier(widths[-1], self.num_classes)])

    # -- structure -------------------------------------------------------------------------
    @property
    def num_blocks(self) -> int:
        return len(self.classifier)

    def widths(self) -> list[int]:
        """Current output width of each layer."""
        return [layer.out_width for layer in self.layers]

    def expand(self, sizes: Sequence[int]) -> list[nn.Parameter]:
        """Add one Xavier-initialised block of ``sizes[i]`` units to each layer i and the matching
        classifier rows; return the new parameters. Old blocks' outputs are unchanged."""
        if len(sizes) != len(self.layers):
            raise ValueError(f"expand needs one size per layer ({len(self.layers)}), got {list(sizes)}")
        before = {id(p) for p in self.parameters()}
        in_width = self.in_features
        for layer, size in zip(self.layers, sizes):
            layer.add_block(in_width, int(size))
            in_width = layer.out_width
        self.classifier.append(_xavier(int(sizes[-1]), self.num_classes))
        return [p for p in self.parameters() if id(p) not in before]

    def newest_parameters(self) -> list[nn.Parameter]:
        """The parameters of the most recent block of every layer and of the classifier."""
        out: list[nn.Parameter] = []
        for layer in self.layers:
            out += [layer.lin_l[-1], layer.lin_r[-1], layer.bias[-1]]
        return out + [self.classifier[-1]]

    def isolate(self) -> None:
        """Freeze every block but the newest (PI-GNN's ``isolate_parameters``)."""
        newest = {id(p) for p in self.newest_parameters()}
        for p in self.parameters():
            p.requires_grad_(id(p) in newest)

    def open_parameters(self) -> None:
        """Make every block trainable again (PI-GNN's ``open_parameters``)."""
        for p in self.parameters():
            p.requires_grad_(True)

    # -- forward -----------------------------------------------------------------------------
    def hidden_states(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        """Last layer's units ``[N, widths()[-1]]`` after activation and dropout."""
        h = x if x.layout != torch.strided else x.float()
        for layer in self.layers:
            h = layer(h, edge_index)
            h = nn.functional.leaky_relu(h, self.negative_slope)
            h = nn.functional.dropout(h, self.dropout, self.training)
        return h

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        h = self.hidden_states(x, edge_index)
        return h @ torch.cat(list(self.classifier), dim=0)

    def predict(self, batch: Any) -> torch.Tensor:
        """Logits ``[N, C]``; uses ``batch.x_sparse`` (CSR copy of ``x``) when the data provides one."""
        x = getattr(batch, "x_sparse", None)
        return self(batch.x if x is None else x, batch.edge_index)

    def loss(self, batch: Any) -> torch.Tensor:
        logits = self.predict(batch)
        mask = getattr(batch, "mask", None)
        if mask is None:
            return nn.functional.cross_entropy(logits, batch.y)
        return nn.functional.cross_entropy(logits[mask], batch.y[mask])

    # -- grown checkpoints ---------------------------------------------------------------------
    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False) -> Any:
        """Load a (possibly grown) state: blocks missing here are first added with the widths
        read from the checkpoint's tensor shapes, so a fresh model loads a grown one."""
        target = sum(1 for k in state_dict if k.startswith("classifier."))
        while self.num_blocks < target:
            b = self.num_blocks
            sizes = [int(state_dict[f"layers.{i}.lin_l.{b}"].shape[1]) for i in range(len(self.layers))]
            self.expand(sizes)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)


def build_progressive_sage(config: Any, info: DatasetInfo) -> ProgressiveSAGE:
    """Builder: ``config.hidden`` (initial widths), ``config.dropout``, ``config.negative_slope``."""
    if not info.num_features or not info.num_classes:
        raise ValueError("pignn-sage needs a dataset with num_features and num_classes")
    return ProgressiveSAGE(info.num_features, info.num_classes, list(config.hidden), config.dropout,
                           config.negative_slope)
