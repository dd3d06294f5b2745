"""Built-in components: synthetic data, an MLP, a supervised trainer, FedAvg, an identity
calibrator and an accuracy evaluator. Small, but real: the CLI and the contract suite run
end to end on them with no plugin installed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from pk.core.base import TensorBundle
from pk.core.contracts import DatasetInfo, RunHandle
from pk.core.distributed import loss_module, rank_chunk, reduce_mean
from pk.core.seed import derive_seed
from pk.core.torch_helpers import check_updates, classification_metrics, make_optimizer, to_device
from pk.core.train_state import TrainState


# -- data ------------------------------------------------------------------------------
def build_synthetic_classification(config: Any, *, root: Any = None, seed: int = 0) -> TensorBundle:
    """Each class is a mixture of two Gaussian clusters (so the boundary is not linear),
    cluster means at scale ``class_sep``; 70/15/15 split, all drawn from ``seed``."""
    g = torch.Generator().manual_seed(derive_seed(seed, "synthetic-classification"))
    n, d, c = config.num_samples, config.num_features, config.num_classes
    means = torch.randn(2 * c, d, generator=g)
    means = config.class_sep * means / means.norm(dim=1, keepdim=True).clamp_min(1e-8) * d**0.5 / 2
    cluster = torch.randint(0, 2 * c, (n,), generator=g)
    y = cluster % c
    x = means[cluster] + config.noise * torch.randn(n, d, generator=g)
    order = torch.randperm(n, generator=g)
    n_train, n_valid = int(0.7 * n), int(0.15 * n)
    parts = {
        "train": order[:n_train],
        "valid": order[n_train : n_train + n_valid],
        "test": order[n_train + n_valid :],
    }
    tensors = {split: {"x": x[idx], "y": y[idx], "index": idx} for split, idx in parts.items()}
    info = DatasetInfo(task="classification", num_features=d, num_classes=c)
    return TensorBundle(info=info, tensors=tensors, params={"seed": seed, **vars(config)})


# -- model -----------------------------------------------------------------------------
_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}


class MLP(nn.Module):
    """``predict(batch) -> [B, C]`` logits from ``batch["x"]`` of shape ``[B, F]``."""

    def __init__(self, in_features: int, num_classes: int, hidden: Sequence[int], dropout: float,
                 activation: str) -> None:
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(_ACTIVATIONS)}")
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), _ACTIVATIONS[activation](), nn.Dropout(dropout)]
            width = h
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1).float())

    def predict(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self(batch["x"])

    def loss(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return nn.functional.cross_entropy(self(batch["x"]), batch["y"])


def build_mlp(config: Any, info: DatasetInfo) -> MLP:
    if not info.num_features or not info.num_classes:
        raise ValueError("mlp needs a dataset with num_features and num_classes")
    return MLP(info.num_features, info.num_classes, list(config.hidden), config.dropout, config.activation)


# -- trainer ---------------------------------------------------------------------------
class SupervisedTrainer:
    """Epochs of shuffled mini-batches; validation each epoch; best weights restored.

    Checkpoints ``last`` after every epoch (model, optimizer, every named generator, global
    RNG states, best state) so a resumed run ends bit-identical to an uninterrupted one on
    CPU. Subclasses change the training inputs through :meth:`prepare` and
    :meth:`transform_batch` (e.g. noise or adversarial examples) and keep everything else.
    """

    resumable = True
    supports_distributed = True  # splits each global batch across ranks (DDP), same result

    def __init__(self, config: Any) -> None:
        self.config = config

    def prepare(self, model: nn.Module, data: Any, run: RunHandle) -> None:
        """Called once before training (after a resume's state is restored)."""

    def transform_batch(self, model: nn.Module, batch: dict[str, Any], run: RunHandle) -> dict[str, Any]:
        """The batch the loss is computed on; draw randomness only from ``run.generator``."""
        return batch

    def compute_loss(self, loss_fn: Any, batch: dict[str, Any]) -> Any:
        """The training loss of one (per-rank) batch; ``loss_fn(batch)`` is ``model.loss``
        (through DDP on several processes, where it may be called once per step)."""
        return loss_fn(batch)

    def fit(self, model: nn.Module, data: Any, run: RunHandle) -> dict[str, float]:
        cfg = self.config
        device = run.device
        opt = make_optimizer(cfg.optimizer, model.parameters(), cfg.lr, cfg.weight_decay)
        shuffle = run.generator("shuffle")
        loss_fn = loss_module(model, run)
        state = TrainState(model, {"main": opt})
        state.best = {"accuracy": -1.0, "state": None, "epoch": -1}
        state.restore(run)
        self.prepare(model, data, run)
        epochs_run = state.start_epoch
        for epoch in run.progress(range(state.start_epoch, cfg.max_epochs), total=cfg.max_epochs - state.start_epoch,
                                  description="epochs"):
            if 0 <= cfg.max_steps <= state.step:  # a resumed run whose step budget is already spent
                break
            epochs_run = epoch + 1
            model.train()
            total, count = 0.0, 0
            for batch in data.loader("train", cfg.batch_size, shuffle=True, generator=shuffle):
                if 0 <= cfg.max_steps <= state.step:
                    break
                batch = self.transform_batch(model, to_device(batch, device), run)
                chunk, scale = rank_chunk(batch, run)
                opt.zero_grad(set_to_none=True)
                loss = self.compute_loss(loss_fn, chunk)
                (loss * scale).backward()
                opt.step()
                state.step += 1
                total += reduce_mean(float(loss.detach()), scale, run)
                count += 1
            valid = classification_metrics(model, data, "valid", cfg.eval_batch_size, device)
            run.log(state.step, "train", loss=total / max(count, 1), epoch=epoch)
            run.log(state.step, "valid", **valid)
            if valid["accuracy"] > state.best["accuracy"]:
                weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
                state.best = {"accuracy": valid["accuracy"], "epoch": epoch, "state": weights}
            state.epoch = epoch
            state.save(run)
            if 0 <= cfg.max_steps <= state.step:
                break
        best = state.best
        if best["state"] is not None:
            model.load_state_dict(best["state"])
        return {"best_valid_accuracy": float(best["accuracy"]), "best_epoch": float(best["epoch"] + 1),
                "epochs_run": float(epochs_run), "steps": float(state.step)}

    def evaluate(self, model: nn.Module, data: Any, split: str, run: RunHandle) -> dict[str, float]:
        examples: dict[str, Any] = {}
        metrics = classification_metrics(model, data, split, self.config.eval_batch_size, run.device, examples)
        if split == "test" and hasattr(run, "save_example_scores"):
            run.save_example_scores(split, examples)
        return metrics


# -- aggregator ------------------------------------------------------------------------
class FedAvg:
    """``new = global + server_lr * (sum_i w_i * state_i / sum_i w_i - global)`` per tensor,
    computed in float64 and cast back; integer buffers take the weighted mean rounded."""

    kind = "weights"

    def __init__(self, config: Any = None, context: Any = None) -> None:
        self.server_lr = getattr(config, "server_lr", 1.0)

    def aggregate(self, global_state: Mapping[str, torch.Tensor], updates: Sequence[Any],
                  state: Any = None) -> tuple[dict[str, torch.Tensor], Any]:
        total = check_updates(updates)
        out: dict[str, torch.Tensor] = {}
        for key, ref in global_state.items():
            acc = torch.zeros(ref.shape, dtype=torch.float64)
            for client_state, weight, _meta in updates:
                acc += client_state[key].detach().to(torch.float64).cpu() * (float(weight) / total)
            if self.server_lr != 1.0:
                acc = (ref.detach().to(torch.float64).cpu()
                       + self.server_lr * (acc - ref.detach().to(torch.float64).cpu()))
            out[key] = (acc.round() if not ref.is_floating_point() else acc).to(ref.dtype).to(ref.device)
        return out, state


# -- calibrator ------------------------------------------------------------------------
class IdentityCalibrator:
    """Neutral calibrator: scores and weights pass through unchanged."""

    differentiable = True
    neutral = True

    def __init__(self, config: Any = None) -> None:
        """No parameters: ``config`` is accepted for the builder signature only."""

    def adjust_scores(self, scores: torch.Tensor, mask: torch.Tensor, *, layer: int = 0) -> torch.Tensor:
        return scores

    def calibrate(self, attn: torch.Tensor, mask: torch.Tensor, *, layer: int = 0) -> torch.Tensor:
        return attn


# -- evaluator -------------------------------------------------------------------------
class AccuracyEvaluator:
    """Top-1 accuracy and macro-F1 on the test split."""

    metrics = {"accuracy": (0.0, 1.0, True), "macro_f1": (0.0, 1.0, True)}

    def __init__(self, config: Any = None) -> None:
        self.batch_size = getattr(config, "batch_size", 256)

    def evaluate(self, model: nn.Module, data: Any, run: RunHandle) -> dict[str, float]:
        examples: dict[str, Any] = {}
        m = classification_metrics(model, data, "test", self.batch_size, run.device, examples)
        if hasattr(run, "save_example_scores"):
            run.save_example_scores("eval", {"accuracy": examples["accuracy"]})
        return {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"]}
