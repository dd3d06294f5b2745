"""End to end through the CLI: AC-SASRec trains with the two-loss step and the ac-next-item
trainer; a gate width that does not match the data is a one-line config error (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from pk.cli.main import cli, main

SMALL = ["-c", "dataset.name=synthetic-seq", "-c", "dataset.num_users=80", "-c", "dataset.num_items=60",
         "-c", "model.name=ac-sasrec", "-c", "model.hidden=16", "-c", "model.inner=32", "-c", "run.threads=1",
         "-c", "calibrator.name=ac-tsr", "-c", "trainer.name=ac-next-item", "-c", "trainer.max_epochs=2",
         "-c", "trainer.lr=0.005"]


def test_cli_trains_ac_sasrec_with_both_losses(tmp_path: Path) -> None:
    out = tmp_path / "run"
    res = CliRunner().invoke(cli, ["train", *SMALL, "--run-dir", str(out)])
    assert res.exit_code == 0, res.output
    metrics = json.loads((out / "result.json").read_text())["metrics"]
    assert 0.0 <= metrics["test.ndcg@10"] <= metrics["test.hr@10"] <= metrics["test.hr@20"] <= 1.0
    assert metrics["fit.epochs_run"] == 2.0 and 1.0 <= metrics["fit.best_epoch"] <= 2.0
    import numpy as np

    with np.load(out / "examples-test.npz") as scores:  # per-user values for the paired statistics
        assert abs(float(scores["ndcg@10"].mean()) - metrics["test.ndcg@10"]) < 1e-9
    ckpt = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    state = ckpt["model"]
    assert any(".attack_query." in k for k in state) and any(".order." in k for k in state)
    assert not any(k.startswith("position_embedding") for k in state)
    groups = ckpt["optimizers"]["0"]["param_groups"]
    assert [g["name"] for g in groups] == ["recommendation", "mask-generator"]
    assert groups[0]["lr"] == 0.005


def test_cli_gate_width_mismatch_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["train", *SMALL, "-c", "calibrator.gate_width=50", "--run-dir", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err
    assert "set calibrator.gate_width = 20" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
