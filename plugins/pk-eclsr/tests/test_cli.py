"""End to end through the CLI: ECL-SR and CL4SRec train with pk-seqrec's next-item trainer on
a small synthetic-seq; a bad loss setting is a one-line config error (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from pk.cli.main import cli, main

SMALL = ["-c", "dataset.name=synthetic-seq", "-c", "dataset.num_users=80", "-c", "dataset.num_items=60",
         "-c", "model.hidden=16", "-c", "model.inner=32", "-c", "run.threads=1",
         "-c", "trainer.name=next-item", "-c", "trainer.max_epochs=2", "-c", "trainer.lr=0.005"]


@pytest.mark.parametrize("model", ["eclsr", "cl4srec"])
def test_cli_trains_and_records_full_ranking_metrics(tmp_path: Path, model: str) -> None:
    out = tmp_path / "run"
    res = CliRunner().invoke(cli, ["train", *SMALL, "-c", f"model.name={model}", "--run-dir", str(out)])
    assert res.exit_code == 0, res.output
    metrics = json.loads((out / "result.json").read_text())["metrics"]
    assert 0.0 <= metrics["test.ndcg@10"] <= metrics["test.hr@10"] <= metrics["test.hr@20"] <= 1.0
    assert metrics["fit.epochs_run"] == 2.0 and metrics["test.history_excluded"] == 0.0
    assert (out / "examples-test.npz").exists()  # per-user scores for the paired statistics
    state = torch.load(out / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert state["item_embedding.weight"].shape[0] == 60 + 2  # items + padding + [MASK]
    if model == "eclsr":
        assert "discriminator_head.weight" in state and any(k.startswith("generator.encoder.") for k in state)
        assert torch.equal(state["generator.item_embedding.weight"], state["item_embedding.weight"])


def test_cli_bad_mask_ratio_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["train", *SMALL, "-c", "model.name=eclsr", "-c", "model.mask_ratio=1.5",
              "--run-dir", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err
    assert "model.mask_ratio" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
