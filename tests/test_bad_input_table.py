"""The bad-input suite: every case exits 2 (3 for plugin failures) with one line, no
traceback, and leaves runs/ exactly as it was. Cases are a table; a hypothesis family draws
out-of-range and non-finite values for every bounded field of the built-in configs."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import BASE, invoke, run_pk

TRAIN = ["train", *BASE, "-c", "trainer.max_epochs=1"]

RECIPE = """
[batch]
name = "t"
metric = "test.accuracy"
baseline = "a"
method = "b"
[defaults]
dataset.name = "synthetic-classification"
model.name = "mlp"
trainer.name = "supervised"
trainer.max_epochs = 1
[matrix]
"run.seed" = [0]
[[runs]]
name = "a"
[[runs]]
name = "b"
overrides = { model.hidden = [8] }
"""

# (id, argv, words the one line must contain). "{tmp}" is the test's working directory.
CASES: list[tuple[str, list[str], list[str]]] = [
    ("max-epochs-negative", [*TRAIN, "-c", "trainer.max_epochs=-1"], ["trainer.max_epochs", ">= 1"]),
    ("max-epochs-zero", [*TRAIN, "-c", "trainer.max_epochs=0"], ["trainer.max_epochs"]),
    ("batch-size-negative", [*TRAIN, "-c", "trainer.batch_size=-5"], ["trainer.batch_size"]),
    ("batch-size-zero", [*TRAIN, "-c", "trainer.batch_size=0"], ["trainer.batch_size"]),
    ("lr-inf", [*TRAIN, "-c", "trainer.lr=inf"], ["trainer.lr", "finite"]),
    ("lr-nan", [*TRAIN, "-c", "trainer.lr=nan"], ["trainer.lr", "finite"]),
    ("lr-negative", [*TRAIN, "-c", "trainer.lr=-0.1"], ["trainer.lr", "> 0"]),
    ("weight-decay-negative", [*TRAIN, "-c", "trainer.weight_decay=-1.0"], ["trainer.weight_decay"]),
    ("eval-batch-zero", [*TRAIN, "-c", "trainer.eval_batch_size=0"], ["trainer.eval_batch_size"]),
    ("optimizer-unknown", [*TRAIN, "-c", "trainer.optimizer=rmsprop"], ["trainer.optimizer"]),
    ("hidden-negative", [*TRAIN, "-c", "model.hidden=[-3]"], ["model.hidden[0]"]),
    ("dropout-one", [*TRAIN, "-c", "model.dropout=1.0"], ["model.dropout"]),
    ("num-samples-zero", [*TRAIN, "-c", "dataset.num_samples=0"], ["dataset.num_samples"]),
    ("num-classes-zero", [*TRAIN, "-c", "dataset.num_classes=0"], ["dataset.num_classes"]),
    ("num-classes-one", [*TRAIN, "-c", "dataset.num_classes=1"], ["dataset.num_classes"]),
    ("noise-negative", [*TRAIN, "-c", "dataset.noise=-1.0"], ["dataset.noise"]),
    ("run-name-5000", [*TRAIN, "-c", "run.name=" + "x" * 5000], ["run.name", "at most"]),
    ("run-name-slash", [*TRAIN, "-c", 'run.name="a/b"'], ["run.name"]),
    ("seed-negative", [*TRAIN, "-c", "run.seed=-1"], ["run.seed"]),
    ("threads-negative", [*TRAIN, "-c", "run.threads=-2"], ["run.threads"]),
    ("evaluator-batch-zero", [*TRAIN, "-c", "evaluator.name=accuracy", "-c", "evaluator.batch_size=0"],
     ["evaluator.batch_size"]),
    ("calibrator-dropped", [*TRAIN, "-c", "calibrator.name=identity"], ["takes no calibrator"]),
    ("unknown-model", ["train", "-c", "model.name=mpl", "-c", "dataset.name=synthetic-classification",
                       "-c", "trainer.name=supervised"], ["mpl", "mlp"]),
    ("unknown-key", [*TRAIN, "-c", "trainer.max_epoch=3"], ["max_epochs"]),
    ("wrong-type", [*TRAIN, "-c", "trainer.max_epochs=ten"], ["integer"]),
    ("not-key-value", [*TRAIN, "-c", "trainer.lr"], ["KEY=VALUE"]),
    ("unknown-table", [*TRAIN, "-c", "trainr.lr=1"], ["[trainr]"]),
    ("missing-config-file", ["train", "nope.toml"], ["nope.toml", "does not exist"]),
    ("malformed-toml", ["train", "{tmp}/malformed.toml"], ["malformed TOML"]),
    ("binary-toml", ["train", "{tmp}/binary.toml"], ["not UTF-8"]),
    ("wrong-type-in-file", ["train", "{tmp}/wrongtype.toml"], ["wrongtype.toml:4", "trainer.max_epochs"]),
    ("resume-missing", ["train", "--resume", "{tmp}/nothere"], ["not a pk run dir"]),
    ("run-dir-not-empty", [*TRAIN, "--run-dir", "{tmp}/full"], ["not empty"]),
    ("eval-missing", ["eval", "/nonexistent/run"], ["does not exist"]),
    ("eval-not-run-dir", ["eval", "{tmp}/full"], ["no config.toml"]),
    ("eval-corrupt-config", ["eval", "{tmp}/corrupt-run"], ["malformed TOML"]),
    ("eval-garbage-checkpoint", ["eval", "{tmp}/garbage.pt"], ["corrupt or not a pk checkpoint"]),
    ("eval-pickle-checkpoint", ["eval", "{tmp}/pickle.pt"], ["corrupt or not a pk checkpoint"]),
    ("batch-missing-file", ["batch", "nope.toml"], ["does not exist"]),
    ("batch-no-recipe", ["batch"], ["RECIPE"]),
    ("batch-only-unknown", ["batch", "{tmp}/recipe.toml", "--only", "nosuchrun"], ["nosuchrun", "runs: a, b"]),
    ("batch-only-unknown-dry", ["batch", "{tmp}/recipe.toml", "--only", "nosuchrun", "--dry-run"], ["nosuchrun"]),
    ("batch-jobs-zero", ["batch", "{tmp}/recipe.toml", "--jobs", "0"], ["--jobs"]),
    ("batch-jobs-negative", ["batch", "{tmp}/recipe.toml", "--jobs", "-1"], ["--jobs"]),
    ("batch-scoped-unknown-run", ["batch", "{tmp}/recipe.toml", "-c", "z:trainer.lr=0.1"], ["'z'"]),
    ("batch-matrix-malformed", ["batch", "{tmp}/recipe.toml", "--matrix", "seed"], ["--matrix"]),
    ("batch-unequal-budget", ["batch", "{tmp}/recipe.toml", "-c", "b:trainer.max_epochs=2"], ["trainer.max_epochs"]),
    ("batch-bad-value", ["batch", "{tmp}/recipe.toml", "-c", "trainer.lr=nan"], ["trainer.lr"]),
    ("uninstall-not-installed", ["uninstall", "pk-not-installed-anywhere", "-y"], ["not installed"]),
    ("check-unknown-plugin", ["check", "pk-nothing"], ["not installed"]),
    ("new-plugin-bad-name", ["new-plugin", "Bad Name"], ["lowercase"]),
]


def _snapshot(root: Path) -> dict[str, float]:
    runs = root / "runs"
    return {str(p): p.stat().st_mtime_ns for p in runs.rglob("*")} if runs.exists() else {}


@pytest.fixture
def workspace(runner, tmp_path):
    (tmp_path / "malformed.toml").write_text("[model\nname = 'mlp'\n")
    (tmp_path / "binary.toml").write_bytes(b"\x00\xff\xfe\x80garbage")
    (tmp_path / "wrongtype.toml").write_text(
        '[model]\nname = "mlp"\n[trainer]\nmax_epochs = "ten"\nname = "supervised"\n'
        '[dataset]\nname = "synthetic-classification"\n')
    (tmp_path / "recipe.toml").write_text(RECIPE)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("keep")
    corrupt = tmp_path / "corrupt-run"
    (corrupt / "checkpoints").mkdir(parents=True)
    (corrupt / "config.toml").write_text("[model\n")
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint at all")
    import torch

    torch.save({"model": {}, "_pk": Path("a-pickled-object")}, tmp_path / "pickle.pt")  # needs unpickling code
    (tmp_path / "runs" / "earlier").mkdir(parents=True)
    (tmp_path / "runs" / "earlier" / "result.json").write_text('{"status": "completed"}')
    return runner, tmp_path


@pytest.mark.parametrize(("argv", "words"), [(c[1], c[2]) for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_touches_nothing(workspace, argv, words):
    runner, tmp = workspace
    before = _snapshot(tmp)
    out = invoke(runner, [a.replace("{tmp}", str(tmp)) for a in argv])
    lines = [x for x in out.output.strip().splitlines() if x.strip()]
    assert out.exit_code == 2, out.output
    assert len(lines) == 1 and lines[0].startswith("error: "), out.output
    assert "Traceback" not in out.output
    for w in words:
        assert w in lines[0], lines[0]
    assert _snapshot(tmp) == before, "a bad input created or changed files under runs/"
    assert (tmp / "full" / "x.txt").read_text() == "keep"


def test_table_has_at_least_forty_cases():
    assert len({c[0] for c in CASES}) == len(CASES) >= 40


def test_unknown_plugin_in_load_list(tmp_path):
    """PK_LOAD_PLUGINS naming nothing installed is an error, not an empty registry."""
    out = run_pk(["list"], env={"PK_LOAD_PLUGINS": "pk-nope"}, cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert out.stderr.count("\n") == 1 and "pk-nope" in out.stderr and "Traceback" not in out.stderr


# -- every bounded field of the built-ins, drawn -----------------------------------------
def _bounded_fields():
    from pk.core.plugins import load_registry

    registry = load_registry(entry_points=False)
    out = []
    for reg in registry:
        if reg.config is None:
            continue
        for f in dataclasses.fields(reg.config):
            if any(k in f.metadata for k in ("ge", "gt", "le", "lt")):
                out.append((reg, f))
    return out


def _violations(meta):
    parts = []
    if "ge" in meta:
        parts.append(st.floats(max_value=meta["ge"], exclude_max=True, allow_nan=False, allow_infinity=False,
                               min_value=meta["ge"] - 1e6))
    if "gt" in meta:
        parts.append(st.floats(max_value=meta["gt"], allow_nan=False, allow_infinity=False, min_value=meta["gt"] - 1e6))
    if "le" in meta:
        parts.append(st.floats(min_value=meta["le"], exclude_min=True, allow_nan=False, allow_infinity=False,
                               max_value=meta["le"] + 1e6))
    if "lt" in meta:
        parts.append(st.floats(min_value=meta["lt"], allow_nan=False, allow_infinity=False, max_value=meta["lt"] + 1e6))
    return st.one_of(parts)


BOUNDED = _bounded_fields()


def test_builtins_declare_bounds():
    names = {f"{reg.name}.{f.name}" for reg, f in BOUNDED}
    assert {"supervised.max_epochs", "supervised.lr", "synthetic-classification.num_samples", "mlp.hidden"} <= names


@pytest.mark.parametrize(("reg", "fld"), BOUNDED, ids=[f"{r.kind}:{r.name}.{f.name}" for r, f in BOUNDED])
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_out_of_range_or_non_finite_values_are_refused(reg, fld, data):
    """Draw a value outside the declared range (or nan/inf, or a string) for the field and
    resolve: a ConfigError naming section.field, before anything is built."""
    from pk.core.config import resolve
    from pk.core.errors import ConfigError
    from pk.core.plugins import load_registry
    from pk.core.registry import KINDS

    section = KINDS.get(reg.kind, reg.kind)
    value = data.draw(st.one_of(_violations(fld.metadata), st.sampled_from([math.nan, math.inf, -math.inf]),
                                st.text(min_size=1, max_size=5)))
    default = fld.default if fld.default is not dataclasses.MISSING else fld.default_factory()  # type: ignore[misc]
    if isinstance(default, int) and not isinstance(default, bool) and isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(default, list):
        value = [value]
    raw = {"model": {"name": "mlp"}, "dataset": {"name": "synthetic-classification"}, "trainer": {"name": "supervised"}}
    raw[section] = {**raw.get(section, {}), "name": reg.name, fld.name: value}
    with pytest.raises(ConfigError, match=f"{section}.{fld.name}"):
        resolve(raw, load_registry(entry_points=False))


@pytest.mark.parametrize(("content", "words"), [
    (b"", ["empty"]),
    (b"  \n\n", ["empty"]),
    (b"1 2 3\n4 5\x00 6\n", [":2:", "not UTF-8"]),
    (b"ok line\n\xff\xfe bad\n", [":2:", "byte 8"]),
])
def test_check_text_file_names_file_and_line(tmp_path, content, words):
    from pk.core.datasource import check_text_file
    from pk.core.errors import DataError

    path = tmp_path / "data.txt"
    path.write_bytes(content)
    with pytest.raises(DataError) as err:
        check_text_file(path)
    for w in words:
        assert w in str(err.value)
    assert str(path) in str(err.value)


def test_check_text_file_returns_the_checksum(tmp_path):
    import hashlib

    from pk.core.datasource import check_text_file

    path = tmp_path / "data.txt"
    path.write_bytes(b"1 2 3\n")
    assert check_text_file(path) == hashlib.sha256(b"1 2 3\n").hexdigest()
