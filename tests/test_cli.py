"""End-to-end CLI behaviour through click's runner (built-ins only)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import BASE, invoke


def test_help_lists_commands(runner):
    out = invoke(runner, ["--help"])
    assert out.exit_code == 0
    for cmd in ("list", "info", "train", "eval", "batch", "install", "check", "doctor", "report", "runs"):
        assert cmd in out.output


def test_list_all_shows_builtins_json(runner):
    out = invoke(runner, ["list", "--all", "--json"])
    assert out.exit_code == 0
    names = {(c["kind"], c["name"]) for c in json.loads(out.output)["components"]}
    assert {("models", "mlp"), ("datasets", "synthetic-classification"), ("trainers", "supervised"),
            ("aggregators", "fedavg"), ("calibrators", "identity"), ("evaluators", "accuracy")} <= names


def test_info_shows_config_fields(runner):
    out = invoke(runner, ["info", "supervised"])
    assert out.exit_code == 0
    assert "max_epochs: int = 10" in out.output


def test_dry_run_prints_resolved_config_with_defaults(runner):
    out = invoke(runner, ["train", *BASE, "-c", "trainer.lr=0.5", "--dry-run"])
    assert out.exit_code == 0, out.output
    assert "lr = 0.5" in out.output and "max_epochs = 10" in out.output
    assert not Path("runs").exists()


def test_train_then_eval(runner):
    out = invoke(runner, ["train", *BASE, "-c", "trainer.max_epochs=2", "--json", "-q"])
    assert out.exit_code == 0, out.output
    result = json.loads(out.output)
    assert result["status"] == "completed"
    run_dir = Path(result["run_dir"])
    for name in ("config.toml", "command.json", "env.json", "metrics.jsonl", "result.json", "checkpoints/model.pt"):
        assert (run_dir / name).exists(), name
    ev = invoke(runner, ["eval", str(run_dir), "--split", "test", "--json"])
    assert ev.exit_code == 0, ev.output
    assert json.loads(ev.output)["metrics"]["accuracy"] == result["metrics"]["test.accuracy"]


def test_config_files_deep_merge_then_overrides(runner, tmp_path):
    a = tmp_path / "a.toml"
    a.write_text('[model]\nname = "mlp"\nhidden = [8]\n[dataset]\nname = "synthetic-classification"\n'
                 '[trainer]\nname = "supervised"\nlr = 0.1\n')
    b = tmp_path / "b.toml"
    b.write_text("[trainer]\nmax_epochs = 3\n")
    out = invoke(runner, ["train", str(a), "--config", str(b), "-c", "model.dropout=0.0", "--dry-run"])
    assert out.exit_code == 0, out.output
    assert ("hidden = [8]" in out.output and "lr = 0.1" in out.output and "max_epochs = 3" in out.output
            and "dropout = 0.0" in out.output)


def _two_arm_batch(tmp_path: Path) -> Path:
    """A batch file with arms ``small`` (baseline) and ``big`` (method), 2 seeds, 1 epoch each."""
    batch = tmp_path / "b.toml"
    batch.write_text(
        '[batch]\nname = "t"\nmetric = "test.accuracy"\nbaseline = "small"\nmethod = "big"\n'
        '[defaults]\ndataset = { name = "synthetic-classification", num_samples = 200 }\n'
        'trainer = { name = "supervised", max_epochs = 1 }\n'
        '[matrix]\n"run.seed" = [0, 1]\n'
        '[[runs]]\nname = "small"\noverrides = { model = { name = "mlp", hidden = [4] } }\n'
        '[[runs]]\nname = "big"\noverrides = { model = { name = "mlp", hidden = [32] } }\n'
    )
    return batch


def test_batch_matrix_summary_and_resume(runner, tmp_path):
    batch = _two_arm_batch(tmp_path)
    out = invoke(runner, ["batch", str(batch), "--out", "bdir"])
    assert out.exit_code == 0, out.output
    lines = [json.loads(x) for x in Path("bdir/batch.jsonl").read_text().splitlines()]
    assert len(lines) == 4 and all(x["status"] == "completed" for x in lines)
    assert "small" in Path("bdir/summary.csv").read_text()
    assert "baseline vs method" in out.output
    again = invoke(runner, ["batch", str(batch), "--out", "bdir", "--resume"])
    assert again.exit_code == 0
    assert again.output.count("skip ") == 4
    assert len(list(Path("bdir").glob("*-s*-*"))) == 4


def test_batch_only_adds_arms_without_dropping_earlier_ones(runner, tmp_path):
    batch = _two_arm_batch(tmp_path)
    first = invoke(runner, ["batch", str(batch), "--out", "bdir", "--only", "small"])
    assert first.exit_code == 0, first.output
    second = invoke(runner, ["batch", str(batch), "--out", "bdir", "--resume", "--only", "big"])
    assert second.exit_code == 0, second.output
    lines = [json.loads(x) for x in Path("bdir/batch.jsonl").read_text().splitlines()]
    assert sorted((x["group"], x["seed"]) for x in lines) == [("big", 0), ("big", 1), ("small", 0), ("small", 1)]
    planned = json.loads(Path("bdir/batch.json").read_text())["runs"]
    assert {r["stem"] for r in planned} == {x["stem"] for x in lines}
    assert all(r["hash"] == r["stem"].rsplit("-", 1)[-1] for r in planned)
    comparison = Path("bdir/comparison.csv").read_text().splitlines()
    assert len(comparison) == 2 and ",small,big,2," in comparison[1]  # the pair spans both invocations


def test_batch_dry_run_lists_expansion(runner, tmp_path):
    batch = tmp_path / "b.toml"
    batch.write_text('[defaults]\nmodel={name="mlp"}\ndataset={name="synthetic-classification"}\n'
                     'trainer={name="supervised"}\n[matrix]\n"run.seed"=[0,1,2]\n"trainer.lr"=[0.1,0.01]\n')
    out = invoke(runner, ["batch", str(batch), "--dry-run", "--json"])
    assert out.exit_code == 0
    assert len(json.loads(out.output)) == 6


def test_batch_set_overrides_every_run_last(runner, tmp_path):
    batch = tmp_path / "b.toml"
    batch.write_text('[defaults]\nmodel={name="mlp"}\ndataset={name="synthetic-classification"}\n'
                     'trainer={name="supervised", max_epochs=4}\n'
                     '[matrix]\n"run.seed"=[0,1]\n[[runs]]\nname="a"\n'
                     '[[runs]]\nname="b"\noverrides={trainer={max_epochs=9}}\n')
    plain = json.loads(invoke(runner, ["batch", str(batch), "--dry-run", "--json"]).output)
    out = invoke(runner, ["batch", str(batch), "--dry-run", "--json", "-c", "trainer.max_epochs=2"])
    assert out.exit_code == 0, out.output
    runs = json.loads(out.output)
    assert {r["config"]["trainer"]["max_epochs"] for r in runs} == {2}  # beats defaults and run overrides
    assert {r["config"]["trainer"]["max_epochs"] for r in plain} == {4, 9}
    assert not {r["hash"] for r in runs} & {r["hash"] for r in plain}
    only = json.loads(invoke(runner, ["batch", str(batch), "--dry-run", "--json", "--only", "b"]).output)
    assert {r["name"] for r in only} == {"b"} and len(only) == 2  # --only filters the listing too
    bad = invoke(runner, ["batch", str(batch), "--dry-run", "-c", "trainer.nope=1"])
    assert bad.exit_code == 2 and "unknown key trainer.nope" in bad.output


def test_batch_pool_summarises_matrix_key_with_seeds(runner, tmp_path):
    body = ('[defaults]\nmodel={name="mlp"}\ndataset={name="synthetic-classification"}\ntrainer={name="supervised"}\n'
            '[matrix]\n"run.seed"=[0,1]\n"trainer.lr"=[0.1,0.01]\n[[runs]]\nname="a"\n')
    batch = tmp_path / "b.toml"
    batch.write_text('[batch]\npool=["trainer.lr"]\n' + body)
    runs = json.loads(invoke(runner, ["batch", str(batch), "--dry-run", "--json"]).output)
    assert {r["group"] for r in runs} == {"a"} and len({r["stem"] for r in runs}) == 4
    batch.write_text(body)
    assert ({r["group"] for r in json.loads(invoke(runner, ["batch", str(batch), "--dry-run", "--json"]).output)}
            == {"a[lr=0.1]", "a[lr=0.01]"})
    batch.write_text('[batch]\npool=["run.seed"]\n' + body)
    bad = invoke(runner, ["batch", str(batch), "--dry-run"])
    assert bad.exit_code == 2 and "pool must list [matrix] keys" in bad.output


def test_runs_lists_completed(runner):
    invoke(runner, ["train", *BASE, "-c", "trainer.max_epochs=1", "-q"])
    out = invoke(runner, ["runs", "--json"])
    rows = json.loads(out.output)
    assert len(rows) == 1 and rows[0]["status"] == "completed"


def test_report_writes_pngs(runner):
    import pytest

    pytest.importorskip("matplotlib")
    res = invoke(runner, ["train", *BASE, "-c", "trainer.max_epochs=2", "--json", "-q"])
    run_dir = json.loads(res.output)["run_dir"]
    out = invoke(runner, ["report", run_dir])
    assert out.exit_code == 0, out.output
    assert list(Path(run_dir, "report").glob("*.png"))


def test_batch_rejects_baseline_that_is_not_a_run(runner, tmp_path):
    batch = tmp_path / "b.toml"
    batch.write_text('[batch]\nmetric="test.accuracy"\nbaseline="a"\nmethod="typo"\n'
                     '[defaults]\nmodel={name="mlp"}\ndataset={name="synthetic-classification"}\n'
                     'trainer={name="supervised"}\n'
                     '[[runs]]\nname="a"\n[[runs]]\nname="b"\noverrides={model={hidden=[8]}}\n')
    out = invoke(runner, ["batch", str(batch), "--dry-run"])
    assert out.exit_code == 2 and "method = 'typo' is not a run name" in out.output and "Traceback" not in out.output
