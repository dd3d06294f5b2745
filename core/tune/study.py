"""Running a tune: one Optuna study per arm, trials as run dirs, pruning, resume, the final batch."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pk.core.batch import BatchSpec
from pk.core.config import dumps_toml
from pk.core.console import Reporter
from pk.core.errors import ConfigError, PkError, RunFailed, UsageError
from pk.core.io import atomic_write_json, atomic_write_text
from pk.core.registry import Registry
from pk.core.run import read_result, utc_stamp
from pk.core.seed import derive_seed
from pk.core.tune.spec import STUDY_FILE, TRIALS_DIR, TunePlan, TuneSpec, literal, with_params


class Pruned(KeyboardInterrupt):
    """Raised from a trial's reporter when the pruner stops it. A KeyboardInterrupt, so the
    core records the run as stopped from outside (``interrupted``, no traceback) before
    :func:`run_tune` marks it ``pruned``."""

    def __init__(self, epoch: int, value: float) -> None:
        super().__init__(f"pruned at epoch {epoch} ({value:.6g})")
        self.epoch = epoch
        self.value = value


class TrialReporter(Reporter):
    """A run reporter that hands each ``valid`` metric line (``run.log(step, "valid", ...)``)
    to the Optuna trial and raises :class:`Pruned` when the pruner says so."""

    def __init__(self, trial: Any, metric: str, prune: bool = True, mode: str = "quiet") -> None:
        super().__init__(mode)
        self.trial = trial
        self.split, _, self.name = metric.partition(".")
        self.prune = prune
        self.values: list[float] = []

    def metrics(self, step: int, split: str, values: dict[str, float]) -> None:
        super().metrics(step, split, values)
        if split != self.split or self.name not in values:
            return
        value = float(values[self.name])
        self.values.append(value)
        epoch = len(self.values)
        if math.isfinite(value):
            self.trial.report(value, epoch - 1)  # Optuna steps count from 0: step k is epoch k + 1
        if self.prune and self.trial.should_prune():
            raise Pruned(epoch, value)


def _sampler(spec: TuneSpec, arm: str, number: int) -> Any:
    import optuna

    seed = derive_seed(spec.seed, "tune", arm, str(number)) % (2**31)
    if spec.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(2, spec.startup_trials))


def _pruner(spec: TuneSpec) -> Any:
    import optuna

    if spec.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=spec.startup_trials, n_warmup_steps=spec.warmup_epochs)
    if spec.pruner == "asha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=max(1, spec.warmup_epochs), reduction_factor=3)
    return optuna.pruners.NopPruner()


def storage_url(tune_dir: Path) -> str:
    return f"sqlite:///{(Path(tune_dir) / STUDY_FILE).resolve()}"


def plan_record(plan: TunePlan) -> dict[str, Any]:
    """What a resumed tune must match: spec (without trial counts) and each arm's base config."""
    spec = plan.spec.as_dict()
    spec.pop("trials")
    return {"spec": spec, "base": {arm: run.resolved.hash() for arm, run in plan.base.items()}}


