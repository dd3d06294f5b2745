"""``python -m pk_solar.report``: paired comparisons with ``cont`` from a batch dir."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from pk_solar.report import load_batch, paired_table, tables


def _fake_batch(tmp: Path, shift: dict[str, float]) -> Path:
    rows = []
    rng = np.random.default_rng(0)
    base = rng.normal(1.8, 0.2, size=200)
    for arm, delta in shift.items():
        for seed in (0, 1, 2):
            run = tmp / f"{arm}-s{seed}"
            run.mkdir(parents=True)
            losses = base + delta + rng.normal(0, 0.01, size=200) + 0.001 * seed
            np.savez(run / "examples-eval.npz", loss=losses)
            curve = [{"split": "valid", "flops": 1e12 * (1 + k / 10), "loss": 1.9 - k * 0.01 + delta} for k in range(4)]
            (run / "metrics.jsonl").write_text("\n".join(json.dumps(c) for c in curve))
            metrics = {"eval.loss": float(losses.mean()), "eval.ppl": float(np.exp(losses.mean())), "fit.layers": 8.0,
                       "fit.params": 1000.0, "fit.flops_total": 1.3e12, "fit.valid_loss": float(losses.mean())}
            rows.append({"name": arm, "seed": seed, "status": "completed", "run_dir": str(run), "metrics": metrics})
    (tmp / "batch.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    return tmp


def test_paired_table_sees_a_real_gap_and_no_gap(tmp_path: Path) -> None:
    """An arm 0.05 nats worse than cont in every window is 'cont better' with tiny p; an arm equal
    to cont up to noise (fixed rng) is not. Catches pairing by position instead of seed, a sign flip, or
    bootstraps over the wrong file."""
    arms = load_batch(_fake_batch(tmp_path, {"cont": 0.0, "worse": 0.05, "same": 0.0}))
    text = paired_table(arms)
    worse = next(line for line in text.splitlines() if line.startswith("| worse"))
    same = next(line for line in text.splitlines() if line.startswith("| same"))
    assert "+0.05" in worse and "cont better" in worse and "p < 0.0005" in worse
    assert "no significant difference" in same
    full = tables(arms)
    assert "| worse |" in full and "at matched total compute" in full  # base compute read from the curves' start
