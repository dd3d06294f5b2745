"""pk_fl.report: every arm against the baseline, paired by seed within each matrix cell."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pk_fl.report import arm_rows, markdown, round_curves, split_group


def fake_batch(tmp_path, accs: dict[str, list[float]], cell: str = "attack=lie") -> str:
    """A batch dir as ``pk batch`` writes it: batch.json, batch.jsonl, run dirs with example
    scores (per-image correctness whose mean is the metric) and metrics.jsonl."""
    lines = []
    for arm, values in accs.items():
        for seed, acc in enumerate(values):
            run_dir = tmp_path / f"{arm}-s{seed}"
            run_dir.mkdir()
            correct = np.zeros(200)
            correct[: int(round(acc * 200))] = 1.0
            np.savez(run_dir / "examples-test.npz", accuracy=correct)
            (run_dir / "metrics.jsonl").write_text("\n".join(json.dumps(x) for x in [
                {"step": 1, "split": "train", "malicious_weight": 0.5 if arm == "fedavg" else 0.0},
                {"step": 1, "split": "server", "accuracy": acc}]))
            lines.append(
                json.dumps(
                    {
                        "name": arm,
                        "group": f"{arm}[{cell}]",
                        "seed": seed,
                        "pair": f"s{seed}",
                        "stem": "x",
                        "status": "completed",
                        "run_dir": str(run_dir),
                        "metrics": {"test.accuracy": acc},
                    }
                )
            )
    (tmp_path / "batch.json").write_text(json.dumps({"name": "t", "meta": {}}))
    (tmp_path / "batch.jsonl").write_text("\n".join(lines))
    return str(tmp_path)


def test_arms_are_paired_by_seed_against_the_baseline(tmp_path):
    """Catches unpaired (or mis-paired) differences: the arm is 0.1 above FedAvg on every seed,
    so the paired difference is exactly +0.1 with zero spread even though the seeds vary a lot."""
    d = fake_batch(tmp_path, {"fedavg": [0.2, 0.5, 0.8], "krum": [0.3, 0.6, 0.9], "median": [0.2, 0.5, 0.8]})
    rows = {r["arm"]: r for r in arm_rows(d, "fedavg", "test.accuracy")["attack=lie"]}
    assert rows["krum"]["paired"]["mean"] == pytest.approx(0.1) and rows["krum"]["paired"]["p"] == 0.0
    assert rows["median"]["paired"]["mean"] == pytest.approx(0.0) and rows["median"]["paired"]["p"] == 1.0
    assert rows["krum"]["bootstrap"][2] == 3 and rows["krum"]["bootstrap"][0] == 3  # +20 images of 200 each seed
    assert "paired" not in rows["fedavg"]
    text = markdown({"attack=lie": list(rows.values())}, "fedavg", "test.accuracy")
    assert "| krum | 0.6000 ± 0.3000 (n=3) | +0.1000" in text


def test_split_group_and_curves(tmp_path):
    assert split_group("krum[attack=lie,malicious_fraction=0.2]") == ("krum", "attack=lie,malicious_fraction=0.2")
    assert split_group("fedavg") == ("fedavg", "")
    d = fake_batch(tmp_path, {"fedavg": [0.2, 0.4], "krum": [0.3, 0.5]})
    curves = round_curves(d)["attack=lie"]
    assert curves["fedavg"]["malicious_weight"] == [(1, 0.5)] and curves["krum"]["accuracy"] == [
        (1, pytest.approx(0.4))
    ]
