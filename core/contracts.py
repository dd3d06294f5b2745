"""The contracts registered objects obey, as ``typing.Protocol``s (no inheritance needed).

Shapes use B = batch, L = sequence length, C = classes, N = items, H = hidden size.
Output shape of ``Model.predict`` per task:

- ``classification``: ``[B, C]`` logits;
- ``node-classification``: ``[num_nodes, C]``; ``graph-classification``: ``[num_graphs, C]``;
- ``next-item``: ``[B, N + 1]`` scores, column 0 (padding) is ``-inf``;
- ``causal-lm``: ``[B, T, V]`` logits.

This module imports no torch at run time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:  # pragma: no cover
    import torch


@dataclass
class DatasetInfo:
    """What a model needs to know about its data; unused fields stay None.

    ``num_items`` counts real items, whose ids are ``1..num_items``; id ``padding_id`` (0)
    is padding. ``extra`` carries domain details (e.g. ``{"edge_dim": 4}``).
    """

    task: str
    num_features: int | None = None
    num_classes: int | None = None
    num_items: int | None = None
    num_users: int | None = None
    max_len: int | None = None
    padding_id: int = 0
    num_clients: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@runtime_checkable
class DataBundle(Protocol):
    """A built dataset: its info, named splits and batches.

    ``splits`` names the splits (normally ``("train", "valid", "test")``); they are
    pairwise disjoint and identical for the same seed. ``loader`` yields batches of the
    split (the batch type is the domain's: a dict of tensors, a PyG ``Batch``...);
    ``shuffle`` uses only ``generator``. ``fingerprint`` hashes content and split params.
    """

    info: DatasetInfo
    splits: Sequence[str]

    def loader(
        self, split: str, batch_size: int, *, shuffle: bool = False, generator: torch.Generator | None = None
    ) -> Iterable[Any]: ...

    def fingerprint(self) -> str: ...


@runtime_checkable
class Model(Protocol):
    """A ``torch.nn.Module`` with ``loss(batch) -> scalar`` and ``predict(batch) -> scores``."""

    def loss(self, batch: Any) -> torch.Tensor: ...

    def predict(self, batch: Any) -> torch.Tensor: ...

    def state_dict(self, *args: Any, **kwargs: Any) -> Mapping[str, Any]: ...

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True) -> Any: ...


@runtime_checkable
class Trainer(Protocol):
    """Trains a model on a bundle, logging through ``run`` only.

    ``fit`` returns final metrics (e.g. best validation ones) and leaves the model in
    the state to be tested. ``evaluate`` returns metrics for one split. With
    ``resumable = True`` the trainer saves ``run.save_checkpoint`` every epoch/round and
    continues from ``run.latest_checkpoint()``, ending bit-identical on CPU.
    """

    resumable: bool

    def fit(self, model: Any, data: Any, run: RunHandle) -> dict[str, float]: ...

    def evaluate(self, model: Any, data: Any, split: str, run: RunHandle) -> dict[str, float]: ...


@dataclass
class ServerContext:
    """What an aggregator builder may receive as ``context``: a way to build a fresh
    global model, the device, a seeded generator and optional server-side proxy data
    (a DataBundle or a dict of tensors with "x" and "y")."""

    build_model: Any = None
    device: str = "cpu"
    generator: Any = None
    proxy_data: Any = None
    info: DatasetInfo | None = None


Update = tuple[Mapping[str, "torch.Tensor"], float, Mapping[str, Any]]


@runtime_checkable
class Aggregator(Protocol):
    """Combines client updates into a new global state; pure given its inputs and state.

    ``kind`` is ``"weights"`` (updates are full state dicts) or ``"delta"``. Raises
    ``ValueError`` on no updates or a non-positive total weight; never mutates inputs.
    Optional flags the contract suite reads: ``weighted`` (default True: scaling every
    weight by one factor leaves the result unchanged) and ``robust`` (default False: True
    promises the result stays within the benign clients' coordinate range).
    """

    kind: str

    def aggregate(
        self,
        global_state: Mapping[str, torch.Tensor],
        updates: Sequence[Update],
        state: Any = None,
    ) -> tuple[dict[str, torch.Tensor], Any]: ...


@runtime_checkable
class Calibrator(Protocol):
    """Adjusts attention. ``adjust_scores`` acts on raw scores ``[B, h, Lq, Lk]`` before the
    softmax, ``calibrate`` on weights after it. ``mask`` is boolean ``[B, 1|h, Lq, Lk]``,
    True where a key may be attended. Final weights: non-negative, rows sum to 1 over
    unmasked keys, exactly 0 on masked keys; ``neutral`` configs leave them unchanged.
    ``layer`` is the index of the host's attention layer (for per-layer parameters). A
    calibrator with learned parameters is an ``nn.Module`` owned by the host model.
    Optional attributes the contract suite reads: ``num_heads``, ``max_len``, ``num_layers``
    (default 1) and ``neutral`` (default False: True when this config must act as the identity).
    """

    def adjust_scores(self, scores: torch.Tensor, mask: torch.Tensor, *, layer: int = 0) -> torch.Tensor: ...

    def calibrate(self, attn: torch.Tensor, mask: torch.Tensor, *, layer: int = 0) -> torch.Tensor: ...


@runtime_checkable
class Evaluator(Protocol):
    """Scores a trained model: ``metrics`` maps name -> (low, high, higher_is_better)."""

    metrics: Mapping[str, tuple[float, float, bool]]

    def evaluate(self, model: Any, data: Any, run: RunHandle) -> dict[str, float]: ...


@runtime_checkable
class RunHandle(Protocol):
    """What the core hands to trainers and evaluators (never implemented by plugins)."""

    dir: Path
    config: dict[str, Any]
    seed: int
    device: str

    def generator(self, name: str) -> torch.Generator: ...

    def generator_states(self) -> dict[str, Any]: ...

    def restore_generator_states(self, states: dict[str, Any]) -> None: ...

    def log(self, step: int, split: str = "train", **metrics: float) -> None: ...

    def save_checkpoint(self, state: dict[str, Any], tag: str = "last") -> Path: ...

    def latest_checkpoint(self) -> dict[str, Any] | None: ...

    def artifact_path(self, name: str) -> Path: ...

    def save_example_scores(self, split: str, scores: Mapping[str, Any]) -> Path | None:
        """Per-example scores of ``split`` (metric name -> 1-D array whose mean is the metric),
        written to ``examples-<split>.npz`` for paired bootstraps across arms."""
        ...

    def build(self, section: str, *args: Any, **kwargs: Any) -> Any:
        """The run's configured component of ``section`` (None if not configured), built with
        its config, ``args`` and the keywords its builder accepts, e.g.
        ``run.build("aggregator", context=ctx)``."""
        ...

    def progress(self, iterable: Iterable[Any], total: int | None = None, description: str = "") -> Iterable[Any]: ...

    def echo(self, message: str) -> None: ...
