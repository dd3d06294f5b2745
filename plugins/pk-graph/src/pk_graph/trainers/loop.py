"""Epoch loops for node classification (full batch; neighbour sampling when pyg-lib or
torch-sparse is installed) and graph classification (shuffled mini-batches of graphs).

Both validate every epoch, keep the best-validation weights (accuracy, then lower loss),
log through ``run.log``, checkpoint ``last`` every epoch and resume bit-identically on CPU.
A model with ``begin_epoch(epoch)`` / ``end_epoch(epoch)`` methods gets them called around each
training epoch (TransGNN refreshes its sample tables there), before validation.

``fit`` returns ``epochs_run``, ``best_epoch`` (1-based, as every pk trainer), ``steps``,
``best_valid_accuracy`` and the learning check: ``final_train_loss`` and ``min_train_loss``
(epoch means), ``chance_loss`` (the entropy of the training labels: the loss of the best
constant prediction, ``ln C`` for balanced classes) and ``loss_left_chance`` = 1 when
``min_train_loss < (1 - CHANCE_MARGIN) * chance_loss``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from pk.core.errors import ConfigError
from pk.core.torch_helpers import make_optimizer, to_device
from pk.core.train_state import TrainState
from pk_graph.data.bundles import NodeBundle
from pk_graph.evaluators import split_metrics
from pk_graph.models.gnn import graph_targets

#: a training loss counts as having left chance once it is this fraction below ``chance_loss``
CHANCE_MARGIN = 0.05


def train_labels(data: Any) -> torch.Tensor:
    """Labels of the training examples (nodes under the train mask, or training graphs)."""
    if isinstance(data, NodeBundle):
        return data.data.y[data.mask("train")].view(-1).cpu()
    subset = getattr(data, "subset", None)
    if callable(subset):
        return torch.cat([g.y.view(-1) for g in subset("train")]).cpu()
    return torch.cat([graph_targets(b).cpu() for b in data.loader("train", 256)])


def chance_loss(labels: torch.Tensor) -> float:
    """Cross-entropy of the best constant prediction: the entropy of the label distribution."""
    if labels.numel() == 0:
        return float("nan")
    p = torch.bincount(labels.long()).double()
    p = p[p > 0] / p.sum()
    return float(-(p * p.log()).sum())


def neighbor_sampling_available() -> bool:
    """True when PyG's NeighborLoader can run (it needs pyg-lib or torch-sparse)."""
    import torch_geometric.typing as pyg_typing

    return bool(getattr(pyg_typing, "WITH_PYG_LIB", False) or getattr(pyg_typing, "WITH_TORCH_SPARSE", False))


def train_node_epoch(model: nn.Module, batch: Any, optimizer: torch.optim.Optimizer) -> float:
    """One full-batch step on ``batch`` (a PyG ``Data`` whose ``mask`` marks the training nodes)."""
    model.train()
    optimizer.zero_grad(set_to_none=True)
    loss = model.loss(batch)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


