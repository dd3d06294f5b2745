"""`pk tune`: equal-effort tuning on Optuna, resume after a kill, pruning, --then-batch."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pk.core.errors import ConfigError, UsageError
from tests.conftest import PK, invoke

optuna = pytest.importorskip("optuna")

RECIPE = """
[batch]
name = "tt"
metric = "test.accuracy"
baseline = "small"
method = "large"
{batch_extra}

[defaults]
dataset = {{ name = "synthetic-classification", num_samples = 150, num_features = 4, num_classes = 3 }}
trainer = {{ name = "supervised", max_epochs = 2 }}
run = {{ threads = 1 }}

[matrix]
"run.seed" = [0, 1]

[[runs]]
name = "small"
overrides = {{ model = {{ name = "mlp", hidden = [4] }} }}

[[runs]]
name = "large"
overrides = {{ model = {{ name = "mlp", hidden = [16, 16] }} }}

[tune]
trials = {trials}
metric = "valid.accuracy"
pruner = "{pruner}"
space = {{ "trainer.lr" = {{ log_uniform = [1e-3, 2e-1] }} }}
{tune_extra}
"""


def recipe(path: Path, trials: int = 3, pruner: str = "median", batch_extra: str = "", tune_extra: str = "") -> Path:
    path.write_text(RECIPE.format(trials=trials, pruner=pruner, batch_extra=batch_extra, tune_extra=tune_extra))
    return path


def finished_trials(tune_dir: Path) -> dict[str, dict]:
    """Trial run dirs whose result.json says completed or pruned, by name."""
    out = {}
    for d in sorted((tune_dir / "trials").glob("*")):
        try:
            res = json.loads((d / "result.json").read_text())
        except (OSError, ValueError):
            continue
        if res.get("status") in ("completed", "pruned"):
            out[d.name] = res
    return out


def proposals(tune_dir: Path) -> dict[tuple[str, int], tuple[dict, float | None]]:
    """(arm, k-th finished trial) -> (params, value) from the study."""
    from optuna.trial import TrialState

    storage = f"sqlite:///{(tune_dir / 'study.sqlite').resolve()}"
    out = {}
    for arm in ("small", "large"):
        study = optuna.load_study(study_name=arm, storage=storage)
        done = [t for t in study.get_trials() if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
        for k, t in enumerate(sorted(done, key=lambda t: t.number)):
            out[(arm, k)] = (t.params, t.value)
    return out


# -- the search space ------------------------------------------------------------------
SPACES = st.one_of(
    st.tuples(st.sampled_from(["uniform", "log_uniform"]), st.floats(1e-4, 10), st.floats(1.01, 100)).map(
        lambda t: {t[0]: [t[1], t[1] * t[2]]}),
    st.tuples(st.integers(1, 50), st.integers(1, 10), st.integers(1, 5)).map(
        lambda t: {"int": [t[0], t[0] + t[1] * t[2]], "step": t[2]}),
    st.lists(st.one_of(st.integers(-5, 5), st.lists(st.integers(1, 64), max_size=3), st.text(max_size=3)),
             min_size=1, max_size=4, unique_by=json.dumps).map(lambda c: {"choice": c}),
)


@settings(max_examples=40, deadline=None)
@given(entry=SPACES, seed=st.integers(0, 1000))
def test_suggestions_stay_in_the_declared_space(entry, seed):
    """Every value a trial draws lies in the declared range (on the int step grid) or is
    one of the choices, lists included (they travel as JSON through Optuna). Catches
    swapped bounds, a dropped step and list choices handed back as strings."""
    from pk.core.tune import parse_space

    (param,) = parse_space({"model.x": entry}, "test").values()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    for _ in range(5):
        value = param.suggest(study.ask())
        if "choice" in entry:
            assert value in entry["choice"] and type(value) is type(entry["choice"][entry["choice"].index(value)])
        elif "int" in entry:
            low, high = entry["int"]
            assert isinstance(value, int) and low <= value <= high and (value - low) % entry["step"] == 0
        else:
            low, high = next(iter(entry.values()))
            assert low <= value <= high


@pytest.mark.parametrize("entry", [{"uniform": [1, 1]}, {"log_uniform": [0, 1]}, {"int": [0.5, 2]}, {"choice": []},
                                   {"uniform": [0, 1], "choice": [1]}, {"normal": [0, 1]}, {"int": [0, 4], "step": 0},
                                   {"int": [0, 5], "step": 2}])
def test_malformed_space_is_a_config_error(entry):
    from pk.core.tune import parse_space

    with pytest.raises(ConfigError):
        parse_space({"trainer.lr": entry}, "test")


# -- refused recipes -------------------------------------------------------------------
BAD = [
    ("unequal-trials", {"tune_extra": "[tune.runs.large]\ntrials = 2"}, "unequal tuning budgets"),
    ("test-metric", {"tune_extra": ""}, "never on test"),
    ("budget-key", {"tune_extra": "[tune.runs.large]\nspace = { \"trainer.max_epochs\" = { int = [1, 3] } }"},
     "trainer.max_epochs"),
    ("dataset-key", {"tune_extra": "[tune.runs.small]\nspace = { \"dataset.noise\" = { uniform = [0.1, 0.5] } }"},
     "dataset.noise"),
    ("seed", {"tune_extra": "[tune.runs.small]\nspace = { \"run.seed\" = { int = [0, 3] } }"}, "run.seed"),
    ("out-of-bounds", {"tune_extra": "[tune.runs.small]\nspace = { \"model.dropout\" = { uniform = [0.5, 1.5] } }"},
     "model.dropout"),
    ("unknown-key", {"tune_extra": "[tune.runs.small]\nspace = { \"model.widht\" = { choice = [1] } }"}, "widht"),
    ("unknown-arm", {"tune_extra": "[tune.runs.nope]\nspace = {}"}, "nope"),
]


@pytest.mark.parametrize(("case", "kw", "words"), BAD, ids=[b[0] for b in BAD])
def test_refused_recipes_exit_2_before_any_run(runner, tmp_path, case, kw, words):
    """Unequal trial counts, a test metric, and spaces over the comparison's fingerprint
    (budget, dataset), the seed, out-of-bounds or unknown keys are refused with exit 2 and
    one line, before anything runs. Each case catches a missing check."""
    path = recipe(tmp_path / "r.toml", **kw)
    if case == "test-metric":
        path.write_text(path.read_text().replace('metric = "valid.accuracy"', 'metric = "test.accuracy"'))
    out = invoke(runner, ["tune", str(path)])
    lines = [x for x in out.output.splitlines() if x.strip()]
    assert out.exit_code == 2, out.output
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], out.output
    assert not Path("runs").exists()


def test_declared_unequal_trials_are_allowed(runner, tmp_path):
    """`[batch] unequal = { "tune.trials" = reason }` lets arms differ, as for epochs."""
    path = recipe(tmp_path / "r.toml", batch_extra='unequal = { "tune.trials" = "the method has one more knob" }',
                  tune_extra="[tune.runs.large]\ntrials = 2")
    out = invoke(runner, ["tune", str(path), "--dry-run", "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["tune"]["trials"] == {"small": 3, "large": 2}


def test_equal_effort_check_counts_finished_trials():
    """--then-batch refuses a tune cut short (finished trials differ between arms)."""
    from types import SimpleNamespace

    from pk.core.tune import check_equal_effort

    spec = SimpleNamespace(arms=["a", "b"], trials={"a": 3, "b": 3})
    best = {"value": 1.0, "params": {}}
    plan = SimpleNamespace(spec=spec, batch=SimpleNamespace(meta={}))
    state = {"a": {"finished": 3, "best": best}, "b": {"finished": 2, "best": best}}
    with pytest.raises(UsageError, match="unequal tuning effort"):
        check_equal_effort(plan, state)  # type: ignore[arg-type]
    state["b"]["finished"] = 3
    check_equal_effort(plan, state)  # type: ignore[arg-type]
    plan.batch.meta = {"unequal": {"tune.trials": "why"}}
    check_equal_effort(plan, {"a": {"finished": 3, "best": best}, "b": {"finished": 1, "best": best}})  # type: ignore[arg-type]


# -- the acceptance run ----------------------------------------------------------------
def test_six_trials_killed_after_three_resume_runs_only_the_rest_then_batch(runner, tmp_path):
    """The issue's acceptance: a 6-trial tune (3 per arm) of two built-in arms writes 6 trial
    run dirs and an SQLite study. A tune killed with SIGKILL after its 3rd trial (4th under
    way) continues with --resume: the cut trial's dir is set aside, only the missing trials
    run, and they propose and score exactly what an uninterrupted tune does. --then-batch
    prints the paired comparison, and batch.json records each arm's trials and pruned count.
    Catches a resume that repeats or skips trials, or reseeds the sampler differently."""
    path = recipe(tmp_path / "r.toml", pruner="none")
    env = {**os.environ, "PK_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([PK, "tune", str(path), "--out", "cut"], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        started = list((tmp_path / "cut" / "trials").glob("*/config.toml"))
        if len(finished_trials(tmp_path / "cut")) >= 3 and len(started) >= 4:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = finished_trials(tmp_path / "cut")
    assert 3 <= len(before) < 6, "the kill did not land between trials 3 and 6"

    ref = invoke(runner, ["tune", str(path), "--out", str(tmp_path / "ref"), "--json"])  # uninterrupted
    assert ref.exit_code == 0, ref.output
    resumed = invoke(runner, ["tune", "--resume", "--out", str(tmp_path / "cut"), "--then-batch"])
    assert resumed.exit_code == 0, resumed.output
    after = finished_trials(tmp_path / "cut")
    assert len(after) == 6 and set(before) <= set(after)
    assert len(list((tmp_path / "cut" / "trials").glob("*.incomplete-*"))) == len(started) - len(before)
    ran = [ln for ln in resumed.output.splitlines() if re.match(r"\[\d+/6\] (small|large) trial \d+: ", ln)]
    assert len(ran) == 6 - len(before)  # only the missing trials ran
    assert (tmp_path / "cut" / "study.sqlite").is_file()
    assert proposals(tmp_path / "cut") == proposals(tmp_path / "ref")
    assert "baseline vs method" in resumed.output and "tuned small: 3 trials (0 pruned" in resumed.output
    meta = json.loads((tmp_path / "cut" / "final" / "batch.json").read_text())["meta"]["tune"]
    assert {arm: (a["trials"], a["complete"], a["pruned"]) for arm, a in meta["arms"].items()} == {
        "small": (3, 3, 0), "large": (3, 3, 0)}
    lines = [json.loads(x) for x in (tmp_path / "cut" / "final" / "batch.jsonl").read_text().splitlines()]
    assert len(lines) == 4 and all(x["status"] == "completed" for x in lines)
    best = {arm: meta["arms"][arm]["best_params"]["trainer.lr"] for arm in ("small", "large")}
    for x in lines:  # the final runs use each arm's best config
        cfg = (Path(x["run_dir"]) / "config.toml").read_text()
        assert f"lr = {best[x['name']]!r}" in cfg


def test_pruned_trials_are_recorded_and_block_then_batch(runner, tmp_path, monkeypatch):
    """A pruner that stops every trial after its first epoch: each trial's result.json says
    pruned (epoch 1) with one validation line logged, `pk runs --status pruned` lists them,
    the study counts them, --then-batch refuses (no completed trial), and a resume with a
    changed space is refused. Catches a pruner not wired to run.log's valid metrics."""
    import pk.core.tune.study as tune

    monkeypatch.setattr(tune, "_pruner", lambda spec: optuna.pruners.ThresholdPruner(lower=2.0))
    path = recipe(tmp_path / "r.toml", trials=1)
    out = invoke(runner, ["tune", str(path), "--out", "p", "--json"])
    assert out.exit_code == 0, out.output
    state = json.loads(out.output)["arms"]
    assert {arm: (s["pruned"], s["complete"]) for arm, s in state.items()} == {"small": (1, 0), "large": (1, 0)}
    trials = finished_trials(Path("p"))
    assert len(trials) == 2 and all(r["status"] == "pruned" and r["pruned"]["epoch"] == 1 for r in trials.values())
    for name in trials:
        valid = [ln for ln in Path("p", "trials", name, "metrics.jsonl").read_text().splitlines() if '"valid"' in ln]
        assert len(valid) == 1
    listed = invoke(runner, ["runs", "--dir", "p", "--status", "pruned", "--json"])
    assert len(json.loads(listed.output)) == 2
    refused = invoke(runner, ["tune", str(path), "--out", "p", "--resume", "--then-batch"])
    assert refused.exit_code == 2 and "no completed trial" in refused.output
    path.write_text(path.read_text().replace("2e-1", "3e-1"))
    changed = invoke(runner, ["tune", str(path), "--out", "p", "--resume"])
    assert changed.exit_code == 2 and "changed since this tune began" in changed.output
    again = invoke(runner, ["tune", str(recipe(tmp_path / "r2.toml", trials=1)), "--out", "p"])
    assert again.exit_code == 2 and "--resume" in again.output


