"""DataBundles for graph tasks.

- :class:`NodeBundle` (task ``node-classification``): one graph, full batch. ``loader(split)``
  yields a single PyG ``Data`` with ``x [N, F]``, ``edge_index [2, E]``, ``y [N]`` and
  ``mask [N]`` (bool, True on the split's nodes), plus ``train_mask``/``val_mask``/``test_mask``.
- :class:`GraphBundle` (task ``graph-classification``): many small graphs; ``loader(split)``
  yields PyG ``Batch`` objects from ``torch_geometric.loader.DataLoader`` (``y [num_graphs]``).

Both offer ``split_keys(split)``: node indices (nodes) or graph indices (graphs).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from torch_geometric.data import Data

from pk.core.base import tensor_fingerprint
from pk.core.contracts import DatasetInfo

SPLITS = ("train", "valid", "test")
#: pk split name -> the PyG mask attribute
MASK_NAMES = {"train": "train_mask", "valid": "val_mask", "test": "test_mask"}


class NodeBundle:
    """Full-batch node classification over one graph; the splits are disjoint node masks."""

    splits: Sequence[str] = SPLITS

    def __init__(self, info: DatasetInfo, data: Data, params: Mapping[str, Any]) -> None:
        for split, attr in MASK_NAMES.items():
            if getattr(data, attr, None) is None:
                raise ValueError(f"node data lacks {attr} (needed for split {split!r})")
        self.info = info
        self.data = data
        self.params = dict(params)
        self._fingerprint = tensor_fingerprint(
            sorted(self.params.items()), data.x, data.edge_index, data.y, data.train_mask, data.val_mask, data.test_mask
        )

    def mask(self, split: str) -> torch.Tensor:
        if split not in MASK_NAMES:
            raise KeyError(f"unknown split {split!r}; have {', '.join(SPLITS)}")
        return getattr(self.data, MASK_NAMES[split])

    def to(self, device: str | torch.device) -> NodeBundle:
        """Move the graph to ``device`` in place and return self: every later batch shares the
        device tensors, so per-graph caches keyed on them (TransGNN's samples) stay valid."""
        self.data = self.data.to(device)
        return self

    def batch(self, split: str) -> Data:
        """The whole graph with ``mask`` set to ``split``'s nodes (tensors are shared, not copied)."""
        d = self.data
        return Data(
            x=d.x, edge_index=d.edge_index, y=d.y, mask=self.mask(split),
            train_mask=d.train_mask, val_mask=d.val_mask, test_mask=d.test_mask, num_nodes=d.num_nodes,
        )

    def loader(self, split: str, batch_size: int = 0, *, shuffle: bool = False,
               generator: Any = None) -> Iterator[Data]:
        """Yield one full-graph batch (``batch_size`` and ``shuffle`` do not apply to full batch)."""
        yield self.batch(split)

    def split_keys(self, split: str) -> list[int]:
        return self.mask(split).nonzero().flatten().tolist()

    def fingerprint(self) -> str:
        return self._fingerprint


class GraphBundle:
    """Graph classification over a list of PyG ``Data`` graphs split by graph index."""

    splits: Sequence[str] = SPLITS

    def __init__(
        self, info: DatasetInfo, graphs: Sequence[Data], indices: Mapping[str, torch.Tensor], params: Mapping[str, Any]
    ) -> None:
        self.info = info
        self.graphs = list(graphs)
        self.indices = {k: torch.as_tensor(v, dtype=torch.long) for k, v in indices.items()}
        self.params = dict(params)
        parts: list[Any] = [sorted(self.params.items())]
        parts += [self.indices[s] for s in SPLITS]
        parts += [torch.cat([g.x.flatten() for g in self.graphs]),
                  torch.cat([g.edge_index for g in self.graphs], dim=1)]
        parts += [torch.cat([g.y.flatten() for g in self.graphs])]
        self._fingerprint = tensor_fingerprint(*parts)

    def subset(self, split: str) -> list[Data]:
        if split not in self.indices:
            raise KeyError(f"unknown split {split!r}; have {', '.join(self.indices)}")
        return [self.graphs[i] for i in self.indices[split].tolist()]

    def loader(self, split: str, batch_size: int = 32, *, shuffle: bool = False, generator: Any = None) -> Any:
        """A ``torch_geometric.loader.DataLoader`` over the split (shuffling draws only from ``generator``)."""
        from torch_geometric.loader import DataLoader

        return DataLoader(self.subset(split), batch_size=max(1, int(batch_size)), shuffle=shuffle, generator=generator)

    def split_keys(self, split: str) -> list[int]:
        return self.indices[split].tolist()

    def fingerprint(self) -> str:
        return self._fingerprint


def stratified_folds(labels: torch.Tensor, num_folds: int, generator: torch.Generator) -> torch.Tensor:
    """Fold id in ``[0, num_folds)`` per example, class proportions kept per fold (shuffled within class)."""
    if num_folds < 2:
        raise ValueError(f"num_folds must be >= 2, got {num_folds}")
    folds = torch.empty(labels.numel(), dtype=torch.long)
    offset = 0
    for c in torch.unique(labels).tolist():
        idx = (labels == c).nonzero().flatten()
        idx = idx[torch.randperm(idx.numel(), generator=generator)]
        folds[idx] = (torch.arange(idx.numel()) + offset) % num_folds
        offset += idx.numel()
    return folds


def cv_split(labels: torch.Tensor, num_folds: int, fold: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """k-fold CV split: test = fold ``fold``, valid = fold ``fold + 1`` (mod k), train = the rest."""
    if not 0 <= fold < num_folds:
        raise ValueError(f"fold must be in [0, {num_folds}), got {fold}")
    folds = stratified_folds(labels, num_folds, generator)
    valid_fold = (fold + 1) % num_folds
    return {
        "train": ((folds != fold) & (folds != valid_fold)).nonzero().flatten(),
        "valid": (folds == valid_fold).nonzero().flatten(),
        "test": (folds == fold).nonzero().flatten(),
    }
