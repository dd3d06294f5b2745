"""Continual-learning metrics over the task-accuracy matrix, its heat map, and the PM/FM evaluator.

``acc[i, j]`` (i >= j) = test accuracy of the model right after learning task i, measured on
snapshot j's graph over ALL test nodes present in snapshot j; entries above the diagonal are NaN.

- PM (performance mean) = mean_t acc[t, t];
- FM (forgetting measure) = mean_{t=0..T-2} (acc[T-1, t] - acc[t, t]).
  **Sign: negative = forgetting, positive = backward transfer** (PI-GNN's convention).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pk.core.contracts import RunHandle
from pk.core.torch_helpers import macro_f1

FM_SIGN_NOTE = "FM < 0 means forgetting, FM > 0 backward transfer"
#: the task-accuracy matrix a continual trainer writes under the run's artifacts/
MATRIX_FILE = "accuracy_matrix.json"


def performance_mean(acc: torch.Tensor) -> float:
    """Mean of the diagonal of a ``[T, T]`` accuracy matrix."""
    if acc.dim() != 2 or acc.shape[0] != acc.shape[1] or acc.shape[0] == 0:
        raise ValueError(f"accuracy matrix must be square and non-empty, got {tuple(acc.shape)}")
    return float(torch.diagonal(acc).double().nanmean())


def forgetting_measure(acc: torch.Tensor) -> float:
    """``mean_{t < T-1} (acc[T-1, t] - acc[t, t])``; 0.0 for a single task."""
    if acc.dim() != 2 or acc.shape[0] != acc.shape[1] or acc.shape[0] == 0:
        raise ValueError(f"accuracy matrix must be square and non-empty, got {tuple(acc.shape)}")
    t = acc.shape[0]
    if t < 2:
        return 0.0
    diffs = acc[t - 1, : t - 1].double() - torch.diagonal(acc)[: t - 1].double()
    return float(diffs.nanmean())


@torch.no_grad()
def snapshot_scores(model: nn.Module, snapshot: Any, num_classes: int | None = None) -> tuple[float, float]:
    """``(accuracy, macro_f1)`` of ``model`` (eval mode) on the test nodes of ``snapshot``."""
    was_training = model.training
    model.eval()
    idx = snapshot.test_idx
    logits = model.predict(snapshot)
    model.train(was_training)
    if idx.numel() == 0:
        return float("nan"), float("nan")
    pred, y = logits[idx].argmax(-1), snapshot.y[idx]
    return float((pred == y).float().mean()), macro_f1(pred, y, num_classes)


def save_matrices(path: Path, acc: torch.Tensor, f1: torch.Tensor, meta: dict[str, Any]) -> None:
    """Write both matrices (NaN above the diagonal as null) and ``meta`` as JSON."""

    def rows(m: torch.Tensor) -> list[list[float | None]]:
        return [[None if v != v else round(float(v), 6) for v in row.tolist()] for row in m]

    path.write_text(json.dumps({"accuracy": rows(acc), "macro_f1": rows(f1), **meta}, indent=1))


def load_matrix(path: Path, key: str = "accuracy") -> torch.Tensor:
    """The ``[T, T]`` matrix ``key`` of a file written by :func:`save_matrices` (NaN for null)."""
    raw = json.loads(Path(path).read_text())[key]
    return torch.tensor([[float("nan") if v is None else v for v in row] for row in raw], dtype=torch.float64)


def plot_matrix(acc: torch.Tensor, path: Path, title: str, std: torch.Tensor | None = None) -> Path:
    """Heat map of the lower-triangular accuracy matrix (rows: after task i, cols: snapshot j)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = acc.shape[0]
    fig, ax = plt.subplots(figsize=(1.0 + 0.5 * t, 0.8 + 0.45 * t))
    values = acc.double().numpy()
    im = ax.imshow(values, vmin=0.0, vmax=1.0, cmap="viridis")
    if t <= 16:
        for i in range(t):
            for j in range(i + 1):
                text = f"{values[i, j]:.2f}" if std is None else f"{values[i, j]:.2f}\n±{float(std[i, j]):.2f}"
                ax.text(j, i, text, ha="center", va="center", fontsize=6 if std is None else 5,
                        color="white" if values[i, j] < 0.6 else "black")
    ax.set_xlabel("evaluated on snapshot j")
    ax.set_ylabel("after learning task i")
    ax.set_xticks(range(t))
    ax.set_yticks(range(t))
    ax.set_title(title, fontsize=8)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


class PMFMEvaluator:
    """``final_mean_accuracy`` = mean over snapshots j of the final model's test accuracy on j
    (always). With a matrix from a continual trainer in this run: ``pm``, ``fm`` (negative =
    forgetting), their macro-F1 versions, ``row_mismatch`` (max |matrix last row - re-scored|,
    0 when consistent) and ``artifacts/accuracy_matrix.png``."""

    metrics = {
        "final_mean_accuracy": (0.0, 1.0, True),
        "pm": (0.0, 1.0, True),
        "fm": (-1.0, 1.0, True),
        "pm_macro_f1": (0.0, 1.0, True),
        "fm_macro_f1": (-1.0, 1.0, True),
        "row_mismatch": (0.0, 1.0, False),
    }

    def __init__(self, config: Any = None) -> None:
        self.heatmap = bool(getattr(config, "heatmap", True))

    def evaluate(self, model: Any, data: Any, run: RunHandle) -> dict[str, float]:
        stream = data.stream
        path = run.dir / "artifacts" / MATRIX_FILE
        acc = load_matrix(path) if path.is_file() else None
        big_t = acc.shape[0] if acc is not None else stream.num_tasks
        row = torch.tensor([snapshot_scores(model, stream.snapshot(j), data.info.num_classes)[0] for j in range(big_t)],
                           dtype=torch.float64)
        out = {"final_mean_accuracy": float(row.nanmean())}
        if acc is None:
            return out
        diag = torch.diagonal(acc).double()
        if hasattr(run, "save_example_scores"):
            # one value per snapshot (the same snapshots in every arm): pm = mean of the diagonal,
            # final_mean_accuracy = mean of the re-scored last row; snapshots without test nodes left out
            keep = ~(diag.isnan() | row.isnan())
            run.save_example_scores("eval", {"pm": diag[keep].numpy(), "final_mean_accuracy": row[keep].numpy()})
        f1 = load_matrix(path, "macro_f1")
        out.update(pm=performance_mean(acc), fm=forgetting_measure(acc), pm_macro_f1=performance_mean(f1),
                   fm_macro_f1=forgetting_measure(f1), row_mismatch=float((acc[-1] - row).abs().nan_to_num(0.0).max()))
        if self.heatmap:
            method = run.config.get("trainer", {}).get("name", "?")
            title = f"{method} on {stream.name}: PM {out['pm']:.3f}, FM {out['fm']:+.3f} (FM<0 = forgetting)"
            plot_matrix(acc, run.artifact_path("accuracy_matrix.png"), title)
        return out
