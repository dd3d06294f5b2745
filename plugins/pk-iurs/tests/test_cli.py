"""End to end through the CLI: a streaming run writes per-block records, a plot and a summary."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from pk.cli.main import cli
from pk.core.paths import shared_data_dir

TINY = ["-c", "dataset.name=stream-synthetic", "-c", "dataset.blocks=4", "-c", "dataset.sessions_per_block=40",
        "-c", "model.name=sasrec", "-c", "model.hidden=16", "-c", "model.layers=1", "-c", "model.heads=1",
        "-c", "model.inner=32", "-c", "evaluator.name=streaming", "-c", "run.threads=1"]


def _train(tmp_path: Path, trainer: str, *extra: str) -> dict:
    run_dir = tmp_path / trainer
    res = CliRunner().invoke(cli, ["train", *TINY, "-c", f"trainer.name={trainer}", "-c", "trainer.pretrain_epochs=2",
                                   *extra, "--run-dir", str(run_dir), "--json", "--quiet"])
    assert res.exit_code == 0, res.output
    return {"dir": run_dir, "result": json.loads((run_dir / "result.json").read_text())}


def test_streaming_run_end_to_end(tmp_path: Path) -> None:
    out = _train(tmp_path, "iu-reservoir")
    m = out["result"]["metrics"]
    stream = json.loads((out["dir"] / "artifacts" / "stream.json").read_text())
    assert [r["block"] for r in stream["records"]] == [1, 2, 3]
    assert m["fit.blocks_evaluated"] == 3
    assert m["fit.mean_hr@20"] == pytest.approx(sum(r["hr@20"] for r in stream["records"]) / 3)
    assert m["eval.mean_hr@20"] == pytest.approx(m["fit.mean_hr@20"])
    assert m["test.hr@20"] == pytest.approx(stream["records"][-1]["hr@20"])  # final model on the last block
    assert m["eval.update_seconds"] > 0 and m["fit.update_examples"] > 0
    assert (out["dir"] / "artifacts" / "quality.png").stat().st_size > 0
    lines = [json.loads(x) for x in (out["dir"] / "metrics.jsonl").read_text().splitlines()]
    assert sum(1 for x in lines if x["split"] == "stream") == 3
    assert m["fit.epochs_run"] == 2 + 2 * 1  # pretrain 2 epochs + 1 pass per update (2 updates)
    import numpy as np

    with np.load(out["dir"] / "examples-eval.npz") as ex:  # paired-bootstrap input: its mean is the metric
        assert float(ex["mean_hr@20"].mean()) == pytest.approx(m["eval.mean_hr@20"], abs=1e-12)
        assert float(ex["final_mean_hr@20"].mean()) == pytest.approx(m["eval.final_mean_hr@20"], abs=1e-12)
    with np.load(out["dir"] / "examples-test.npz") as ex:
        assert float(ex["hr@20"].mean()) == pytest.approx(m["test.hr@20"], abs=1e-12)
        assert ex["hr@20"].shape[0] == stream["records"][-1]["test_examples"]


def test_full_retrain_touches_more_examples_than_fine_tuning(tmp_path: Path) -> None:
    retrain = _train(tmp_path, "iu-full-retrain", "-c", "trainer.retrain_epochs=1")["result"]["metrics"]
    tune = _train(tmp_path, "iu-fine-tune")["result"]["metrics"]
    assert retrain["fit.update_examples"] > 1.5 * tune["fit.update_examples"]


def test_bad_period_range_is_one_line_config_error(tmp_path: Path) -> None:
    res = CliRunner().invoke(cli, ["train", "-c", "dataset.name=stream-diginetica", "-c", "dataset.source=file",
                                   "-c", "dataset.first_period=5", "-c", "dataset.last_period=2",
                                   "-c", "model.name=sasrec",
                                   "-c", "trainer.name=iu-fine-tune", "--run-dir", str(tmp_path / "bad"), "--quiet"])
    from pk.core.errors import ConfigError

    assert res.exit_code != 0
    err = res.exception if isinstance(res.exception, ConfigError) else None
    assert err is not None, res.output
    assert "first_period < last_period" in str(err) and "\n" not in str(err)


def test_real_streams_have_the_documented_shape() -> None:
    shared = shared_data_dir()
    if shared is None:
        pytest.skip("no shared data dir (../shared/data or PK_SHARED_DATA); real-data check skipped")
    from pk_iurs.data import build_stream_diginetica, build_stream_ml100k
    from pk_iurs.plugin import StreamDigineticaConfig, StreamML100kConfig

    digi = build_stream_diginetica(StreamDigineticaConfig(source="file", last_period=3), seed=0)
    stats = digi.block_stats()
    assert [s["interactions"] for s in stats] == [70739, 37586, 31089, 32687]
    assert [s["new_items"] for s in stats] == [18569, 4123, 2614, 2330]
    ml = build_stream_ml100k(StreamML100kConfig(source="file"), seed=0)
    assert sum(s["interactions"] for s in ml.block_stats()) == 100000 and ml.info.num_items == 1682
    assert all(s["interactions"] == 10000 for s in ml.block_stats())
    assert os.fspath(shared)
