"""`pk batch` comparisons: paired statistics in the table and --json, the budget
fingerprint check, run-scoped overrides, --matrix, and configs that would be dropped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import BASE, invoke

RECIPE = """
[batch]
name = "tiny"
metric = "test.accuracy"
baseline = "narrow"
method = "wide"
{extra}

[defaults]
dataset.name = "synthetic-classification"
dataset.num_samples = 240
model.name = "mlp"
trainer.name = "supervised"
trainer.max_epochs = 2
evaluator.name = "accuracy"

[matrix]
"run.seed" = [0, 1, 2]

[[runs]]
name = "narrow"
overrides = {{ model.hidden = [2] }}

[[runs]]
name = "wide"
overrides = {{ model.hidden = [64]{method} }}
"""


def recipe(tmp_path: Path, extra: str = "", method: str = "") -> str:
    path = tmp_path / "tiny.toml"
    path.write_text(RECIPE.format(extra=extra, method=method))
    return str(path)


def one_line_error(out, *words: str) -> str:
    assert out.exit_code == 2, out.output
    lines = [x for x in out.output.strip().splitlines() if x.strip()]
    assert len(lines) == 1 and "Traceback" not in out.output, out.output
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def test_three_seeds_give_paired_difference_interval_and_p(runner, tmp_path):
    out = invoke(runner, ["batch", recipe(tmp_path), "--out", "b", "--json"])
    assert out.exit_code == 0, out.output
    (entry,) = json.loads(out.output)
    (row,) = entry["comparison"]
    paired = row["paired"]
    assert paired["n"] == 3 and row["pairs"] == ["s0", "s1", "s2"]
    by_arm: dict[str, dict[int, float]] = {}
    for r in entry["runs"]:
        by_arm.setdefault(r["name"], {})[r["seed"]] = r["metrics"]["test.accuracy"]
    diffs = [by_arm["wide"][s] - by_arm["narrow"][s] for s in (0, 1, 2)]
    assert paired["mean"] == pytest.approx(sum(diffs) / 3)
    assert paired["low"] <= paired["mean"] <= paired["high"] and 0 <= paired["p"] <= 1
    assert row["verdict"].endswith(f"p = {row['verdict'].rsplit('p = ', 1)[1]}")
    assert len(row["bootstrap"]) == 3  # every run wrote examples-test.npz
    assert row["epochs"]["wide"]["epochs_run"] == [2.0, 2.0, 2.0]
    csv = (tmp_path / "b" / "comparison.csv").read_text()
    assert "p_ttest" in csv and row["verdict"] in csv


def test_terminal_table_shows_interval_p_and_epochs(runner, tmp_path):
    out = invoke(runner, ["batch", recipe(tmp_path), "--out", "b"])
    assert out.exit_code == 0, out.output
    assert "Δ [95% CI]" in out.output and "p = " in out.output
    assert "2,2,2 (best" in out.output


def test_one_seed_says_no_t_test(runner, tmp_path):
    """--matrix replaces the seed axis; one pair gives no t-test, only the per-example bootstrap."""
    out = invoke(runner, ["batch", recipe(tmp_path), "--out", "b", "--matrix", "run.seed=5", "--json"])
    assert out.exit_code == 0, out.output
    (row,) = json.loads(out.output)[0]["comparison"]
    assert row["paired"]["n"] == 1 and row["paired"]["p"] is None
    assert "bootstrap over" in row["verdict"]
    for f in (tmp_path / "b").glob("*/examples-test.npz"):
        f.unlink()
    out = invoke(runner, ["report", "b"])
    assert out.exit_code == 0, out.output
    assert "n = 1, no test" in out.output


def test_unequal_budget_is_refused_naming_the_field(runner, tmp_path):
    line = one_line_error(invoke(runner, ["batch", recipe(tmp_path, method=", trainer.max_epochs = 3"), "--dry-run"]),
                          "trainer.max_epochs", "unequal")
    assert "(2 vs 3)" in line


def test_budget_fingerprint_covers_dataset_and_evaluator(runner, tmp_path):
    one_line_error(invoke(runner, ["batch", recipe(tmp_path, method=", dataset.num_samples = 300"), "--dry-run"]),
                   "dataset.num_samples")
    one_line_error(invoke(runner, ["batch", recipe(tmp_path), "--dry-run", "-c", "wide:evaluator.batch_size=7"]),
                   "evaluator.batch_size")


def test_declared_unequal_budget_runs_and_prints_its_reason(runner, tmp_path):
    path = recipe(tmp_path, extra='unequal = { "trainer.max_epochs" = "wide nets need longer" }',
                  method=", trainer.max_epochs = 3")
    out = invoke(runner, ["batch", path, "--out", "b", "--matrix", "run.seed=0,1"])
    assert out.exit_code == 0, out.output
    assert "wide nets need longer" in out.output


def test_components_own_settings_may_differ(runner, tmp_path):
    """Model hyper-parameters and non-budget trainer fields are what a comparison varies."""
    out = invoke(runner, ["batch", recipe(tmp_path, method=", trainer.lr = 0.05"), "--dry-run"])
    assert out.exit_code == 0, out.output


def test_run_scoped_override_reaches_only_that_run(runner, tmp_path):
    out = invoke(runner, ["batch", recipe(tmp_path), "--dry-run", "--json", "-c", "wide:model.dropout=0.3"])
    assert out.exit_code == 0, out.output
    dropout = {(r["name"], r["seed"]): r["config"]["model"]["dropout"] for r in json.loads(out.output)}
    assert {v for (n, _), v in dropout.items() if n == "wide"} == {0.3}
    assert {v for (n, _), v in dropout.items() if n == "narrow"} == {0.1}


def test_run_scoped_override_of_an_unknown_run(runner, tmp_path):
    one_line_error(invoke(runner, ["batch", recipe(tmp_path), "--dry-run", "-c", "nope:trainer.lr=0.1"]),
                   "'nope'", "narrow, wide")


def test_matrix_axis_is_validated(runner, tmp_path):
    one_line_error(invoke(runner, ["batch", recipe(tmp_path), "--dry-run", "--matrix", "seed"]), "--matrix")


def test_calibrator_for_a_model_that_takes_none(runner):
    """The MLP's builder takes no calibrator: configuring one must fail, not be ignored."""
    one_line_error(invoke(runner, ["train", *BASE, "-c", "calibrator.name=identity", "--dry-run"]),
                   "takes no calibrator", "calibrator = 'identity'")


def test_builder_missing_a_keyword_the_core_passes(runner, pk_register_temp):
    """A model builder that cannot take the calibrator it declared is refused at build time."""
    from dataclasses import dataclass

    from pk.core import hookimpl

    @dataclass
    class Cfg:
        width: int = 4

    class Plugin:
        @hookimpl
        def pk_register_models(self, register):
            register("liar", "tests.broken_components:build_mlp_no_calibrator", config=Cfg, tasks=("classification",),
                     accepts=("calibrator",))

    pk_register_temp(Plugin())
    out = invoke(runner, ["train", "-c", "model.name=liar", "-c", "dataset.name=synthetic-classification",
                          "-c", "trainer.name=supervised", "-c", "calibrator.name=identity",
                          "-c", "trainer.max_epochs=1"])
    one_line_error(out, "calibrator")
