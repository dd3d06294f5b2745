"""`pk export tensorboard|mlflow`: offline exports that read back with the same scalars."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import invoke


def write_run(root: Path, name: str, lines: list[dict], *, status: str = "completed", lr: float = 0.01) -> Path:
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.toml").write_text(f'[run]\nseed = 0\n\n[model]\nname = "mlp"\nhidden = [8, 8]\n\n'
                                   f'[trainer]\nname = "supervised"\nlr = {lr!r}\n')
    # torn tail
    (d / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines) + '{"step": 9, "split": "va')
    result = {"status": status, "started": 1_700_000_000.0, "ended": 1_700_000_100.0, "pid": 1, "host": "x",
              "metrics": {"test.accuracy": 0.75, "test.ndcg@10": 0.125}, "resources": {"wall_seconds": 100.0}}
    (d / "result.json").write_text(json.dumps(result))
    return d


LINES = [{"step": 1, "split": "train", "time": 1_700_000_010.0, "loss": 1.5, "epoch": 0.0},
         {"step": 1, "split": "valid", "time": 1_700_000_011.0, "accuracy": 0.5, "ndcg@10": 0.0625},
         {"step": 2, "split": "train", "time": 1_700_000_020.0, "loss": 1.25, "epoch": 1.0},
         {"step": 2, "split": "valid", "time": 1_700_000_021.0, "accuracy": 0.625, "ndcg@10": 0.09375}]


def expected(lines: list[dict]) -> dict[str, list[tuple[int, float]]]:
    out: dict[str, list[tuple[int, float]]] = {}
    for x in lines:
        for k, v in x.items():
            if k not in ("step", "split", "time"):
                out.setdefault(f"{x['split']}/{k}", []).append((x["step"], v))
    return out


def read_tensorboard(logdir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def f32(x: float) -> float:
    import struct

    return struct.unpack("f", struct.pack("f", x))[0]


# -- TensorBoard -----------------------------------------------------------------------
LINE = st.builds(
    lambda step, split, values: {"step": step, "split": split, "time": 1_700_000_000.0 + step, **values},
    st.integers(0, 10_000), st.sampled_from(["train", "valid", "train-step"]),
    st.dictionaries(st.sampled_from(["loss", "accuracy", "ndcg@10", "lr"]),
                    st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False), min_size=1))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(LINE, min_size=1, max_size=8))
def test_tensorboard_reads_back_the_same_scalars(tmp_path, lines):
    """Every metrics.jsonl value comes back from tensorboard's event_processing under
    `<split>/<name>` at its step (float32, as TensorBoard stores scalars), plus the result
    metrics under `result/`. Catches dropped lines, swapped steps and lost tags."""
    pytest.importorskip("tensorboard")
    from pk.core.export import export_tensorboard

    run = write_run(tmp_path / f"r{len(list(tmp_path.iterdir()))}", "run", lines)
    (written,) = export_tensorboard(run)
    got = read_tensorboard(Path(written["logdir"]))
    want = {tag: [(s, f32(v)) for s, v in pts] for tag, pts in expected(lines).items()}
    last = max(x["step"] for x in lines)
    want.update({"result/test.accuracy": [(last, 0.75)], "result/test.ndcg@10": [(last, 0.125)],
                 "result/resources.wall_seconds": [(last, 100.0)]})
    assert {t: sorted(p) for t, p in got.items()} == {t: sorted(p) for t, p in want.items()}


def test_tensorboard_cli_on_a_batch_dir_one_logdir_per_run_and_idempotent(runner):
    pytest.importorskip("tensorboard")
    write_run(Path("b"), "run-a", LINES)
    write_run(Path("b"), "run-b", LINES[:2])
    for _ in range(2):  # exporting again replaces, never duplicates
        out = invoke(runner, ["export", "tensorboard", "b", "--json"])
        assert out.exit_code == 0, out.output
    rows = json.loads(out.output)
    assert [Path(r["logdir"]).name for r in rows] == ["run-a", "run-b"]
    for r in rows:
        assert len(list(Path(r["logdir"]).glob("events.out.tfevents.*"))) == 1
    assert read_tensorboard(Path("b/tensorboard/run-a"))["valid/ndcg@10"] == [(1, 0.0625), (2, 0.09375)]
    listed = invoke(runner, ["runs", "--dir", "b", "--json"])
    assert len(json.loads(listed.output)) == 2  # exported event dirs are not runs


def test_missing_extra_is_a_usage_error(runner, monkeypatch):
    """Without the export extra the command says what to install (exit 2, one line)."""
    write_run(Path("b"), "run-a", LINES)
    for mod in ("tensorboard", "tensorboard.summary.writer.event_file_writer", "mlflow", "mlflow.entities"):
        monkeypatch.setitem(sys.modules, mod, None)
    for kind in ("tensorboard", "mlflow"):
        out = invoke(runner, ["export", kind, "b"])
        assert out.exit_code == 2 and "pip install 'pk-core[export]'" in out.output and "Traceback" not in out.output


def test_export_target_without_runs_is_refused(runner):
    Path("empty").mkdir()
    out = invoke(runner, ["export", "tensorboard", "empty"])
    assert out.exit_code == 2 and "neither a run dir" in out.output


# -- MLflow ----------------------------------------------------------------------------
def test_mlflow_file_store_offline_params_histories_status_and_skip(runner, tmp_path):
    """`pk export mlflow BATCH --tracking-uri file:...` logs one MLflow run per run dir:
    params from the config, metric histories from metrics.jsonl (`@` made MLflow-safe),
    result metrics, status; a second export skips them and --force replaces them.
    Catches lost steps, wrong names, a failed run shown as finished and duplicate runs."""
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    write_run(Path("b"), "run-a", LINES)
    write_run(Path("b"), "run-b", LINES[:2], status="failed", lr=0.1)
    uri = f"file:{tmp_path / 'mlruns'}"
    out = invoke(runner, ["export", "mlflow", "b", "--tracking-uri", uri, "--json"])
    assert out.exit_code == 0, out.output
    assert [r["action"] for r in json.loads(out.output)] == ["exported", "exported"]
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("b")
    runs = {r.info.run_name: r for r in client.search_runs([exp.experiment_id])}
    assert set(runs) == {"run-a", "run-b"}
    a, b = runs["run-a"], runs["run-b"]
    assert a.data.params["trainer.lr"] == "0.01" and a.data.params["model.hidden"] == "[8, 8]"
    assert b.data.params["trainer.lr"] == "0.1"
    history = client.get_metric_history(a.info.run_id, "valid.ndcg_at_10")
    assert sorted((m.step, m.value) for m in history) == [(1, 0.0625), (2, 0.09375)]
    assert a.data.metrics["test.accuracy"] == 0.75 and a.data.metrics["test.ndcg_at_10"] == 0.125
    assert a.info.status == "FINISHED" and b.info.status == "FAILED"
    assert a.info.start_time == 1_700_000_000_000 and a.data.tags["pk.model"] == "mlp"
    again = invoke(runner, ["export", "mlflow", "b", "--tracking-uri", uri, "--json"])
    assert [r["action"] for r in json.loads(again.output)] == ["skipped", "skipped"]
    forced = invoke(runner, ["export", "mlflow", "b", "--tracking-uri", uri, "--force", "--json"])
    assert [r["action"] for r in json.loads(forced.output)] == ["exported", "exported"]
    live = client.search_runs([exp.experiment_id])
    assert len(live) == 2 and not math.isnan(live[0].data.metrics["test.accuracy"])


def test_mlflow_names_are_sanitised():
    from pk.core.export import mlflow_name

    assert mlflow_name("valid.ndcg@10") == "valid.ndcg_at_10"
    assert mlflow_name("eval.mean_hr@20 (x)") == "eval.mean_hr_at_20 _x_"
    assert mlflow_name("a/b:c-d e") == "a/b:c-d e"