def arm_summary(study: Any, spec: TuneSpec, arm: str) -> dict[str, Any]:
    """Counts (complete, pruned, failed, finished = complete + pruned) and the best trial."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    count = {s: sum(t.state == s for t in trials) for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}
    out: dict[str, Any] = {"trials": spec.trials[arm], "complete": count[TrialState.COMPLETE],
                           "pruned": count[TrialState.PRUNED], "failed": count[TrialState.FAIL],
                           "finished": count[TrialState.COMPLETE] + count[TrialState.PRUNED],
                           "metric": spec.metric, "direction": spec.direction, "best": None}
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    if done:
        best = (max if spec.direction == "maximize" else min)(done, key=lambda t: t.value)
        out["best"] = {"trial": best.number, "value": best.value, "params": best.user_attrs.get("params", {}),
                       "run_dir": best.user_attrs.get("run_dir")}
    return out


def trial_task(storage: str, arm: str, trial_id: int, config: dict[str, Any], run_dir: str, metric: str,
               direction: str, pruning: dict[str, Any], source: str, reporter_mode: str = "quiet") -> dict[str, Any]:
    """Train one trial into ``run_dir`` against the study in ``storage`` (in this process,
    or as a Ray task on any machine that sees the storage and the run dir). Returns
    ``{"state": "complete", "value"}``, ``{"state": "pruned", "epoch", "value"}``,
    ``{"state": "failed", "error"}`` or ``{"state": "no-metric", "seen"}``."""
    import optuna
    from optuna.trial import Trial

    from pk.core.config import resolve
    from pk.core.plugins import get_registry
    from pk.core.runner import train

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec = TuneSpec(metric=metric, direction=direction, trials={}, space={}, **pruning)
    study = optuna.load_study(study_name=arm, storage=storage, pruner=_pruner(spec))
    reporter = TrialReporter(Trial(study, trial_id), metric, prune=spec.pruner != "none", mode=reporter_mode)
    try:
        _, result = train(resolve(config, get_registry()), run_dir=run_dir, argv=["pk", "tune", source],
                          reporter=reporter)
    except Pruned as stop:
        _mark_pruned(Path(run_dir), stop)
        return {"state": "pruned", "epoch": stop.epoch, "value": stop.value}
    except PkError as exc:
        return {"state": "failed", "error": str(exc)}
    value = objective(spec, reporter.values, result.get("metrics", {}))
    if value is None:
        seen = sorted({*result.get("metrics", {}), *([metric] if reporter.values else [])})
        return {"state": "no-metric", "seen": seen}
    return {"state": "complete", "value": value}


class LocalPool:
    """Runs each trial in this process when its result is asked for (one at a time)."""

    parallel = 1

    def submit(self, **kwargs: Any) -> Any:
        return kwargs

    def result(self, handle: Any) -> dict[str, Any]:
        return trial_task(**handle)

    def close(self) -> None:
        """Nothing to release."""


class RayTrialPool:
    """Runs trials as Ray tasks (``parallel`` at a time) against the same study storage;
    resources per trial from ``[batch] resources``. Needs ``pk-core[ray]``."""

    def __init__(self, address: str | None, resources: Mapping[str, Any], parallel: int) -> None:
        from pk.core.ray_executor import ray_task

        self.ray, self.task = ray_task(trial_task, address, resources)
        self.parallel = parallel

    def submit(self, **kwargs: Any) -> Any:
        return self.task.remote(**kwargs)

    def result(self, handle: Any) -> dict[str, Any]:
        try:
            return self.ray.get(handle)
        except Exception as exc:  # RayTaskError wraps the worker's exception
            cause = getattr(exc, "cause", None) or exc
            return {"state": "failed", "error": str(cause).strip().splitlines()[-1]}

    def close(self) -> None:
        self.ray.shutdown()


def run_tune(plan: TunePlan, tune_dir: Path, registry: Registry, *, resume: bool = False,
             echo: Callable[[str], None] = lambda s: None, reporter_mode: str = "quiet",
             pool: Any = None) -> dict[str, Any]:
    """Run the missing trials of every arm, interleaved (the arm with fewest finished or
    running trials next), and return ``{arm: arm_summary}``. ``pool`` runs the trials
    (default: this process, one at a time; :class:`RayTrialPool` for Ray tasks,
    ``pool.parallel`` at a time). A trial that fails stops the tune (RunFailed, exit 1)
    once the trials under way have ended; ``--resume`` continues it."""
    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pool = pool or LocalPool()
    spec = plan.spec
    tune_dir = Path(tune_dir)
    record_file = tune_dir / "tune.json"
    study_file = tune_dir / STUDY_FILE
    wanted = plan_record(plan)
    if study_file.exists() or record_file.exists():
        if not resume:
            raise UsageError(f"{tune_dir} already holds a tune; continue it with --resume or pick a new --out")
        before = json.loads(record_file.read_text()) if record_file.is_file() else {}
        if before.get("plan") and before["plan"] != wanted:
            raise UsageError(f"{tune_dir}: the recipe's [tune] space, metric or base configs changed since this tune "
                             "began; start a new tune (--out) instead of --resume")
    tune_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(tune_dir / "recipe.toml", dumps_toml(plan.recipe))
    url = storage_url(tune_dir)
    storage = optuna.storages.RDBStorage(url)
    studies = {}
    for arm in spec.arms:
        direction: Any = spec.direction
        studies[arm] = optuna.create_study(storage=storage, study_name=arm, direction=direction, load_if_exists=True)
        for t in studies[arm].get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)):
            storage.set_trial_state_values(t._trial_id, TrialState.FAIL)  # killed mid-trial: retried as a new trial
            _set_aside(t.user_attrs.get("run_dir"))
            echo(f"{arm}: trial {t.number} was cut off; it will be run again")

    def save() -> dict[str, Any]:
        out = {arm: arm_summary(studies[arm], spec, arm) for arm in spec.arms}
        atomic_write_json(record_file, {"source": plan.source, "settings": plan.settings, "matrix": plan.matrix_axes,
                                        "spec": spec.as_dict(), "plan": wanted, "arms": out})
        return out

    pruning = {"pruner": spec.pruner, "startup_trials": spec.startup_trials, "warmup_epochs": spec.warmup_epochs}
    state = save()
    total = sum(spec.trials.values())
    inflight: list[tuple[Any, str, Any, Path, str]] = []
    error: PkError | None = None
    try:
        while True:
            while error is None and len(inflight) < max(1, int(getattr(pool, "parallel", 1))):
                busy = {a: state[a]["finished"] + sum(f[1] == a for f in inflight) for a in spec.arms}
                todo = [a for a in spec.arms if busy[a] < spec.trials[a]]
                if not todo:
                    break
                arm = min(todo, key=lambda a: (busy[a], spec.arms.index(a)))
                # the k-th trial of an arm draws from its own seed: a cut-off trial (failed)
                # does not shift what a resumed tune proposes
                study = optuna.load_study(study_name=arm, storage=storage, sampler=_sampler(spec, arm, busy[arm]),
                                          pruner=_pruner(spec))
                trial = study.ask()
                params = {p.key: p.suggest(trial) for p in spec.space[arm]}
                trial.set_user_attr("params", params)
                try:
                    resolved = with_params(plan.base[arm], params, registry)
                except PkError as exc:
                    study.tell(trial, state=TrialState.FAIL)
                    raise ConfigError(f"{arm} trial {trial.number}: {exc}") from None
                run_dir = (tune_dir / TRIALS_DIR / f"{arm}-t{trial.number:03d}-{resolved.hash()}").resolve()
                trial.set_user_attr("run_dir", str(run_dir))
                handle = pool.submit(storage=url, arm=arm, trial_id=trial._trial_id, config=resolved.data,
                                     run_dir=str(run_dir), metric=spec.metric, direction=spec.direction,
                                     pruning=pruning, source=plan.source, reporter_mode=reporter_mode)
                inflight.append((handle, arm, trial, run_dir, ", ".join(f"{k}={_short(v)}" for k, v in params.items())))
            if not inflight:
                break
            handle, arm, trial, run_dir, shown = inflight[0]
            out = pool.result(handle)
            inflight.pop(0)
            done = sum(s["finished"] for s in state.values()) + 1
            study = studies[arm]
            if out["state"] == "pruned":
                study.tell(trial, state=TrialState.PRUNED)
                echo(f"[{done}/{total}] {arm} trial {trial.number}: pruned at epoch {out['epoch']} "
                     f"({spec.metric}={out['value']:.4f}) — {shown}")
            elif out["state"] == "complete":
                study.tell(trial, out["value"])
                best = arm_summary(study, spec, arm)["best"]
                echo(f"[{done}/{total}] {arm} trial {trial.number}: {spec.metric}={out['value']:.4f} — {shown}"
                     + (f" (best {best['value']:.4f}, trial {best['trial']})" if best else ""))
            else:
                study.tell(trial, state=TrialState.FAIL)
                if error is None and out["state"] == "no-metric":
                    error = ConfigError(f"[tune] metric {spec.metric!r} was not reported by arm {arm!r} "
                                        f"(its run reports {', '.join(out['seen']) or 'nothing'}, "
                                        "and per-epoch valid.* through run.log); pick a metric it reports")
                elif error is None:
                    error = RunFailed(f"{arm} trial {trial.number} failed ({run_dir}): {out['error']}; fix it and "
                                      "continue with --resume")
            state = save()
            _index(run_dir)
    except BaseException:
        for _, arm, trial, run_dir, _ in inflight:  # Ctrl-C: what was under way is cut off
            studies[arm].tell(trial, state=TrialState.FAIL)
            _set_aside(str(run_dir))
        save()
        raise
    finally:
        pool.close()
    if error is not None:
        raise error
    return state


def objective(spec: TuneSpec, reported: Sequence[float], metrics: Mapping[str, Any]) -> float | None:
    """A finished trial's value: the best per-epoch ``valid.*`` value reported (the trainer
    keeps its best weights), or the result's ``fit.*`` metric; None if missing or NaN."""
    if spec.metric.startswith("fit."):
        value = metrics.get(spec.metric)
    else:
        finite = [v for v in reported if math.isfinite(v)]
        value = (max if spec.direction == "maximize" else min)(finite) if finite else None
    if value is None or not math.isfinite(float(value)):
        return None
    return float(value)


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else json.dumps(value)


