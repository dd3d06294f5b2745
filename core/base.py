"""Optional conveniences for plugin authors (subclassing is never required)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pk.core.contracts import DatasetInfo


def tensor_fingerprint(*parts: Any) -> str:
    """sha256 (16 hex) over tensors' bytes and plain values, for ``DataBundle.fingerprint``."""
    h = hashlib.sha256()
    for part in parts:
        if hasattr(part, "detach"):
            t = part.detach().cpu().contiguous()
            h.update(str((tuple(t.shape), str(t.dtype))).encode())
            h.update(t.numpy().tobytes())
        else:
            h.update(repr(part).encode())
    return h.hexdigest()[:16]


@dataclass
class TensorBundle:
    """A DataBundle over dicts of equally long tensors, one dict per split.

    Batches are dicts with the same keys, sliced along dim 0. Shuffling draws only
    from the given generator, so the order is reproducible.
    """

    info: DatasetInfo
    tensors: Mapping[str, Mapping[str, Any]]
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def splits(self) -> Sequence[str]:
        return tuple(self.tensors)

    def size(self, split: str) -> int:
        first = next(iter(self.tensors[split].values()))
        return int(first.shape[0])

    def loader(self, split: str, batch_size: int, *, shuffle: bool = False,
               generator: Any = None) -> Iterator[dict[str, Any]]:
        import torch

        if split not in self.tensors:
            raise KeyError(f"unknown split {split!r}; have {', '.join(self.tensors)}")
        n = self.size(split)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            yield {k: v[idx] for k, v in self.tensors[split].items()}

    def split_keys(self, split: str) -> list[int] | None:
        """Example ids of a split (from an ``"index"`` tensor), or None when there is none."""
        index = self.tensors[split].get("index")
        return None if index is None else [int(i) for i in index]

    def fingerprint(self) -> str:
        parts: list[Any] = [sorted(self.params.items())]
        for split in sorted(self.tensors):
            for key in sorted(self.tensors[split]):
                parts.append(self.tensors[split][key])
        return tensor_fingerprint(*parts)
