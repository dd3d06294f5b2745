"""The PM/FM evaluator: reads the trainer's task-accuracy matrix, re-scores the final model on
every snapshot (a consistency check of the matrix's last row) and draws the heat map."""

from __future__ import annotations

from typing import Any

import torch

from pk.core.contracts import RunHandle
from pk_pignn.trainers.continual import MATRIX_FILE
from pk_pignn.trainers.metrics import forgetting_measure, load_matrix, performance_mean, plot_matrix, snapshot_scores


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