def _set_aside(run_dir: str | None) -> None:
    if run_dir and Path(run_dir).is_dir():
        Path(run_dir).rename(f"{run_dir}.incomplete-{utc_stamp()}")


def _mark_pruned(run_dir: Path, stop: Pruned) -> None:
    result = read_result(run_dir) or {}
    result.update(status="pruned", pruned={"epoch": stop.epoch, "value": stop.value})
    atomic_write_json(run_dir / "result.json", result)


def _index(run_dir: Path) -> None:
    from pk.core.index import record_run

    record_run(run_dir)


# -- after tuning ----------------------------------------------------------------------
def load_summary(tune_dir: Path) -> dict[str, Any]:
    file = Path(tune_dir) / "tune.json"
    if not file.is_file():
        raise UsageError(f"{tune_dir} holds no tune (tune.json); run `pk tune RECIPE` first")
    return json.loads(file.read_text())


def check_equal_effort(plan: TunePlan, state: Mapping[str, Any]) -> None:
    """Refuse to compare arms whose finished trial counts differ (a tune cut short),
    unless ``[batch] unequal`` names ``tune.trials``."""
    if "tune.trials" in plan.batch.meta.get("unequal", {}):
        return
    finished = {arm: state[arm]["finished"] for arm in plan.spec.arms}
    missing = [arm for arm in plan.spec.arms if state[arm]["best"] is None]
    if missing:
        raise UsageError(f"arm(s) {', '.join(missing)} have no completed trial to take a best config from; "
                         "continue with pk tune --resume or widen the space")
    if len(set(finished.values())) > 1 or any(finished[a] < plan.spec.trials[a] for a in finished):
        shown = ", ".join(f"{a} {n}/{plan.spec.trials[a]}" for a, n in finished.items())
        raise UsageError(f"unequal tuning effort so far ({shown} trials finished); "
                         "finish the tune with pk tune --resume before comparing")


