"""Epoch loops for node classification (full batch; neighbour sampling when pyg-lib or
torch-sparse is installed) and graph classification (shuffled mini-batches of graphs).

Both validate every epoch, keep the best-validation weights (accuracy, then lower loss),
log through ``run.log``, checkpoint ``last`` every epoch and resume bit-identically on CPU.
A model with ``begin_epoch(epoch)`` / ``end_epoch(epoch)`` methods gets them called around each
training epoch (TransGNN refreshes its sample tables there), before validation.

``fit`` returns ``epochs_run``, ``best_epoch`` (1-based, as every pk trainer), ``steps``, ``best_valid_accuracy`` and the
learning check: ``final_train_loss`` and ``min_train_loss`` (epoch means), ``chance_loss`` (the
entropy of the training labels: the loss of the best constant prediction, ``ln C`` for balanced
classes) and ``loss_left_chance`` = 1 when ``min_train_loss < (1 - CHANCE_MARGIN) * chance_loss``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from pk.core.errors import ConfigError
from pk.core.seed import capture_rng_state, restore_rng_state
from pk.core.torch_helpers import make_optimizer, to_device
from pk_graph.data.bundles import NodeBundle
from pk_graph.models.gnn import graph_targets
from pk_graph.evaluators import split_metrics

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
        start, step, bad = 0, 0, 0
        best: dict[str, Any] = {"accuracy": -1.0, "loss": float("inf"), "epoch": -1, "state": None}
        losses = {"final": float("nan"), "min": float("inf")}
        ckpt = run.latest_checkpoint()
        if ckpt is not None:
            model.load_state_dict(ckpt["model"])
            opt.load_state_dict(ckpt["optimizer"])
            shuffle.set_state(ckpt["shuffle"])
            restore_rng_state(ckpt["rng"])
            start, step, best, bad = ckpt["epoch"] + 1, ckpt["step"], ckpt["best"], ckpt["bad_epochs"]
            losses = dict(ckpt.get("train_losses", losses))
            run.echo(f"resumed at epoch {start}")
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
                step += 1
                total += float(loss.detach())
                count += 1
            if callable(end):
                end(epoch)
            train_loss = total / max(count, 1)
            losses = {"final": train_loss, "min": min(losses["min"], train_loss)}
            valid = split_metrics(model, data, "valid", cfg.eval_batch_size, run.device)
            run.log(step, "train", loss=train_loss, epoch=epoch)
            run.log(step, "valid", **valid)
            if (valid["accuracy"], -valid["loss"]) > (best["accuracy"], -best["loss"]):
                state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                best = {"accuracy": valid["accuracy"], "loss": valid["loss"], "epoch": epoch, "state": state}
                bad = 0
            else:
                bad += 1
            run.save_checkpoint({
                "model": model.state_dict(), "optimizer": opt.state_dict(), "shuffle": shuffle.get_state(),
                "rng": capture_rng_state(), "epoch": epoch, "step": step, "best": best, "bad_epochs": bad,
                "train_losses": losses,
            })
            if cfg.patience > 0 and bad >= cfg.patience:
                run.echo(f"early stop at epoch {epoch} (best epoch {best['epoch']})")
                break
        if best["state"] is not None:
            model.load_state_dict(best["state"])
        chance = chance_loss(train_labels(data))
        left = losses["min"] < (1.0 - CHANCE_MARGIN) * chance
        return {
            "best_valid_accuracy": float(best["accuracy"]), "best_epoch": float(best["epoch"]) + 1.0, "epochs_run": float(epoch + 1),
            "steps": float(step), "final_train_loss": float(losses["final"]), "min_train_loss": float(losses["min"]),
            "chance_loss": chance, "loss_left_chance": float(left),
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