def test_trial_reporter_reports_each_epoch_and_prunes_on_request():
    """The reporter passes each `valid` value of the tuned metric to the trial at steps
    0, 1, ... and raises Pruned (a KeyboardInterrupt: the run is recorded as stopped) only
    when the pruner says so; other splits and metrics are ignored."""
    from pk.core.tune import Pruned, TrialReporter

    class Trial:
        def __init__(self) -> None:
            self.reports: list[tuple[float, int]] = []

        def report(self, value, step):
            self.reports.append((value, step))

        def should_prune(self):
            return len(self.reports) >= 2

    trial = Trial()
    rep = TrialReporter(trial, "valid.accuracy")
    rep.metrics(10, "train", {"accuracy": 0.9})
    rep.metrics(10, "valid", {"loss": 0.3})
    rep.metrics(10, "valid", {"accuracy": 0.5, "loss": 0.3})
    with pytest.raises(Pruned) as stop:
        rep.metrics(20, "valid", {"accuracy": 0.6})
    assert trial.reports == [(0.5, 0), (0.6, 1)] and stop.value.epoch == 2
    assert isinstance(stop.value, KeyboardInterrupt)


def test_trials_in_flight_keep_equal_effort(runner, tmp_path, monkeypatch):
    """With two trials under way at once (as with --executor ray --parallel 2) each arm
    still gets exactly its trials, interleaved, each an ordinary run dir. Uses a pool that
    defers each trial until its result is asked for, so the scheduling is what is tested.
    Catches a scheduler that counts only finished trials (it would start extra ones)."""
    import pk.core.tune as tune

    class Deferred(tune.LocalPool):
        parallel = 2
        submitted: list[str] = []

        def submit(self, **kwargs):
            self.submitted.append(kwargs["arm"])
            return kwargs

    pool = Deferred()
    path = recipe(tmp_path / "r.toml", trials=2, pruner="none")
    from pk.core.plugins import get_registry

    plan = tune.load_tune(path, get_registry())
    state = tune.run_tune(plan, Path("par"), get_registry(), pool=pool)
    assert {a: (s["complete"], s["finished"]) for a, s in state.items()} == {"small": (2, 2), "large": (2, 2)}
    assert pool.submitted == ["small", "large", "small", "large"]
    assert len(finished_trials(Path("par"))) == 4
