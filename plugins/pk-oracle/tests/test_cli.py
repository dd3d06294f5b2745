"""End to end through the CLI: train a target, score it with FMR, re-score with `pk eval`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from pk.cli.main import cli
from pk.core.paths import shared_data_dir

COMMON = ["-c", "run.threads=1", "-c", "model.name=mlp", "-c", "model.hidden=[32]", "-c", "trainer.max_epochs=3"]


def test_train_then_eval_with_fmr(tmp_path, monkeypatch):
    monkeypatch.setenv("PK_CACHE_DIR", str(tmp_path / "cache"))
    runner = CliRunner()
    run_dir = tmp_path / "run"
    args = ["train", *COMMON, "-c", "dataset.name=synthetic-images", "-c", "trainer.name=noise-augmented",
            "-c", "evaluator.name=fmr", "-c", "evaluator.budget=5", "-c", "evaluator.grid_images=4",
            "-c", "evaluator.allow_weak_oracles=true", "--run-dir", str(run_dir)]
    out = runner.invoke(cli, args, catch_exceptions=False)
    assert out.exit_code == 0, out.output
    metrics = json.loads((run_dir / "result.json").read_text())["metrics"]
    assert 0.0 <= metrics["eval.pa"] <= 1.0 and metrics["eval.fmr"] >= 0.0
    assert metrics["eval.fmr"] == pytest.approx(metrics["eval.pa"] / metrics["eval.sa"])
    assert (run_dir / "artifacts" / "fmr_grid.png").stat().st_size > 1000
    assert list((tmp_path / "cache" / "oracle").glob("*.npz")), "the oracle zoo was not cached"
    # pk eval re-scores the saved model: same seed and cache, so the same FMR
    out = runner.invoke(cli, ["eval", str(run_dir), "-c", "evaluator.name=fmr", "-c", "evaluator.budget=5",
                              "-c", "evaluator.grid_images=0", "-c", "evaluator.allow_weak_oracles=true"],
                        catch_exceptions=False)
    assert out.exit_code == 0, out.output
    again = json.loads((run_dir / "eval-test.json").read_text())["metrics"]
    assert again["eval.fmr"] == pytest.approx(metrics["eval.fmr"])


def test_bad_oracle_name_is_a_one_line_error(tmp_path):
    out = CliRunner().invoke(cli, ["train", *COMMON, "-c", "dataset.name=synthetic-images",
                                   "-c", "trainer.name=supervised", "-c", "evaluator.name=fmr",
                                   "-c", "evaluator.oracles=[\"resnet\"]", "--run-dir", str(tmp_path / "r")])
    from pk.core.errors import ConfigError

    # `pk` (pk.cli.main:main) prints this one line and exits 2; CliRunner on the group shows the exception
    assert isinstance(out.exception, ConfigError), out.output
    assert "unknown oracle 'resnet'" in str(out.exception) and "\n" not in str(out.exception)


def test_real_digits_oracles_are_accurate(tmp_path, monkeypatch):
    if shared_data_dir() is None or not (Path(shared_data_dir()) / "sklearn_digits").is_dir():
        pytest.skip("shared sklearn_digits not found (set PK_SHARED_DATA)")
    monkeypatch.setenv("PK_CACHE_DIR", str(tmp_path / "cache"))
    run_dir = tmp_path / "digits"
    out = CliRunner().invoke(cli, ["train", *COMMON, "-c", "dataset.name=sklearn-digits", "-c", "dataset.source=file",
                                   "-c", "trainer.name=supervised", "-c", "evaluator.name=fmr",
                                   "-c", "evaluator.budget=10", "-c", "evaluator.grid_images=0",
                                   "--run-dir", str(run_dir)], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    m = json.loads((run_dir / "result.json").read_text())["metrics"]
    assert m["eval.oracle_acc.svc"] > 0.95 and m["eval.oracle_valid"] > 0.8
    assert m["eval.pa"] < m["eval.sa_valid"], "a 10-step search should fool a 3-epoch MLP on some digits"