class _EpochTrainer(ABC):
    """Shared loop; subclasses define :meth:`_train_batches`."""

    resumable = True

    def __init__(self, config: Any) -> None:
        self.config = config

    @abstractmethod
    def _train_batches(self, data: Any, run: Any, generator: torch.Generator) -> Iterable[Any]:
        ...

    def fit(self, model: nn.Module, data: Any, run: Any) -> dict[str, float]:
        cfg = self.config
        opt = make_optimizer(cfg.optimizer, model.parameters(), cfg.lr, cfg.weight_decay)
        shuffle = run.generator("shuffle")
        state = TrainState(model, {"main": opt}, bad_epochs=0,
                           train_losses={"final": float("nan"), "min": float("inf")})
        state.best = {"accuracy": -1.0, "loss": float("inf"), "epoch": -1, "state": None}
        state.restore(run)
        start = state.start_epoch
        if isinstance(data, NodeBundle):  # full batch: one host-to-device copy, not one per step
            data.to(run.device)
        begin, end = getattr(model, "begin_epoch", None), getattr(model, "end_epoch", None)
        epoch = start - 1
        for epoch in run.progress(range(start, cfg.max_epochs), total=cfg.max_epochs - start, description="epochs"):
            model.train()
            if callable(begin):
                begin(epoch)
            total, count = 0.0, 0
            for batch in self._train_batches(data, run, shuffle):
                batch = to_device(batch, run.device)
                opt.zero_grad(set_to_none=True)
                loss = model.loss(batch)
                loss.backward()
                opt.step()
                state.step += 1
                total += float(loss.detach())
                count += 1
            if callable(end):
                end(epoch)
            train_loss = total / max(count, 1)
            losses = state.extra["train_losses"]
            state.extra["train_losses"] = {"final": train_loss, "min": min(losses["min"], train_loss)}
            valid = split_metrics(model, data, "valid", cfg.eval_batch_size, run.device)
            run.log(state.step, "train", loss=train_loss, epoch=epoch)
            run.log(state.step, "valid", **valid)
            best = state.best
            if (valid["accuracy"], -valid["loss"]) > (best["accuracy"], -best["loss"]):
                weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
                state.best = {"accuracy": valid["accuracy"], "loss": valid["loss"], "epoch": epoch, "state": weights}
                state.extra["bad_epochs"] = 0
            else:
                state.extra["bad_epochs"] += 1
            state.epoch = epoch
            state.save(run)
            if cfg.patience > 0 and state.extra["bad_epochs"] >= cfg.patience:
                run.echo(f"early stop after epoch {epoch + 1} (best epoch {state.best['epoch'] + 1})")
                break
        best, losses = state.best, state.extra["train_losses"]
        if best["state"] is not None:
            model.load_state_dict(best["state"])
        chance = chance_loss(train_labels(data))
        left = losses["min"] < (1.0 - CHANCE_MARGIN) * chance
        return {
            "best_valid_accuracy": float(best["accuracy"]), "best_epoch": float(best["epoch"]) + 1.0,
            "epochs_run": float(epoch + 1), "steps": float(state.step), "final_train_loss": float(losses["final"]),
            "min_train_loss": float(losses["min"]), "chance_loss": chance, "loss_left_chance": float(left),
        }

    def evaluate(self, model: nn.Module, data: Any, split: str, run: Any) -> dict[str, float]:
        """Metrics on ``split``; for "test" also the per-example ``accuracy`` (0/1) and ``loss``
        arrays (``run.save_example_scores``, dataset order) for paired comparisons."""
        metrics, examples = split_metrics(model, data, split, self.config.eval_batch_size, run.device, per_example=True)
        if split == "test" and hasattr(run, "save_example_scores"):
            run.save_example_scores("test", examples)
        return metrics


class NodeClassificationTrainer(_EpochTrainer):
    """Full-batch node classification (one step per epoch on the training mask).

    ``sampler = "neighbor"`` trains on PyG ``NeighborLoader`` mini-batches instead; it needs
    pyg-lib or torch-sparse and raises a ConfigError saying so otherwise.
    """

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        if config.sampler not in ("full", "neighbor"):
            raise ConfigError(f"trainer.sampler must be \"full\" or \"neighbor\", got {config.sampler!r}")
        if config.sampler == "neighbor" and not neighbor_sampling_available():
            raise ConfigError(
                "trainer.sampler=\"neighbor\" needs pyg-lib or torch-sparse (PyG's NeighborLoader), which are not "
                "installed; install one from https://data.pyg.org/whl/ or use trainer.sampler=\"full\""
            )

    def _train_batches(self, data: Any, run: Any, generator: torch.Generator) -> Iterable[Any]:
        if self.config.sampler == "full":
            yield from data.loader("train", 0)
            return
        from torch_geometric.loader import NeighborLoader

        full = data.batch("train")
        loader = NeighborLoader(
            full, num_neighbors=list(self.config.num_neighbors), batch_size=self.config.batch_size,
            input_nodes=full.mask, shuffle=True, generator=generator,
        )
        for sub in loader:
            # only the seed nodes (the first batch_size rows) carry the loss
            seed = torch.zeros(sub.num_nodes, dtype=torch.bool)
            seed[: sub.batch_size] = True
            sub.mask = seed
            yield sub


class GraphClassificationTrainer(_EpochTrainer):
    """Mini-batches of whole graphs (PyG ``DataLoader``), shuffled with ``run.generator("shuffle")``."""

    def _train_batches(self, data: Any, run: Any, generator: torch.Generator) -> Iterable[Any]:
        yield from data.loader("train", self.config.batch_size, shuffle=True, generator=generator)
