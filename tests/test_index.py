"""The SQLite run index behind `pk runs`: --where/--since/--model/--compare, and refresh
semantics (new, changed, vanished, replaced and crashed runs)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pk.core.errors import UsageError
from pk.core.index import INDEX_NAME, RunIndex, record_run
from pk.core.run_query import parse_since, parse_where
from tests.conftest import invoke


def write_run(root: Path, name: str, *, model: str = "mlp", lr: float = 0.01, metrics: dict | None = None,
              status: str = "completed", started: float | None = None, pid: int | None = 1, host: str = "elsewhere",
              hidden: list[int] | None = None) -> Path:
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.toml").write_text(
        f'[run]\nseed = 0\n\n[model]\nname = "{model}"\nhidden = {json.dumps(hidden or [8])}\n\n'
        f'[dataset]\nname = "synthetic-classification"\n\n[trainer]\nname = "supervised"\nlr = {lr!r}\n')
    result = {"status": status, "started": time.time() if started is None else started, "pid": pid, "host": host,
              "metrics": metrics or {}, "resources": {"wall_seconds": 2.0}}
    (d / "result.json").write_text(json.dumps(result))
    return d


def dirs(rows: list[dict]) -> set[str]:
    return {Path(r["run_dir"]).name for r in rows}


# -- the where language, as a property --------------------------------------------------
OPS = {">": lambda a, b: a > b, ">=": lambda a, b: a >= b, "<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
       "=": lambda a, b: a == b, "!=": lambda a, b: a != b}
VALUES = st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0])


@pytest.fixture(scope="module")
def grid_index(tmp_path_factory):
    """16 runs: accuracy and lr on a small grid (ties included), two models, one run without accuracy."""
    root = tmp_path_factory.mktemp("grid")
    runs = {}
    for i in range(16):
        acc, lr = [0.0, 0.25, 0.5, 0.75, 1.0][i % 5], [0.25, 0.5, 0.75][i % 3]
        metrics = {"test.accuracy": acc} if i != 7 else {}
        model = "mlp" if i % 2 else "gcn"
        write_run(root, f"r{i:02d}", model=model, lr=lr, metrics=metrics)
        runs[f"r{i:02d}"] = {"test.accuracy": metrics.get("test.accuracy"), "trainer.lr": lr, "model": model}
    index = RunIndex(root)
    index.refresh()
    yield index, runs
    index.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(op1=st.sampled_from(list(OPS)), v1=VALUES, op2=st.sampled_from(list(OPS)), v2=VALUES,
       join=st.sampled_from(["and", "or", "and not", "or not"]))
def test_where_matches_python_semantics(grid_index, op1, v1, op2, v2, join):
    """A --where over a metric and a config key selects exactly the runs Python's own
    comparison selects (a run lacking the key never matches the comparison; `not` negates
    it, `and` binds tighter than `or`). Catches a wrong operator mapping, metric/param
    table mix-ups, lost precedence and NULL handling that lets key-less runs through."""
    index, runs = grid_index

    def cmp(value, op, v):
        return value is not None and OPS[op](value, v)

    expr = f"test.accuracy {op1} {v1} {join} trainer.lr {op2} {v2} and model = mlp"
    negate = join.endswith("not")
    want = set()
    for name, r in runs.items():
        a = cmp(r["test.accuracy"], op1, v1)
        b = cmp(r["trainer.lr"], op2, v2)
        b = (not b) if negate else b
        rest = b and r["model"] == "mlp"
        if (a and rest) if join.startswith("and") else (a or rest):
            want.add(name)
    assert dirs(index.query(where=expr)) == want, expr


@pytest.mark.parametrize("bad", ["test.accuracy >", "test.accuracy 0.5", "(test.accuracy > 1", "foo > 1",
                                 "test.accuracy > 0.5 test.loss < 1", "test.accuracy ~ x", "test.accuracy > high"])
def test_malformed_where_is_a_usage_error(grid_index, bad):
    """Malformed expressions fail with a UsageError (exit 2), never an SQL traceback or a
    silent empty answer."""
    index, _ = grid_index
    with pytest.raises(UsageError):
        index.query(where=bad)


@given(n=st.integers(0, 10_000), unit=st.sampled_from(["s", "m", "h", "d", "w"]))
def test_parse_since_ages(n, unit):
    """`--since 2d` is now minus two days (each unit scaled right)."""
    scale = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[unit]
    assert parse_since(f"{n}{unit}", now=1e9) == pytest.approx(1e9 - n * scale)


def test_parse_since_date_and_garbage():
    assert parse_since("1970-01-02") == 86400
    with pytest.raises(UsageError):
        parse_since("yesterday")


def test_parse_where_precedence():
    """`a or b and c` is `a or (b and c)`."""
    node = parse_where("x.a > 1 or x.b > 2 and x.c > 3")
    assert node[0] == "or" and node[2][0] == "and"


# -- refresh ---------------------------------------------------------------------------
def test_refresh_tracks_new_changed_vanished_replaced_and_crashed(tmp_path):
    """The index follows the run dirs: a new run appears; a running run that completes is
    re-read; a deleted run disappears; a completed run dir replaced by a new run of the same
    name is re-read (the dir is new); a `running` run of this host whose process is gone is
    `crashed`. Catches an index that trusts stale rows."""
    import socket

    root = tmp_path / "runs"
    write_run(root, "a", metrics={"test.accuracy": 0.1})
    live = write_run(root, "b", status="running", pid=os.getpid(), host=socket.gethostname())
    write_run(root, "c", metrics={"test.accuracy": 0.3})
    with RunIndex(root) as index:
        assert index.refresh()["read"] == 3
        assert {r["status"] for r in index.query()} == {"completed", "running"}
        assert index.refresh()["read"] == 0  # nothing changed: nothing re-read
        # b completes
        res = json.loads((live / "result.json").read_text())
        res.update(status="completed", metrics={"test.accuracy": 0.9})
        (live / "result.json").write_text(json.dumps(res))
        # a is deleted, c is replaced by a new run of the same name, d is new and crashed
        import shutil

        shutil.rmtree(root / "a")
        shutil.rmtree(root / "c")
        write_run(root, "c", metrics={"test.accuracy": 0.7})
        write_run(root, "d", status="running", pid=2**22 + 12345, host=socket.gethostname())
        index.refresh()
        rows = {Path(r["run_dir"]).name: r for r in index.query()}
    assert set(rows) == {"b", "c", "d"}
    assert rows["b"]["status"] == "completed" and rows["b"]["metrics"]["test.accuracy"] == 0.9
    assert rows["c"]["metrics"]["test.accuracy"] == 0.7
    assert rows["d"]["status"] == "crashed"


def test_record_run_updates_an_existing_index_only(tmp_path):
    """record_run (called when a run ends) updates the index covering the run, and writes
    nothing where no index exists yet (the first query builds it)."""
    root = tmp_path / "runs"
    run = write_run(root / "batch-x", "r1", status="running", pid=None)
    assert record_run(run) is False and not (root / INDEX_NAME).exists()
    with RunIndex(root) as index:
        index.refresh()
    res = json.loads((run / "result.json").read_text())
    res.update(status="completed", metrics={"test.accuracy": 0.5})
    (run / "result.json").write_text(json.dumps(res))
    assert record_run(run) is True
    import sqlite3

    with sqlite3.connect(root / INDEX_NAME) as conn:
        assert conn.execute("SELECT status FROM runs").fetchall() == [("completed",)]


# -- the CLI ---------------------------------------------------------------------------
def test_runs_where_model_since_json(runner, tmp_path):
    """The issue's query: `pk runs --where "test.accuracy > 0.5" --model mlp --since 2d --json`
    keeps only recent mlp runs above the threshold, in batch dirs too."""
    root = Path("runs")
    old = time.time() - 5 * 86400
    write_run(root, "keep", metrics={"test.accuracy": 0.8})
    write_run(root / "batch-b", "keep-too", metrics={"test.accuracy": 0.6})
    write_run(root, "low", metrics={"test.accuracy": 0.4})
    write_run(root, "other-model", model="gcn", metrics={"test.accuracy": 0.9})
    write_run(root, "old", metrics={"test.accuracy": 0.9}, started=old)
    out = invoke(runner, ["runs", "--where", "test.accuracy > 0.5", "--model", "mlp", "--since", "2d", "--json"])
    assert out.exit_code == 0, out.output
    assert dirs(json.loads(out.output)) == {"keep", "keep-too"}
    assert (root / INDEX_NAME).is_file()
    out = invoke(runner, ["runs", "--where", "model.hidden ~ 8 and resources.wall_seconds = 2", "--json"])
    assert len(json.loads(out.output)) == 5


def test_runs_compare_config_and_metric_diff(runner):
    """`pk runs --compare A B` shows the config keys that differ and each metric's difference."""
    write_run(Path("runs"), "run-a", lr=0.01, metrics={"test.accuracy": 0.5})
    write_run(Path("runs"), "run-b", lr=0.1, metrics={"test.accuracy": 0.75}, hidden=[8, 8])
    out = invoke(runner, ["runs", "--compare", "run-a", "runs/run-b", "--json"])
    assert out.exit_code == 0, out.output
    diff = json.loads(out.output)
    assert diff["config"] == {"trainer.lr": [0.01, 0.1], "model.hidden": [[8], [8, 8]]}
    assert diff["metrics"]["test.accuracy"] == {"a": 0.5, "b": 0.75, "diff": 0.25}
    text = invoke(runner, ["runs", "--compare", "run-a", "run-b"]).output
    assert "trainer.lr: 0.01 -> 0.1" in text and "+0.25" in text
    missing = invoke(runner, ["runs", "--compare", "run-a", "nope"])
    assert missing.exit_code == 2 and "no run 'nope'" in missing.output
    ambiguous = invoke(runner, ["runs", "--compare", "run-", "run-a"])
    assert ambiguous.exit_code == 2 and "names 2 runs" in ambiguous.output


@pytest.mark.parametrize(("args", "words"), [(["--where", "test.accuracy >>"], "--where"),
                                             (["--since", "soon"], "--since"), (["--last", "-1"], "--last")])
def test_runs_bad_filters_exit_2_without_touching_runs(runner, args, words):
    write_run(Path("runs"), "x", metrics={"test.accuracy": 0.5})
    out = invoke(runner, ["runs", *args])
    assert out.exit_code == 2 and words in out.output and "Traceback" not in out.output
    assert not Path("runs", INDEX_NAME).exists()