def final_spec(plan: TunePlan, state: Mapping[str, Any], registry: Registry, tune_dir: Path) -> BatchSpec:
    """The recipe's batch with each tuned arm's best params set (as ``ARM:key=value``
    settings after the user's), its meta carrying ``tune``: each arm's trials, pruned and
    failed counts, best value and params, and the tune's metric, sampler and pruner."""
    from pk.core.batch import load_batch

    check_equal_effort(plan, state)
    best = [f"{arm}:{k}={literal(v)}" for arm in plan.spec.arms for k, v in state[arm]["best"]["params"].items()]
    recipe = Path(tune_dir) / "recipe.toml"
    spec = load_batch(recipe, registry, [*plan.settings, *best], plan.matrix_axes)
    spec.source = plan.source
    spec.meta["tune"] = {
        "metric": plan.spec.metric, "direction": plan.spec.direction, "sampler": plan.spec.sampler,
        "pruner": plan.spec.pruner, "study": str((Path(tune_dir) / STUDY_FILE).resolve()),
        "arms": {arm: {k: state[arm][k] for k in ("trials", "complete", "pruned", "failed")}
                 | {"best_value": state[arm]["best"]["value"], "best_params": state[arm]["best"]["params"]}
                 for arm in plan.spec.arms},
    }
    return spec


def effort_lines(meta_tune: Mapping[str, Any]) -> list[str]:
    """One line per arm: trials, pruned, best value and params."""
    lines = []
    for arm, a in meta_tune.get("arms", {}).items():
        params = ", ".join(f"{k}={_short(v)}" for k, v in a["best_params"].items())
        lines.append(f"  tuned {arm}: {a['complete'] + a['pruned']} trials "
                     f"({a['pruned']} pruned, {a['failed']} failed), "
                     f"best {meta_tune['metric']}={a['best_value']:.4f} with {params}")
    return lines
