"""The ``streaming`` evaluator: the protocol's summary for one run.

Reads the trainer's per-block record ``artifacts/stream.json`` (absent: only the forgetting
view is computed) and returns: ``mean_<metric>`` over evaluated blocks (or the last
``last_blocks``), ``final_mean_<metric>`` (the final model re-tested on every evaluated
block), ``forgetting`` = mean over blocks of (value when tested - final value) (positive =
the final model lost quality on earlier test blocks, which it has since also trained on),
and ``update_seconds`` / ``update_seconds_per_block`` (wall clock, t >= P; the one
non-reproducible number, taken from the record). Writes ``artifacts/quality.png``.

Per-example scores (``examples-eval.npz``, for the paired bootstrap of ``pk batch``): for
``mean_<metric>`` and ``final_mean_<metric>``, one value per test example of the averaged
blocks (block order, then test-row order), x_i = s_i · N / (B · n_b) for an example of block
b (n_b examples; N in all; B blocks), so that mean(x) is exactly the mean over blocks of the
per-block means (x_i = s_i when every block has the same number of examples, e.g. under
``test_sample``). At-time scores come from the trainer's ``artifacts/stream-examples.npz``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from pk.core.contracts import RunHandle
from pk_iurs.trainers.base import block_scores


def block_weighted(per_block: Sequence[torch.Tensor]) -> torch.Tensor:
    """Concatenated per-example scores scaled so their mean is the mean of the block means
    (see the module docstring); empty blocks contribute nothing."""
    parts = [p.double() for p in per_block if p.numel()]
    if not parts:
        return torch.zeros(0, dtype=torch.float64)
    total = sum(p.numel() for p in parts)
    return torch.cat([p * total / (len(parts) * p.numel()) for p in parts])


def _load_examples(path: Any) -> dict[str, torch.Tensor]:
    import numpy as np

    if not path.exists():
        return {}
    with np.load(path, allow_pickle=False) as data:
        return {k: torch.from_numpy(data[k].copy()) for k in data.files}


class StreamingEvaluator:
    def __init__(self, config: Any = None) -> None:
        self.metric = str(getattr(config, "metric", "hr@20"))
        self.last_blocks = int(getattr(config, "last_blocks", 0))
        self.forgetting = bool(getattr(config, "forgetting", True))
        self.plot = bool(getattr(config, "plot", True))
        m = self.metric
        self.metrics: Mapping[str, tuple[float, float, bool]] = {
            f"mean_{m}": (0.0, 1.0, True), f"final_mean_{m}": (0.0, 1.0, True), "forgetting": (-1.0, 1.0, False),
            "update_seconds": (0.0, float("inf"), False), "update_seconds_per_block": (0.0, float("inf"), False),
        }

    def evaluate(self, model: Any, data: Any, run: RunHandle) -> dict[str, float]:
        k = int(self.metric.split("@")[1])
        path = run.artifact_path("stream.json")
        records = json.loads(path.read_text())["records"] if path.exists() else []
        blocks = [int(r["block"]) for r in records] or list(data.evaluated_blocks)
        if self.last_blocks > 0:
            blocks = blocks[-self.last_blocks:]
        at_time = {int(r["block"]): float(r[self.metric]) for r in records}
        out: dict[str, float] = {}
        if at_time:
            out[f"mean_{self.metric}"] = sum(at_time[b] for b in blocks) / len(blocks)
            updates = [float(r["seconds"]) for r in records if not r["pretrain"]]
            out["update_seconds"] = sum(updates)
            out["update_seconds_per_block"] = sum(updates) / max(len(updates), 1)
        final: dict[int, float] = {}
        per_final: list[torch.Tensor] = []
        if self.forgetting:
            for b in blocks:
                per = block_scores(model, data, b, [k], 512, getattr(run, "device", "cpu"))[self.metric]
                per_final.append(per)
                final[b] = float(per.sum()) / max(per.numel(), 1)
                out[f"final_block{b}_{self.metric}"] = final[b]
            out[f"final_mean_{self.metric}"] = sum(final.values()) / max(len(final), 1)
            if at_time:
                out["forgetting"] = sum(at_time[b] - final[b] for b in blocks) / len(blocks)
        self._save_examples(run, blocks, at_time, per_final)
        if self.plot and at_time:
            self._plot(run, blocks, at_time, final)
        return out

    def _save_examples(self, run: RunHandle, blocks: list[int], at_time: Mapping[int, float],
                       per_final: list[torch.Tensor]) -> None:
        """``examples-eval.npz`` for mean_<metric> (from the trainer's per-example record,
        when it is complete and matches the record) and final_mean_<metric>."""
        if not hasattr(run, "save_example_scores"):
            return
        scores: dict[str, torch.Tensor] = {}
        stored = _load_examples(run.artifact_path("stream-examples.npz"))
        if at_time and all(f"block{b}" in stored for b in blocks):
            per_time = [stored[f"block{b}"] for b in blocks]
            if all(abs(float(p.double().mean()) - at_time[b]) < 1e-9
                   for p, b in zip(per_time, blocks, strict=True) if p.numel()):
                scores[f"mean_{self.metric}"] = block_weighted(per_time)
        if per_final:
            scores[f"final_mean_{self.metric}"] = block_weighted(per_final)
        lengths = {v.numel() for v in scores.values()}
        if len(lengths) > 1:  # the two views cover different examples: keep the at-time one
            scores = {f"mean_{self.metric}": scores[f"mean_{self.metric}"]}
        if scores and min(v.numel() for v in scores.values()) > 0:
            run.save_example_scores("eval", scores)

    def _plot(self, run: RunHandle, blocks: list[int], at_time: dict[int, float], final: dict[int, float]) -> None:
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            run.echo("matplotlib is not installed; skipping quality.png (pip install pk-iurs[plot])")
            return
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot(blocks, [at_time[b] for b in blocks], marker="o", label="tested after update on block - 1")
        if final:
            ax.plot(blocks, [final[b] for b in blocks], marker="x", linestyle="--", label="final model")
        ax.set_xlabel("test block")
        ax.set_ylabel(self.metric)
        ax.legend()
        fig.tight_layout()
        fig.savefig(run.artifact_path("quality.png"), dpi=110)
        plt.close(fig)
