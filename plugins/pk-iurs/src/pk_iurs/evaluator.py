"""The ``streaming`` evaluator: the protocol's summary for one run.

Reads the trainer's per-block record ``artifacts/stream.json`` (absent: only the forgetting
view is computed) and returns: ``mean_<metric>`` over evaluated blocks (or the last
``last_blocks``), ``final_mean_<metric>`` (the final model re-tested on every evaluated
block), ``forgetting`` = mean over blocks of (value when tested - final value) (positive =
the final model lost quality on earlier test blocks, which it has since also trained on),
and ``update_seconds`` / ``update_seconds_per_block`` (wall clock, t >= P; the one
non-reproducible number, taken from the record). Writes ``artifacts/quality.png``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pk.core.contracts import RunHandle
from pk_iurs.strategies import test_block


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
        if self.forgetting:
            for b in blocks:
                final[b] = test_block(model, data, b, [k], 512, getattr(run, "device", "cpu"))[self.metric]
                out[f"final_block{b}_{self.metric}"] = final[b]
            out[f"final_mean_{self.metric}"] = sum(final.values()) / max(len(final), 1)
            if at_time:
                out["forgetting"] = sum(at_time[b] - final[b] for b in blocks) / len(blocks)
        if self.plot and at_time:
            self._plot(run, blocks, at_time, final)
        return out

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
