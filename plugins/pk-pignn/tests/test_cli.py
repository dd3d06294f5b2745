"""End to end through the CLI: a short PI-GNN run gives PM/FM, the matrix and the heat map;
a malformed stream file fails with one line naming it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from pk.cli.main import cli
from pk.core.paths import shared_data_dir

SHORT = ["-c", "trainer.init_epochs=5", "-c", "trainer.retrain_epochs=3", "-c", "trainer.rectify_epochs=2",
         "-c", "trainer.max_tasks=3"]


def test_pignn_run_reports_pm_fm_and_writes_heat_map(tmp_path):
    args = ["train", "-c", "dataset.name=pignn-synthetic", "-c", "model.name=pignn-sage", "-c", "trainer.name=pignn",
            "-c", "evaluator.name=pm-fm", "-c", f"run.out_dir={tmp_path}", *SHORT]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    run_dir = next(p for p in tmp_path.iterdir() if p.is_dir())
    metrics = json.loads((run_dir / "result.json").read_text())["metrics"]
    # the matrix file keeps 6 decimals
    assert metrics["eval.pm"] == pytest.approx(metrics["fit.pm"], abs=1e-5)
    assert metrics["eval.fm"] == pytest.approx(metrics["fit.fm"], abs=1e-5)
    assert metrics["eval.row_mismatch"] < 1e-5, "the re-scored final model must match the matrix's last row"
    matrix = json.loads((run_dir / "artifacts" / "accuracy_matrix.json").read_text())["accuracy"]
    assert len(matrix) == 3 and matrix[0][1] is None and matrix[2][0] is not None
    assert (run_dir / "artifacts" / "accuracy_matrix.png").stat().st_size > 1000
    # params grew by two 12-unit expansions
    assert metrics["fit.params"] > 0 and metrics["fit.num_tasks"] == 3
    # per-snapshot scores for paired comparisons across arms: their means are the metrics
    import numpy as np

    examples = np.load(run_dir / "examples-eval.npz")
    assert examples["pm"].shape == (3,) and examples["pm"].mean() == pytest.approx(metrics["eval.pm"], abs=1e-9)
    assert examples["final_mean_accuracy"].mean() == pytest.approx(metrics["eval.final_mean_accuracy"], abs=1e-9)


@pytest.mark.parametrize("bad", ["trainer.lr=0", "trainer.retrain_epochs=0", "trainer.beta1=-0.5", "model.dropout=1.5",
                                 "dataset.homophily=2.0", "trainer.memory_size=-1"])
def test_out_of_range_config_exits_2_before_training(tmp_path, bad):
    """Old configs declared no ranges: a zero learning rate or negative memory trained (or crashed) silently."""
    from pk.cli.main import main

    args = ["train", "-c", "dataset.name=pignn-synthetic", "-c", "model.name=pignn-sage", "-c", "trainer.name=pignn",
            "-c", f"run.out_dir={tmp_path}", "-c", bad]
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2, bad
    assert not any(tmp_path.iterdir()), "refused before any run directory is made"


def test_malformed_stream_file_is_one_line_data_error(tmp_path):
    shared = shared_data_dir()
    if shared is None or not (shared / "PIGNN_cora_stream").is_dir():
        pytest.skip("needs PIGNN_cora_stream under the shared data dir (PK_SHARED_DATA or ../shared/data)")
    copy = tmp_path / "stream"
    shutil.copytree(shared / "PIGNN_cora_stream", copy)
    bad = copy / "raw" / "stream_edges" / "3"
    lines = bad.read_text().splitlines()
    lines[4] = "12 twelve"
    bad.write_text("\n".join(lines) + "\n")
    args = ["train", "-c", "dataset.name=pignn-cora", "-c", f"dataset.path={copy}", "-c", "model.name=pignn-sage",
            "-c", "trainer.name=cl-finetune", "-c", f"run.out_dir={tmp_path / 'runs'}"]
    out = subprocess.run([str(Path(sys.executable).parent / "pk"), *args], capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stderr[-500:]
    message = [ln for ln in out.stderr.strip().splitlines() if ln.strip()]
    assert len(message) == 1 and f"{bad}:5:" in message[0], out.stderr[-500:]
